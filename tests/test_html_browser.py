"""The backward-pass page in a real browser: Debian's Chromium, headless, driven by
Selenium through the system's chromedriver (Selenium Manager downloads nothing).

Checked: the page loads with no console error, every card and picture is drawn, the
sample and channel pickers change the pictures, hovering a pixel shows its manual, tape
and difference values (those of the report), and a screenshot is saved to tmp_path.

Without /usr/bin/chromium or /usr/bin/chromedriver the tests skip, saying why; under CI
(``CI`` set) they fail instead (.ci/run installs both). ``python -m
tests.test_html_browser`` writes docs/backward-page.png, the README's screenshot, from the
real MNIST images (TFHYBRID_DATA_DIR).
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# The machine's network may be closed: no first-run, sync, update or QUIC traffic.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
READY_S = 30  # seconds for the page to inflate its numbers and draw every picture
DOCS_SHOT = REPO / "docs" / "backward-page.png"


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return (
                f"{path} is missing: install Debian's chromium and chromium-driver "
                "(apt-get install -y chromium chromium-driver) to run the browser tests"
            )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements.txt)"
    return None


def open_browser(profile: Path, width: int = 1300, height: int = 1000):
    """Headless Chromium with a new empty profile, through /usr/bin/chromedriver."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


def load(driver, path: Path) -> None:
    """Open the page and wait until its script has drawn every picture."""
    driver.get(path.resolve().as_uri())
    deadline = time.monotonic() + READY_S
    while not driver.execute_script("return document.body.dataset.ready === '1'"):
        errors = _errors(driver)
        assert not errors, errors
        assert time.monotonic() < deadline, f"the page was not drawn within {READY_S} s"
        time.sleep(0.1)


