"""Networks that fork and join: Residual, Branches, a composite of one's own and shared
layers, against the float64 tape; the tree's names; errors where a network is built."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_close
from tfhybrid import Sequential
from tfhybrid.layers import (
    BatchNormalization,
    Branches,
    Composite,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    ReLU,
    Residual,
    Tanh,
)
from tfhybrid.layers.composite import add_grads

RTOL = 1e-10  # float64 manual against the float64 tape


def tape_gradients(net: Sequential, x, y) -> tuple[float, dict]:
    from tfhybrid._tf import tf

    params = {k: tf.constant(v) for k, v in net.params.items()}
    with tf.GradientTape() as tape:
        tape.watch(params)
        loss, _ = net.reference_forward(params, x, y)
    return float(loss), {k: g.numpy() for k, g in tape.gradient(loss, params).items()}


def assert_matches_tape(net: Sequential, x, y) -> dict:
    with net.replaying():  # the dropout masks of one step, in both passes
        result = net.loss_and_gradients(x, y)
        loss, expected = tape_gradients(net, x, y)
    assert result["loss"] == pytest.approx(loss, rel=RTOL)
    assert set(result["grads"]) == set(expected)
    for key, value in expected.items():
        assert_close(f"d{key}", result["grads"][key], value, RTOL)
    return result


def batch(n: int, shape=(8, 8, 1), seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)), np.eye(10)[rng.integers(0, 10, n)]


def nested_net(shared: Conv2D) -> Sequential:
    return Sequential(
        [
            Conv2D(4, 3, padding=1),
            ReLU(),
            Residual([shared, BatchNormalization(), ReLU(), shared]),  # a layer used twice
            Residual(
                [
                    Conv2D(6, 3, stride=2, padding=1),
                    ReLU(),
                    Residual([Conv2D(6, 3, padding=1), Dropout(0.3)]),  # two deep
                ],
                shortcut=[Conv2D(6, 1, stride=2)],  # projection with stride 2
            ),
            Branches({"a": [Conv2D(2, 1), Tanh()], "b": []}),
            Branches({"p": [Conv2D(3, 1)], "q": [Conv2D(3, 3, padding=1)]}, join="sum"),
            Flatten(),
            Dense(10),
        ],
        input_shape=(8, 8, 1),
        dtype=np.float64,
        seed=1,
    )


def test_forks_nesting_and_a_shared_layer_match_the_tape():
    net = nested_net(Conv2D(4, 3, padding=1))
    x, y = batch(5)
    assert_matches_tape(net, x, y)
    # The shared convolution's parameters are named once, at its first use.
    assert [k for k in net.params if k.startswith("w")] == [
        f"w{i}" for i in (1, 2, 4, 5, 6, 7, 8, 9, 10)
    ]


def test_the_same_layer_at_two_places_of_a_chain_shares_and_adds():
    dense = Dense(16)
    net = Sequential(
        [Flatten(), Dense(16), Tanh(), dense, Tanh(), dense, Dense(10)],
        input_shape=(4, 4, 1),
        dtype=np.float64,
    )
    assert list(net.params) == ["w1", "b1", "w2", "b2", "w3", "b3"]
    x, y = batch(4, (4, 4, 1))
    result = assert_matches_tape(net, x, y)
    assert net.param_keys[3] == net.param_keys[5] == {"w": "w2", "b": "b2"}
    assert np.abs(result["grads"]["w2"]).max() > 0


def test_per_example_gradients_through_a_residual_block():
    net = Sequential(
        [
            Conv2D(3, 3, padding=1),
            Residual([Conv2D(3, 3, padding=1), ReLU(), Conv2D(3, 3, padding=1)]),
            ReLU(),
            Residual([MaxPool2D(2)], shortcut=[Conv2D(3, 2, stride=2)]),
            Flatten(),
            Dense(10),
        ],
        input_shape=(6, 6, 1),
        dtype=np.float64,
    )
    x, y = batch(3, (6, 6, 1))
    whole = net.loss_and_gradients(x, y, per_example=True)
    for n in range(3):
        alone = net.loss_and_gradients(x[n : n + 1], y[n : n + 1])["grads"]
        for key, value in alone.items():
            # the loss is a mean over the batch: one sample's share is its own gradient / N
            assert_close(f"d{key}[{n}]", whole["per_example_grads"][key][n] * 3, value, RTOL)


def test_running_statistics_inside_a_block_are_named_kept_and_updated():
    net = Sequential(
        [Conv2D(2, 3, padding=1), Residual([BatchNormalization()]), Flatten(), Dense(10)],
        input_shape=(4, 4, 1),
        dtype=np.float64,
    )
    assert net.state_keys[1] == {
        "block.0.running_mean": "running_mean2",
        "block.0.running_var": "running_var2",
    }
    x, y = batch(6, (4, 4, 1))
    before = {k: v.copy() for k, v in net.state.items()}
    net.logits(x)
    assert all(np.array_equal(net.state[k], before[k]) for k in before), "inference wrote"
    net.loss_and_gradients(x, y)
    assert not np.array_equal(net.state["running_mean2"], before["running_mean2"])


class Highway(Composite):
    """A composite of one's own: out = gate(x) * x + (1 - gate(x)) * h(x), elementwise,
    where gate is a path ending in a sigmoid (written with tanh: (1 + tanh) / 2)."""

    def __init__(self, width: int):
        super().__init__({"h": [Dense(width), Tanh()], "gate": [Dense(width), Tanh()]})

    def forward(self, params, x, **options):
        h, h_cache = self.path_forward("h", params, x, **options)
        t, t_cache = self.path_forward("gate", params, x, **options)
        g = (1 + t) / 2
        return g * x + (1 - g) * h, (x, h, g, h_cache, t_cache)

    def backward(self, dout, cache, need_dx=True):
        x, h, g, h_cache, t_cache = cache
        dh, grads = self.path_backward("h", dout * (1 - g), h_cache)
        dt, gate_grads = self.path_backward("gate", dout * (x - h) / 2, t_cache)
        add_grads(grads, gate_grads)
        return dout * g + dh + dt, grads  # x feeds three terms: their gradients add

    def reference(self, params, x, **options):
        g = (1 + self.path_reference("gate", params, x, **options)) / 2
        return g * x + (1 - g) * self.path_reference("h", params, x, **options)


def test_a_composite_of_ones_own_trains_and_matches_the_tape():
    net = Sequential(
        [Flatten(), Dense(6), Highway(6), Highway(6), Dense(10)],
        input_shape=(3, 3, 1),
        dtype=np.float64,
    )
    x, y = batch(4, (3, 3, 1))
    assert_matches_tape(net, x, y)
    from tfhybrid.optimizers import build_optimizer

    optimizer = build_optimizer("sgd", 0.5)
    first = net.loss_and_gradients(x, y)["loss"]
    for _ in range(20):
        optimizer.update(net.params, net.gradients(x, y))
    assert net.loss_and_gradients(x, y)["loss"] < first


def test_summary_shows_the_tree_and_structure_names_it():
    net = nested_net(Conv2D(4, 3, padding=1))
    text = net.summary()
    assert "  block.3 Conv2D" in text and "(the layer of block.0: shared)" in text
    assert "  shortcut: identity" in text and "  shortcut.0 Conv2D" in text
    assert "\n    res6    Residual" not in text  # output names start the line
    assert "  block.2 Residual" in text and "    block.0 Conv2D" in text  # nested, deeper
    assert "state running_mean3 4, running_var3 4" in text
    assert text.splitlines()[0].split() == [
        "output",
        "layer",
        "output",
        "shape",
        "parameters",
        "count",
    ]
    trained = sum(v.size for v in net.params.values())
    assert f"total: {trained:,} trained parameters, 8 state values (not trained)" in text
    assert net.structure().startswith(
        "Conv2D, ReLU, Residual(block: Conv2D, BatchNormalization, ReLU, Conv2D; "
        "shortcut: identity), Residual(block: Conv2D, ReLU, Residual("
    )


def test_paths_of_different_shapes_are_refused_naming_both():
    with pytest.raises(ValueError, match=r"block gives \[N,4,4,6\] and the shortcut \[N,8,8,1\]"):
        Sequential(
            [Residual([Conv2D(6, 3, stride=2, padding=1)]), Flatten(), Dense(10)],
            input_shape=(8, 8, 1),
        )
    with pytest.raises(ValueError, match=r"path a gives \[N,6,6,2\] and path b gives \[N,8,8,1\]"):
        Sequential(
            [Branches({"a": [Conv2D(2, 3)], "b": []}), Flatten(), Dense(10)],
            input_shape=(8, 8, 1),
        )
    shared = Conv2D(2, 3, padding=1)
    with pytest.raises(ValueError, match=r"block.0 with input \[N,8,8,1\] and at block.1"):
        Residual([shared, shared]).output_shape((8, 8, 1))
    with pytest.raises(ValueError, match="must be a list of tfhybrid.layers.Layer"):
        Residual(["conv"])
    with pytest.raises(ValueError, match="join must be one of"):
        Branches({"a": []}, join="max")


def test_a_copied_or_pickled_composite_works():
    import copy
    import pickle

    block = Residual([Conv2D(2, 3, padding=1), ReLU()], shortcut=[Conv2D(2, 1)])
    Sequential([block, Flatten(), Dense(10)], input_shape=(4, 4, 1))
    for twin in (copy.deepcopy(block), pickle.loads(pickle.dumps(block))):
        assert [prefix for prefix, _ in twin.leaves()] == ["block.0.", "block.1.", "shortcut.0."]
        net = Sequential([twin, Flatten(), Dense(10)], input_shape=(4, 4, 1), dtype=np.float64)
        assert_matches_tape(net, *batch(2, (4, 4, 1)))


def _section_blocks(heading: str, stop: str) -> list[str]:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "layers.md").read_text()
    section = text[text.index(heading) : text.index(stop)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_docs_blocks_on_forks_run_and_the_forgotten_shortcut_is_named():
    """docs/layers.md's residual network, its residual block by hand and its audit run as
    written; the block with the shortcut's term forgotten is caught at its join."""
    space = {}
    for code in _section_blocks("## Networks that fork and join", "### A composite of your own"):
        exec(code, space)
    assert space["net"].names[2:4] == ["res4", "res7"]
    x, y = batch(4, (28, 28, 1))
    space.update(x=x.astype(np.float32), y=y.astype(np.float32))
    layer_code, audit_code = _section_blocks("### A composite of your own", "## A fused layer")
    exec(layer_code, space)
    exec(audit_code, space)
    assert space["report"].ok, space["report"].mismatches

    class Forgetful(space["MyResidual"]):
        def backward(self, dout, cache, need_dx=True):
            dx_block, grads = self.path_backward("block", dout, cache)
            return dx_block, grads  # the shortcut's dout forgotten

    from tfhybrid.audit import audit, format_table

    block = [Conv2D(4, 3, padding=1), ReLU(), Conv2D(4, 3, padding=1)]
    net = Sequential([Conv2D(4, 3, padding=1), ReLU(), Forgetful(block), Flatten(), Dense(10)])
    text = format_table(audit(net, space["x"], space["y"]))
    assert "layer at fault: 2 (Forgetful, output h3): its own backward gives dx wrong" in text
    assert (
        "likely cause: layer 2 dx equals path block's gradient alone: the gradient from one "
        "path was not added at the fork (the identity path shortcut's)" in text
    )


