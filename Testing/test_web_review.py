"""The browser review page in a real headless Chromium (Debian's, driven by playwright), on a real
synthesis service: upload a phantom, run, see progress reach 100 %, and find the three views rendered."""

from __future__ import annotations

import io
import os
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from html_screenshot import require_chromium
from service_support import free_port, start_service

pytestmark = [pytest.mark.process, pytest.mark.slow, pytest.mark.mrml]
pytest.importorskip("fastapi", reason="the service extra is not installed (pip install -e .[service])")
pytest.importorskip("trame_slicer", reason="the web extra is not installed (pip install -e .[web])")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "Resources" / "Screenshots" / "web_review.png"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]


def wait_for_http(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout_s} s")


def column_variances(png: bytes, columns: int = 3) -> list[float]:
    """Pixel variance of each of ``columns`` equal vertical strips of a screenshot (0 for a blank view)."""
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    width = image.shape[1] // columns
    return [float(image[:, k * width:(k + 1) * width].var()) for k in range(columns)]


def run_review_page(tmp_path, case) -> dict:
    """Upload ``case``'s scans on the review page, run them to 100 %, and return what the page showed."""
    chromium = require_chromium()
    from DigitalContrastLib.ct.io import write_volume

    ncct = write_volume(case.noncontrast, tmp_path / "ncct.nrrd")
    real = write_volume(case.contrast, tmp_path / "cta.nrrd")
    web_port = free_port()
    service = start_service(tmp_path, users=("reader",), dummy_seconds=3.0, extra=("--web-port", str(web_port)))
    try:
        web = f"http://127.0.0.1:{web_port}/"
        wait_for_http(web)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 800})
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.goto(web)
            page.get_by_test_id("run").wait_for(timeout=60_000)
            page.get_by_test_id("token").locator("input").fill(service.tokens["reader"])
            page.get_by_test_id("upload-noncontrast").locator("input[type=file]").set_input_files(str(ncct))
            page.get_by_test_id("upload-contrast").locator("input[type=file]").set_input_files(str(real))
            run = page.get_by_test_id("run")
            deadline = time.monotonic() + 60
            while run.is_disabled():
                assert time.monotonic() < deadline, "Run never became enabled after the uploads"
                time.sleep(0.2)
            run.click()
            status = page.get_by_test_id("status")
            seen = set()
            deadline = time.monotonic() + 120
            while "100 %" not in (text := status.inner_text()):
                seen.add(text.split(" %")[0])
                assert "failed" not in text, text
                assert time.monotonic() < deadline, f"progress stuck at {text!r}"
                time.sleep(0.1)
            assert len(seen) >= 2, seen  # it moved, it did not jump from nothing to the end
            deadline = time.monotonic() + 30
            while not page.get_by_test_id("download-dicom").is_enabled():  # the result node is in the views
                assert time.monotonic() < deadline, "the downloads never became available"
                time.sleep(0.1)
            assert "done" in status.inner_text()
            time.sleep(2.0)  # the remote views' last frames
            message = page.get_by_test_id("message").inner_text() if page.get_by_test_id("message").count() else ""
            overlay = page.get_by_test_id("overlay").inner_text() if page.get_by_test_id("overlay").count() else ""
            views = page.get_by_test_id("views")
            shot = views.screenshot()
            page.screenshot(path=str(tmp_path / "page.png"))
            browser.close()
    finally:
        service.stop()
    (tmp_path / "views.png").write_bytes(shot)
    return {"views": shot, "message": message, "overlay": overlay, "requested": requested, "page": tmp_path / "page.png"}


def test_the_review_page_uploads_runs_to_100_percent_and_renders_three_views(tmp_path):
    from DigitalContrastLib.phantoms.generator import make_phantom

    # on the training phantoms' grid (a coarser one has another noise grain and is rightly called unusual)
    seen = run_review_page(tmp_path, make_phantom(5, size_xyz=(256, 256, 48), spacing_xyz_mm=(1.4, 1.4, 2.5)))
    variances = column_variances(seen["views"])
    assert all(v > 100 for v in variances), variances  # three views rendered, none blank
    outside = [url for url in seen["requested"]
               if not url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))]
    assert outside == [], outside  # every asset from the installed packages, no CDN
    assert "unlike the model's training data" not in seen["message"], seen["message"]
    assert seen["overlay"] == "", seen["overlay"]  # a phantom like the training data: no overlay
    if os.environ.get("DC_UPDATE_SCREENSHOTS"):
        shutil.copyfile(seen["page"], SCREENSHOT)


def test_an_input_unlike_the_training_data_is_said_first_and_opens_with_its_uncertainty_map(tmp_path):
    """As in the Slicer module: a scanner calibrated 150 HU off warns, and the synthetic view shows the map."""
    from DigitalContrastLib.phantoms.generator import make_phantom

    case = make_phantom(5, size_xyz=(256, 256, 48), spacing_xyz_mm=(1.4, 1.4, 2.5))
    nc = case.noncontrast
    case.noncontrast = nc.with_array(np.where(nc.array > -500, nc.array + 150, nc.array).astype(np.int16))
    seen = run_review_page(tmp_path, case)
    assert seen["message"].startswith("This scan is unlike the model's training data:"), seen["message"]
    # the service's dummy worker writes a zero map (transparent in its colour table): the page says what it shows
    assert seen["overlay"].startswith("Over the synthetic view: its uncertainty map"), seen["overlay"]


def test_the_review_page_process_ends_with_a_killed_service(tmp_path):
    """'serve --web-port' starts the page as a child: a SIGKILLed service must not leave it running."""
    psutil = pytest.importorskip("psutil")
    web_port = free_port()
    service = start_service(tmp_path, users=("reader",), extra=("--web-port", str(web_port)))
    try:
        wait_for_http(f"http://127.0.0.1:{web_port}/")
        pages = [child for child in psutil.Process(service.process.pid).children()
                 if "DigitalContrastLib.web" in " ".join(child.cmdline())]
        assert len(pages) == 1, pages
    finally:
        service.stop(kill=True)
    gone, alive = psutil.wait_procs(pages, timeout=15)
    assert alive == [], f"the review page outlived its service: {alive}"
