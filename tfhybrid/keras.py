"""The bridge to Keras: a hand-written NumPy backward inside a model that ``model.fit`` trains.

    from tfhybrid.keras import AuditCallback, HybridLayer, keras_loss, to_keras

    model = to_keras(tfhybrid.build_model("seed-cnn"))   # five HybridLayers, images -> logits
    model.compile(keras.optimizers.SGD(0.1), keras_loss(net))
    model.fit(x, y_onehot, batch_size=100, callbacks=[AuditCallback(x[:8], y_onehot[:8])])

    layer = HybridLayer(MyTanh())                          # any tfhybrid.layers.Layer

A :class:`HybridLayer`'s weights are Keras weights, made in ``build`` with the wrapped
layer's own initialisation. Its gradient is the layer's hand-written ``backward``, reached
through ``tf.custom_gradient`` and one ``tf.numpy_function`` per call, with the input and
the weights passed in as explicit tensors (never read inside the Python function), and a
static shape and dtype set on every output and gradient. Its forward is the layer's
TensorFlow ``reference`` for a fused layer (every built-in one: its forward is exactly
``reference``; the cache for ``backward`` comes from ``cache_from``), else the layer's
NumPy ``forward`` through ``tf.numpy_function``, run again in the backward pass to rebuild
the cache. A layer whose forward takes ``training``, ``state`` or ``rng`` always runs its
NumPy forward: it gets Keras's ``training``, its state from non-trainable Keras weights
(stored back after a training call) and a generator derived from a step counter (a
non-trainable weight), the same one in the forward and the backward's re-run. A
composite (Residual, Branches) is one HybridLayer, so its hand-written fork and join are
its gradient; a layer at two places of a network is one HybridLayer called twice. The
problems people meet putting NumPy into Keras, and how each is met here, are in
docs/keras.md.

Importing this module imports TensorFlow and Keras, and registers :class:`HybridLayer` and
:class:`SigmoidCrossEntropy` with Keras, so ``keras.models.load_model`` finds them.
"""

from __future__ import annotations

import copy
import functools
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from tfhybrid._tf import tf  # TensorFlow first, without its start-up log lines
from tfhybrid.layers import (
    AvgPool2D,
    BatchNormalization,
    Branches,
    Composite,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    LayerNormalization,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Rescaling,
    Residual,
    Sigmoid,
    Tanh,
)
from tfhybrid.layers.base import call_options, layer_rng, output_shape_of
from tfhybrid.runtime import one_blas_thread

# isort: split
import keras  # Keras 3, as TensorFlow ships it: after TensorFlow's quiet import

__all__ = [
    "AuditCallback",
    "AuditOutcome",
    "HybridLayer",
    "SigmoidCrossEntropy",
    "carry_weights",
    "hybrid_chain",
    "keras_loss",
    "keras_weight_name",
    "to_keras",
    "to_sequential",
    "tfhybrid_weight_name",
]

DTYPES = ("float32", "float64")  # what tfhybrid computes in
PACKAGE = "tfhybrid"
LAYER_AT_FAULT = "layer at fault:"

# Built-in layers: their constructor arguments, read back from the instance, for the
# Keras config (the initialisers are left out: a loaded model gets its weights restored).
BUILTIN = {
    "Conv2D": (
        Conv2D,
        lambda lyr: {
            "filters": lyr.filters,
            "kernel_size": lyr.kernel_size,
            "stride": lyr.stride,
            "padding": lyr.padding,
            "use_bias": lyr.use_bias,
            "dw_mode": lyr.dw_mode,
            "bias_grad": lyr.bias_grad,
        },
    ),
    "Dense": (Dense, lambda lyr: {"units": lyr.units}),
    "Flatten": (Flatten, lambda lyr: {"report_gradient": lyr.report_gradient}),
    "ReLU": (ReLU, lambda lyr: {}),
    "Sigmoid": (Sigmoid, lambda lyr: {}),
    "Rescaling": (Rescaling, lambda lyr: {"scale": lyr.scale, "offset": lyr.offset}),
    "AvgPool2D": (AvgPool2D, lambda lyr: {"size": lyr.size, "stride": lyr.stride}),
    "MaxPool2D": (
        MaxPool2D,
        lambda lyr: {
            "size": lyr.size,
            "stride": lyr.stride,
            "padding": lyr.padding,
            "pad_value": lyr.pad_value,
            "ties": lyr.ties,
        },
    ),
    "BatchNormalization": (
        BatchNormalization,
        lambda lyr: {"momentum": lyr.momentum, "epsilon": lyr.epsilon},
    ),
    "LayerNormalization": (LayerNormalization, lambda lyr: {"epsilon": lyr.epsilon}),
    "Dropout": (Dropout, lambda lyr: {"rate": lyr.rate, "rule": lyr.rule}),
    "Tanh": (Tanh, lambda lyr: {}),
    "LeakyReLU": (LeakyReLU, lambda lyr: {"alpha": lyr.alpha}),
}


# Composites saved by their tree: each path a list of layer configurations, a layer used
# again a reference to the place of its first use (so a load shares it again).
COMPOSITES = {"Residual": Residual, "Branches": Branches}

# A tfhybrid name Keras takes as it is: every built-in layer's ("w", "running_mean") and a
# composite's ("block.0.w"). Keras 3 refuses "/" in a weight name (it separates the path).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.]+")
_ESCAPED = re.compile(r"-([0-9a-f]{1,6})-")


def keras_weight_name(name: str) -> str:
    """The Keras weight name of a tfhybrid parameter or state name: the name itself when
    it is made of letters, digits, "_" and "." (a composite's ``block.0.w`` included),
    else each other character as ``-hex-`` ("a/b" -> "a-2f-b"), which Keras accepts.
    :func:`tfhybrid_weight_name` reverses it."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    return "".join(c if _PLAIN_NAME.fullmatch(c) else f"-{ord(c):x}-" for c in name)


def tfhybrid_weight_name(keras_name: str) -> str:
    """The tfhybrid name of a Keras weight name made by :func:`keras_weight_name`."""
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), keras_name)


def _defines(layer: Layer, method: str) -> bool:
    """Whether the layer's class overrides ``method`` of the base class."""
    return getattr(type(layer), method, None) is not getattr(Layer, method)


def _check_wrappable(layer, where: str = "HybridLayer", what: str | None = None) -> None:
    """One clear error unless ``layer`` is a tfhybrid layer with forward, backward, reference."""
    what = what or type(layer).__name__
    if not isinstance(layer, Layer):
        raise TypeError(
            f"{where} wraps a tfhybrid.layers.Layer, got {what}; "
            "subclass tfhybrid.layers.Layer (forward, backward, reference)"
        )
    missing = [m for m in ("forward", "backward", "reference") if not _defines(layer, m)]
    if missing:
        raise TypeError(
            f"{where}: {what} has no {' and no '.join(missing)}; the bridge needs forward "
            "and backward (NumPy) and reference (the same function in TensorFlow ops: it "
            "gives the output shape and the audit's tape); define it"
        )
    if isinstance(layer, Composite):  # its forward, backward and reference call its layers'
        for path, position, child in layer.uses():
            inner = f"{what} > {path}.{position} ({type(child).__name__})"
            _check_wrappable(child, where, inner)


