"""Every TensorFlow formulation of a convolution's backward against TensorFlow's own
gradient (``tf.GradientTape``) in float64: dw over the batch, each sample's dw and dx,
each with and without XLA, on random shapes, strides 1 to 3, paddings, channel counts
and batches of 1 and 7. No timing here."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_close
from tfhybrid._tf import tf
from tfhybrid.fast import conv_plan, tf_kernels
from tfhybrid.fast.conv import conv2d_backward, conv2d_forward

RTOL = 1e-12

# (H, W, C_in, kernel, C_out, stride, pad): square and not, one and several channels,
# strides whose steps do not divide the rows, paddings up to the kernel's size.
CASES = [
    (9, 9, 1, 3, 4, 1, 0),
    (11, 10, 2, 3, 5, 2, 1),
    (12, 12, 3, 5, 2, 3, 2),
    (10, 13, 1, 4, 3, 2, 0),
    (8, 8, 4, 2, 6, 3, 2),
    (7, 9, 2, 3, 3, 1, 3),
]
BATCHES = (1, 7)


def tape_gradients(x, w, dout, stride, pad) -> dict:
    """TensorFlow's gradients of sum(conv(x, w) * dout) for x and w, and each sample's dw."""
    tx, tw = tf.Variable(x), tf.Variable(w)
    padding = [[0, 0], [pad, pad], [pad, pad], [0, 0]]
    with tf.GradientTape(persistent=True) as tape:
        out = tf.nn.conv2d(tf.pad(tx, padding), tw, strides=stride, padding="VALID")
        total = tf.reduce_sum(out * dout)
        per_sample = [tf.reduce_sum(out[n] * dout[n]) for n in range(len(x))]
    grads = {"x": tape.gradient(total, tx).numpy(), "w": tape.gradient(total, tw).numpy()}
    grads["per_sample_w"] = np.stack([tape.gradient(p, tw).numpy() for p in per_sample])
    return grads


def case_data(case, batch, seed=0):
    h, wd, c, k, f, stride, pad = case
    rng = np.random.default_rng([seed, batch, h, wd, c, k, f, stride, pad])
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    x = rng.standard_normal((batch, h, wd, c))
    w = rng.standard_normal((k, k, c, f))
    dout = rng.standard_normal((batch, ho, wo, f))
    return x, w, dout, stride, pad


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_every_formulation_equals_tensorflows_gradient(case):
    for batch in BATCHES:
        x, w, dout, stride, pad = case_data(case, batch)
        expected = tape_gradients(x, w, dout, stride, pad)
        args = (tf.float64, x.shape[1:], w.shape, stride, pad)
        for xla in (False, True):
            for dw in tf_kernels.DW_FORMULATIONS:
                for dx in tf_kernels.DX_FORMULATIONS:
                    fn = tf_kernels.conv_backward_fn(*args, True, False, dw=dw, dx=dx, xla=xla)
                    got_w, got_x = fn(x, dout, w)
                    label = f"batch {batch}, {dw}/{dx}, xla {xla}"
                    assert_close(f"dw {label}", got_w.numpy(), expected["w"], RTOL)
                    assert_close(f"dx {label}", got_x.numpy(), expected["x"], RTOL)
            for dw in tf_kernels.PER_SAMPLE_FORMULATIONS:
                fn = tf_kernels.conv_backward_fn(*args, False, True, dw=dw, xla=xla)
                per_sample = fn(x, dout, w)[0].numpy()
                label = f"batch {batch}, {dw}, xla {xla}"
                assert_close(f"each dw {label}", per_sample, expected["per_sample_w"], RTOL)
                assert_close(f"sum of dw {label}", per_sample.sum(0), expected["w"], RTOL)


@pytest.mark.parametrize(
    "plan",
    [
        conv_plan.ConvPlan(),
        conv_plan.ConvPlan(
            dw="batch-as-channels", per_sample="depthwise", dx="flipped-forward", xla=True
        ),
        conv_plan.ConvPlan(per_sample_xla=False),
    ],
    ids=["rule", "others-xla", "no-xla"],
)
def test_conv2d_backward_follows_the_plan(rng, plan):
    """The op pair with a plan: dw, dx, db as the tape's; per-example sums to the batch's."""
    x, w, dout, stride, pad = case_data(CASES[1], 7)
    b = rng.standard_normal((1, w.shape[-1]))
    out, cache = conv2d_forward(x, w, b, stride, pad)
    assert out.shape == dout.shape
    expected = tape_gradients(x, w, dout, stride, pad)
    for mode in ("batched", "per-sample"):
        mine = conv2d_backward(dout, cache, dw_mode=mode, plan=plan)
        assert_close(f"dw {mode}", mine["dw"], expected["w"], RTOL)
        assert_close(f"dx {mode}", mine["dx"], expected["x"], RTOL)
        assert_close(f"db {mode}", mine["db"], dout.sum((0, 1, 2))[None], RTOL)
    per = conv2d_backward(dout, cache, need_dx=False, per_example=True, plan=plan)
    assert_close("per-example dw", per["dw"], expected["per_sample_w"], RTOL)
    assert_close("per-example dw summed", per["dw"].sum(0), expected["w"], RTOL)


def test_the_rule_is_fixed_and_named_in_the_summary(monkeypatch):
    import tfhybrid

    monkeypatch.delenv(conv_plan.PLAN_ENV, raising=False)
    net = tfhybrid.build_model("lenet5")
    plans = [layer.plan for layer in net.layers if hasattr(layer, "plan")]
    assert len(plans) == 2 and all(p.source == "rule" for p in plans)
    assert plans == [
        conv_plan.rule(
            layer.input_shape, layer.param_shapes(layer.input_shape)["w"], 1, 0, net.dtype
        )
        for layer in net.layers
        if hasattr(layer, "plan")
    ]
    summary = net.summary()
    assert summary.count("backward: dw ") == 2 and plans[0].describe() in summary


def test_rule_without_avx512_takes_batch_as_channels_for_stride_one(monkeypatch):
    monkeypatch.setattr(conv_plan, "gpu_visible", lambda: False)
    monkeypatch.setattr(conv_plan, "cpu_has_avx512", lambda: False)
    assert conv_plan.rule((28, 28, 1), (9, 9, 1, 20), 1, 0, None).dw == "batch-as-channels"
    assert conv_plan.rule((28, 28, 8), (3, 3, 8, 16), 2, 1, None).dw == "backprop-filter"
    monkeypatch.setattr(conv_plan, "cpu_has_avx512", lambda: True)
    assert conv_plan.rule((28, 28, 1), (9, 9, 1, 20), 1, 0, None).dw == "backprop-filter"
    monkeypatch.setattr(conv_plan, "gpu_visible", lambda: True)
    assert conv_plan.rule((28, 28, 1), (9, 9, 1, 20), 1, 0, None) == conv_plan.ConvPlan(
        per_sample_xla=False
    )


def test_a_measured_plan_is_one_of_the_candidates(monkeypatch):
    monkeypatch.setenv(conv_plan.PLAN_ENV, "measure")
    monkeypatch.setattr(conv_plan, "MEASURE_BATCH", 2)
    monkeypatch.setattr(conv_plan, "MEASURE_REPEATS", 1)
    plan = conv_plan.choose((6, 6, 2), (3, 3, 2, 2), 1, 0, np.float64)
    assert plan.source == "measured"
    assert plan.dw in tf_kernels.DW_FORMULATIONS
    assert plan.per_sample in tf_kernels.PER_SAMPLE_FORMULATIONS
    assert plan.dx in tf_kernels.DX_FORMULATIONS
    monkeypatch.setenv(conv_plan.PLAN_ENV, "fastest")
    with pytest.raises(ValueError, match=conv_plan.PLAN_ENV):
        conv_plan.choose((6, 6, 2), (3, 3, 2, 2), 1, 0, np.float64)
