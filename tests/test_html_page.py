"""The backward-pass page (report.to_html, check_gradients.py --html) without a browser:
its structure, the fault marked, its numbers equal to the report's, its caps, and that it
asks nothing of any server. tests/test_html_browser.py opens it in Chromium."""

from __future__ import annotations

import re

import numpy as np
import pytest

import tfhybrid
from tests.page_reader import Page
from tests.test_audit_forks import Forgetful, net
from tests.test_examples import network
from tfhybrid.audit import audit
from tfhybrid.audit.html import BackwardPage, Caps, write_html
from tfhybrid.audit.judge import MANUAL, TAPE64, row
from tfhybrid.layers import Conv2D, ReLU

FD = 4  # finite-difference coordinates per parameter: the page needs the verdicts only


def images(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28, 1)).astype(np.float32)
    return x, np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]


@pytest.fixture(scope="module")
def seed_report():
    """The article's network (its db1 rule: 1/400 of the true gradient), two images."""
    return audit(tfhybrid.build_model("seed-cnn"), *images(2), fd_samples=FD)


@pytest.fixture(scope="module")
def seed_page(seed_report):
    return Page(seed_report.to_html())


def test_a_card_per_layer_in_backward_order(seed_page):
    ids = [card.attrs["id"] for card in seed_page.cards]
    # the loss, then Dense, Flatten, AvgPool2D, Sigmoid, Conv2D: from the top down
    assert ids == ["card-loss", "card-4", "card-3", "card-2", "card-1", "card-0"]
    titles = [card.find_all("h3")[0].text for card in seed_page.cards[1:]]
    assert titles[0] == "4 (Dense, output z2)" and titles[-1] == "0 (Conv2D, output z1)"
    for card in seed_page.cards[1:]:
        formula = card.find_all("p", "formula")[0].text
        assert formula.startswith("dx = "), formula  # the layer's backward in one line
        chain = card.find_all("div", "chain")[0]
        assert len(chain.find_all("span", "op")) == 2  # upstream ∘ local = downstream
    diagram = seed_page.by_id["diagram"]
    labels = [n.find_all(cls="label")[0].text for n in diagram.find_all("div", "node")]
    assert labels == ["x", "Conv2D", "Sigmoid", "AvgPool2D", "Flatten", "Dense", "loss"]


def test_the_fault_and_its_cause_stand_out_at_the_top(seed_report, seed_page):
    lines = str(seed_report).splitlines()
    banner = seed_page.by_id["verdict"]
    assert "fault" in banner.classes
    fault = seed_page.by_id["fault-line"]
    assert fault.text.strip() == next(line for line in lines if line.startswith("layer at fault"))
    assert fault.find_all("a")[0].attrs["href"] == "#card-0"
    causes = [p.text for p in banner.find_all("p", "cause")]
    assert "likely cause: layer 0 db is off by 1/400 = 1/Ho*Wo (20x20 output positions)" in causes
    assert banner.find_all("p", "result")[0].text == next(
        line for line in lines if line.startswith("result:")
    )
    conv = seed_page.by_id["card-0"]
    assert "fault" in conv.classes and conv.find_all("span", "badge")[0].text == "at fault"
    for card in seed_page.cards[1:-1]:
        assert "ok" in card.classes
    conv_box = [
        n for n in seed_page.by_id["diagram"].find_all("div", "node") if "fault" in n.classes
    ]
    assert [n.find_all(cls="label")[0].text for n in conv_box] == ["Conv2D"]