def _in_xla() -> bool:
    """Whether the graph being built is compiled by XLA (``jit_compile=True``)."""
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover  (a private module; without it, XLA's own error)
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def _options_of(layer: Layer) -> frozenset[str]:
    """Which of ``training``, ``state`` and ``rng`` the layer's forward or reference takes."""
    return layer.options_taken("forward") | layer.options_taken("reference")


def _mode(training, owner: str) -> bool:
    """Keras's ``training`` argument as a bool: None (a call outside fit) is inference."""
    if training is None:
        return False
    if isinstance(training, (bool, int, np.bool_, np.integer)):
        return bool(training)
    value = tf.get_static_value(training)
    if value is None:
        raise ValueError(
            f"{owner}: training must be known when the model is traced (a Python bool, as "
            "fit, evaluate and predict pass it), got a tensor whose value is not"
        )
    return bool(value)


def _as_array(
    value, dtype: np.dtype, what: str, shape: tuple, owner: str, by: str = "backward"
) -> np.ndarray:
    """A backward's result as a C-ordered array of ``dtype`` and ``shape``, or one clear error."""
    if value is None:
        raise ValueError(f"{owner}: {by} returned None for {what}; return an array {shape}")
    array = np.asarray(value)
    if array.shape != shape:
        raise ValueError(
            f"{owner}: {by} returned {what} of shape {list(array.shape)}, expected "
            f"{list(shape)} (the shape of {what[1:] if what.startswith('d') else what})"
        )
    return np.ascontiguousarray(array, dtype=dtype)


def _backward_results(dx, grads, names, ws, need_dx, dtype, dx_shape, owner) -> list:
    """A backward's (dx, grads) as the arrays tf.numpy_function hands back: one gradient
    per weight, in order, then dx first when asked for, each checked and cast."""
    unknown = set(grads) - set(names)
    if unknown:
        raise ValueError(
            f"{owner}: backward returned gradients {sorted(unknown)} for parameters "
            f"it does not own ({sorted(names) or 'none'})"
        )
    results = [
        _as_array(grads.get(n), dtype, f"d{n}", w.shape, owner)
        for n, w in zip(names, ws, strict=True)
    ]
    if need_dx:
        results.insert(0, _as_array(dx, dtype, "dx", dx_shape, owner))
    return results


# Results of a NumPy call at least this large are copied into held buffers (smaller ones
# cost no page faults worth a copy); each call keeps at most this many such buffers per result.
HANDOVER_BYTES = 2**18
HANDOVER_KEEP = 3
ALIGN = 64  # bytes: what TensorFlow needs to read an array in place (Eigen's alignment)


def _aligned_empty(shape: tuple, dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-ordered array whose data starts on an ALIGN-byte boundary."""
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(size + ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + size].view(dtype).reshape(shape)


class _Handover:
    """The large arrays one NumPy call of the bridge hands to TensorFlow, copied into
    buffers it holds and uses again once TensorFlow has let go of them.

    Why: TensorFlow reads an aligned NumPy result in place and lets go of it later, several
    at once, and glibc then gives the freed megabytes back to the kernel, so each step's
    fresh arrays were page-faulted in again: about 1,800 faults a step for the article's
    network, more than the pooling's and the sigmoid's arithmetic. ``tune_for_training``
    stops that for a whole process (glibc's thresholds), which the bridge must not change
    in a Keras user's process. Copying into held buffers stops it locally: the layer's own
    fresh array is freed at once, in the thread that made it, where the next call finds
    that memory again. A buffer is used again only when nothing but this pool refers to
    it (counted as when it was made, so the count's baseline is this interpreter's); while
    TensorFlow still holds all of a result's buffers, the result goes over as it is."""

    def __init__(self):
        self._pools: dict[int, list[np.ndarray]] = {}
        self._free_count: dict[int, int] = {}  # the reference count of a buffer not in use
        self._lock = threading.Lock()

    @staticmethod
    def _references(pool: list, index: int) -> int:
        return sys.getrefcount(pool[index])

    def _buffer_for(self, slot: int, array: np.ndarray) -> np.ndarray | None:
        pool = self._pools.setdefault(slot, [])
        free = self._free_count.get(slot)
        idle = [i for i in range(len(pool)) if self._references(pool, i) == free]
        for i in idle:
            if pool[i].shape == array.shape and pool[i].dtype == array.dtype:
                return pool[i]
        if idle:  # another shape (a last, smaller batch): made again
            del pool[idle[0]]
        elif len(pool) >= HANDOVER_KEEP:
            return None
        pool.append(_aligned_empty(array.shape, array.dtype))
        self._free_count[slot] = self._references(pool, len(pool) - 1)
        return pool[-1]

    def __call__(self, results, inputs=()):
        """``results`` (an array, or a list of them) with each large C-ordered array
        replaced by a held buffer holding a copy of it. A result that may share memory
        with one of ``inputs`` (Flatten's dx, a view of its dout) is no fresh array and
        goes over as it is."""
        arrays = results if isinstance(results, list) else [results]
        with self._lock:
            handed = []
            for slot, array in enumerate(arrays):
                buffer = None
                if (
                    isinstance(array, np.ndarray)
                    and array.nbytes >= HANDOVER_BYTES
                    and array.flags.c_contiguous
                    and not any(np.may_share_memory(array, given) for given in inputs)
                ):
                    buffer = self._buffer_for(slot, array)
                if buffer is None:
                    handed.append(array)
                else:
                    np.copyto(buffer, array)
                    handed.append(buffer)
        return handed if isinstance(results, list) else handed[0]


def _numpy_call(function: Callable) -> Callable:
    """``function`` (a NumPy forward or backward of the bridge) as ``tf.numpy_function``
    gets it: run with NumPy's BLAS on one thread, the process's own limit restored after it
    (:func:`tfhybrid.runtime.one_blas_thread`), and its large results handed over in held
    buffers (:class:`_Handover`). The bridge runs in a Keras user's process, whose settings
    are not its to change, so it sets what it needs around its own NumPy work alone: BLAS
    threads left spinning after these small products fight TensorFlow's threads for the
    cores, which with the page faults made a step 1.8-2 times Keras's own on 2 cores."""
    handover = _Handover()

    @functools.wraps(function)
    def call(*args):
        with one_blas_thread():
            return handover(function(*args), args)

    return call


def _gradients(numpy_backward, inputs, x, ws, need_dx: bool, tf_dtype) -> tuple:
    """The custom gradient's results: ``numpy_backward`` run on ``inputs`` through one
    tf.numpy_function, each gradient given the static shape of its input or weight."""
    touts = [tf_dtype] * (len(ws) + int(need_dx))
    results = tf.numpy_function(numpy_backward, inputs, touts, name="hybrid_backward")
    results = list(results) if isinstance(results, (list, tuple)) else [results]
    dx = results.pop(0) if need_dx else None
    if dx is not None:
        dx.set_shape(x.shape)
    for result, w in zip(results, ws, strict=True):
        result.set_shape(w.shape)
    return (dx, *results)


@keras.saving.register_keras_serializable(package=PACKAGE)
class HybridLayer(keras.layers.Layer):
    """A ``tfhybrid.layers.Layer`` as a Keras layer, trained with its hand-written backward.

    ``layer``: any :class:`tfhybrid.layers.Layer` (built in or your own) with ``forward``,
    ``backward`` and ``reference``. ``params``: initial values under the layer's own
    parameter names (``"w"``, ``"b"``); without them ``build`` draws the layer's own
    initialisation from ``np.random.default_rng(seed)`` (``seed=None``: a seed drawn from
    NumPy's global generator, which ``keras.utils.set_random_seed`` seeds).
    ``input_gradient=False``: the backward computes no gradient for the input (the
    model's images need none, and a convolution's dx costs as much as its dw); the
    input's gradient is then None.

    A layer whose ``forward``/``reference`` take ``training``, ``state`` or ``rng`` (see
    :mod:`tfhybrid.layers.base`) gets them: ``training`` is Keras's (None, a call outside
    ``fit``, is inference). Its state (batch norm's running statistics) is held in
    non-trainable Keras weights named as the layer names it, first ``state`` (values under
    those names) or else its ``init_state``; a training call stores what the forward
    writes, an inference call only reads them. A layer that draws random numbers gets the
    generator ``layer_rng(seed, step, rng_index)``, ``step`` a non-trainable int64 weight
    that every training call moves on by one (a ``seed`` of None is drawn once, at
    construction), so the forward and the backward's re-run of one call draw the same
    numbers and each call draws new ones.

    A composite (:class:`~tfhybrid.layers.Residual`, :class:`~tfhybrid.layers.Branches`,
    your own :class:`~tfhybrid.layers.Composite`) is one HybridLayer: its gradient is its
    hand-written ``backward``, fork and join included. Its weights and state are named as
    it names them (``block.0.w``, ``block.1.running_mean``), through
    :func:`keras_weight_name`; its layers that draw random numbers draw from generators
    derived from the layer's (as in :class:`tfhybrid.Sequential`). One HybridLayer called
    at two places of a model shares its weights, as any Keras layer does.

    Keras's dtype policy must be float32 or float64 (variables and computation alike).
    """

    def __init__(
        self,
        layer: Layer,
        *,
        params: Mapping[str, np.ndarray] | None = None,
        state: Mapping[str, np.ndarray] | None = None,
        seed: int | None = None,
        input_gradient: bool = True,
        rng_index: int = 0,
        **kwargs,
    ):
        _check_wrappable(layer)
        kwargs.setdefault("name", layer.name)
        super().__init__(**kwargs)
        self.layer = layer
        self._options = _options_of(layer)
        if seed is None and "rng" in self._options:  # its draws need a seed that is saved
            seed = int(np.random.randint(2**31 - 1))  # noqa: NPY002
        self.seed = None if seed is None else int(seed)
        self.rng_index = int(rng_index)
        self.input_gradient = bool(input_gradient)
        self._initial = None if params is None else {k: np.asarray(v) for k, v in params.items()}
        self._initial_state = (
            None if state is None else {k: np.asarray(v) for k, v in state.items()}
        )
        self.supports_jit = False  # tf.numpy_function has no XLA kernel
        # A layer that takes training, state or rng runs its NumPy forward: its reference
        # needs concrete state and a generator, and cache_from knows no mode.
        self._fused = bool(layer.fused) and _defines(layer, "cache_from") and not self._options
        self._param_names: tuple[str, ...] = ()
        self._state_names: tuple[str, ...] = ()
        self._param_vars: list = []
        self._state_vars: list = []
        self._step_var = None
        self._out_shape: tuple[int, ...] | None = None

    @property
    def random(self) -> bool:
        """Whether the wrapped layer draws random numbers (its forward takes ``rng``)."""
        return "rng" in self._options

    # --- building ----------------------------------------------------------------------
    def _inner_shape(self, input_shape) -> tuple[int, ...]:
        shape = tuple(input_shape)
        inner = shape[1:]
        if not inner or any(d is None for d in inner):
            raise ValueError(
                f"HybridLayer {self.name} ({type(self.layer).__name__}) needs every input "
                f"dimension but the batch to be known, got {shape}; give the model "
                "keras.Input(shape=...) with every size, e.g. keras.Input(shape=(28, 28, 1))"
            )
        return tuple(int(d) for d in inner)

    def _check_dtype(self) -> np.dtype:
        compute, variable = self.compute_dtype, self.variable_dtype
        if compute not in DTYPES or variable != compute:
            raise TypeError(
                f"HybridLayer {self.name} computes in float32 or float64 (NumPy's backward), "
                f"but its dtype policy is {self.dtype_policy.name!r} (variables {variable}, "
                f"computation {compute}); give it dtype='float32' or 'float64' (a mixed "
                "precision policy cannot be used for it)"
            )
        return np.dtype(compute)

    def _checked_values(self, kind: str, values, shapes: dict) -> None:
        if set(values) != set(shapes):
            raise ValueError(
                f"HybridLayer {self.name}: {kind} must have keys {sorted(shapes)} "
                f"({type(self.layer).__name__}'s {'parameters' if kind == 'params' else kind}), "
                f"got {sorted(values)}"
            )
        for name, shape in shapes.items():
            if np.shape(values[name]) != shape:
                what = "parameter" if kind == "params" else kind
                raise ValueError(
                    f"HybridLayer {self.name}: {what} {name} must have shape {shape}, "
                    f"got {np.shape(values[name])}"
                )

    def build(self, input_shape):
        shape = self._inner_shape(input_shape)
        dtype = self._check_dtype()
        layer = self.layer
        layer.input_shape = shape  # the built-in layers' cache_from reads it
        # (A composite's param_shapes gives its layers their input shapes: before the plan.)
        shapes = {k: tuple(int(d) for d in s) for k, s in layer.param_shapes(shape).items()}
        if hasattr(layer, "choose_plan"):  # a convolution picks its backward's kernels, as
            layer.choose_plan(shape, dtype)  # tfhybrid.Sequential has it do
        self._out_shape = output_shape_of(self.layer, shape)
        layer.output_shape_ = self._out_shape
        if self._initial is not None:
            values = self._initial
            self._checked_values("params", values, shapes)
        else:
            seed = self.seed if self.seed is not None else int(np.random.randint(2**31 - 1))  # noqa: NPY002
            values = layer.init_params(np.random.default_rng(seed), shape) if shapes else {}
            self._checked_values("params", values, shapes)
        self._param_vars = []
        for name, param_shape in shapes.items():
            variable = self.add_weight(
                name=keras_weight_name(name),
                shape=param_shape,
                initializer="zeros",
                dtype=self.variable_dtype,
            )
            variable.assign(np.asarray(values[name], dtype=dtype))
            self._param_vars.append(variable)
        self._param_names = tuple(shapes)
        self._initial = None  # the variables hold them now

        state_shapes = {k: tuple(int(d) for d in s) for k, s in layer.state_shapes(shape).items()}
        if self._initial_state is not None:
            state = self._initial_state
        else:
            state = layer.init_state(shape) if state_shapes else {}
        self._checked_values("state", state, state_shapes)
        self._state_vars = []
        for name, state_shape in state_shapes.items():
            variable = self.add_weight(
                name=keras_weight_name(name),
                shape=state_shape,
                initializer="zeros",
                dtype=self.variable_dtype,
                trainable=False,
            )
            variable.assign(np.asarray(state[name], dtype=dtype))
            self._state_vars.append(variable)
        self._state_names = tuple(state_shapes)
        self._initial_state = None
        if self.random:
            self._step_var = self.add_weight(
                name="step", shape=(), initializer="zeros", dtype="int64", trainable=False
            )

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        self._check_same_shape(shape)
        out = self._out_shape or output_shape_of(self.layer, self._inner_shape(shape))
        return (shape[0], *out)

    def _check_same_shape(self, shape) -> None:
        """One clear error for a built layer called (again) on inputs of another shape:
        its weights, and a composite's plan, are made for the first."""
        if self._out_shape is None or len(shape) < 2:
            return
        inner = tuple(shape)[1:]
        built = tuple(self.layer.input_shape)
        if None not in inner and tuple(int(d) for d in inner) != built:
            raise ValueError(
                f"HybridLayer {self.name} ({type(self.layer).__name__}) was built for "
                f"inputs [N,{','.join(map(str, built))}] and is called on "
                f"[N,{','.join(map(str, inner))}]; a layer called at two places (its "
                "weights shared) needs one input shape there"
            )

    # --- the forward and the hand-written backward ---------------------------------------
    def params(self) -> dict[str, np.ndarray]:
        """The current weights as NumPy arrays under the layer's own names ("w", "b")."""
        return {
            n: np.asarray(w.numpy())
            for n, w in zip(self._param_names, self._param_vars, strict=True)
        }

    def state(self) -> dict[str, np.ndarray]:
        """The layer's current state (non-trainable weights) as NumPy arrays under its own
        names ("running_mean", "running_var"); empty for a layer without state."""
        return {
            n: np.asarray(v.numpy())
            for n, v in zip(self._state_names, self._state_vars, strict=True)
        }

    @property
    def step(self) -> int | None:
        """The training calls so far, whose number picks the next draw (None for a layer
        that draws no random numbers, or before ``build``)."""
        return None if self._step_var is None else int(self._step_var.numpy())

    def call(self, inputs, training=None):
        if _in_xla():
            raise ValueError(
                f"HybridLayer {self.name} cannot be compiled by XLA (jit_compile=True): its "
                "backward is Python (tf.numpy_function), which XLA has no kernel for; "
                "use jit_compile=False (model.compile's default 'auto' chooses it)"
            )
        dtype = tf.as_dtype(self.compute_dtype)
        x = tf.convert_to_tensor(inputs)
        if x.dtype != dtype:
            if not (x.dtype.is_integer or x.dtype.is_bool or x.dtype.is_floating):
                raise TypeError(
                    f"HybridLayer {self.name} takes real-valued inputs, got {x.dtype.name}; "
                    f"cast them to {dtype.name}"
                )
            x = tf.cast(x, dtype)
        if x.shape.rank is not None and x.shape.rank >= 1:
            self._inner_shape(x.shape)
            self._check_same_shape(tuple(x.shape))
        weights = [tf.convert_to_tensor(w) for w in self._param_vars]
        if not self._options:
            return self._hybrid(x, weights)
        owner = f"HybridLayer {self.name} ({type(self.layer).__name__})"
        return self._hybrid_options(x, weights, _mode(training, owner))

    def _hybrid(self, x, weights):
        layer, names = self.layer, self._param_names
        np_dtype = np.dtype(self.compute_dtype)
        tf_dtype = tf.as_dtype(self.compute_dtype)
        owner = f"HybridLayer {self.name} ({type(layer).__name__})"
        out_tail = self._out_shape
        in_tail = tuple(self.layer.input_shape)
        need_dx = self.input_gradient
        fused = self._fused
        needs = layer.fused_needs if fused else ()

        @_numpy_call
        def numpy_forward(xa, *ws):
            out, _ = layer.forward(dict(zip(names, ws, strict=True)), xa)
            return _as_array(out, np_dtype, "the output", (len(xa), *out_tail), owner)

        @_numpy_call
        def numpy_backward(dy, xa, out, *ws):
            params = dict(zip(names, ws, strict=True))
            if fused:
                cache = layer.cache_from(params, xa, out, len(dy))
            else:
                _, cache = layer.forward(params, xa)
            dx, grads = layer.backward(dy, cache, need_dx)
            return _backward_results(
                dx, grads, names, ws, need_dx, np_dtype, (len(dy), *in_tail), owner
            )

        @tf.custom_gradient
        def hybrid(x, *ws):
            if fused:
                out = tf.convert_to_tensor(layer.reference(dict(zip(names, ws, strict=True)), x))
                out = tf.cast(out, tf_dtype)
            else:
                out = tf.numpy_function(numpy_forward, [x, *ws], tf_dtype, name="hybrid_forward")
            out = tf.ensure_shape(out, [x.shape[0], *out_tail])

            def grad(dy):
                # Only what the cache needs crosses into NumPy: an empty stand-in otherwise.
                empty = tf.zeros([0], tf_dtype)
                x_arg = x if (not fused or "x" in needs) else empty
                out_arg = out if (fused and "out" in needs) else empty
                return _gradients(
                    numpy_backward, [dy, x_arg, out_arg, *ws], x, ws, need_dx, tf_dtype
                )

            return out, grad

        return hybrid(x, *weights)

    def _hybrid_options(self, x, weights, training: bool):
        """The forward and backward of a layer that takes training, state or rng: its NumPy
        forward through tf.numpy_function, handed the mode, a copy of the state and the
        generator of this call's step (the step and the state enter as explicit tensors);
        a training call then stores the state the forward wrote, and moves the step on."""
        layer, names, state_names = self.layer, self._param_names, self._state_names
        np_dtype = np.dtype(self.compute_dtype)
        tf_dtype = tf.as_dtype(self.compute_dtype)
        owner = f"HybridLayer {self.name} ({type(layer).__name__})"
        out_tail = self._out_shape
        in_tail = tuple(layer.input_shape)
        state_tails = [tuple(v.shape) for v in self._state_vars]
        need_dx = self.input_gradient
        seed, index, count = self.seed, self.rng_index, len(names)
        writes = training and bool(state_names) and layer.takes("state")
        wanted = layer.options_taken("forward")  # a composite: those its layers take

        state_in = [tf.convert_to_tensor(v) for v in self._state_vars]
        if self._step_var is not None:
            step = tf.identity(tf.convert_to_tensor(self._step_var))  # before it moves on
            if training:
                self._step_var.assign_add(1)
        else:
            step = tf.zeros([], tf.int64)

        def run_forward(xa, step_value, args):
            # A copy of the state: what the forward writes is kept only when it is returned.
            state = {
                n: np.array(v, dtype=np_dtype)
                for n, v in zip(state_names, args[count:], strict=True)
            }
            options = call_options(
                layer.forward,
                training=training,
                state=state,
                rng=lambda: layer_rng(seed or 0, int(step_value), index),
                wanted=wanted,
            )
            out, cache = layer.forward(dict(zip(names, args[:count], strict=True)), xa, **options)
            return out, cache, state

        @_numpy_call
        def numpy_forward(xa, step_value, *args):
            out, _, state = run_forward(xa, step_value, args)
            results = [
                _as_array(out, np_dtype, "the output", (len(xa), *out_tail), owner, "forward")
            ]
            if writes:
                results += [
                    _as_array(state.get(n), np_dtype, f"state {n!r}", tail, owner, "forward")
                    for n, tail in zip(state_names, state_tails, strict=True)
                ]
            return results

        @_numpy_call
        def numpy_backward(dy, xa, step_value, *args):
            _, cache, _ = run_forward(xa, step_value, args)  # the state it writes is dropped
            dx, grads = layer.backward(dy, cache, need_dx)
            ws = args[:count]
            return _backward_results(
                dx, grads, names, ws, need_dx, np_dtype, (len(dy), *in_tail), owner
            )

        written = []

        @tf.custom_gradient
        def hybrid(x, *ws):
            touts = [tf_dtype] * (1 + (len(state_names) if writes else 0))
            results = tf.numpy_function(
                numpy_forward, [x, step, *ws, *state_in], touts, name="hybrid_forward"
            )
            results = list(results) if isinstance(results, (list, tuple)) else [results]
            out = tf.ensure_shape(results[0], [x.shape[0], *out_tail])
            if writes:
                for value, tail in zip(results[1:], state_tails, strict=True):
                    value.set_shape(tail)
                    written.append(value)

            def grad(dy):
                inputs = [dy, x, step, *ws, *state_in]
                return _gradients(numpy_backward, inputs, x, ws, need_dx, tf_dtype)

            return out, grad

        out = hybrid(x, *weights)
        if writes:  # a training call: the state its forward wrote
            for variable, value in zip(self._state_vars, written, strict=True):
                variable.assign(value)
        return out

    # --- saving ------------------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "layer": _layer_config(self.layer, self.name, {}, ""),
                "seed": self.seed,
                "input_gradient": self.input_gradient,
            }
        )
        if self.random:
            config["rng_index"] = self.rng_index
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = _layer_from_config(config.pop("layer"), {}, "")
        return cls(layer, **config)


def _layer_config(layer: Layer, owner: str, seen: dict[int, str], where: str) -> dict:
    """The saved configuration of the layer a HybridLayer wraps: a built-in layer's
    arguments, a built-in composite's tree (a layer used again: ``{"same_as": place}``,
    its first use's place), else a registered layer's own ``get_config()``.
    ``where``: the place inside the wrapped composite ("block.2."), for the error."""
    name = type(layer).__name__
    if name in BUILTIN and type(layer) is BUILTIN[name][0]:
        return {"builtin": name, "config": {**BUILTIN[name][1](layer), "name": layer.name}}
    if name in COMPOSITES and type(layer) is COMPOSITES[name]:
        paths = {}
        for path, layers in layer.paths.items():
            paths[path] = []
            for position, child in enumerate(layers):
                place = f"{where}{path}.{position}"
                if id(child) in seen:
                    paths[path].append({"same_as": seen[id(child)]})
                else:
                    seen[id(child)] = place
                    paths[path].append(_layer_config(child, owner, seen, place + "."))
        config = {"name": layer.name, **({"join": layer.join} if name == "Branches" else {})}
        return {"composite": name, "paths": paths, "config": config}
    registered = keras.saving.get_registered_name(type(layer))
    if not hasattr(layer, "get_config") or registered == name:
        at = f" (at {where[:-1]})" if where else ""
        raise ValueError(
            f"model.save cannot store HybridLayer {owner}: a .keras file holds a "
            f"layer's configuration, not its Python code, and {name}{at} is your own "
            "layer; give it get_config() (its constructor's arguments) and decorate "
            "its class with @keras.saving.register_keras_serializable(), or save "
            "the weights alone with model.save_weights('model.weights.h5') and "
            "rebuild the model in code"
        )
    return {"registered_name": registered, "config": layer.get_config()}


def _layer_from_config(inner: dict, made: dict[str, Layer], where: str) -> Layer:
    """The layer of a configuration :func:`_layer_config` wrote; ``made``: the layers made
    so far by place, for a later use of one of them."""
    if "builtin" in inner:
        return BUILTIN[inner["builtin"]][0](**inner["config"])
    if "composite" in inner:
        paths = {}
        for path, items in inner["paths"].items():
            paths[path] = []
            for position, item in enumerate(items):
                place = f"{where}{path}.{position}"
                if "same_as" in item:  # the same object again: its parameters are shared
                    paths[path].append(made[item["same_as"]])
                else:
                    made[place] = _layer_from_config(item, made, place + ".")
                    paths[path].append(made[place])
        config = inner["config"]
        if inner["composite"] == "Residual":
            return Residual(paths["block"], paths["shortcut"], name=config["name"])
        return Branches(paths, join=config["join"], name=config["name"])
    layer_cls = keras.saving.get_registered_object(inner["registered_name"])
    if layer_cls is None:
        raise ValueError(
            f"the saved model holds a HybridLayer of {inner['registered_name']!r}, "
            "a layer of your own that is not registered here; import the module that "
            "defines it (decorated with @keras.saving.register_keras_serializable()) "
            "before loading, or pass custom_objects= to keras.models.load_model"
        )
    made_by = getattr(layer_cls, "from_config", None)
    return made_by(inner["config"]) if made_by else layer_cls(**inner["config"])


@keras.saving.register_keras_serializable(package=PACKAGE)
class SigmoidCrossEntropy(keras.losses.Loss):
    """The source article's loss: binary cross-entropy of independent sigmoid outputs,
    summed over the outputs, mean over the batch (Keras's BinaryCrossentropy averages
    over the outputs instead: 1/K of this loss and of its gradient)."""

    def __init__(self, name="sigmoid_cross_entropy", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        labels = tf.cast(y_true, y_pred.dtype)
        per_output = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=y_pred)
        return tf.reduce_sum(per_output, axis=-1)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "dtype": self.dtype}


