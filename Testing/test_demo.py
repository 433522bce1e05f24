"""`make demo` runs `digital-contrast demo`: the main job on the embedded default must work end to end."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image


def _demo(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "DigitalContrastLib.commands.cli", "demo", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=900)


def _check_demo_outputs(done: subprocess.CompletedProcess, out: Path) -> list[dict]:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    # the input gate's report of the first case, printed and kept
    assert "Result:      OK" in done.stdout
    assert "contrast-enhanced: True" in done.stdout  # the gate tells the two members apart
    gate_text = (out / "gate_report.txt").read_text()
    assert "Result:      OK" in gate_text and "c001/noncontrast.nrrd" in gate_text
    # the run ends with the paths of the report and of a side-by-side picture, both real files
    report = Path(re.search(r"report:\s+(\S+report\.html)\s*$", done.stdout).group(1))
    picture = Path(re.search(r"side by side:\s+(\S+\.png)", done.stdout).group(1))
    assert report.is_file() and picture.is_file()
    with Image.open(picture) as image:
        image.load()
        assert image.width > 400
    rows = list(csv.DictReader(open(out / "evaluation" / "metrics.csv", newline="")))
    assert len(rows) == 5 and sum(r["status"] == "ok" for r in rows) == 4
    assert next(r for r in rows if r["status"] == "failed")["reason"].startswith("gate: [unreadable]")
    assert (out / "phantom_preview.png").stat().st_size > 10_000
    return rows


@pytest.mark.process
@pytest.mark.slow
def test_demo_evaluates_a_phantom_cohort_end_to_end_with_the_dummy_worker(tmp_path):
    done = _demo(tmp_path, "--dummy")
    rows = _check_demo_outputs(done, tmp_path)
    assert {r["model_id"] for r in rows if r["status"] == "ok"} == {"dummy"}