def test_per_example_audit_of_a_block_with_dropout_finds_nothing_wrong():
    """Dropout draws one mask for the whole batch: a layer inside a block is checked per
    example against the whole batch's tape (one sample alone would draw its own mask)."""
    from tfhybrid.audit import audit

    net = Sequential(
        [
            Conv2D(2, 3, padding=1),
            Residual([Conv2D(2, 3, padding=1), ReLU(), Dropout(0.3)]),
            Flatten(),
            Dense(10),
        ],
        input_shape=(6, 6, 1),
    )
    x, y = batch(3, (6, 6, 1))
    report = audit(net, x.astype(np.float32), y.astype(np.float32), per_example=True)
    assert report.ok, report.mismatches
    assert report.layer_at_fault is None


def test_misuse_is_named_where_it_enters():
    with pytest.raises(
        ValueError, match="path 'block' of Residual must be a list of .* got NoneType"
    ):
        Residual(None)
    with pytest.raises(ValueError, match="must be a list of .* got str"):
        Residual("conv")
    net = Sequential(
        [
            Conv2D(2, 3),
            Residual([Conv2D(2, 3, padding=1), BatchNormalization()]),
            Flatten(),
            Dense(10),
        ],
        input_shape=(6, 6, 1),
    )
    x, y = batch(2, (6, 6, 1))
    with pytest.raises(ValueError, match=r"layer 1 \(Residual\) > block.1 \(BatchNormalization\)"):
        net.loss_and_gradients(x.astype(np.float32), y, per_example=True)
    shared = Conv2D(2, 3, padding=1)
    net = Sequential([shared, Residual([shared]), Flatten(), Dense(10)], input_shape=(6, 6, 2))
    text = net.summary(plan=False)
    assert "(shared: w1, b1)" in text and text.count("    38") == 1  # counted once
