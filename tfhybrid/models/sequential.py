"""``Sequential``: a network as a list of layers, with the hand-written backward pass.

    net = Sequential([Conv2D(20, 9), Sigmoid(), AvgPool2D(2), Flatten(), Dense(10)],
                     loss="sigmoid_cross_entropy", seed=0)
    result = net.loss_and_gradients(x, y_onehot)    # loss, grads keyed like net.params

Parameters are named in layer order: the k-th layer with parameters owns w{k}, b{k}.
Layer outputs are named z{k} (Conv2D, Dense), a{k} (ReLU), s{k} (Sigmoid), p{k}
(pooling), flat (Flatten), after the latest k, unless a layer is given a ``name``;
the backward pass reports the gradient of the loss with respect to output NAME as
``intermediates["d" + NAME]``, for every output from the first layer with parameters on
(in layer order).

Consecutive fused layers (every built-in layer) run their forward as one compiled
TensorFlow call when the run holds a convolution (:mod:`tfhybrid.models.fusion`); the
backward runs layer by layer, NumPy by hand except the convolutions' dw and dx.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np

from tfhybrid import fast
from tfhybrid._tf import tf
from tfhybrid.fast import buffers
from tfhybrid.layers.base import (
    Layer,
    call_options,
    layer_rng,
    output_shape_of,
)
from tfhybrid.layers.composite import Composite, add_grads
from tfhybrid.models.fusion import plan_runs
from tfhybrid.models.layer_results import check_backward, check_output
from tfhybrid.ops.losses import sigmoid_cross_entropy, softmax_cross_entropy

LOSSES = ("softmax_cross_entropy", "sigmoid_cross_entropy")
EVAL_BATCH = 1_000  # as fast per image as larger batches here, with less peak memory
# Training batches above this many images are worked through in pieces of this size:
# a larger piece is no faster per image here and its activations only cost memory.
CHUNK_SIZE = 1_000


def batch_sum(per_example: np.ndarray) -> np.ndarray:
    """Sum over the leading (batch) axis as one matrix-vector product: several times
    faster than ``sum(axis=0)`` for [N, large] arrays."""
    n = len(per_example)
    ones = np.ones(n, dtype=per_example.dtype)
    return (ones @ per_example.reshape(n, -1)).reshape(per_example.shape[1:])


def _checked_step_number(value, name: str = "step") -> int:
    """A training step number: an integer >= 0; else one ValueError that says so."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0 (a training step), got {value!r}")
    return int(value)


def _shared_shapes(layer: Layer, first: tuple, where: str, shape: tuple) -> str:
    """The error for a layer used at two places with two input shapes."""
    return (
        f"{type(layer).__name__} is used at {first[1]} with input [N,"
        f"{','.join(map(str, first[0]))}] and at {where} with input "
        f"[N,{','.join(map(str, shape))}]; a shared layer needs one input shape"
    )


