"""Headless Chromium for tests that look at an HTML report the way a person would.

``make test`` installs Chromium where it can (root and apt-get: a fresh CI machine). Without it,
tests fail loudly when running as root (CI, where it should have been installed) and skip with
the reason otherwise (a developer's laptop).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    """The first Chromium-like browser on PATH, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The browser's path; fails (root, as in CI) or skips (not root) when there is none."""
    path = chromium_path()
    if path:
        return path
    message = ("headless Chromium is not installed: 'make test' installs it with apt-get as root "
               "(apt-get install --no-install-recommends chromium)")
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        pytest.fail(message + "; it should have been installed on this machine")
    pytest.skip(message + "; not root here, so the report is not rendered")


def screenshot(html_path: Path, png_path: Path, profile_dir: Path, width: int = 1200, height: int = 3000,
               timeout_s: float = 120.0) -> Path:
    """Render ``html_path`` in headless Chromium into ``png_path`` (``width`` x ``height`` pixels)."""
    browser = require_chromium()
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile_dir}", f"--screenshot={png_path}", f"--window-size={width},{height}",
               Path(html_path).resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0 and png_path.is_file(), f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return png_path


def readme_picture(html_path: Path, png_path: Path, profile_dir: Path, height: int = 2300, width: int = 900,
                   colors: int = 256) -> Path:
    """A small PNG of the top of a report for the README: rendered at 1200 px, cropped to
    ``height``, scaled to ``width`` and reduced to ``colors`` colours."""
    from PIL import Image

    full = screenshot(html_path, Path(png_path).with_suffix(".full.png"), profile_dir, 1200, height)
    with Image.open(full) as image:
        small = image.convert("RGB").resize((width, round(height * width / 1200)), Image.Resampling.LANCZOS)
    small.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(png_path, optimize=True)
    full.unlink()
    return Path(png_path)


if __name__ == "__main__":  # python Testing/html_screenshot.py REPORT.html OUT.png
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as profile:
        print(readme_picture(Path(sys.argv[1]), Path(sys.argv[2]), Path(profile)))
