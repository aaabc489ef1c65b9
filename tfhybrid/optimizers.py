"""Optimizers: ``update(params, grads)`` changes the params dict in place.

Kept apart from layers and models, so any model's gradient dict can be fed to any rule.
The rules are those of doc 004 (the textbook it follows), for each parameter array p
with gradient g, elementwise, and eps = 1e-7:

    sgd       p <- p - lr g
    momentum  v <- momentum v - lr g;            p <- p + v                   (v starts at 0)
    adagrad   h <- h + g²;                       p <- p - lr g / (sqrt(h) + eps)   (h at 0)
    rmsprop   h <- decay h + (1 - decay) g²;     p <- p - lr g / (sqrt(h) + eps)   (h at 0)
    adam      t <- t + 1;  lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t)
              m <- m + (1 - beta1)(g - m);  v <- v + (1 - beta2)(g² - v)
              p <- p - lr_t m / (sqrt(v) + eps)                                  (m, v at 0)

State (v, h, m, t) is kept per parameter key, and can be exported with ``state_dict()``
as a flat dict of NumPy arrays ("slot/key" -> array, "step" -> int64 scalar) and restored
with ``load_state_dict()``, e.g. through ``np.savez``.

Adding an optimizer is one class: subclass :class:`Optimizer` with a ``name``, its
``conventional_lr`` (the rate a model trains it with when its source used another
optimizer and no --lr is given) and ``_apply``; defining the class registers it, so
``build_optimizer``, ``--optimizer`` and the config know it (docs/development.md).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7


OPTIMIZERS: dict[str, type[Optimizer]] = {}  # name -> class, filled as classes are defined


class Optimizer:
    """Base: a learning rate, named state slots per parameter key, a step counter.

    A subclass with a ``name`` registers itself in :data:`OPTIMIZERS`. It sets
    ``conventional_lr`` (a rate > 0), or ``sgd_rate_divisor`` to take the model's SGD
    rate divided by it (momentum: the same steady step as plain SGD).
    """

    name = ""
    SLOTS: tuple[str, ...] = ()
    conventional_lr: float | None = None
    sgd_rate_divisor: float | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.name:
            return
        if not isinstance(cls.name, str) or not cls.name.replace("-", "").isalnum():
            raise TypeError(f"optimizer name must be a word like 'adam', got {cls.name!r}")
        rates = (cls.conventional_lr, cls.sgd_rate_divisor)
        if not any(r is not None and float(r) > 0 for r in rates):
            raise TypeError(
                f"optimizer {cls.name!r} must set conventional_lr (its rate without --lr) "
                "or sgd_rate_divisor, a number > 0"
            )
        OPTIMIZERS[cls.name] = cls

    def __init__(self, lr: float):
        if not float(lr) > 0:
            raise ValueError(f"learning rate must be positive, got {lr!r}")
        self.lr = float(lr)
        self.step = 0
        self.slots: dict[str, dict[str, np.ndarray]] = {slot: {} for slot in self.SLOTS}

    def update(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.step += 1
        for key, grad in grads.items():
            param = params[key]
            self._apply(key, param, np.asarray(grad, dtype=param.dtype))

    def _apply(self, key: str, param: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError

    def _slot(self, slot: str, key: str, like: np.ndarray) -> np.ndarray:
        """The state array ``slot`` of parameter ``key``, zeros the first time."""
        arrays = self.slots[slot]
        if key not in arrays:
            arrays[key] = np.zeros_like(like)
        return arrays[key]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the state: {"step": int64 scalar, "SLOT/KEY": array, ...}."""
        state = {"step": np.array(self.step, dtype=np.int64)}
        for slot, arrays in self.slots.items():
            for key, array in arrays.items():
                state[f"{slot}/{key}"] = array.copy()
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` exported (from this kind of optimizer)."""
        if "step" not in state:
            raise ValueError(f"{self.name} state has no 'step' entry")
        slots: dict[str, dict[str, np.ndarray]] = {slot: {} for slot in self.SLOTS}
        for name, array in state.items():
            if name == "step":
                continue
            slot, _, key = name.partition("/")
            if slot not in slots or not key:
                raise ValueError(
                    f"{self.name} state has an unexpected entry {name!r} "
                    f"(its slots: {', '.join(self.SLOTS) or 'none'})"
                )
            slots[slot][key] = np.array(array, copy=True)
        self.step = int(state["step"])
        self.slots = slots


class SGD(Optimizer):
    """Plain stochastic gradient descent: p <- p - lr * g. Same as ``keras.optimizers.SGD``."""

    name = "sgd"
    conventional_lr = 0.01

    def __init__(self, lr: float = 0.1):
        super().__init__(lr)

    def _apply(self, key, param, grad):
        param -= np.asarray(self.lr * grad, dtype=param.dtype)


class Momentum(Optimizer):
    """v <- momentum v - lr g; p <- p + v.

    Identical to ``keras.optimizers.SGD(learning_rate=lr, momentum=momentum)`` (same sign
    convention: the velocity already holds -lr g).
    """

    name = "momentum"
    sgd_rate_divisor = 10  # momentum 0.9: a steady gradient moves 1 / (1 - 0.9) times as far
    SLOTS = ("velocity",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9):
        super().__init__(lr)
        self.momentum = float(momentum)

    def _apply(self, key, param, grad):
        v = self._slot("velocity", key, param)
        v *= self.momentum
        v -= self.lr * grad
        param += v


class AdaGrad(Optimizer):
    """h <- h + g²; p <- p - lr g / (sqrt(h) + eps), h starting at 0.

    ``keras.optimizers.Adagrad`` differs in two places: its accumulator starts at
    ``initial_accumulator_value`` (0.1 by default) and its epsilon is inside the root,
    lr g / sqrt(h + epsilon). With ``initial_accumulator_value=0`` and ``epsilon=0`` there,
    and ``eps=0`` here, the two are identical (for non-zero gradients).
    """

    name = "adagrad"
    conventional_lr = 0.01
    SLOTS = ("h",)

    def __init__(self, lr: float = 0.01, eps: float = EPS):
        super().__init__(lr)
        self.eps = float(eps)

    def _apply(self, key, param, grad):
        h = self._slot("h", key, param)
        h += grad * grad
        param -= self.lr * grad / (np.sqrt(h) + self.eps)


class RMSprop(Optimizer):
    """h <- decay h + (1 - decay) g²; p <- p - lr g / (sqrt(h) + eps), h starting at 0.

    ``keras.optimizers.RMSprop`` calls ``decay`` rho (0.9 by default, 0.99 here) and puts
    epsilon inside the root, lr g / sqrt(h + epsilon). With ``rho=decay``, ``epsilon=0``
    there and ``eps=0`` here, the two are identical (for non-zero gradients).
    """

    name = "rmsprop"
    conventional_lr = 0.001
    SLOTS = ("h",)

    def __init__(self, lr: float = 0.01, decay: float = 0.99, eps: float = EPS):
        super().__init__(lr)
        self.decay, self.eps = float(decay), float(eps)

    def _apply(self, key, param, grad):
        h = self._slot("h", key, param)
        h *= self.decay
        h += (1 - self.decay) * grad * grad
        param -= self.lr * grad / (np.sqrt(h) + self.eps)


class Adam(Optimizer):
    """Adam with the bias corrections folded into the step size (see the module docstring).

    This is exactly ``keras.optimizers.Adam(learning_rate=lr, beta_1, beta_2, epsilon=eps)``.
    It differs from Algorithm 1 of Kingma & Ba in where epsilon sits: there the step is
    lr m_hat / (sqrt(v_hat) + eps) with v_hat = v / (1 - beta2^t), which equals the rule here
    when the paper's eps is eps / sqrt(1 - beta2^t) (the "epsilon hat" form of the paper's
    section 2): early steps, where sqrt(1 - beta2^t) is small, use a larger effective
    epsilon than the paper. The two agree closely once sqrt(v) is far above eps.
    """

    name = "adam"
    conventional_lr = 0.001
    SLOTS = ("m", "v")

    def __init__(
        self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = EPS
    ):
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def update(self, params, grads):
        t = self.step + 1
        self._lr_t = self.lr * np.sqrt(1 - self.beta2**t) / (1 - self.beta1**t)
        super().update(params, grads)

    def _apply(self, key, param, grad):
        m, v = self._slot("m", key, param), self._slot("v", key, param)
        m += (1 - self.beta1) * (grad - m)
        v += (1 - self.beta2) * (grad * grad - v)
        param -= self._lr_t * m / (np.sqrt(v) + self.eps)


OPTIMIZER_NAMES = tuple(OPTIMIZERS)  # the built-in ones; optimizer_names() has every one


def optimizer_names() -> tuple[str, ...]:
    """Every registered optimizer, the built-in ones first."""
    return tuple(OPTIMIZERS)


def build_optimizer(name: str, lr: float, **options) -> Optimizer:
    """An optimizer by name (sgd, momentum, adagrad, adam, rmsprop, or one registered by
    its class); ``options`` are its other hyper-parameters (momentum, decay, beta1, ...)."""
    if name not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {name!r}; choose one of {', '.join(optimizer_names())}"
        )
    return OPTIMIZERS[name](lr, **options)
