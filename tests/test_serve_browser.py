"""``wxembed serve`` as a user meets it: the command starts the server on a free loopback port,
and a real browser (headless Chromium, driven by Playwright) uses the page.

The browser is Debian's ``chromium`` (``.ci/run`` installs it with apt-get), found on the PATH or
named by ``WXEMBED_CHROMIUM``; Playwright's own browsers are never downloaded. Without one the
test is skipped, saying so. ``WXEMBED_SCREENSHOT=docs/serve.png`` also saves the screenshot
there (the README shows it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="wxembed serve needs the 'serve' extra (fastapi)")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser test needs playwright (the 'serve' extra)"
)

HOUR = "2024-06-02T12:00:00Z"


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser's executable (the test is skipped, saying why, without one)."""
    for candidate in (os.environ.get("WXEMBED_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    pytest.skip(
        "no browser: install Debian's chromium (apt-get install chromium, as .ci/run does) or "
        "name one with WXEMBED_CHROMIUM"
    )


@pytest.fixture(scope="module")
def server(chromium, tmp_path_factory, tiny_archive, trained_model, tiny_index):
    """``wxembed serve`` in a process of its own on a free port, over a copy of the tiny archive
    with a missing and a failed hour and a copy of the tiny index (with --allow-clustering);
    yields its address."""
    from wxembed.archive import Archive

    root = tmp_path_factory.mktemp("browser")
    archive = Archive(shutil.copytree(tiny_archive, root / "a.zarr"))
    archive.record("2024-06-05T00", "missing", "no such file upstream (HTTP 404)")
    archive.record("2024-06-05T01", "failed", "truncated GRIB2 message")
    index = shutil.copy(tiny_index, root / "i.duckdb")
    checkpoint = trained_model / "checkpoints" / "last.ckpt"
    command = [sys.executable, "-m", "wxembed", "serve", "--archive", str(archive.path)]
    command += ["--index", str(index), "--checkpoint", str(checkpoint), "--port", "0"]
    command += ["--allow-clustering"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        line = proc.stdout.readline().decode()  # "serving ... at http://127.0.0.1:PORT/ ..."
        if "http://" not in line:
            proc.kill()
            pytest.fail(f"wxembed serve did not start: {line}{proc.stderr.read().decode()}")
        address = line.split(" at ")[1].split()[0]
        assert address.startswith("http://127.0.0.1:")  # loopback unless --host says otherwise
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _loaded_images(page, selector: str) -> int:
    return page.eval_on_selector_all(
        selector, "imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length"
    )


def test_a_browser_finds_similar_hours_and_opens_the_regimes(chromium, server, tmp_path):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server)
            page.wait_for_selector("body[data-ready='1']", timeout=20_000)
            assert page.title() == "wxembed explorer"

            # an hour the manifest lists as missing says so, with its reason, and draws no map
            page.fill("#picker", "2024-06-05T00:00")
            page.dispatch_event("#picker", "change")
            assert page.text_content("#hour-status") == "missing: no such file upstream (HTTP 404)"
            assert page.locator("#map").is_hidden()

            # move to an hour with the date picker, then one hour on with the slider's keys
            page.fill("#picker", HOUR[:16])  # 2024-06-02T12:00
            page.dispatch_event("#picker", "change")
            page.locator("#slider").focus()
            page.keyboard.press("ArrowRight")
            assert page.text_content("#hour-label") == "2024-06-02 13:00Z"
            page.wait_for_function("document.getElementById('map').naturalWidth > 0")

            # find similar: k results with their thumbnails
            page.fill("input[name=k]", "6")
            page.click("#find-similar")
            page.wait_for_function(
                "document.querySelectorAll('#similar-results .card img').length === 6"
            )
            page.wait_for_function(
                "[...document.querySelectorAll('#similar-results img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            assert _loaded_images(page, "#similar-results img") == 6
            assert "hours most like 2024-06-02 13:00:00Z" in page.text_content("#similar-query")
            shot = tmp_path / "serve.png"
            page.screenshot(path=str(shot), full_page=True)

            # a match opens its hour
            first = page.text_content("#similar-results .card .what")
            page.click("#similar-results .card")
            assert page.text_content("#hour-label") in first

            # regimes: run a clustering from the page, see each decoded centroid
            page.click("nav#tabs button[data-tab=regimes]")
            page.fill("#run-k", "3")
            page.click("#run-clustering")
            page.wait_for_function(
                "document.querySelectorAll('#regimes .card img').length === 3"
                " && [...document.querySelectorAll('#regimes img')]"
                ".every(i => i.complete && i.naturalWidth > 0)",
                timeout=30_000,
            )
            assert page.locator("#regimes svg.bars").count() == 6  # by month, by hour
            page.screenshot(path=str(tmp_path / "regimes.png"), full_page=True)
            assert errors == [] and page.text_content("#message") == ""
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("WXEMBED_SCREENSHOT"):
        target = Path(os.environ["WXEMBED_SCREENSHOT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target)