class Sequential:
    """A chain of layers from images [N, *input_shape] to logits [N, K].

    ``loss``: "softmax_cross_entropy" (mean over the batch) or "sigmoid_cross_entropy"
    (the source article's: independent sigmoid outputs, binary cross-entropy summed over
    the K outputs, mean over the batch). ``seed`` seeds one generator from which every
    layer draws its initial parameters in layer order; ``params`` (a dict keyed like
    :attr:`params`) replaces them. ``dtype``: float32 or float64, for parameters and
    every computation.

    Layers with state (batch norm's running statistics) keep it in :attr:`state`, named
    like the parameters (running_mean3); layers that draw random numbers (dropout) get a
    fresh generator per call from ``seed``, the step and their place
    (:func:`tfhybrid.layers.base.layer_rng`). :attr:`step` counts the training passes;
    ``loss_and_gradients(..., step=S)`` draws step S's numbers, and :meth:`replaying`
    repeats one step's draw in every pass without touching the state.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        input_shape: Sequence[int] = (28, 28, 1),
        *,
        loss: str = "softmax_cross_entropy",
        seed: int = 0,
        dtype=np.float32,
        params: dict[str, np.ndarray] | None = None,
        name: str = "sequential",
    ):
        layers = list(layers)
        if not layers or not all(isinstance(layer, Layer) for layer in layers):
            raise ValueError(
                "Sequential needs a non-empty list of tfhybrid.layers.Layer "
                f"instances, got {[type(x).__name__ for x in layers]}"
            )
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        shape = tuple(int(d) for d in input_shape)
        if not shape or any(d < 1 for d in shape):
            raise ValueError(f"input_shape must be positive sizes, got {tuple(input_shape)}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.layers, self.loss, self.name, self.input_shape = layers, loss, name, shape
        self.options: dict[str, object] = {}  # the catalog options it was built with
        self.chunk_size = CHUNK_SIZE
        self.param_shapes: dict[str, tuple] = {}
        self.param_keys: list[dict[str, str]] = []  # per layer: local name -> global name
        self.state_shapes: dict[str, tuple] = {}
        self.state_keys: list[dict[str, str]] = []  # per layer: local state name -> global
        self.seed, self.step = int(seed), 0
        self._replay: int | None = None
        self.names: list[str] = []
        self._build(shape)
        for layer in layers:  # each convolution's backward formulations, chosen once
            if hasattr(layer, "choose_plan"):
                layer.choose_plan(layer.input_shape, self.dtype)
        self.output_shape = layers[-1].output_shape_
        if len(self.output_shape) != 1:
            raise ValueError(
                f"the last layer must output logits [N,K], got "
                f"[N,{','.join(map(str, self.output_shape))}]"
            )
        if not self.param_shapes:
            raise ValueError("the network has no parameters to train")
        self.first = next(i for i, keys in enumerate(self.param_keys) if keys)
        # Each layer's parameter shapes under its own names: its gradients are checked
        # against them where they enter the network.
        self._local_shapes = [
            {name: self.param_shapes[key] for name, key in keys.items()} for keys in self.param_keys
        ]
        self._pure = [layer.is_pure() for layer in layers]
        # What each layer's forward and reference take of training, state and rng.
        self._takes = [
            {m: layer.options_taken(m) for m in ("forward", "reference")} for layer in layers
        ]
        # Each parameter starts on a 64-byte boundary of the flat buffer (the gaps stay
        # zero): a layer's weights then reach TensorFlow in place (buffers.as_tensor).
        self._offsets, at, step = {}, 0, buffers.ALIGN // np.dtype(self.dtype).itemsize
        for key, shape in self.param_shapes.items():
            at = -(-at // step) * step
            self._offsets[key], at = at, at + int(np.prod(shape))
        self._flat = buffers.zeros(at, self.dtype)  # every parameter, in order (aligned)
        # The readable path (tfhybrid.fast): each layer runs its own forward, no compiled run.
        self.runs = (
            plan_runs(layers, self.param_keys, self._offsets, self.first, self.dtype, at)
            if fast.enabled()
            else []
        )
        self._run_at = {run.start: run for run in self.runs}
        self._params: dict[str, np.ndarray] = {}
        self.params = self._init_params(seed) if params is None else params
        self._state: dict[str, np.ndarray] = {}
        self.state = self.initial_state()
        # Whole batches only, for a layer that mixes samples or draws a mask per batch, or
        # any layer with a mode, state or draw (a batch norm of one's own that does not
        # say couples_batch would otherwise get statistics per piece).
        self._unsplit = [
            layer
            for index, layer in enumerate(layers)
            if layer.couples_batch or self._takes[index]["forward"]
        ]

    # --- building --------------------------------------------------------------------
    def _build(self, shape: tuple) -> None:
        """Shapes and names. Each layer with parameters (inside composites too, depth
        first) takes the next number k: its parameters are NAMEk (w3), its state too
        (running_mean4). A layer object used again shares the names of its first use."""
        count = 0
        names: dict[int, tuple] = {}  # id(leaf) -> (its input shape, where, params, state)
        for index, layer in enumerate(self.layers):
            if id(layer) in names and names[id(layer)][0] != shape:
                raise ValueError(_shared_shapes(layer, names[id(layer)], f"layer {index}", shape))
            layer.input_shape = shape
            leaves = layer.leaves() if isinstance(layer, Composite) else [("", layer)]
            if isinstance(layer, Composite):
                layer.build(shape)
            keys, state = {}, {}
            for prefix, leaf in leaves:
                where = f"layer {index}" + (f" > {prefix[:-1]}" if prefix else "")
                if id(leaf) in names:
                    first_shape, _, leaf_keys, leaf_state = names[id(leaf)]
                    if first_shape != leaf.input_shape:
                        raise ValueError(
                            _shared_shapes(leaf, names[id(leaf)], where, leaf.input_shape)
                        )
                else:
                    local = leaf.param_shapes(leaf.input_shape)
                    count += 1 if local else 0
                    leaf_keys = {name: f"{name}{count}" for name in local}
                    for name, global_name in leaf_keys.items():
                        if global_name in self.param_shapes:
                            raise ValueError(f"two parameters named {global_name!r}")
                        self.param_shapes[global_name] = tuple(int(d) for d in local[name])
                    leaf_state = {}
                    for name, value in leaf.state_shapes(leaf.input_shape).items():
                        global_name = f"{name}{count}"
                        while global_name in self.state_shapes or global_name in self.param_shapes:
                            global_name += "_"  # two stateful layers without parameters in a row
                        leaf_state[name] = global_name
                        self.state_shapes[global_name] = tuple(int(d) for d in value)
                    names[id(leaf)] = (leaf.input_shape, where, leaf_keys, leaf_state)
                keys.update({prefix + k: v for k, v in leaf_keys.items()})
                state.update({prefix + k: v for k, v in leaf_state.items()})
            self.param_keys.append(keys)
            self.state_keys.append(state)
            name = layer.name or (
                layer.prefix if layer.prefix == "flat" else f"{layer.prefix}{count}"
            )
            while name in self.names or name in self.param_shapes:
                name += "_"  # gradients are named d + NAME: no output may share a parameter's
            self.names.append(name)
            shape = output_shape_of(layer, shape)
            layer.output_shape_ = shape

    def _init_params(self, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        params = {}
        for layer, keys in zip(self.layers, self.param_keys, strict=True):
            if keys and not all(key in params for key in keys.values()):
                values = layer.init_params(rng, layer.input_shape)
                params.update(
                    {keys[name]: values[name] for name in keys if keys[name] not in params}
                )
        return params

    def __getattr__(self, name: str):
        """The options a catalog network was built with, as attributes (``net.pool_ties``)."""
        options = self.__dict__.get("options", {})
        if name in options:
            return options[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # --- parameters ------------------------------------------------------------------
    @property
    def params(self) -> dict[str, np.ndarray]:
        """The parameters, NumPy arrays keyed w1, b1, w2, ...; optimizers update them in place."""
        return self._params

    @params.setter
    def params(self, values: dict[str, np.ndarray]) -> None:
        if set(values) != set(self.param_shapes):
            raise ValueError(
                f"params must have keys {sorted(self.param_shapes)}, got {sorted(values)}"
            )
        for key, shape in self.param_shapes.items():
            if np.shape(values[key]) != shape:
                raise ValueError(
                    f"param {key} must have shape {shape}, got {np.shape(values[key])}"
                )
        # Copies into this network's own flat buffer: two networks built from one dict
        # must not train the same arrays, and the compiled forward reads the buffer whole.
        self._flat, self._params = self._pack(values)
        self._views = dict(self._params)

    def _pack(self, values: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``values`` copied into a new flat buffer at :attr:`_offsets` (zeros between
        them) -> (the buffer, each parameter as a view of it)."""
        flat = buffers.zeros(self._flat.shape, self._flat.dtype)
        views = {}
        for key, shape in self.param_shapes.items():
            at = self._offsets[key]
            views[key] = flat[at : at + int(np.prod(shape))].reshape(shape)
            views[key][...] = np.asarray(values[key])
        return flat, views

    # --- state ----------------------------------------------------------------------
    def initial_state(self) -> dict[str, np.ndarray]:
        """Every layer's :meth:`~tfhybrid.layers.Layer.init_state`, keyed like :attr:`state`."""
        state = {}
        for layer, keys in zip(self.layers, self.state_keys, strict=True):
            if keys:
                values = layer.init_state(layer.input_shape)
                state.update({keys[name]: values[name] for name in keys})
        return state

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The layers' state that is not a parameter (running_mean3, running_var3, ...),
        updated by training passes only; no optimizer touches it. Empty for a network
        of stateless layers."""
        return self._state

    @state.setter
    def state(self, values: dict[str, np.ndarray]) -> None:
        if set(values) != set(self.state_shapes):
            raise ValueError(
                f"state must have keys {sorted(self.state_shapes)}, got {sorted(values)}"
            )
        for key, shape in self.state_shapes.items():
            if np.shape(values[key]) != shape:
                raise ValueError(
                    f"state {key} must have shape {shape}, got {np.shape(values[key])}"
                )
            if not np.all(np.isfinite(values[key])):
                raise ValueError(f"state {key} holds NaN or inf")
        self._state = {k: np.array(values[k], dtype=self.dtype) for k in self.state_shapes}

    def layer_state(self, index: int, state: dict | None = None) -> dict:
        """Layer ``index``'s state under its own names ("running_mean")."""
        state = self._state if state is None else state
        return {local: state[key] for local, key in self.state_keys[index].items()}

    @property
    def step(self) -> int:
        """The number of training passes so far: the next pass draws this step's numbers."""
        return self._step

    @step.setter
    def step(self, value: int) -> None:
        self._step = _checked_step_number(value, "step")

    @contextlib.contextmanager
    def replaying(self, step: int | None = None) -> Iterator[int]:
        """Within it, every pass (manual and reference) draws step ``step``'s random
        numbers (default: the next step's, :attr:`step`), and neither :attr:`step` nor
        :attr:`state` changes: what the audit needs to evaluate one function many times."""
        step = _checked_step_number(self.step if step is None else step)
        saved_step, saved_state, saved_replay = self.step, self._state, self._replay
        self._state = {k: v.copy() for k, v in saved_state.items()}
        self._replay = step
        try:
            yield step
        finally:
            self.step, self._state, self._replay = saved_step, saved_state, saved_replay

    def _draw_step(self, step: int | None) -> int:
        """The step whose random numbers a pass draws; a training pass not replaying
        moves :attr:`step` past it."""
        if self._replay is not None:
            return self._replay
        return _checked_step_number(self.step if step is None else step)

    def _rng_factory(self, step: int, index: int):
        return lambda: layer_rng(self.seed, step, index)

    def _extras(self, index: int, training: bool, step: int, method: str = "forward") -> dict:
        """The keyword arguments layer ``index``'s ``method`` takes (see Layer)."""
        wanted = self._takes[index][method]
        if not wanted:
            return {}
        state = self.layer_state(index)
        if not (training and method == "forward") or not self._pure[index]:
            state = {k: v.copy() for k, v in state.items()}  # only a training forward writes
        return call_options(
            getattr(self.layers[index], method),
            training=training,
            state=state,
            rng=self._rng_factory(step, index),
            wanted=wanted,
        )

    def call_options(self, index: int, method: str = "forward", training: bool = True) -> dict:
        """The keyword arguments layer ``index``'s ``method`` ("forward" or "reference")
        gets in a pass now (see :class:`~tfhybrid.layers.Layer`): the mode, a copy of its
        state and a fresh generator of the step being drawn, the same on every call while
        :meth:`replaying`. For checking a layer on its own, as the audit does."""
        options = self._extras(index, training, self._draw_step(None), method)
        if "state" in options:
            options["state"] = {k: v.copy() for k, v in options["state"].items()}
        return options

    def _keep_state(self, index: int, extras: dict) -> None:
        """Store what a training forward wrote into its state (in place or as new arrays)."""
        for local, key in self.state_keys[index].items():
            value = np.asarray(extras["state"][local])
            if value.shape != self.state_shapes[key]:
                raise ValueError(
                    f"layer {index} ({type(self.layers[index]).__name__}) wrote state "
                    f"{local!r} of shape {list(value.shape)}; it has shape "
                    f"{list(self.state_shapes[key])}"
                )
            self._state[key][...] = value

    def flat_params(self) -> np.ndarray:
        """Every parameter in one vector, in the order of :attr:`params`, each from a
        64-byte boundary (zeros between them).

        The parameters are views of one buffer, which optimizers update in place; if a
        caller replaced an array in the dict, the vector is assembled afresh."""
        if all(self._params.get(k) is v for k, v in self._views.items()):
            return self._flat
        return self._pack(self._params)[0]

    def layer_params(self, index: int, params: dict | None = None) -> dict:
        """Layer ``index``'s parameters under its own names ("w", "b")."""
        params = self._params if params is None else params
        return {local: params[key] for local, key in self.param_keys[index].items()}

    def first_parameter_layer(self) -> int:
        """Index of the first layer with parameters: no gradient is needed below it."""
        return self.first

    # --- forward and backward --------------------------------------------------------
    def _check_input(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != len(self.input_shape) + 1 or x.shape[1:] != self.input_shape:
            raise ValueError(
                f"{self.name} takes inputs [N,{','.join(map(str, self.input_shape))}]"
                f", got {list(x.shape)}"
            )
        return np.ascontiguousarray(x, dtype=self.dtype)

    def forward(
        self, x: np.ndarray, *, training: bool = True, step: int | None = None
    ) -> tuple[np.ndarray, list]:
        """x [N, *input_shape] -> (logits [N,K], per-layer caches for :meth:`backward`).

        ``training``: batch statistics and random masks (and the state updated), else the
        running statistics and no mask. ``step``: whose random numbers to draw (default
        :attr:`step`); a training pass moves :attr:`step` on by one."""
        h = self._check_input(x)
        if not training:
            return self._forward(h, False, self.step)
        step = self._draw_step(step)
        out = self._forward(h, True, step)
        if self._replay is None:
            self.step = step + 1
        return out

    def _forward(self, h: np.ndarray, training: bool = True, step: int = 0) -> tuple:
        """:meth:`forward` on an input already checked and converted."""
        batch = len(h)
        caches: list = [None] * len(self.layers)
        flat = self._flat_tensor()
        index = 0
        while index < len(self.layers):
            run = self._run_at.get(index)
            if run is None:
                layer = self.layers[index]
                extras = self._extras(index, training, step)
                h, caches[index] = layer.forward(*self._arguments(index, h), **extras)
                h = self._check_output(h, index, batch)
                if training and "state" in extras:
                    self._keep_state(index, extras)
                index += 1
                continue
            h_in = tf.convert_to_tensor(h)
            kept, h = run.training(h_in, flat)
            acts = dict(zip(run.kept, kept, strict=True))
            acts[run.start - 1], acts[run.stop - 1] = h_in, h
            for i in run.cached:
                needs = self.layers[i].fused_needs
                caches[i] = self.layers[i].cache_from(
                    self.layer_params(i),
                    acts[i - 1] if "x" in needs else None,
                    acts[i] if "out" in needs else None,
                    batch,
                )
            index = run.stop
        return np.asarray(h), caches

    def _arguments(self, index: int, h) -> tuple[dict, np.ndarray]:
        """Layer ``index``'s parameters and input; copies for a layer that may write
        into them (see ``Layer.pure``)."""
        params, h = self.layer_params(index), np.asarray(h)
        if self._pure[index]:
            return params, h
        return {k: v.copy() for k, v in params.items()}, h.copy()

    def _check_output(self, out, index: int, batch: int):
        """Layer ``index``'s forward output, checked where it enters the network: of the
        network's dtype and of the shape its reference gave when the network was built
        (:mod:`tfhybrid.models.layer_results`). Returns it."""
        layer = self.layers[index]
        expected = (batch, *layer.output_shape_)
        return check_output(out, layer, index, self.names[index], expected, self.dtype)

    def _flat_tensor(self):
        # Read in place (no copy): the call has returned before an optimizer writes it.
        return tf.convert_to_tensor(buffers.as_tensor(self.flat_params())) if self.runs else None

    def backward(
        self,
        dlogits: np.ndarray,
        caches: list,
        per_example: bool = False,
        intermediates: bool = True,
    ) -> tuple[dict, dict]:
        """dL/dlogits -> (grads keyed like params, {"d" + NAME: dL/dNAME}).

        ``per_example``: each parameter's gradient is [N, *shape], sample n's own share
        of the batch loss (the batch gradient is their sum over N). ``intermediates=False``:
        the second dict stays empty, and each layer's output gradient is freed once used.
        """
        grads: dict[str, np.ndarray] = {}
        inter = {"d" + self.names[-1]: dlogits} if intermediates else {}
        dout = dlogits
        merged = None  # a layer whose backward ran with the one above it
        for index in range(len(self.layers) - 1, self.first - 1, -1):
            layer = self.layers[index]
            need_dx = index > self.first
            if index == merged:
                continue  # dout is already its dx
            through = getattr(layer, "backward_through", None)
            if through is not None and not intermediates and index - 1 > self.first:
                # two parameter-free layers' backward in one pass (AvgPool2D over Sigmoid)
                dx = through(self.layers[index - 1], dout, caches[index], caches[index - 1])
                if dx is not None:
                    dout, merged = dx, index - 1
                    continue
            step = layer.backward_per_example if per_example else layer.backward
            upstream = dout if self._pure[index] else np.array(dout)  # see Layer.pure
            dout, local = check_backward(
                step(upstream, caches[index], need_dx),
                layer,
                index,
                self.names[index],
                need_dx=need_dx,
                batch=len(dlogits),
                dtype=self.dtype,
                shapes=self._local_shapes[index],
                per_example=per_example,
            )
            keys = self.param_keys[index]
            # A layer used at two places: the gradients of its uses add up.
            add_grads(grads, {keys[name]: value for name, value in local.items()})
            if intermediates and need_dx and self.layers[index - 1].report_gradient:
                inter["d" + self.names[index - 1]] = dout
        grads = {key: grads[key] for key in self.param_shapes if key in grads}
        return grads, dict(reversed(inter.items()))  # in layer order, as reference_forward

    def loss_and_gradients(
        self,
        x: np.ndarray,
        y: np.ndarray,
        per_example: bool = False,
        intermediates: bool = True,
        *,
        step: int | None = None,
    ) -> dict:
        """One training-mode forward and backward pass on x [N, *input_shape], one-hot y [N,K].

        Returns {"loss": the minimised loss, "cost": the softmax cross-entropy of the
        logits (the article's printed cost; the loss itself for a softmax network),
        "logits", "grads" (keyed like params), "intermediates"}. ``per_example=True``
        also returns "per_example_grads": each sample's own gradient of every parameter
        [N, *shape], whose sum over N is "grads". ``intermediates=False`` leaves the
        intermediate gradients out (training needs none), which saves their memory.

        A batch larger than :attr:`chunk_size` is worked through in pieces of that size
        (forward and backward of one piece at a time, gradients added up), so memory and
        time per image stay those of a piece; the result is the whole batch's. A network
        with a layer that mixes the batch or draws random numbers takes it whole.

        ``step``: whose random numbers the pass draws (default :attr:`step`, which then
        moves on by one); layer state (running statistics) is updated.
        """
        x = self._check_input(x)
        if per_example:
            for index, layer in enumerate(self.layers):
                if layer.couples_batch:
                    where = f"layer {index} ({type(layer).__name__})"
                    if isinstance(layer, Composite):  # name the layer inside that couples
                        prefix, leaf = next((p, x) for p, x in layer.leaves() if x.couples_batch)
                        where += f" > {prefix[:-1]} ({type(leaf).__name__})"
                    raise ValueError(
                        f"per-example gradients are not defined for {where}: its batch "
                        "statistics couple the samples, so no sample has a gradient of its own"
                    )
        step = self._draw_step(step)
        result = self._whole(x, y, per_example, intermediates, step)
        if self._replay is None:
            self.step = step + 1
        return result

    def _whole(self, x, y, per_example: bool, intermediates: bool, step: int) -> dict:
        y = np.asarray(y, dtype=self.dtype)
        if y.shape != (len(x), *self.output_shape):
            raise ValueError(
                f"labels must be one-hot [N,{self.output_shape[0]}] like the "
                f"logits [{len(x)},{self.output_shape[0]}], got {list(y.shape)}"
            )
        n = len(x)
        if n <= self.chunk_size or self._unsplit:
            return self._pass(x, y, 1.0, per_example, intermediates, step)
        pieces = [
            self._pass(
                x[i : i + self.chunk_size],
                y[i : i + self.chunk_size],
                min(self.chunk_size, n - i) / n,
                per_example,
                intermediates,
                step,
            )
            for i in range(0, n, self.chunk_size)
        ]
        result = {
            "loss": sum(p["loss"] for p in pieces),
            "cost": sum(p["cost"] for p in pieces),
            "logits": np.concatenate([p["logits"] for p in pieces]),
            "grads": {k: sum(p["grads"][k] for p in pieces) for k in self.param_shapes},
            "intermediates": {
                k: np.concatenate([p["intermediates"][k] for p in pieces])
                for k in pieces[0]["intermediates"]
            },
        }
        if per_example:
            result["per_example_grads"] = {
                k: np.concatenate([p["per_example_grads"][k] for p in pieces])
                for k in self.param_shapes
            }
        return result

    def _pass(
        self,
        x: np.ndarray,
        y: np.ndarray,
        share: float,
        per_example: bool,
        intermediates: bool,
        step: int,
    ) -> dict:
        """Forward and backward on one piece; loss and gradients weighted by ``share``, the
        piece's fraction of the batch (the loss is a mean over the whole batch)."""
        logits, caches = self._forward(x, True, step)
        if self.loss == "sigmoid_cross_entropy":
            loss, dlogits = sigmoid_cross_entropy(logits, y)
            cost, _ = softmax_cross_entropy(logits, y)
        else:
            loss, dlogits = softmax_cross_entropy(logits, y)
            cost = loss
        if share != 1.0:
            loss, cost, dlogits = loss * share, cost * share, dlogits * share
        dlogits = dlogits.astype(self.dtype, copy=False)
        grads, inter = self.backward(dlogits, caches, per_example, intermediates)
        result = {
            "loss": loss,
            "cost": cost,
            "logits": logits,
            "grads": grads,
            "intermediates": inter,
        }
        if per_example:
            result["per_example_grads"] = grads
            result["grads"] = {key: batch_sum(value) for key, value in grads.items()}
        return result

    def gradients(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """Manual gradients of the loss, keyed like :attr:`params`."""
        return self.loss_and_gradients(x, y)["grads"]

    def logits(self, x: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
        """Logits [N,K] for any N, in batches of ``batch_size``, keeping no caches; in
        inference mode (running statistics, no dropout)."""
        out = [self._predict(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, *self.output_shape), self.dtype)

    def _predict(self, x: np.ndarray) -> np.ndarray:
        h = self._check_input(x)
        flat = self._flat_tensor()
        index = 0
        while index < len(self.layers):
            run = self._run_at.get(index)
            if run is None:
                extras = self._extras(index, False, self.step)
                h, _ = self.layers[index].forward(*self._arguments(index, h), **extras)
                h = self._check_output(h, index, len(x))
                index += 1
            else:
                h = run.predict_call(tf.convert_to_tensor(h), flat)[1]
                index = run.stop
        return np.asarray(h)

    def accuracy(self, x: np.ndarray, labels: np.ndarray) -> float:
        """Fraction of images whose largest logit is the true class (labels: int [N])."""
        return float(np.mean(self.logits(x).argmax(axis=1) == labels))

    # --- the same network in plain TensorFlow ----------------------------------------
    def reference_forward(
        self, params: dict, x, y, *, training: bool = True, step: int | None = None
    ) -> tuple:
        """(the loss, {NAME: tensor}) with TensorFlow ops only, for ``tf.GradientTape``.

        ``params``: tensors or variables keyed like :attr:`params`, all of one dtype, in
        which the whole loss is computed (the audit runs float64 too); x and one-hot y as
        tensors or arrays. The named tensors are the layer outputs whose gradients
        :meth:`backward` reports. Max pooling here is TensorFlow's, whose gradient is the
        true one (first maximum), whatever a layer's ``ties`` says.

        ``training`` and ``step`` as in :meth:`forward`: a layer that draws random numbers
        draws the same ones as the manual pass of that step (default: the step the next
        training pass draws, or the one being replayed). The state is never changed.
        """
        dtype = tf.as_dtype(next(iter(params.values())).dtype)
        h = tf.cast(tf.convert_to_tensor(x), dtype)
        step = self._draw_step(step)
        inter = {}
        for index, layer in enumerate(self.layers):
            extras = self._extras(index, training, step, method="reference")
            h = layer.reference(self.layer_params(index, params), h, **extras)
            if index >= self.first and layer.report_gradient:
                inter[self.names[index]] = h
        return self.reference_loss(h, y), inter

    def reference_loss(self, logits, y):
        """The loss of ``logits`` [N,K] for one-hot ``y`` in TensorFlow ops (mean over N)."""
        y = tf.cast(tf.convert_to_tensor(y), logits.dtype)
        if self.loss == "sigmoid_cross_entropy":
            per_output = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits)
            return tf.reduce_mean(tf.reduce_sum(per_output, axis=1))
        # -sum y log softmax, not tf.nn.softmax_cross_entropy_with_logits: that op's
        # gradient, softmax - y, holds only for label rows that sum to 1, and the
        # per-example audit of a dropout network zeroes all rows but one.
        return tf.reduce_mean(-tf.reduce_sum(y * tf.nn.log_softmax(logits), axis=1))

    def summary(self, plan: bool = True) -> str:
        """The network for a reader: one row per layer (output name, class, output shape,
        parameters, their count; the layers inside a composite under it, by path), the
        totals, then (``plan``) how each step runs: each convolution's backward
        formulations and the compiled forward calls (:mod:`tfhybrid.models.summary`)."""
        from tfhybrid.models.summary import summary

        return summary(self, plan)

    def structure(self) -> str:
        """The network's layers and how they connect, in one line (checkpoints keep it)."""
        parts = []
        seen: dict[int, int] = {}
        for index, layer in enumerate(self.layers):
            text = layer.structure() if isinstance(layer, Composite) else type(layer).__name__
            if id(layer) in seen:
                text += f"=layer {seen[id(layer)]}"
            seen.setdefault(id(layer), index)
            parts.append(text)
        return ", ".join(parts)