def keras_loss(net) -> keras.losses.Loss:
    """The Keras loss that is ``net``'s loss (one-hot labels, logits), computed in the
    network's dtype (a Keras loss computes in float32 unless told otherwise)."""
    dtype = np.dtype(getattr(net, "dtype", np.float32)).name
    if getattr(net, "loss", None) == "sigmoid_cross_entropy":
        return SigmoidCrossEntropy(dtype=dtype)
    return keras.losses.CategoricalCrossentropy(from_logits=True, dtype=dtype)


def to_keras(net, *, name: str | None = None) -> keras.Model:
    """A ``keras.Model`` (Functional) from a :class:`tfhybrid.Sequential`: images
    [N, *net.input_shape] to logits, every layer a :class:`HybridLayer` named as the
    network names its output (z1, s1, res3, ...), with the network's parameters as initial
    weights and its state (``net.layer_state``) as the non-trainable weights. A layer
    that draws random numbers gets the network's ``seed``, its place as ``rng_index`` and
    the network's ``step``, so ``fit`` draws what tfhybrid's own loop draws. The first
    layer computes no input gradient. Compile it with :func:`keras_loss` for the
    network's own loss.

    A composite (a residual block, branches) becomes one HybridLayer: its fork and join
    run in its own forward and hand-written backward. A layer object at two top-level
    places becomes one HybridLayer called twice (one set of weights, as in Keras; the
    gradients of its uses add). Raises ValueError for what has no honest Keras form:
    two different top-level layers sharing a layer inside (each would get its own
    weights), or one layer that draws random numbers at two places (one HybridLayer
    would draw one mask for both, and move its step twice a step)."""
    from tfhybrid.models.sequential import Sequential

    if not isinstance(net, Sequential):
        raise TypeError(
            f"to_keras converts a tfhybrid.Sequential, got {type(net).__name__}; "
            "wrap single layers with HybridLayer instead"
        )
    for index, layer in enumerate(net.layers):
        what = f"layer {index} ({type(layer).__name__})"
        _check_wrappable(layer, f"to_keras cannot convert {net.name}", what)
    places = _check_sharing(net)
    dtype = net.dtype.name
    inputs = keras.Input(shape=net.input_shape, dtype=dtype, name="images")
    h = inputs
    made: dict[int, HybridLayer] = {}
    for index, layer in enumerate(net.layers):
        hybrid = made.get(id(layer))
        if hybrid is None:
            state = net.layer_state(index)
            random = "rng" in _options_of(layer)
            hybrid = made[id(layer)] = HybridLayer(
                copy.deepcopy(layer),
                params={k: np.array(v) for k, v in net.layer_params(index).items()},
                state={k: np.array(v) for k, v in state.items()} if state else None,
                # The images need no gradient; a layer used again later gets one there.
                input_gradient=places[id(layer)][-1] > 0,
                name=net.names[index],
                dtype=dtype,
                **({"seed": net.seed, "rng_index": index} if random else {}),
            )
        h = hybrid(h)
        if hybrid._step_var is not None:
            hybrid._step_var.assign(net.step)
    return keras.Model(inputs, h, name=name or net.name.replace("-", "_"))


