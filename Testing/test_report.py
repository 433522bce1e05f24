"""The HTML report: every section and figure is there, figures are real images, numbers match the analyses."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from DigitalContrastLib.common.errors import InputError
from DigitalContrastReaderLib.analysis.simulated_study import detection_study, grading_study, turing_study
from DigitalContrastReaderLib.analysis.turing import turing_test
from DigitalContrastReaderLib.analysis.visual_grading import vgc_analysis
from DigitalContrastReaderLib.exports.report import write_report

pytestmark = pytest.mark.slow


def _figures(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def _assert_real_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 200
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 10  # something was drawn, not a blank canvas


def test_report_with_two_clinical_uses_has_a_section_and_figures_for_each(tmp_path):
    aorta = grading_study(n_readers=3, n_cases=30, seed=1).assign(clinical_use="CTA aorta")
    neck = grading_study(n_readers=3, n_cases=30, modality_shift=(0.0, -0.5), seed=2).assign(clinical_use="CTA neck")
    turing = turing_study(n_readers=3, n_cases=20, seed=3).assign(clinical_use="CTA aorta")
    path = write_report(pd.concat([aorta, neck]), tmp_path / "out", title="Study 1", turing=turing, margin=0.5)
    html = path.read_text()
    assert path == tmp_path / "out" / "report.html"
    assert '<h2 id="cta-aorta">CTA aorta</h2>' in html and '<h2 id="cta-neck">CTA neck</h2>' in html
    figures = _figures(html)
    assert len(figures) == 7  # 3 per use + the Turing plot for the aorta
    for figure in figures:
        _assert_real_png(path.parent / figure)
    vgc = vgc_analysis(neck.drop(columns="clinical_use"))
    assert f"{vgc.auc:.4f}" in html
    conclusion = turing_test(turing.drop(columns="clinical_use")).conclusion
    assert conclusion.split(":")[0] in html
    assert "Non-inferiority with margin 0.5" in html and "one-sided p" in html
    assert "Stuart&ndash;Maxwell" in html and "ICC(2,1)" in html


def test_report_adds_the_roc_analysis_when_truth_is_present(tmp_path):
    path = write_report(detection_study(n_readers=3, n_negative=15, n_positive=15, seed=4), tmp_path, title="Detection")
    html = path.read_text()
    assert "ROC analysis (MRMC, AUC)" in html and "RRRC" in html and "Hillis" in html


def test_report_needs_some_data(tmp_path):
    with pytest.raises(InputError, match="no data"):
        write_report(None, tmp_path)