def _errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the browser tests: {reason}")
        pytest.skip(reason)
    driver = open_browser(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def seed_page(tmp_path_factory):
    """The article's network on three random images (db1: its rule, 1/400 of the true)."""
    import tfhybrid
    from tests.test_html_page import FD, images
    from tfhybrid.audit import audit

    report = audit(tfhybrid.build_model("seed-cnn"), *images(3), fd_samples=FD)
    path = tmp_path_factory.mktemp("page") / "seed-cnn.html"
    report.to_html(path)
    return report, path


@pytest.fixture(scope="module")
def fork_page(tmp_path_factory):
    """A residual block whose backward forgets its shortcut (a composite, float64)."""
    from tests.test_audit_forks import Forgetful, net
    from tests.test_html_page import FD
    from tfhybrid.audit import audit
    from tfhybrid.layers import Conv2D, ReLU

    x = np.random.default_rng(0).standard_normal((2, 4, 4, 1))
    report = audit(
        net(Forgetful([ReLU(), Conv2D(2, 3, padding=1)])), x, np.eye(3)[[0, 2]], fd_samples=FD
    )
    path = tmp_path_factory.mktemp("page") / "fork.html"
    report.to_html(path)
    return report, path


def _every_picture_drawn(driver) -> dict:
    return driver.execute_script(
        """
        const cards = [...document.querySelectorAll("article.card")];
        const figs = [...document.querySelectorAll("figure.pic")];
        const blank = figs.filter((f) => ![...f.querySelectorAll("canvas.view")].every(
            (c) => c.width > 0 && c.height > 0 && c.getBoundingClientRect().width > 0
                   || c.closest(".version").offsetParent === null));
        return {cards: cards.length, figures: figs.length,
                drawn: figs.filter((f) => f.dataset.drawn !== undefined).length,
                blank: blank.map((f) => f.id)};
        """
    )


@pytest.mark.parametrize("which", ["seed_page", "fork_page"])
def test_every_card_renders_without_a_console_error(browser, which, request, tmp_path):
    report, path = request.getfixturevalue(which)
    load(browser, path)
    state = _every_picture_drawn(browser)
    expected = 1 + len(report.layers)  # the loss, then each layer (inside composites too)
    assert state["cards"] == expected, state
    assert state["figures"] > 0 and state["drawn"] == state["figures"], state
    assert not state["blank"], state
    assert not _errors(browser)
    shot = tmp_path / f"{which}.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def _canvas(driver, card: str, title: str):
    return driver.execute_script(
        """
        const [card, title] = arguments;
        const fig = [...document.querySelectorAll(`#${card} figure.pic`)].find(
            (f) => f.querySelector("figcaption b").textContent.startsWith(title)
                   && f.closest("article.card").id === card);
        return fig.querySelector("canvas.view");
        """,
        card,
        title,
    )


def test_the_sample_picker_changes_the_pictures(browser, seed_page):
    from selenium.webdriver.support.ui import Select

    load(browser, seed_page[1])
    canvas = _canvas(browser, "card-0", "dz1")
    before = browser.execute_script("return arguments[0].toDataURL()", canvas)
    Select(browser.find_element("id", "sample")).select_by_value("2")
    after = browser.execute_script("return arguments[0].toDataURL()", canvas)
    assert before != after
    drawn = browser.execute_script(
        "return [...document.querySelectorAll('figure.pic')].map((f) => f.dataset.drawn)"
    )
    assert set(drawn) == {"2"}  # every picture redrawn for sample 2
    assert not _errors(browser)


def _hover_text(driver, canvas, row: int, column: int) -> str:
    """Move the pointer over cell (row, column) of a picture's canvas; the tip's text."""
    from selenium.webdriver.common.action_chains import ActionChains

    box = driver.execute_script(  # centred in the window: clear of the sticky controls
        "arguments[0].scrollIntoView({block: 'center'});"
        "const r = arguments[0].getBoundingClientRect(), grid = arguments[0]._grid;"
        "return [r.width, r.height, grid.w, grid.h];",  # the cells the picture shows
        canvas,
    )
    width, height, cells_x, cells_y = box
    x = (column + 0.5) * width / cells_x - width / 2  # offsets from the element's centre
    y = (row + 0.5) * height / cells_y - height / 2
    ActionChains(driver).move_to_element_with_offset(canvas, int(x), int(y)).perform()
    tip = driver.find_element("id", "tip")
    assert tip.is_displayed()
    return tip.text


def _number(text: str, label: str) -> float:
    found = re.search(rf"^{label}\s+(\S+)$", text, re.MULTILINE)
    assert found, text
    return float(found.group(1))


def test_hovering_shows_the_manual_tape_and_difference(browser, seed_page):
    from selenium.webdriver.support.ui import Select

    from tfhybrid.audit.judge import MANUAL, TAPE64

    report, path = seed_page
    load(browser, path)
    card = browser.find_element("id", "card-0")
    Select(card.find_element("css selector", ".pickers select.channel")).select_by_value("5")
    canvas = _canvas(browser, "card-0", "dz1")
    assert browser.execute_script("return [arguments[0].width, arguments[0].height]", canvas) == [
        20,
        20,
    ]  # channel 5 alone: one 20x20 map
    text = _hover_text(browser, canvas, 3, 7)
    assert text.splitlines()[0] == "sample 0, row 3, column 7, channel 5"
    manual = report.gradients[MANUAL]["dz1"][0, 3, 7, 5]
    tape = report.gradients[TAPE64]["dz1"][0, 3, 7, 5]
    assert _number(text, "manual") == pytest.approx(manual, rel=1e-3)
    assert _number(text, "tape") == pytest.approx(tape, rel=1e-3)
    assert abs(_number(text, "difference")) < 1e-6 * abs(manual) + 1e-12
    # db1's bars: the manual is 1/400 of the tape's, read under the pointer
    bars = _canvas(browser, "card-0", "db1")
    text = _hover_text(browser, bars, 0, 7)
    assert text.splitlines()[0] == "element 7"
    assert _number(text, "manual") * 400 == pytest.approx(_number(text, "tape"), rel=1e-2)


def _save_docs_screenshot() -> None:
    """docs/backward-page.png, the README's screenshot of the article's network's page
    (batch 8, the first MNIST test images): its top (the verdict, the layer at fault, the
    diagram) over the card of the convolution at fault (db1's bars at 1/400 of the tape's)."""
    import io
    import tempfile

    from PIL import Image

    import tfhybrid
    from tfhybrid.audit import audit, registry
    from tfhybrid.audit.cli import mnist_batch

    net = tfhybrid.build_model("seed-cnn")
    report = audit(net, *mnist_batch(None, 8), update_model=registry.exact_twin("seed-cnn", net))
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "seed-cnn.html"
        report.to_html(page)
        driver = open_browser(Path(folder) / "profile", 1100, 2400)
        try:
            load(driver, page)
            top = driver.execute_script(
                "return document.getElementById('diagram').getBoundingClientRect().bottom"
            )
            whole = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
            card = driver.find_element("id", "card-0")
            driver.execute_script("document.getElementById('controls').style.position = 'static'")
            shot = Image.open(io.BytesIO(card.screenshot_as_png)).convert("RGB")
        finally:
            driver.quit()
    head = whole.crop((0, 0, whole.width, int(top) + 8))
    image = Image.new("RGB", (whole.width, head.height + shot.height + 8), "#fafafa")
    image.paste(head, (0, 0))
    image.paste(shot, ((whole.width - shot.width) // 2, head.height + 8))
    image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)
    # 256 colours, no dithering: about 110 KiB instead of 440, the pictures still legible
    image = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    image.save(DOCS_SHOT, optimize=True)
    print(f"wrote {DOCS_SHOT} ({DOCS_SHOT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    sys.exit(_save_docs_screenshot())