def test_the_numbers_are_the_reports(seed_report, seed_page):
    rows = seed_page.by_id["table"].find_all("tr")[1:]
    assert [[td.text for td in r.find_all("td")] for r in rows] == [
        list(row(t)) for t in seed_report.tensors
    ]
    for name in ("dz1", "ds1", "dL1", "dz2", "dw1", "db1", "dw2", "db2"):
        (pic,) = [p for p in seed_page.pictures_titled(name) if not p["single"]][:1]
        numbers = seed_page.picture(pic["id"])
        manual = seed_report.gradients[MANUAL][name]
        tape = seed_report.gradients[TAPE64][name]
        shaped = numbers["manual"].reshape(np.shape(manual))
        np.testing.assert_array_equal(shaped, np.asarray(manual, dtype=np.float32))
        diff = np.asarray(manual, np.float64) - tape
        # the difference keeps 3 significant digits of its own largest magnitude
        np.testing.assert_allclose(
            numbers["diff"].reshape(diff.shape), diff, rtol=0, atol=1e-3 * np.abs(diff).max()
        )
        assert pic["verdict"] == seed_report.tensor(name).verdict
    db1 = next(p for p in seed_page.pictures_titled("db1"))
    assert db1["differs"] and db1["scale"].endswith("= 1/400")
    assert db1["layout"] == "bars"  # biases as bars, the manual's beside the tape's


def test_local_derivatives_are_drawn_for_what_they_are(seed_report, seed_page):
    source = seed_report.source
    pictures = seed_page.data["pictures"]
    card = seed_page.by_id["card-1"]  # the sigmoid: s(1 - s) of its output
    local = pictures[card.find_all("figure", "pic")[3].attrs["id"]]
    assert local["title"] == "local derivative" and local["caption"].startswith("s(1 − s)")
    with source.network() as model:
        s = 1 / (1 + np.exp(-model.layers[0].reference(model.layer_params(0), source.x).numpy()))
    numbers = seed_page.picture(local["id"])
    np.testing.assert_allclose(numbers["manual"], s * (1 - s), atol=1e-6)
    avg = seed_page.by_id["card-2"].find_all("figure", "pic")[3].attrs["id"]
    np.testing.assert_array_equal(seed_page.picture(avg)["manual"], 0.25)  # the even spread
    conv = seed_page.by_id["card-0"]
    assert "not computed" in conv.find_all("div", "text-term")[0].text  # no dx below
    filters = [pictures[f.attrs["id"]] for f in conv.find_all("figure", "pic")]
    assert [p["layout"] for p in filters if p["title"] == "its weights w"] == ["filters"]


def test_the_page_asks_no_server_for_anything(seed_page):
    text = seed_page.text
    assert not re.search(r"https?://|//cdn|<link|<img|@import|url\(", text)
    assert not re.search(r"\bsrc=", text)
    (csp,) = [m for m in seed_page.root.find_all("meta") if m.attrs.get("http-equiv")]
    assert csp.attrs["http-equiv"] == "Content-Security-Policy"
    assert "default-src 'none'" in csp.attrs["content"]  # the browser refuses any request


def test_a_planted_bug_marks_its_own_layer():
    report = audit(network("bughunt.py", "net"), *images(2), fd_samples=FD)
    page = Page(report.to_html(title="examples/bughunt.py:net"))
    assert page.root.find_all("h1")[0].text == "Backward pass: examples/bughunt.py:net"
    statuses = {c.attrs["id"]: c.find_all("span", "badge")[0].text for c in page.cards[1:]}
    assert statuses == {
        "card-4": "at fault",  # MyDense: db averaged over the batch
        "card-3": "ok",
        "card-2": "also wrong",  # MyMaxPool2D: routed to the wrong position
        "card-1": "also wrong",  # MySigmoid: s(1 - s) of its input, not its output
        "card-0": "inherits",
    }
    sigmoid = page.by_id["card-1"].find_all("figure", "pic")[3].attrs["id"]
    local = page.data["pictures"][sigmoid]
    assert local["differs"] and local["verdict"] == "wrong"  # its derivative, compared


