"""The out-of-distribution check: image statistics, the signature, the threshold and where the warning goes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from DigitalContrastLib.synthesis import ood
from DigitalContrastLib.synthesis.model_grid import axis_weights_np, to_model_grid_np

SHIPPED_TRAINING_GRID = {"size_xyz": (256, 256, 160), "spacing_xyz_mm": (1.4, 1.4, 2.5)}
MODEL_SPACING = (1.4, 1.4, 2.5)


def _pseudo_noncontrast(real_data):
    from DigitalContrastLib.ct.io import read_volume
    from DigitalContrastLib.training.validation import pseudo_noncontrast

    cta = read_volume(real_data / "cta_chest_arterial.nii.gz")
    mask = read_volume(real_data / "cta_chest_arterial_aorta_mask.nii.gz").array > 0
    return cta.with_array(pseudo_noncontrast(cta.array, mask))


def test_numpy_resampling_matches_the_engines_torch_resampling():
    torch = pytest.importorskip("torch")
    from DigitalContrastLib.synthesis.grid import axis_weights, hu_to_model_grid

    np.testing.assert_array_equal(axis_weights(30, 12).numpy(), axis_weights_np(30, 12))
    rng = np.random.default_rng(0)
    hu = rng.integers(-1000, 1500, size=(24, 40, 36)).astype(np.int16)
    # in-plane: integer coarsening and any refinement; along z: any ratio (the engine's in-plane
    # adaptive pooling at non-integer factors averages whole voxels instead)
    for grid in ((12, 20, 18), (24, 40, 36), (48, 80, 72), (10, 20, 18), (30, 40, 36), (17, 50, 45)):
        np.testing.assert_allclose(to_model_grid_np(hu, grid), hu_to_model_grid(hu, grid).numpy(), atol=0.05)
    assert torch is not None


def test_the_features_read_the_scanner_a_phantom_was_made_with():
    from DigitalContrastLib.phantoms.generator import make_phantom
    from DigitalContrastLib.phantoms.scanner import ScannerProfile

    grid = {"size_xyz": (128, 128, 80), "spacing_xyz_mm": (2.8, 2.8, 5.0)}
    plain = ood.input_features(make_phantom(7, **grid).noncontrast, MODEL_SPACING)
    offset = ood.input_features(make_phantom(7, scanner=ScannerProfile(hu_offset=30.0), **grid).noncontrast, MODEL_SPACING)
    noisy = ood.input_features(make_phantom(7, scanner=ScannerProfile(noise_sigma_hu=(40.0, 40.0)), **grid).noncontrast,
                               MODEL_SPACING)
    assert all(np.isfinite(v) for v in plain.values()), plain
    assert offset["soft_tissue_peak_hu"] - plain["soft_tissue_peak_hu"] == pytest.approx(30.0, abs=4.0)
    assert offset["fat_peak_hu"] - plain["fat_peak_hu"] == pytest.approx(30.0, abs=4.0)
    assert noisy["noise_sd_hu"] > 1.5 * plain["noise_sd_hu"]
    assert offset["lung_share"] == pytest.approx(plain["lung_share"], abs=0.01)


def test_the_conformal_threshold_is_the_right_order_statistic():
    scores = [float(v) for v in range(1, 10)]  # n = 9
    assert ood.conformal_threshold(scores, 0.2) == 8.0  # ceil(0.8 * 10) = 8th smallest
    assert ood.conformal_threshold(scores, 0.02) == 9.0  # the index passes n: the largest
    assert ood.conformal_threshold(scores[::-1] + [float("nan")], 0.5) == 5.0


def test_assess_names_the_unusual_feature_and_stays_quiet_inside_the_training_range():
    rng = np.random.default_rng(1)
    rows = [{key: float(rng.normal(10.0, 1.0)) for key in ood.FEATURE_KEYS} for _ in range(40)]
    signature = ood.build_signature(rows, alpha=0.05, target_spacing_xyz_mm=MODEL_SPACING)
    assert 1.5 < signature["threshold"] < 5.0
    inside = ood.assess(dict(rows[0]), signature)
    assert inside["judged"] and not inside["warning"] and inside["unusual"] == []
    odd = dict(rows[0], noise_sd_hu=60.0)
    record = ood.assess(odd, signature)
    assert record["warning"] and record["distance"] > signature["threshold"]
    assert record["unusual"][0]["key"] == "noise_sd_hu"
    assert record["message"].startswith("This scan is unlike the model's training data: its image noise")
    assert "60.0 HU" in record["message"]
    unjudged = ood.assess(odd, None)
    assert not unjudged["judged"] and not unjudged["warning"] and "no training-data signature" in unjudged["message"]


def test_training_like_inputs_rarely_warn_on_a_signature_made_from_their_peers():
    # 60 cases of one distribution: their signature, then 200 new cases of the same distribution
    rng = np.random.default_rng(2)

    def row():
        return {key: float(rng.normal(0.0, 3.0)) for key in ood.FEATURE_KEYS}

    signature = ood.build_signature([row() for _ in range(60)], alpha=0.05, target_spacing_xyz_mm=MODEL_SPACING)
    rate = np.mean([ood.assess(row(), signature)["warning"] for _ in range(200)])
    assert rate < 0.1, rate


@pytest.mark.realdata
def test_the_shipped_card_warns_on_a_real_pseudo_noncontrast_and_not_on_held_out_phantoms(real_data):
    from DigitalContrastLib.models.cards import resolve_model
    from DigitalContrastLib.phantoms.generator import CHEST_CENTER_Z_MM, make_phantom
    from DigitalContrastLib.synthesis.gate import check_volume

    card = resolve_model(None)
    assert "ood" in card.data, "the shipped card has no training-data signature"
    signature = card.data["ood"]
    assert signature["cases"] == 260 and signature["checks"]["held_out_phantoms"]["rate"] < 0.05
    # recomputed here: the real anatomy warns, and names what is unlike the phantoms
    report = check_volume(_pseudo_noncontrast(real_data), card.data)
    assert report.ok and report.ood["judged"] and report.ood["warning"]
    assert report.ood["distance"] > 2 * report.ood["threshold"]
    assert "unlike the model's training data" in report.ood["message"]
    assert "out_of_distribution" not in report.warning_codes()  # it does not hold the job; it travels with it
    # held-out phantoms (seeds never trained on, both fields of view) do not warn
    for seed, center in ((10040, 0.0), (10120, CHEST_CENTER_Z_MM)):
        phantom = make_phantom(seed, center_z_mm=center, **SHIPPED_TRAINING_GRID)
        record = check_volume(phantom.noncontrast, card.data).ood
        assert record["judged"] and not record["warning"], (seed, record["message"])


@pytest.mark.slow
def test_synthesis_provenance_carries_the_record_and_the_warning_is_sent(tmp_path):
    from model_fixtures import body_volume, write_tiny_model

    from DigitalContrastLib.ct.io import write_volume
    from DigitalContrastLib.synthesis.api import SynthesisEngine, synthesize_file

    volume = body_volume()
    features = ood.input_features(volume, (2.0, 2.0, 3.0))
    rows = [{k: v + d for k, v in features.items()} for d in (-0.5, 0.0, 0.5, 1.0)]
    like = ood.build_signature(rows, target_spacing_xyz_mm=(2.0, 2.0, 3.0))
    unlike = ood.build_signature([{**r, "soft_tissue_peak_hu": r["soft_tissue_peak_hu"] + 200.0} for r in rows],
                                 target_spacing_xyz_mm=(2.0, 2.0, 3.0))
    source = write_volume(volume, tmp_path / "ncct.nrrd")
    for name, signature, warns in (("like", like, False), ("unlike", unlike, True)):
        card = write_tiny_model(tmp_path / name, ood=signature)
        sent = []
        provenance = synthesize_file(source, tmp_path / f"{name}.nrrd", engine=SynthesisEngine(card, "cpu"),
                                     on_warning=lambda code, message: sent.append((code, message)))
        record = json.loads((tmp_path / f"{name}.nrrd.json").read_text())["ood"]
        assert record == json.loads(json.dumps(provenance["ood"]))
        assert record["judged"] and record["warning"] is warns, record
        assert [code for code, _ in sent] == (["out_of_distribution"] if warns else [])
        if warns:
            assert "soft-tissue peak" in sent[0][1] and sent[0][1] == record["message"]


@pytest.mark.realdata
def test_check_with_a_model_says_whether_the_input_is_like_its_training_data(real_data, capsys):
    from DigitalContrastLib.commands.cli import main

    assert main(["check", str(real_data / "cta_chest_arterial.nii.gz"), "--model", "aorta-phantom-v1"]) == 0
    out = capsys.readouterr().out
    assert "Training:    This scan is unlike the model's training data: its share of the body at 150-600 HU" in out
    assert main(["check", str(real_data / "cta_chest_arterial.nii.gz"), "--model", "no-such-model"]) == 3
    assert "is not installed" in capsys.readouterr().err