def _check_sharing(net) -> dict[int, list[int]]:
    """The top-level places of each layer object of ``net`` ({id: [index, ...]}), after
    one clear error for a sharing that one HybridLayer per layer object cannot carry."""
    places: dict[int, list[int]] = {}
    for index, layer in enumerate(net.layers):
        places.setdefault(id(layer), []).append(index)
    owner: dict[str, int] = {}  # a parameter's or state's network name -> its first layer
    for index, layer in enumerate(net.layers):
        names = [*net.param_keys[index].values(), *net.state_keys[index].values()]
        for other in dict.fromkeys(owner[n] for n in names if n in owner):
            if net.layers[other] is layer:
                continue
            shared = [n for n in dict.fromkeys(names) if owner.get(n) == other]
            raise ValueError(
                f"to_keras cannot convert {net.name}: layer {other} "
                f"({type(net.layers[other]).__name__}) and layer {index} ({type(layer).__name__}) "
                f"share {', '.join(shared)} (one layer object used inside both), and each "
                "becomes its own HybridLayer with its own Keras weights; use one object at "
                "both top-level places (one HybridLayer called twice), or put both uses "
                "inside one composite"
            )
        for n in names:
            owner.setdefault(n, index)
    for layer_places in places.values():
        layer = net.layers[layer_places[0]]
        if len(layer_places) > 1 and "rng" in _options_of(layer):
            at = " and ".join(map(str, layer_places))
            raise ValueError(
                f"to_keras cannot convert {net.name}: layers {at} are one "
                f"{type(layer).__name__} that draws random numbers; tfhybrid draws each "
                "place's own numbers, but one HybridLayer called at both places would draw "
                "from one step counter that moves at each call; give each place its own "
                "object for the layer that draws (a Dropout has no weights to share)"
            )
    return places


