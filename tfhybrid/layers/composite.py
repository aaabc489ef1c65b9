"""Layers made of layers: a fork into named paths and the join of their outputs.

    Residual([Conv2D(16, 3, padding=1), BatchNormalization(), ReLU(),
              Conv2D(16, 3, padding=1), BatchNormalization()])      # out = block(x) + x
    Residual(block, shortcut=[Conv2D(32, 1, stride=2)])              # a projection shortcut
    Branches({"a": [Conv2D(8, 1)], "b": [Conv2D(8, 3, padding=1)]})  # concat on channels

A composite is itself a :class:`~tfhybrid.layers.Layer`: it nests, and stands anywhere in
a :class:`~tfhybrid.Sequential`. Its paths are named chains of layers; an empty chain is
the identity. This base runs a path's forward, backward and reference
(:meth:`Composite.path_forward` ...); a subclass writes the join in its own ``forward``,
``backward`` and ``reference``, and there the fork's rule is written out: x feeds every
path, so dL/dx is the sum of the paths' dx (gradients add at a fork; CS231n's notes on
backpropagation, "gradients add up at forks").

A layer object used at two places (in one path, two paths or two composites) shares its
parameters, as in Keras: they are named once, and the gradient is the sum over its uses.

Parameters and state inside a composite are named by their path: ``block.0.w`` is the
``w`` of the first layer of path ``block``; a nested composite adds its own
(``block.1.shortcut.0.w``). :class:`~tfhybrid.Sequential` gives each of them a network
name as it gives every layer's (w3, b3, gamma4, ...), numbering the layers with
parameters depth-first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfhybrid.layers.base import Layer, Shape, call_options


def add_grads(total: dict[str, np.ndarray], more: Mapping[str, np.ndarray]) -> dict:
    """``total`` with ``more`` added in: a parameter used at two places gets the sum of
    the gradients of its uses (``+=``, never ``=``, which would keep one use only)."""
    for key, value in more.items():
        total[key] = total[key] + value if key in total else value
    return total


def _child_rng(rng: np.random.Generator, number: int) -> np.random.Generator:
    """Child ``number``'s generator, a function of the composite's seed sequence and the
    child's place alone (not of what was drawn before), so forward and reference draw
    the same numbers whatever order they run the paths in."""
    seq = rng.bit_generator.seed_seq
    if not isinstance(seq, np.random.SeedSequence):  # a generator made without one
        seq = np.random.SeedSequence(int(rng.bit_generator.random_raw()))
    return np.random.default_rng(
        np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, number))
    )


class Composite(Layer):
    """A fork into named paths of layers, joined by the subclass.

    ``paths``: {name: a list of layers} (an empty list is the identity). The subclass
    defines ``forward(params, x, **options)``, ``backward(dout, cache, need_dx)`` and
    ``reference(params, x, **options)`` with the helpers below, passing ``options``
    (training, state, rng, whichever the network hands it) on to the paths; and, if its
    paths' output shapes differ, :meth:`join_shape`. Raises ValueError for a path name
    that is not an identifier or a path that is not a list of layers.
    """

    prefix = "h"

    def __init__(self, paths: Mapping[str, Sequence[Layer]], name: str | None = None):
        super().__init__(name)
        if not isinstance(paths, Mapping) or not paths:
            raise ValueError(
                f"{type(self).__name__} needs paths as a dict {{name: [layers]}}, got "
                f"{type(paths).__name__}"
            )
        self.paths: dict[str, list[Layer]] = {}
        for path, layers in paths.items():
            if not isinstance(path, str) or not path.isidentifier():
                raise ValueError(f"a path name must be an identifier, got {path!r}")
            if isinstance(layers, Layer):
                layers = [layers]
            if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
                raise ValueError(
                    f"path {path!r} of {type(self).__name__} must be a list of "
                    f"tfhybrid.layers.Layer instances, got {type(layers).__name__}"
                )
            layers = list(layers)
            bad = [type(x).__name__ for x in layers if not isinstance(x, Layer)]
            if bad:
                raise ValueError(
                    f"path {path!r} of {type(self).__name__} must be a list of "
                    f"tfhybrid.layers.Layer instances; it holds {', '.join(bad)}"
                )
            self.paths[path] = layers
        if self in self.children():
            raise ValueError(f"{type(self).__name__} cannot hold itself")
        self._per_example = False

    def __getstate__(self) -> dict:
        # The cache of name prefixes is keyed by the children's ids, which a copy or a
        # pickle does not keep: it is rebuilt on first use.
        return {k: v for k, v in self.__dict__.items() if k != "_owners"}

    # --- the tree ------------------------------------------------------------------------
    def children(self) -> list[Layer]:
        """Every use of a layer in the paths, in path order (a shared layer, each time)."""
        return [layer for layers in self.paths.values() for layer in layers]

    def uses(self) -> list[tuple[str, int, Layer]]:
        """(path, position, layer) for every use, in order."""
        return [(p, i, layer) for p, layers in self.paths.items() for i, layer in enumerate(layers)]

    def _owner(self, layer: Layer) -> str:
        """The name prefix of ``layer``'s parameters: that of its first use ("block.0.")."""
        owners = self.__dict__.get("_owners")
        if owners is None:
            owners = {}
            for path, position, child in self.uses():
                owners.setdefault(id(child), f"{path}.{position}.")
            self._owners = owners
        return owners[id(layer)]

    def build(self, input_shape: Shape) -> dict[str, Shape]:
        """Give every child its input and output shapes (``input_shape``,
        ``output_shape_``), path by path; return each path's output shape. Raises
        ValueError where a shared layer meets two input shapes."""
        from tfhybrid.layers.base import output_shape_of

        shape_in = tuple(int(d) for d in input_shape)
        seen: dict[int, tuple] = {}
        outputs = {}
        for path, layers in self.paths.items():
            shape = shape_in
            for position, layer in enumerate(layers):
                if id(layer) in seen and seen[id(layer)][0] != shape:
                    raise ValueError(
                        f"{type(layer).__name__} is used at {seen[id(layer)][1]} with input "
                        f"{_shape(seen[id(layer)][0])} and at {path}.{position} with input "
                        f"{_shape(shape)}; a shared layer needs one input shape"
                    )
                seen.setdefault(id(layer), (shape, f"{path}.{position}"))
                layer.input_shape = shape
                if isinstance(layer, Composite):
                    layer.build(shape)
                shape = output_shape_of(layer, shape)
                layer.output_shape_ = shape
            outputs[path] = shape
        return outputs

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(int(d) for d in self.join_shape(self.build(input_shape)))

    def join_shape(self, shapes: dict[str, Shape]) -> Shape:
        """The output shape of the join of paths giving ``shapes`` ({path: shape}).
        Default: their one shape (an element-wise join, such as a sum); raises ValueError
        naming the paths and shapes when they differ. Override for another join."""
        distinct = set(shapes.values())
        if len(distinct) == 1:
            return next(iter(distinct))
        listed = " and ".join(f"path {p} gives {_shape(s)}" for p, s in shapes.items())
        raise ValueError(
            f"{type(self).__name__}: {listed}; the paths of an element-wise join must give "
            "one shape"
        )

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        self.build(input_shape)
        return self._collect("param_shapes")

    def state_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        self.build(input_shape)
        return self._collect("state_shapes")

    def init_params(self, rng: np.random.Generator, input_shape: Shape) -> dict:
        self.build(input_shape)
        return self._collect("init_params", rng)

    def init_state(self, input_shape: Shape) -> dict:
        self.build(input_shape)
        return self._collect("init_state")

    def _collect(self, method: str, *rng) -> dict:
        """Each layer's ``method`` once (its first use), its names prefixed by the path."""
        out, done = {}, set()
        for path, position, layer in self.uses():
            if id(layer) in done:
                continue
            done.add(id(layer))
            values = getattr(layer, method)(*rng, layer.input_shape)
            out.update({f"{path}.{position}.{k}": v for k, v in values.items()})
        return out

    def leaves(self) -> list[tuple[str, Layer]]:
        """(name prefix, layer) for every use of a layer that is not a composite, depth
        first, in order: the layers :class:`~tfhybrid.Sequential` numbers. A shared layer
        is listed at each use, under its first use's prefix."""
        out = []
        for _, _, layer in self.uses():
            prefix = self._owner(layer)
            if isinstance(layer, Composite):
                out.extend((prefix + inner, leaf) for inner, leaf in layer.leaves())
            else:
                out.append((prefix, layer))
        return out

    # --- what the network asks of a layer ------------------------------------------------
    def options_taken(self, method: str = "forward") -> frozenset[str]:
        """Those of training, state and rng that any child's ``method`` takes."""
        taken: frozenset[str] = frozenset()
        for layer in self.children():
            taken |= layer.options_taken(method)
        return taken

    @property
    def couples_batch(self) -> bool:  # type: ignore[override]
        return any(layer.couples_batch for layer in self.children())

    def is_pure(self) -> bool:
        return super().is_pure() and all(layer.is_pure() for layer in self.children())

    def choose_plan(self, input_shape: Shape, dtype) -> None:
        """Each convolution inside chooses its backward formulations (see Conv2D)."""
        for layer in self.children():
            if hasattr(layer, "choose_plan"):
                layer.choose_plan(layer.input_shape, dtype)

    def backward_per_example(self, dout, cache, need_dx=True):
        """:meth:`backward` with each path's per-example gradients [N, *shape]: the same
        join, the paths' ``backward_per_example`` in place of ``backward``."""
        self._per_example = True
        try:
            return self.backward(dout, cache, need_dx)
        finally:
            self._per_example = False

    # --- the helpers a subclass's forward, backward and reference use ---------------------
    def path_forward(
        self, path: str, params: dict, x: np.ndarray, **options: Any
    ) -> tuple[np.ndarray, list]:
        """Path ``path``'s forward on x: (its output, the caches of its layers)."""
        h, caches = x, []
        for position, layer in enumerate(self.paths[path]):
            local = self._local(layer, params)
            extras = self._options(path, position, layer, "forward", options)
            if not layer.is_pure():  # a layer that writes into its input must not corrupt
                local = {k: v.copy() for k, v in local.items()}  # the other path's
                h = np.array(h)
            h, cache = layer.forward(local, h, **extras)
            self._keep_state(layer, extras, options)
            caches.append(cache)
        return h, caches

    def path_backward(
        self, path: str, dout: np.ndarray, caches: list, need_dx: bool = True
    ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """Path ``path``'s backward from dL/d its output: (dL/dx, its gradients, named
        like the composite's parameters). An identity path returns ``dout`` itself."""
        grads: dict[str, np.ndarray] = {}
        layers = self.paths[path]
        for position in range(len(layers) - 1, -1, -1):
            layer = layers[position]
            step = layer.backward_per_example if self._per_example else layer.backward
            wants_dx = need_dx or position > 0
            upstream = dout if layer.is_pure() else np.array(dout)
            result = step(upstream, caches[position], wants_dx)
            if not isinstance(result, tuple) or len(result) != 2:
                raise ValueError(
                    f"{path}.{position} ({type(layer).__name__})'s backward must return "
                    f"(dx, grads), a pair; got {type(result).__name__}"
                )
            dout, local = result
            if wants_dx and tuple(np.shape(dout))[1:] != tuple(layer.input_shape):
                raise ValueError(
                    f"{path}.{position} ({type(layer).__name__})'s backward returned dx of "
                    f"shape {list(np.shape(dout))}; its input has shape "
                    f"[N,{','.join(map(str, layer.input_shape))}]"
                )
            owner = self._owner(layer)
            add_grads(grads, {owner + k: v for k, v in local.items()})
        return (dout if need_dx else None), grads

    def path_reference(self, path: str, params: dict, x, **options: Any):
        """Path ``path`` in TensorFlow ops (for the tape): its output tensor."""
        h = x
        for position, layer in enumerate(self.paths[path]):
            extras = self._options(path, position, layer, "reference", options)
            h = layer.reference(self._local(layer, params), h, **extras)
            tracer = getattr(self, "_tracer", None)
            if tracer is not None:  # the audit watches each layer's output
                h = tracer(path, position, layer, h)
        return h

    # --- plumbing ------------------------------------------------------------------------
    def _local(self, layer: Layer, params: Mapping) -> dict:
        """``layer``'s parameters under its own names, from the composite's."""
        owner = self._owner(layer)
        return {k[len(owner) :]: v for k, v in params.items() if k.startswith(owner)}

    def _options(self, path: str, position: int, layer: Layer, method: str, options) -> dict:
        wanted = layer.options_taken(method)
        if not wanted:
            return {}
        owner = self._owner(layer)
        state = options.get("state") or {}
        mine = {k[len(owner) :]: v for k, v in state.items() if k.startswith(owner)}
        rng = options.get("rng")
        number = self._number(path, position)
        return call_options(
            getattr(layer, method),
            training=options.get("training", True),
            state=mine,
            rng=(lambda: _child_rng(rng, number)) if rng is not None else None,
            wanted=wanted,
        )

    def _number(self, path: str, position: int) -> int:
        """The place of a use among all uses: which child generator it draws from."""
        return (
            sum(len(self.paths[p]) for p in list(self.paths)[: list(self.paths).index(path)])
            + position
        )

    def _keep_state(self, layer: Layer, extras: dict, options: dict) -> None:
        """Copy what a child's training forward wrote into its state back into ours."""
        if "state" not in extras or not options.get("training", True):
            return
        owner, state = self._owner(layer), options.get("state")
        if state is None:
            return
        for local, value in extras["state"].items():
            state[owner + local] = value

    def structure(self) -> str:
        """The tree in one line: ``Residual(block: Conv2D, ReLU; shortcut: identity)``."""
        parts = []
        for path, layers in self.paths.items():
            inner = ", ".join(_structure(layer) for layer in layers) or "identity"
            parts.append(f"{path}: {inner}")
        return f"{type(self).__name__}({'; '.join(parts)})"


def _structure(layer: Layer) -> str:
    return layer.structure() if isinstance(layer, Composite) else type(layer).__name__


def _shape(shape: tuple) -> str:
    return f"[N,{','.join(map(str, shape))}]"


class Residual(Composite):
    """out = block(x) + shortcut(x) (He et al., 2016, "Deep Residual Learning").

    ``block``: a list of layers; ``shortcut``: None for the identity, or a list of layers
    (a 1x1 convolution with stride 2 where the block halves the size and changes the
    channels: a projection shortcut). Shapes: x [N, *S] -> [N, *T], where the block and
    the shortcut both give [N, *T]; ValueError names both shapes when they differ.
    """

    prefix = "res"

    def __init__(
        self,
        block: Sequence[Layer],
        shortcut: Sequence[Layer] | None = None,
        name: str | None = None,
    ):
        super().__init__({"block": block, "shortcut": shortcut or []}, name)

    def join_shape(self, shapes):
        if shapes["block"] != shapes["shortcut"]:
            raise ValueError(
                f"Residual: the block gives {_shape(shapes['block'])} and the shortcut "
                f"{_shape(shapes['shortcut'])}; a sum needs one shape (where the block "
                "changes it, give a projection shortcut, such as [Conv2D(C, 1, stride=2)])"
            )
        return shapes["block"]

    def forward(self, params, x, **options):
        out_block, block_cache = self.path_forward("block", params, x, **options)
        out_shortcut, shortcut_cache = self.path_forward("shortcut", params, x, **options)
        return out_block + out_shortcut, (block_cache, shortcut_cache)

    def backward(self, dout, cache, need_dx=True):
        block_cache, shortcut_cache = cache
        # A sum passes dout unchanged to each of its terms.
        dx_block, grads = self.path_backward("block", dout, block_cache)
        dx_shortcut, shortcut_grads = self.path_backward("shortcut", dout, shortcut_cache)
        add_grads(grads, shortcut_grads)  # a layer shared by both paths: its two uses add
        # x fed both paths, so its gradient is the sum of both paths' gradients.
        dx = dx_block + dx_shortcut
        return (dx if need_dx else None), grads

    def reference(self, params, x, **options):
        return self.path_reference("block", params, x, **options) + self.path_reference(
            "shortcut", params, x, **options
        )


class Branches(Composite):
    """Inception-style branches: x feeds every path; their outputs are joined.

    ``paths``: {name: a list of layers}. ``join``: "concat" (along channels, the last
    axis, in path order: the paths must agree on every other axis) or "sum" (one shape).
    Shapes: x [N, *S] -> [N, ..., C1 + C2 + ...] (concat) or [N, *T] (sum).
    """

    prefix = "br"
    JOINS = ("concat", "sum")

    def __init__(
        self,
        paths: Mapping[str, Sequence[Layer]],
        join: str = "concat",
        name: str | None = None,
    ):
        if join not in self.JOINS:
            raise ValueError(f"join must be one of {self.JOINS}, got {join!r}")
        self.join = join
        super().__init__(paths, name)

    def join_shape(self, shapes):
        if self.join == "sum":
            return super().join_shape(shapes)
        heads = {p: s[:-1] for p, s in shapes.items()}
        if len(set(heads.values())) != 1:
            listed = " and ".join(f"path {p} gives {_shape(s)}" for p, s in shapes.items())
            raise ValueError(
                f"Branches: {listed}; a concatenation along channels needs every other "
                "axis to agree"
            )
        return (*next(iter(heads.values())), sum(s[-1] for s in shapes.values()))

    def forward(self, params, x, **options):
        outs, caches = {}, {}
        for path in self.paths:
            outs[path], caches[path] = self.path_forward(path, params, x, **options)
        if self.join == "sum":
            return sum(outs.values()), caches
        return np.concatenate(list(outs.values()), axis=-1), caches

    def backward(self, dout, cache, need_dx=True):
        dx, grads = None, {}
        at = 0
        for path in self.paths:
            if self.join == "sum":
                piece = dout  # a sum passes dout unchanged to each term
            else:  # a concatenation hands each path its own channels of dout
                width = self.paths_width(path)
                piece, at = dout[..., at : at + width], at + width
            dx_path, path_grads = self.path_backward(path, piece, cache[path])
            add_grads(grads, path_grads)
            # x fed every path: its gradient is the sum over the paths.
            dx = dx_path if dx is None else dx + dx_path
        return (dx if need_dx else None), grads

    def paths_width(self, path: str) -> int:
        """The channels path ``path`` gives (its last axis)."""
        layers = self.paths[path]
        return int((layers[-1].output_shape_ if layers else self.input_shape)[-1])

    def reference(self, params, x, **options):
        from tfhybrid._tf import tf

        outs = [self.path_reference(path, params, x, **options) for path in self.paths]
        return tf.add_n(outs) if self.join == "sum" else tf.concat(outs, axis=-1)
