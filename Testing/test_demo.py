"""`make demo` runs `digital-contrast demo`: the main job on the embedded default must work end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest

from DigitalContrastLib.io import read_volume


@pytest.mark.process
def test_demo_generates_a_phantom_that_passes_the_gate_and_a_preview(tmp_path):
    done = subprocess.run([sys.executable, "-m", "DigitalContrastLib.cli", "demo", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Result:      OK" in done.stdout
    assert "contrast-enhanced: True" in done.stdout  # the gate tells the two members apart
    nc = read_volume(tmp_path / "phantom" / "noncontrast.nrrd")
    assert nc.shape_zyx == (160, 256, 256)
    assert (tmp_path / "phantom_preview.png").stat().st_size > 10_000
    assert "Traceback" not in done.stderr