def hybrid_chain(model) -> list[HybridLayer] | None:
    """The HybridLayers the model calls from its input to its output, one after the
    other, when it is made of them alone (a layer called at two places is listed at
    each, as it is in ``net.layers``); else None."""
    layers = [lyr for lyr in model.layers if not isinstance(lyr, keras.layers.InputLayer)]
    if not layers or not all(isinstance(lyr, HybridLayer) for lyr in layers):
        return None
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):  # not built yet
        return None
    if len(inputs or ()) != 1 or len(outputs or ()) != 1:
        return None
    # Back from the output: each tensor is made by one call of one layer on one tensor.
    chain, tensor = [], outputs[0]
    while tensor is not inputs[0]:
        history = getattr(tensor, "_keras_history", None)
        if history is None or not isinstance(history.operation, HybridLayer):
            return None
        node = history.operation._inbound_nodes[history.node_index]
        if len(node.input_tensors) != 1:
            return None
        chain.append(history.operation)
        tensor = node.input_tensors[0]
    chain.reverse()
    if {id(lyr) for lyr in chain} != {id(lyr) for lyr in layers}:
        return None  # a layer off the path from the input to the output
    return chain


def _loss_name(model, loss: str | None) -> str:
    if loss is not None:
        return loss
    compiled = getattr(model, "loss", None)
    if isinstance(compiled, SigmoidCrossEntropy):
        return "sigmoid_cross_entropy"
    return "softmax_cross_entropy"


