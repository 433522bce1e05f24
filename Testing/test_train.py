"""The train command: a tiny run on two tiny phantoms writes a valid card and weights that load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from DigitalContrastLib.commands.cli import main
from DigitalContrastLib.models.cards import load_card
from DigitalContrastLib.synthesis.api import SynthesisEngine

TINY = ["--phantom-size", "48", "48", "32", "--phantom-spacing", "7.5", "7.5", "12.5", "--spacing", "7.5", "7.5", "12.5",
        "--patch-size", "16", "32", "32", "--roi-size", "16", "32", "32", "--channels", "4", "8", "16",
        "--res-units", "0", "--steps-per-epoch", "2", "--batch-size", "2", "--val-cases", "1", "--model-id", "tiny-trained"]


@pytest.mark.slow
def test_tiny_training_run_writes_a_card_and_weights_that_load_and_resumes(tmp_path, capsys):
    data, val, out = tmp_path / "data", tmp_path / "val", tmp_path / "model"
    code = main(["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--generate-phantoms", "2",
                 "--seed-start", "0", "--val-data", str(val), "--generate-val-phantoms", "1", "--val-seed-start", "900",
                 *TINY])
    assert code == 0
    assert sorted(p.name for p in data.iterdir()) == ["phantom-00000", "phantom-00001"]
    card = load_card(out)  # schema-validated
    training = card.data["training"]
    assert training["train_seeds"] == [0, 1] and training["validation_seeds"] == [900]
    assert training["command"].startswith("digital-contrast train ") and "--generate-phantoms 2" in training["command"]
    assert len(training["history"]) == 1 and training["steps"] == 2
    assert np.isfinite(card.data["validation"]["during_training"]["body_mae_hu"])
    assert "not for clinical use" in card.data["intended_use"].lower()
    assert (out / "training" / "checkpoint.safetensors").is_file()

    engine = SynthesisEngine(card, device="cpu")  # verifies the sha256 and loads the weights
    from DigitalContrastLib.phantoms.generator import read_phantom

    case = read_phantom(val / "phantom-00900")
    result = engine.synthesize(case.noncontrast)
    assert result.synthetic.same_geometry(case.noncontrast) and result.synthetic.array.dtype == np.int16

    # resume: one more epoch continues from the checkpoint instead of starting over
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "2", "--val-data", str(val), "--resume",
                 *TINY]) == 0
    resumed = load_card(out).data["training"]
    assert resumed["steps"] == 4 and [h["epoch"] for h in resumed["history"]] == [1, 2]
    err = capsys.readouterr().err
    assert "resumed from" in err
    assert "nan" not in err.lower()  # a region no validation case has reads "n/a" in the epoch lines

    # fine-tuning from that model at learning rate 0 with batch norm frozen from the first step keeps
    # its weights exactly, so it must synthesize the very same volume; the card names its parent
    tuned = tmp_path / "tuned"
    assert main(["train", "--data", str(data), "--out", str(tuned), "--epochs", "1", "--val-data", str(val),
                 "--init-from", str(out), "--lr", "0", "--freeze-norm", "0.001", "--mse-warmup", "0", *TINY]) == 0
    parent = load_card(out)
    child = load_card(tuned)
    assert child.data["training"]["initialised_from"] == {
        "id": "tiny-trained", "version": "1.0.0", "weights_sha256": parent.weights_sha256,
        "command": parent.data["training"]["command"]}
    again = SynthesisEngine(child, device="cpu").synthesize(case.noncontrast)
    np.testing.assert_array_equal(again.synthetic.array, SynthesisEngine(parent, device="cpu").synthesize(case.noncontrast).synthetic.array)
    assert "starting from the weights of tiny-trained 1.0.0" in capsys.readouterr().err
    # resumed, the fine-tuning continues from its own checkpoint and still names its parent
    assert main(["train", "--data", str(data), "--out", str(tuned), "--epochs", "2", "--val-data", str(val), "--resume",
                 "--init-from", str(out), "--lr", "0", "--freeze-norm", "0.001", "--mse-warmup", "0", *TINY]) == 0
    resumed_child = load_card(tuned).data["training"]
    assert resumed_child["steps"] == 4 and resumed_child["initialised_from"]["weights_sha256"] == parent.weights_sha256
    err = capsys.readouterr().err
    assert "resumed from" in err
    assert "nan" not in err.lower()  # a region no validation case has reads "n/a" in the epoch lines

    # --parent-weight: the written weights are W * parent + (1 - W) * trained; the checkpoint keeps
    # the trained weights unblended
    from DigitalContrastLib.models.weights import load_state_dict, load_unverified

    blend = tmp_path / "blend"
    assert main(["train", "--data", str(data), "--out", str(blend), "--epochs", "1", "--val-data", str(val),
                 "--init-from", str(out), "--lr", "0.05", "--mse-warmup", "0", "--parent-weight", "0.25", *TINY]) == 0
    blended = load_card(blend)
    assert blended.data["training"]["weights_blend"]["parent_share"] == 0.25
    written, before = load_state_dict(blended.weights), load_state_dict(parent.weights)
    tensors, _ = load_unverified(blend / "training" / "checkpoint.safetensors")
    trained = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    assert set(written) == set(trained) == set(before)
    moved = 0.0
    for k, w in written.items():
        if w.is_floating_point():
            expected = (0.25 * before[k].float() + 0.75 * trained[k].float()).half().float()
            np.testing.assert_allclose(w.float().numpy(), expected.numpy(), rtol=0, atol=0)
            moved = max(moved, float((trained[k].float() - before[k].float()).abs().max()))
    assert moved > 1e-3  # the fine-tune did change the weights, so the blend is neither of the two

    # the parent changes under the same folder (one more epoch: other weights); resuming the blend
    # with it is refused before any epoch, and the blended model written before is left as it was
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "3", "--val-data", str(val), "--resume",
                 *TINY]) == 0
    assert load_card(out).weights_sha256 != parent.weights_sha256
    capsys.readouterr()
    card_before = (blend / "model_card.json").read_bytes()
    checkpoint_before = (blend / "training" / "checkpoint.safetensors").read_bytes()
    assert main(["train", "--data", str(data), "--out", str(blend), "--epochs", "2", "--val-data", str(val), "--resume",
                 "--init-from", str(out), "--lr", "0.05", "--mse-warmup", "0", "--parent-weight", "0.25", *TINY]) == 4
    err = capsys.readouterr().err
    assert f"but the run in {blend} started from 1.0.0 (sha256 {parent.weights_sha256[:12]}" in err
    assert "Traceback" not in err and "epoch 2/2" not in err
    assert (blend / "model_card.json").read_bytes() == card_before
    assert (blend / "training" / "checkpoint.safetensors").read_bytes() == checkpoint_before


def test_train_refuses_an_empty_data_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "m"), "--epochs", "1"]) == 2
    assert "holds no case folders" in capsys.readouterr().err
    assert not (tmp_path / "m" / "model_card.json").exists()


def test_epoch_line_figures_show_signs_and_read_n_a_for_a_region_no_validation_case_has():
    from DigitalContrastLib.common.report_html import format_number

    assert [format_number(v, 1, signed=True) for v in (12.34, -3.0, 0.0)] == ["+12.3", "-3.0", "+0.0"]
    assert format_number(0.91234, 3) == "0.912"
    assert {format_number(v, 1, signed=True) for v in (float("nan"), None, float("inf"))} == {"n/a"}


def test_checkpoint_round_trips_the_optimizer_without_pickle(tmp_path):
    import torch

    from DigitalContrastLib.training.checkpoint import load_checkpoint, save_checkpoint
    from DigitalContrastLib.training.config import TrainConfig

    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3), torch.nn.BatchNorm3d(2))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(torch.randn(2, 1, 5, 5, 5)).sum().backward()
    opt.step()
    config = TrainConfig(data_dir=str(tmp_path), out_dir=str(tmp_path))
    # a validation set without thrombus scores its thrombus bias as NaN
    history = [{"epoch": 3, "val_thrombus_bias_hu": float("nan"), "val_lumen_dice": 0.9}]
    path = save_checkpoint(tmp_path, net, opt, epoch=3, step=7, config=config, history=history)
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    written = (tmp_path / "training" / "history.json").read_text()

    def refuse(constant: str) -> None:
        raise ValueError(f"history.json holds {constant}, which strict JSON readers refuse")

    assert json.loads(written, parse_constant=refuse)[0]["val_thrombus_bias_hu"] is None
    net2 = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3), torch.nn.BatchNorm3d(2))
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1e-3)
    epoch, step, history = load_checkpoint(tmp_path, net2, opt2)
    assert (epoch, step, history) == (3, 7, [{"epoch": 3, "val_thrombus_bias_hu": None, "val_lumen_dice": 0.9}])
    for a, b in zip(net.state_dict().values(), net2.state_dict().values()):
        torch.testing.assert_close(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert json.dumps(s1["param_groups"]) == json.dumps(s2["param_groups"])
    for k in s1["state"]:
        torch.testing.assert_close(s1["state"][k]["exp_avg"], s2["state"][k]["exp_avg"])


def _two_vessel_case(config):
    """A 20x24x24 case: a dark aorta (labelled) and a heart, both enhanced in the contrast scan."""
    from pathlib import Path

    from DigitalContrastLib.training.cases import TrainingCase

    nc = np.full((20, 24, 24), 40, np.int16)
    c = nc.copy()
    lumen = np.zeros(nc.shape, bool)
    lumen[:, 4:10, 4:10] = True
    heart = np.zeros(nc.shape, bool)
    heart[:, 14:20, 14:20] = True
    c[lumen], c[heart] = 300, 200
    return TrainingCase(name="two-vessels", folder=Path("."), noncontrast=nc, contrast=c, vessel=lumen | heart,
                        thrombus=None, labels=None, aortic_lumen=lumen if config.pseudo_noncontrast_fraction else None,
                        positives=np.flatnonzero(lumen), body_box=((0, 20), (0, 24), (0, 24)), spacing_xyz_mm=(1.0, 1.0, 1.0))


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_pseudo_noncontrast_patches_keep_every_enhanced_neighbour_and_only_darken_the_aorta(tmp_path, fraction):
    from DigitalContrastLib.training.config import TrainConfig
    from DigitalContrastLib.training.sampler import PatchSampler

    config = TrainConfig(data_dir=str(tmp_path), out_dir=str(tmp_path), patch_size_zyx=(20, 24, 24),
                         intensity_shift_hu=0.0, pseudo_noncontrast_fraction=fraction)
    sampler = PatchSampler([_two_vessel_case(config)], config, np.random.default_rng(3))
    for _ in range(4):
        item = sampler.sample()
        nc_hu, c_hu = item["nc_hu"][0].numpy(), item["c_hu"][0].numpy()
        target_hu = item["target"][0].numpy() * config.output_scale_hu
        assert (c_hu == 300).sum() == 20 * 36 and (c_hu == 200).sum() == 20 * 36
        assert not (nc_hu == 300).any()  # the aorta is never enhanced in the input
        if fraction:
            assert ((nc_hu == 200) == (c_hu == 200)).all()  # the heart stays enhanced
            np.testing.assert_allclose(target_hu[c_hu != 300], 0.0, atol=1e-3)  # only the aorta is to be filled
        else:
            assert not (nc_hu == 200).any()
            np.testing.assert_allclose(target_hu[c_hu == 200], 160.0, atol=1e-3)
        np.testing.assert_allclose(target_hu[c_hu == 300], 260.0, atol=1e-3)


@pytest.mark.parametrize("gain", [(1.0, 1.0), (2.5, 2.5)])
def test_neighbour_gain_brightens_the_heart_in_input_and_target_alike_and_never_the_aorta(tmp_path, gain):
    from DigitalContrastLib.ct.labels import LABELS
    from DigitalContrastLib.training.config import TrainConfig
    from DigitalContrastLib.training.sampler import PatchSampler

    config = TrainConfig(data_dir=str(tmp_path), out_dir=str(tmp_path), patch_size_zyx=(20, 24, 24),
                         intensity_shift_hu=0.0, pseudo_noncontrast_fraction=1.0,
                         pseudo_noncontrast_neighbour_gain=gain)
    case = _two_vessel_case(config)
    tissue = np.full(case.noncontrast.shape, LABELS["fat"], np.uint8)
    tissue[case.aortic_lumen] = LABELS["aortic_lumen"]
    tissue[case.contrast == 200] = LABELS["heart_left"]
    case.tissue = tissue
    item = PatchSampler([case], config, np.random.default_rng(3)).sample()
    nc_hu, c_hu = item["nc_hu"][0].numpy(), item["c_hu"][0].numpy()
    target_hu = item["target"][0].numpy() * config.output_scale_hu
    heart = (c_hu != 40) & (c_hu != 300)  # fat and blood are 40 HU, the enhanced aorta 300 HU
    assert heart.sum() == 20 * 36
    expected = 40 + gain[0] * 160  # enhancement 160 HU scaled
    np.testing.assert_allclose(c_hu[heart], expected)
    np.testing.assert_allclose(nc_hu[heart], expected)
    np.testing.assert_allclose(target_hu[heart], 0.0, atol=1e-3)  # nothing to add where the input is enhanced
    np.testing.assert_allclose(target_hu[c_hu == 300], 260.0, atol=1e-3)  # the aorta: untouched, still to fill
    assert (c_hu == 300).sum() == 20 * 36


@pytest.mark.parametrize("margin", [0, 1])
def test_pseudo_noncontrast_margin_takes_the_partial_volume_rim_from_the_noncontrast_scan(tmp_path, margin):
    from DigitalContrastLib.training.config import TrainConfig
    from DigitalContrastLib.training.sampler import PatchSampler

    config = TrainConfig(data_dir=str(tmp_path), out_dir=str(tmp_path), patch_size_zyx=(20, 24, 24),
                         intensity_shift_hu=0.0, pseudo_noncontrast_fraction=1.0,
                         pseudo_noncontrast_margin_voxels=margin)
    case = _two_vessel_case(config)
    rim = np.zeros(case.contrast.shape, bool)  # the face neighbours just outside the 6x6 lumen label:
    rim[:, [3, 10], 4:10] = rim[:, 4:10, [3, 10]] = True  # the blur of the enhanced lumen
    case.contrast[rim] = 170
    item = PatchSampler([case], config, np.random.default_rng(3)).sample()
    nc_hu, c_hu = item["nc_hu"][0].numpy(), item["c_hu"][0].numpy()
    target_hu = item["target"][0].numpy() * config.output_scale_hu
    rim_patch = c_hu == 170
    assert rim_patch.sum() == 20 * 24
    if margin:
        assert (nc_hu[rim_patch] == 40).all()  # no bright rim around the dark lumen
        np.testing.assert_allclose(target_hu[rim_patch], 130.0, atol=1e-3)
    else:
        assert (nc_hu[rim_patch] == 170).all()
    assert ((nc_hu == 200) == (c_hu == 200)).all()  # the heart, further away, stays enhanced
    np.testing.assert_allclose(target_hu[c_hu == 300], 260.0, atol=1e-3)


def test_warp_inplane_turns_and_scales_about_the_patch_centre_and_keeps_labels_whole():
    import math

    from DigitalContrastLib.training.augment import inplane_footprint, inplane_grid, warp_inplane

    # no turn, no scale: the centre of the crop, voxel for voxel
    block = np.arange(20 * 12 * 12, dtype=np.int16).reshape(20, 12, 12)
    np.testing.assert_array_equal(warp_inplane(block, inplane_grid(block.shape, (20, 10, 10), 0.0, 1.0), nearest=True), block[:, 1:11, 1:11])
    # a quarter turn lays a bar along x along y, through the centre
    bar = np.zeros((2, 33, 33), bool)
    bar[:, 16, 4:29] = True
    turned = warp_inplane(bar, inplane_grid(bar.shape, (2, 31, 31), math.pi / 2, 1.0), nearest=True)
    ys, xs = np.nonzero(turned[0])
    assert set(xs) == {15} and ys.max() - ys.min() == 24
    # scale 1.25 enlarges a disc's area by 1.25^2; labels keep their codes (nearest)
    yy, xx = np.mgrid[:101, :101]
    disc = np.where((yy - 50) ** 2 + (xx - 50) ** 2 <= 20 ** 2, 10, 2).astype(np.int16)[None].repeat(2, 0)
    grown = warp_inplane(disc, inplane_grid(disc.shape, (2, 61, 61), 0.4, 1.25), nearest=True)
    assert set(np.unique(grown)) == {2, 10}
    assert (grown[0] == 10).sum() / (disc[0] == 10).sum() == pytest.approx(1.25 ** 2, rel=0.03)
    # the crop a turned and shrunk patch samples from holds its corners
    assert inplane_footprint((128, 128), math.radians(45), 0.8) == (229, 229)  # ceil(128 * sqrt(2) / 0.8) + 2


def test_geometric_augment_turns_scans_and_labels_together(tmp_path):
    from DigitalContrastLib.training.cases import TrainingCase
    from DigitalContrastLib.training.config import TrainConfig
    from DigitalContrastLib.training.sampler import PatchSampler

    # a 4 x 96 x 96 case: a 16 x 8 voxel bar of enhanced lumen (labelled) in the middle
    nc = np.full((4, 96, 96), 40, np.int16)
    c = nc.copy()
    labels = np.full(nc.shape, 2, np.int16)
    bar = np.zeros(nc.shape, bool)
    bar[:, 44:52, 40:56] = True
    labels[bar], c[bar] = 10, 300
    case = TrainingCase(name="bar", folder=tmp_path, noncontrast=nc, contrast=c, vessel=None, thrombus=None,
                        labels=labels, aortic_lumen=None, positives=np.array([np.ravel_multi_index((2, 48, 48), nc.shape)]),
                        body_box=((0, 4), (0, 96), (0, 96)), spacing_xyz_mm=(1.0, 1.0, 1.0), tissue=labels.astype(np.uint8))
    config = TrainConfig(data_dir=str(tmp_path), out_dir=str(tmp_path), patch_size_zyx=(4, 32, 32),
                         intensity_shift_hu=0.0, positive_fraction=1.0, geometric_fraction=1.0, rotate_deg=90.0,
                         scale_range=0.25)
    sampler = PatchSampler([case], config, np.random.default_rng(5))
    areas, orientations = [], set()
    for _ in range(12):
        item = sampler.sample()
        c_hu = item["c_hu"][0].numpy()
        target_hu = item["target"][0].numpy() * config.output_scale_hu
        lumen = c_hu > 250
        # the scans turned together: the enhancement sits on the bar in both the contrast scan and the target
        assert lumen.any() and np.median(target_hu[lumen]) == pytest.approx(260.0, abs=1)
        np.testing.assert_allclose(target_hu[c_hu < 45], 0.0, atol=5)
        areas.append(lumen[0].sum() / 128)  # the bar holds 128 voxels per slice
        ys, xs = np.nonzero(lumen[0])
        orientations.add(bool(np.ptp(ys) > np.ptp(xs)))
    # turned both ways (the bar stands or lies), scaled within (1 / 1.25)^2 ... 1.25^2 but not always 1
    assert orientations == {True, False}
    assert min(areas) > 0.64 * 0.9 and max(areas) < 1.5625 * 1.1 and np.ptp(areas) > 0.2, areas


@pytest.mark.parametrize("option, message", [
    (["--pseudo-noncontrast-fraction", "1.5"], "--pseudo-noncontrast-fraction 1.5 is not a fraction"),
    (["--pseudo-noncontrast-margin", "-1"], "--pseudo-noncontrast-margin -1 is negative"),
    (["--pseudo-noncontrast-neighbour-gain", "2", "1"], "--pseudo-noncontrast-neighbour-gain 2 1 is not a range"),
    (["--parent-weight", "1"], "--parent-weight 1 is not a share below 1"),
    (["--lumen-mask-weight", "-1"], "--lumen-mask-weight -1 is negative"),
    (["--parent-weight", "0.5"], "--parent-weight needs --init-from"),
    (["--appearance-jitter", "-0.1"], "--appearance-jitter -0.1 is not a fraction"),
    (["--geometric-augment", "2"], "--geometric-augment 2 is not a fraction"),
    (["--rotate-deg", "200"], "--rotate-deg 200 is not an angle from 0 to 180 degrees"),
    (["--scale-range", "-0.1"], "--scale-range -0.1 is outside 0 to 1"),
    (["--appearance-bone-scale", "1.2", "0.4"], "--appearance-bone-scale 1.2 0.4 is not a range of positive factors"),
])
def test_train_refuses_an_augmentation_option_out_of_range_before_any_phantom(tmp_path, capsys, option, message):
    (tmp_path / "data").mkdir()
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "m"), *TINY,
                 "--generate-phantoms", "1", *option]) == 4
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "m").exists() and not any((tmp_path / "data").iterdir())  # refused before any phantom


def test_init_from_a_model_with_another_network_is_refused_before_anything_is_written(tmp_path, capsys):
    from model_fixtures import write_tiny_model

    write_tiny_model(tmp_path / "parent")  # channels 4 8 16 with residual units, another input scale
    (tmp_path / "data").mkdir()
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "m"), *TINY,
                 "--generate-phantoms", "1", "--init-from", str(tmp_path / "parent")]) == 4
    err = capsys.readouterr().err
    assert "its card has network.kwargs" in err and "tiny-test 0.0.1" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists() and not any((tmp_path / "data").iterdir())


def test_train_refuses_a_parent_weight_without_a_parent_before_it_trains(tmp_path):
    from DigitalContrastLib.common.errors import JobError
    from DigitalContrastLib.training.config import TrainConfig
    from DigitalContrastLib.training.loop import train

    config = TrainConfig(data_dir=str(tmp_path / "no-data"), out_dir=str(tmp_path / "m"), parent_weight=0.5)
    with pytest.raises(JobError, match="--parent-weight needs --init-from"):
        train(config)  # refused first: not the missing data, not after the epochs
    assert not (tmp_path / "m").exists()


def test_init_from_a_model_that_is_not_installed_is_refused_with_exit_3(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "m"), *TINY,
                 "--generate-phantoms", "1", "--init-from", "no-such-model"]) == 3
    assert "Model 'no-such-model' is not installed" in capsys.readouterr().err
    assert not any((tmp_path / "data").iterdir())


def test_appearance_jitter_moves_each_tissue_and_bone_but_never_blood_air_or_the_residual():
    from DigitalContrastLib.ct.labels import LABELS
    from DigitalContrastLib.training.augment import jitter_appearance

    rng = np.random.default_rng(0)
    names = ["outside", "fat", "muscle", "liver", "cortical_bone", "bone_marrow", "aortic_lumen", "thrombus",
             "vena_cava", "lung", "heart_left"]
    tissue = np.repeat(np.array([LABELS[n] for n in names], np.uint8), 50).reshape(len(names), 5, 10)
    nc = rng.normal(40, 15, tissue.shape).astype(np.float32)
    nc[tissue == LABELS["cortical_bone"]] += 900
    nc[tissue == LABELS["bone_marrow"]] += 200
    c = nc + rng.normal(0, 10, tissue.shape).astype(np.float32)
    c[tissue == LABELS["aortic_lumen"]] += 300
    nc0, c0 = nc.copy(), c.copy()
    shifts = []
    for seed in range(6):
        nc, c = nc0.copy(), c0.copy()
        jitter_appearance(nc, c, tissue, np.random.default_rng(seed), offset_hu=25.0, bone_scale=(0.4, 1.2))
        np.testing.assert_allclose(c - nc, c0 - nc0, atol=1e-3)  # the residual target is untouched
        for name in ["outside", "aortic_lumen", "thrombus", "vena_cava", "lung", "heart_left"]:
            where = tissue == LABELS[name]
            np.testing.assert_array_equal(nc[where], nc0[where])
        for name in ["fat", "muscle", "liver"]:
            delta = (nc - nc0)[tissue == LABELS[name]]
            assert np.ptp(delta) < 1e-3 and abs(delta[0]) <= 25.0  # one offset per tissue, inside +-25 HU
            shifts.append(float(delta[0]))
        bone = np.isin(tissue, [LABELS["cortical_bone"], LABELS["bone_marrow"]])
        ratio = (nc[bone] - 40.0) / (nc0[bone] - 40.0)
        assert np.ptp(ratio) < 1e-3 and 0.4 <= ratio[0] <= 1.2  # one contrast scale for all bone
    assert np.std(shifts) > 5.0  # the offsets really vary between patches and tissues


def test_lumen_mask_loss_scores_a_lumen_drawn_too_wide_and_ignores_everything_outside_the_sac():
    import torch

    from DigitalContrastLib.training.loss import SynthesisLoss, lumen_mask_loss

    shape = (1, 1, 4, 16, 16)
    lumen = torch.zeros(shape)
    lumen[..., 6:10, 6:10] = 1
    sac = torch.zeros(shape)
    sac[..., 3:13, 3:13] = 1
    right = torch.where(lumen > 0, 350.0, 45.0)  # lumen at 350, thrombus at 45 HU
    wide = right.clone()
    wide[..., 5:11, 5:11] = 350.0  # one voxel too wide all round: lit thrombus
    narrow = right.clone()
    narrow[..., 6:10, 6:10] = 100.0  # an unlit lumen
    good, too_wide, too_narrow = (float(lumen_mask_loss(v, lumen, sac)) for v in (right, wide, narrow))
    assert good < 0.02 < too_wide and good < too_narrow
    # a wide rim of 20 voxels of 100 lit: 20 * 8 (BCE at logit 12) / 100 sac voxels per slice
    assert too_wide == pytest.approx(20 * 8.0 / 100, rel=0.02)
    outside = right.clone()
    outside[..., 0:2, :] = 900.0  # bright voxels outside the sac do not count
    assert float(lumen_mask_loss(outside, lumen, sac)) == pytest.approx(good)
    assert float(lumen_mask_loss(wide, lumen, torch.zeros(shape))) == 0.0  # no sac: nothing to score

    # inside SynthesisLoss: the term is added with its weight and reported, and its gradient moves the
    # lit thrombus down (the residual of a thrombus voxel lit to 350 HU gets a positive gradient)
    nc = torch.full(shape, 45.0)
    pred = ((wide - nc) / 500.0).requires_grad_(True)
    batch = {"target": (right - nc) / 500.0, "weight": torch.ones(shape), "nc_hu": nc, "c_hu": right,
             "lumen": lumen, "sac": sac}
    plain, parts0 = SynthesisLoss(500.0, 0.0)(pred, batch)
    with_mask, parts = SynthesisLoss(500.0, 0.0, lumen_mask_weight=2.0)(pred, batch)
    assert "lumen_mask_bce" not in parts0 and parts["lumen_mask_bce"] == pytest.approx(too_wide, rel=1e-4)
    assert float(with_mask.detach()) == pytest.approx(float(plain.detach()) + 2.0 * too_wide, rel=1e-4)
    with_mask.backward()
    rim = (wide > 300) & (lumen == 0)
    assert (pred.grad[rim] > 0).all()


def test_patches_carry_the_lumen_and_sac_labels_for_the_lumen_mask_term(tmp_path):
    from DigitalContrastLib.ct.labels import LABELS
    from DigitalContrastLib.training.config import TrainConfig
    from DigitalContrastLib.training.sampler import PatchSampler

    config = TrainConfig(data_dir=str(tmp_path), out_dir=str(tmp_path), patch_size_zyx=(20, 24, 24),
                         intensity_shift_hu=0.0, pseudo_noncontrast_fraction=1.0, pseudo_noncontrast_margin_voxels=1,
                         lumen_mask_weight=1.0, thrombus_weight=4.0)
    case = _two_vessel_case(config)
    tissue = np.full(case.noncontrast.shape, LABELS["fat"], np.uint8)
    tissue[:, 3:11, 3:11] = LABELS["thrombus"]
    tissue[case.aortic_lumen] = LABELS["aortic_lumen"]
    case.tissue = tissue
    item = PatchSampler([case], config, np.random.default_rng(3)).sample()
    c_hu = item["c_hu"][0].numpy()
    # the lumen label is the enhanced aorta (not the pseudo non-contrast region dilated by the margin)
    assert ((item["lumen"][0].numpy() == 1) == (c_hu == 300)).all()
    assert item["sac"][0].numpy().sum() == 20 * 64 and (item["sac"][0].numpy() >= item["lumen"][0].numpy()).all()
    plain = PatchSampler([case], TrainConfig(data_dir=str(tmp_path), out_dir=str(tmp_path), patch_size_zyx=(20, 24, 24)),
                         np.random.default_rng(3)).sample()
    assert "lumen" not in plain and "sac" not in plain  # off: no extra arrays per patch


def test_thrombus_centred_patches_come_from_cases_with_thrombus_in_proportion_to_its_volume(tmp_path):
    from DigitalContrastLib.ct.labels import LABELS
    from DigitalContrastLib.training.config import TrainConfig
    from DigitalContrastLib.training.sampler import PatchSampler

    config = TrainConfig(data_dir=str(tmp_path), out_dir=str(tmp_path), patch_size_zyx=(8, 8, 8),
                         intensity_shift_hu=0.0, thrombus_centre_fraction=1.0)
    cases = []
    for name, thrombus_hu, block in (("none", None, None), ("thin", 41, (slice(2, 4),) * 3),
                                     ("thick", 42, (slice(12, 18), slice(12, 18), slice(12, 18)))):
        case = _two_vessel_case(config)
        case.name = name
        case.tissue = np.full(case.noncontrast.shape, LABELS["fat"], np.uint8)
        if block is not None:
            case.tissue[block] = LABELS["thrombus"]
            case.noncontrast[block] = thrombus_hu  # tells the case of a patch by its input
            flat = np.flatnonzero(case.tissue == LABELS["thrombus"])
            case.thrombus_positives, case.thrombus_voxels = flat, int(flat.size)
        cases.append(case)
    sampler = PatchSampler(cases, config, np.random.default_rng(5))
    seen = {41: 0, 42: 0}
    for _ in range(200):
        nc_hu = sampler.sample()["nc_hu"][0].numpy()
        found = [hu for hu in seen if (nc_hu == hu).any()]
        assert len(found) == 1  # every patch holds thrombus, of one case
        seen[found[0]] += 1
    # 8 against 216 thrombus voxels: the thick case is drawn 27 times as often
    assert seen[41] < 25 and seen[42] > 175
    config.thrombus_centre_fraction = 0.0
    off = PatchSampler(cases, config, np.random.default_rng(5))
    assert sum(not ((p := off.sample()["nc_hu"][0].numpy()) == 41).any() and not (p == 42).any() for _ in range(50)) > 10


def test_load_case_finds_the_thrombus_centres_only_when_the_run_draws_them(tmp_path):
    from DigitalContrastLib.ct.labels import LABELS
    from DigitalContrastLib.phantoms.batch import generate_phantom_cases
    from DigitalContrastLib.training.cases import load_case
    from DigitalContrastLib.training.config import TrainConfig

    generate_phantom_cases(tmp_path, 1, 10000, size_xyz=(48, 48, 32), spacing_xyz_mm=(7.5, 7.5, 12.5))
    folder = tmp_path / "phantom-10000"
    off, on = (load_case(folder, TrainConfig(data_dir=str(tmp_path), out_dir=str(tmp_path),
                                              target_spacing_xyz_mm=(7.5, 7.5, 12.5), thrombus_centre_fraction=f),
                         keep_volumes=True) for f in (0.0, 0.5))
    assert off.thrombus_positives is None and off.thrombus_voxels == 0
    thrombus = np.flatnonzero(on.labels == LABELS["thrombus"])
    assert thrombus.size > 0 and on.thrombus_voxels == thrombus.size
    np.testing.assert_array_equal(on.thrombus_positives, thrombus)
    np.testing.assert_array_equal(on.positives, off.positives)  # the vessel centres do not change