def test_forks_and_joins_are_drawn():
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 1))
    y = np.eye(3)[[0, 2]]
    report = audit(net(Forgetful([ReLU(), Conv2D(2, 3, padding=1)])), x, y, fd_samples=FD)
    page = Page(report.to_html())
    ids = [card.attrs["id"] for card in page.cards]
    assert ids == [
        "card-loss",
        "card-3",
        "card-2",
        "card-1",
        "card-1-block1",  # inside the composite, in backward order
        "card-1-block0",
        "card-0",
    ]
    assert page.by_id["fault-line"].find_all("a")[0].attrs["href"] == "#card-1"
    assert "fault" in page.by_id["card-1"].classes
    paths = page.by_id["diagram"].find_all("div", "path")
    assert [p.find_all("span", "pname")[0].text for p in paths] == ["block", "shortcut"]
    assert "identity" in paths[1].text


def test_caps_say_what_they_leave_out(seed_report):
    page = Page(seed_report.to_html(caps=Caps(samples=1, channels=4)))
    assert "samples 1-1 of 2 shown" in page.by_id["caps"].text
    assert "channels: the first 4 (of up to 20)" in page.by_id["cuts"].text
    z1 = next(p for p in page.data["pictures"].values() if p["title"].startswith("dz1"))
    assert z1["dims"] == [1, 20, 20, 4] and "channels 1-4 of 20" in z1["cut"]
    with pytest.raises(ValueError, match="samples"):
        Caps(samples=0)


def test_a_large_page_keeps_fewer_channels_then_samples(seed_report, monkeypatch):
    from tfhybrid.audit.page import build

    monkeypatch.setattr(build, "BUDGET", 300_000)
    page = Page(seed_report.to_html())
    assert len(page.by_id["page-blob"].text) <= 300_000
    assert "kept under 0.3 MB" in page.by_id["cuts"].text


def test_the_page_shows_the_audited_point_after_training_moves_on():
    model = tfhybrid.build_model("seed-cnn")
    x, y = images(1)
    report = audit(model, x, y, fd_samples=FD)
    before = {k: v.copy() for k, v in model.params.items()}
    model.params["w1"][...] += 1.0  # the network trains on after the audit
    moved = {k: v.copy() for k, v in model.params.items()}
    page = Page(report.to_html())
    z1 = next(p for p in page.data["pictures"].values() if p["title"].startswith("output z1"))
    h = model.layers[0].reference(before_params(model, before), x).numpy()
    np.testing.assert_allclose(page.picture(z1["id"])["manual"], h, rtol=2e-3, atol=1e-4)
    for key, value in model.params.items():
        np.testing.assert_array_equal(value, moved[key])  # the page touched nothing


def before_params(model, params):
    return {local: params[key] for local, key in model.param_keys[0].items()}


def test_a_report_without_its_network_still_has_a_page(seed_report):
    import dataclasses

    page = Page(dataclasses.replace(seed_report, source=None).to_html())
    names = [card.attrs["id"] for card in page.cards]
    assert names == [f"card-{t.name}" for t in seed_report.tensors]


def test_in_a_notebook_the_page_is_a_frame_of_its_own(seed_report, tmp_path):
    page = seed_report.page()
    assert isinstance(page, BackwardPage)
    frame = page._repr_html_()
    assert frame.startswith("<iframe srcdoc=") and "&lt;!doctype html&gt;" in frame
    assert page.save(tmp_path / "p.html").read_text(encoding="utf-8") == page.html
    assert write_html(seed_report, tmp_path / "q.html").stat().st_size > 100_000


def test_check_gradients_writes_the_page(mnist_like_dir, tmp_path, capsys):
    from tfhybrid.audit.cli import main

    path = tmp_path / "page.html"
    args = ["--model", "two-layer-net", "--batch", "2", "--data-dir", str(mnist_like_dir)]
    assert main([*args, "--html", str(path)]) == 0
    page = Page(path.read_text(encoding="utf-8"))
    assert page.root.find_all("h1")[0].text == "Backward pass: two-layer-net"
    assert main([*args, "--html", str(tmp_path / "page.png")]) == 2
    assert "--html must name a .html file" in capsys.readouterr().err