def to_sequential(model, *, loss: str | None = None):
    """The :class:`tfhybrid.Sequential` of a model of HybridLayers alone (``to_keras``'s
    result, or your own), holding copies of the layers and the model's current weights,
    its layers' state as :attr:`~tfhybrid.Sequential.state`, and, when the layers that
    draw random numbers share one seed and step and are numbered by their place (as
    ``to_keras`` makes them), that seed and step (the network then draws what ``fit``
    would draw next).

    ``loss``: the network's loss; default: the model's own when it was compiled with
    :class:`SigmoidCrossEntropy`, else the softmax cross-entropy."""
    from tfhybrid.models.sequential import Sequential

    chain = hybrid_chain(model)
    if chain is None:
        kinds = sorted({type(lyr).__name__ for lyr in model.layers})
        raise ValueError(
            f"to_sequential needs a model made of HybridLayers alone, one after the other; "
            f"{model.name} has {', '.join(kinds)}"
        )
    if not model.built or not all(lyr.built for lyr in chain):
        raise ValueError(f"model {model.name} is not built yet; call it on a batch first")
    dtypes = {lyr.compute_dtype for lyr in chain}
    if len(dtypes) != 1:
        raise ValueError(f"the HybridLayers of {model.name} mix dtypes {sorted(dtypes)}")
    copies: dict[int, Layer] = {}  # a HybridLayer called twice: one layer, twice
    for hybrid in chain:
        if id(hybrid) not in copies:
            copies[id(hybrid)] = copy.deepcopy(hybrid.layer)
            copies[id(hybrid)].name = hybrid.name if hybrid.name.isidentifier() else None
    layers = [copies[id(hybrid)] for hybrid in chain]
    net = Sequential(
        layers,
        input_shape=chain[0].layer.input_shape,
        loss=_loss_name(model, loss),
        dtype=np.dtype(dtypes.pop()),
        name=model.name,
    )
    carry_weights(net, chain)
    return net


def carry_weights(net, chain: list[HybridLayer]) -> None:
    """Copy the HybridLayers' weights, state and (when they agree) seed and step into
    ``net``, the Sequential of the same layers (``chain``: :func:`hybrid_chain`'s list,
    one entry per layer of ``net``; a layer at two places is carried twice, the same
    values under the same network names)."""
    params, state = {}, {}
    for index, hybrid in enumerate(chain):
        for local, value in hybrid.params().items():
            params[net.param_keys[index][local]] = value
        for local, value in hybrid.state().items():
            state[net.state_keys[index][local]] = value
    net.params = params
    net.state = state
    draws = {(hybrid.seed, hybrid.step) for index, hybrid in enumerate(chain) if hybrid.random}
    placed = all(hybrid.rng_index == index for index, hybrid in enumerate(chain) if hybrid.random)
    if len(draws) == 1 and placed:
        net.seed, net.step = next(iter(draws))


def _as_keywords(forward, backward, reference, params: dict) -> tuple:
    """A layer's op pair and reference, and its parameters, under names check_op can pass
    as keywords: a name that is no Python identifier (``a.b``, in a layer of one's own) as
    ``a_b`` (another name, made unique, for a clash); every built-in layer's are kept. (A
    composite is checked with its own names, by check_layer_at.)"""
    names: dict[str, str] = {}  # keyword -> the layer's own name
    for name in params:
        key = re.sub(r"\W", "_", name)
        while key in names or key == "x":
            key += "_"
        names[key] = name
    keys = {name: key for key, name in names.items()}

    # check_op also hands a function with **keywords an ``rng`` of its own: not a
    # parameter (the layer's options already bring its generator), so it is left out.
    def keyword_forward(x, **p):
        return forward(x, **{names[k]: v for k, v in p.items() if k in names})

    def keyword_backward(dout, cache):
        return {keys.get(k, k): v for k, v in backward(dout, cache).items()}

    def keyword_reference(x, **p):
        return reference(x, **{names[k]: v for k, v in p.items() if k in names})

    keyword_params = {key: params[name] for key, name in names.items()}
    return keyword_forward, keyword_backward, keyword_reference, keyword_params


class AuditOutcome(float):
    """The audit's short outcome as a log value: ``str()`` is the text ("ok: 8 gradients
    match", or the mismatches and the layer at fault); its number is ``audit_ok`` (1 or 0),
    so Keras's progress bar and TensorBoard, which take numbers only, keep working."""

    def __new__(cls, ok: bool, text: str):
        value = super().__new__(cls, 1.0 if ok else 0.0)
        value.text = text
        return value

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return repr(self.text)

    def __format__(self, spec: str) -> str:
        return self.text if not spec else float.__format__(self, spec)

    def __reduce__(self):
        return (AuditOutcome, (bool(float(self)), self.text))


def layer_at_fault(report) -> str | None:
    """The "layer at fault: ..." line of an audit report (or of its printed text), if any."""
    fault = getattr(report, "layer_at_fault", None)
    if fault is not None:
        from tfhybrid.audit.layers import fault_text

        return f"{LAYER_AT_FAULT} {fault_text(fault)}"
    for line in str(report).splitlines():
        if line.strip().startswith(LAYER_AT_FAULT):
            return line.strip()
    return None


def summarise(report) -> str:
    """A short outcome of an audit report: what matched, what did not, the layer at fault."""
    if report.ok:
        count = len(report.tensors)
        known = [t.name for t in report.tensors if not t.matches]
        if not known:
            return f"ok: all {count} gradients match"
        return (
            f"ok: {count - len(known)} of {count} gradients match, and "
            f"{', '.join(known)} as expected"
        )
    names = set(report.names)
    parts = [
        f"{name} {report.tensor(name).verdict}" if name in names - {"loss", "update"} else name
        for name in report.unexpected
    ]
    text = "mismatch: " + "; ".join(parts)
    fault = layer_at_fault(report)
    return f"{text}; {fault}" if fault else text


def summarise_layers(reports: dict) -> str:
    """The short outcome of each HybridLayer checked on its own: the first that fails is
    the layer at fault; in a composite, the layer inside it at fault or its join (named
    by its path, ``res (Residual) > block > 1 (Conv2D)``), and its likely causes."""
    bad = {name: r for name, r in reports.items() if not r.ok}
    if not bad:
        if len(reports) == 1:
            return "ok: the hand-written backward of the hybrid layer matches"
        return f"ok: the hand-written backward of all {len(reports)} hybrid layers matches"
    name, report = next(iter(bad.items()))
    text = f"mismatch in {', '.join(bad)}; {LAYER_AT_FAULT} "
    fault = _inner_fault(report)
    if fault is None:
        wrong = ", ".join(f"d{k} {v}" for k, v in report.verdicts.items() if k in report.mismatches)
        return f"{text}{name}: its own backward gives {wrong}"
    from tfhybrid.audit.judge import cause_text
    from tfhybrid.audit.layers import fault_text

    # The composite itself (its join) or a layer inside: the records its causes are in.
    records = report.inputs if not fault.inside else fault.check.inputs
    causes = dict.fromkeys(
        f"likely cause: d{item.name} {cause_text(item)}"
        for item in records
        if item.cause and not item.matches
    )
    head = fault.outer or fault.layer  # fault_text starts with it: the composite's class
    where = f"{name} ({head}){fault_text(fault)[len(head) :]}"
    return "; ".join([f"{text}{where}", *causes])


def _inner_fault(report):
    """The layer at fault of a composite checked on its own (a layer inside it, or the
    composite itself when its join is at fault), its path starting at its class; None for
    another layer, or a composite whose inside could not be traced."""
    if not getattr(report, "parts", ()):
        return None
    from tfhybrid.audit.layers import composite_fault

    return composite_fault(report)


class AuditCallback(keras.callbacks.Callback):
    """Audits the hybrid layers' hand-written gradients during ``fit``, at the current weights.

    Every ``every``-th epoch, a model of HybridLayers alone, one after the other (as
    :func:`to_keras` makes), is rebuilt as a :class:`tfhybrid.Sequential` holding the
    Keras weights (:func:`to_sequential`) and audited with :func:`tfhybrid.audit.audit`
    on the batch ``x``, ``y`` (one-hot [N,K], or int labels [N]): every gradient against
    ``tf.GradientTape`` in float64 and float32 and finite differences. In a model that
    mixes HybridLayers with Keras layers, each HybridLayer is checked on its own
    (:func:`tfhybrid.audit.check_op`, its ``reference``'s tape and finite differences) at
    its current weights and state and at the input it gets from ``x`` (the model run in
    inference mode, which changes no state); the first that fails is the layer at fault
    (``y`` is not used then). A composite is checked with
    :func:`tfhybrid.audit.layer_check.check_layer_at`: each layer inside it on its own too,
    and its join, so the outcome names the layer inside at fault by its path
    (``res (Residual) > block > 1 (Conv2D)``) or the composite's join, with the likely
    cause (a path's gradient not added at the fork, ...). Either way the gradients are
    checked in training mode (batch statistics, and one dropout draw replayed in every
    evaluation), and the audit changes neither the weights, the state nor the step. The
    epoch's logs get ``audit_ok`` (1.0 or 0.0) and ``audit`` (an :class:`AuditOutcome`:
    the short outcome as text, the same 1/0 as a number), so History, CSVLogger and
    TensorBoard show them; ``self.reports`` keeps every report by epoch (0-based, as
    Keras counts).
    ``expect``: gradient names whose mismatch is known (the article's "db1");
    ``loss``: the network's loss for the audit (default: the model's, see
    :func:`to_sequential`); ``verbose``: print the outcome line.
    """

    def __init__(
        self,
        x,
        y,
        every: int = 1,
        *,
        expect: Iterable[str] = (),
        loss: str | None = None,
        fd_samples: int = 8,
        verbose: bool = False,
    ):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(
                f"every must be an integer >= 1 (audit every N-th epoch), got {every!r}"
            )
        x = np.asarray(x)
        y = np.asarray(y)
        if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
            classes = int(y.max()) + 1 if y.size else 1
            onehot = np.zeros((len(y), classes), np.float64)
            onehot[np.arange(len(y)), y] = 1
            y = onehot
        if x.ndim < 2 or y.ndim != 2 or len(x) != len(y) or len(x) == 0:
            raise ValueError(
                f"AuditCallback needs a batch x [N,...] and labels y (one-hot [N,K] or int "
                f"[N]) with N >= 1, got x {list(x.shape)} and y {list(y.shape)}"
            )
        self.x, self.y, self.every = x, y, every
        self.expect, self.loss, self.fd_samples = tuple(expect), loss, fd_samples
        self.verbose = verbose
        self.reports: dict[int, object] = {}
        self._net = None
        self._probe = None

    def on_train_begin(self, logs=None):
        self._net = self._probe = None
        if hybrid_chain(self.model) is not None:
            return
        hybrids = [lyr for lyr in self.model.layers if isinstance(lyr, HybridLayer)]
        if not hybrids:
            raise ValueError(
                f"AuditCallback audits HybridLayers, and {self.model.name} has none; "
                "wrap your tfhybrid layers with HybridLayer"
            )
        try:
            inputs = [lyr.input for lyr in hybrids]
        except (AttributeError, ValueError) as err:  # a layer called on several inputs
            raise ValueError(
                f"AuditCallback cannot tell which input each HybridLayer of "
                f"{self.model.name} gets ({err}); call each HybridLayer once"
            ) from None
        self._hybrids = hybrids
        given = self.model.inputs
        self._probe = keras.Model(given[0] if len(given) == 1 else given, inputs)

    def audit_now(self):
        """Audit the model at its current weights: an AuditReport (a model of HybridLayers
        alone), or {layer name: OpReport} (each HybridLayer of a mixed model)."""
        from tfhybrid.audit import audit

        if self._probe is not None:
            return self._audit_layers()
        if self._net is None:
            self._net = to_sequential(self.model, loss=self.loss)
        else:  # same layers: only the weights, the state and the step change
            carry_weights(self._net, hybrid_chain(self.model))
        y = self.y.astype(self._net.dtype)
        return audit(self._net, self.x, y, expect=self.expect, fd_samples=self.fd_samples)

    def _audit_layers(self) -> dict:
        from tfhybrid.audit import check_op
        from tfhybrid.audit.layer_check import check_layer_at
        from tfhybrid.audit.ops import layer_pair, standalone_options

        seen = self._probe(self.x, training=False)
        seen = seen if isinstance(seen, (list, tuple)) else [seen]
        reports = {}
        for hybrid, x in zip(self._hybrids, seen, strict=True):
            layer = copy.deepcopy(hybrid.layer)
            if hasattr(layer, "choose_plan"):
                layer.choose_plan(tuple(layer.input_shape), np.float64)
            params = {k: v.astype(np.float64) for k, v in hybrid.params().items()}
            if "x" in params:
                raise ValueError(f"{type(layer).__name__} names a parameter 'x', its input's name")
            state = {k: v.astype(np.float64) for k, v in hybrid.state().items()}
            options = standalone_options(layer, training=True, state=state)
            mode = ", training mode" if "training" in _options_of(layer) else ""
            name = f"{hybrid.name} ({type(layer).__name__}{mode})"
            x = np.asarray(x, np.float64)
            if isinstance(layer, Composite):  # its layers inside and its join checked too
                reports[hybrid.name] = check_layer_at(
                    layer, x, params, options=options, fd_samples=self.fd_samples, name=name
                )
                continue
            forward, backward, reference, params = _as_keywords(
                *layer_pair(layer, options=options), params
            )
            reports[hybrid.name] = check_op(
                forward,
                backward,
                {"x": x, **params},
                reference,
                fd_samples=self.fd_samples,
                name=name,
            )
        return reports

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        report = self.audit_now()
        self.reports[epoch] = report
        if isinstance(report, dict):
            ok = all(r.ok for r in report.values())
            text = summarise_layers(report)
        else:
            ok, text = report.ok, summarise(report)
        if logs is not None:
            logs["audit_ok"] = 1.0 if ok else 0.0
            logs["audit"] = AuditOutcome(ok, text)
        if self.verbose:
            print(f"epoch {epoch + 1} audit: {text}")
