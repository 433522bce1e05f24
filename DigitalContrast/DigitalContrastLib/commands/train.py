"""``digital-contrast train``: train a synthesis model on paired non-contrast / contrast cases."""

from __future__ import annotations

import argparse
import sys

NAME = "train"
HELP = "train a synthesis model on paired cases (optionally generating phantoms first)"
ORDER = 60
DESCRIPTION = """\
Train a residual UNet on paired cases: DIR/<case>/noncontrast.nrrd + contrast.nrrd (same grid)
and optionally labels.nrrd. Patches over-sample the vessels; the loss is a vessel-weighted L1 in
HU plus an SSIM term. After each epoch the validation cases are scored and a checkpoint
(safetensors + optimizer state) is written to OUT/training/; --resume continues from it. At the
end OUT/ holds model.safetensors and a complete model_card.json.

examples:
  digital-contrast train --data phantoms/ --out my-model --generate-phantoms 32 --seed-start 0 \\
      --val-data val/ --generate-val-phantoms 2 --val-seed-start 10000 --epochs 20
  digital-contrast train --data phantoms/ --out my-model --epochs 30 --resume
  digital-contrast train --data my-cases/ --out my-model --init-from aorta-phantom-v1 --epochs 10 \\
      --lr 1e-4 --mse-warmup 0 --freeze-norm 0.001 --prediction flip-tta-mean --patch-size 64 128 128
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="folder of training cases (phantoms are written here when generated)")
    parser.add_argument("--out", required=True, help="model folder to write (card, weights, training/ checkpoints)")
    parser.add_argument("--val-data", default=None, help="folder of validation cases (default: the last training case)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--patch-size", type=int, nargs=3, metavar=("Z", "Y", "X"), default=(48, 96, 96),
                        help="training patch in model-grid voxels [z y x] (multiples of 16 for 4 strides)")
    parser.add_argument("--roi-size", type=int, nargs=3, metavar=("Z", "Y", "X"), default=(64, 128, 128),
                        help="inference window written to the card [z y x]")
    parser.add_argument("--prediction", choices=["single-pass", "flip-tta-mean"], default="single-pass",
                        help="written to the card: one network pass, or the mean of 4 test-time flip passes "
                             "(identity, z, y, z+y; smoother, 4x the inference time)")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128, 256], help="UNet channels per level")
    parser.add_argument("--res-units", type=int, default=0,
                        help="residual units per UNet block (0 keeps MONAI UNet's output layer a plain convolution)")
    parser.add_argument("--norm", choices=["none", "batch", "instance"], default="batch",
                        help="normalisation layers of the UNet")
    parser.add_argument("--clip-hu", type=float, nargs=2, metavar=("LO", "HI"), default=(-300.0, 1200.0),
                        help="input HU clip range")
    parser.add_argument("--input-offset-hu", type=float, default=40.0, help="network input = (clip(HU) - offset) / scale")
    parser.add_argument("--input-scale-hu", type=float, default=250.0, help="network input = (clip(HU) - offset) / scale")
    parser.add_argument("--weights-dtype", choices=["float16", "float32"], default="float16",
                        help="storage precision of the written weights (loaded as float32)")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), default=(1.4, 1.4, 2.5),
                        help="model spacing in mm (cases are resampled to it)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW, cosine decay)")
    parser.add_argument("--vessel-weight", type=float, default=4.0, help="extra L1 weight on vessel voxels")
    parser.add_argument("--thrombus-weight", type=float, default=0.0,
                        help="extra L1 weight on thrombus voxels (cases with labels.nrrd)")
    parser.add_argument("--lumen-mask-weight", type=float, default=0.0, metavar="W",
                        help="weight of a lumen-mask term (cases with labels.nrrd): inside the aortic sac the "
                             "synthetic HU, read as a mask at 150 HU, is scored by cross-entropy against the lumen "
                             "label, so that the lumen's edge is learnt where the lumen Dice and diameter read it "
                             "(0: off)")
    parser.add_argument("--thrombus-centre-fraction", type=float, default=0.0, metavar="F",
                        help="fraction of the patches centred on a thrombus voxel, of a case drawn in proportion to "
                             "its thrombus volume (cases with labels.nrrd; thick thrombus seen more often; 0: off)")
    parser.add_argument("--pseudo-noncontrast-fraction", type=float, default=0.0, metavar="F",
                        help="fraction of the patches whose input is the contrast scan with only the aortic lumen "
                             "unenhanced (cases with labels.nrrd; robustness to enhanced neighbours of a dark aorta)")
    parser.add_argument("--pseudo-noncontrast-margin", type=int, default=0, metavar="N",
                        help="voxels by which the unenhanced region of a pseudo non-contrast patch reaches beyond the "
                             "lumen label, so that no bright partial-volume rim is left around the dark lumen (0: none)")
    parser.add_argument("--pseudo-noncontrast-neighbour-gain", type=float, nargs=2, metavar=("LO", "HI"),
                        default=(1.0, 1.0),
                        help="in pseudo non-contrast patches, scale the enhancement of the heart chambers, pulmonary "
                             "arteries and veins by a factor from LO to HI per label (real neighbours are brighter "
                             "than the phantoms'; 1 1: unchanged)")
    parser.add_argument("--parent-weight", type=float, default=0.0, metavar="W",
                        help="with --init-from: write W * the parent's weights + (1 - W) * the trained weights (a "
                             "weight-space ensemble, WiSE-FT) as the model; checkpoints stay unblended (0: no blend)")
    parser.add_argument("--appearance-jitter", type=float, default=0.0, metavar="F",
                        help="fraction of the patches whose non-vessel tissues look different (labels needed): each "
                             "organ and soft tissue shifted by up to +-25 HU, bone contrast scaled by 0.4-1.2, the same "
                             "in both scans; blood, vessel walls, thrombus and air unchanged")
    parser.add_argument("--appearance-bone-scale", type=float, nargs=2, metavar=("LO", "HI"), default=(0.4, 1.2),
                        help="range of the factor on bone contrast (against 40 HU) under --appearance-jitter")
    parser.add_argument("--geometric-augment", type=float, default=0.0, metavar="F",
                        help="fraction of the patches turned about z by up to +-ROTATE degrees and scaled in-plane by up "
                             "to 1+SCALE (or 1/(1+SCALE)), both scans and the labels alike (0: none)")
    parser.add_argument("--rotate-deg", type=float, default=20.0, metavar="ROTATE",
                        help="largest in-plane turn of --geometric-augment, degrees (0 to 180)")
    parser.add_argument("--scale-range", type=float, default=0.25, metavar="SCALE",
                        help="largest in-plane scaling of --geometric-augment: factors from 1/(1+SCALE) to 1+SCALE (0 to 1)")
    parser.add_argument("--mse-warmup", type=float, default=0.3,
                        help="fraction of the steps trained with a squared error before the L1 (0 for L1 throughout)")
    parser.add_argument("--freeze-norm", type=float, default=0.4,
                        help="fraction of the steps after which batch norm uses fixed running statistics (0: never)")
    parser.add_argument("--ssim-weight", type=float, default=0.1, help="weight of the SSIM loss term")
    parser.add_argument("--val-cases", type=int, default=2, help="validation cases scored after each epoch")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the run")
    parser.add_argument("--model-id", default="aorta-phantom-v1")
    parser.add_argument("--model-version", default="1.0.0")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/training/checkpoint.safetensors")
    parser.add_argument("--init-from", default=None, metavar="MODEL",
                        help="start from the weights of an installed model (id or folder) instead of random ones: "
                             "fine-tuning; its network and input options must match this run's. Usually with "
                             "--mse-warmup 0 (L1 from the start) and a small --freeze-norm such as 0.001 (keep its "
                             "batch-norm statistics). With --resume, an existing checkpoint wins")
    parser.add_argument("--generate-phantoms", type=int, default=0, metavar="N", help="first write N phantoms into --data")
    parser.add_argument("--seed-start", type=int, default=0, help="seed of the first generated training phantom")
    parser.add_argument("--generate-chest-phantoms", type=int, default=0, metavar="M",
                        help="also write M phantoms whose field of view is the chest (kidneys to the aortic arch; "
                             "seeds from --seed-start, folders chest-<seed>)")
    parser.add_argument("--generate-val-phantoms", type=int, default=0, metavar="K", help="write K phantoms into --val-data")
    parser.add_argument("--val-seed-start", type=int, default=10000, help="seed of the first validation phantom")
    parser.add_argument("--phantom-size", type=int, nargs=3, metavar=("X", "Y", "Z"), default=(256, 256, 160))
    parser.add_argument("--phantom-spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), default=(1.4, 1.4, 2.5))


def run(args: argparse.Namespace) -> int:
    from DigitalContrastLib.common.errors import JobError
    from DigitalContrastLib.common.progressbar import ProgressBar
    from DigitalContrastLib.phantoms.batch import generate_phantom_cases
    from DigitalContrastLib.training.config import TrainConfig, command_line
    from DigitalContrastLib.training.loop import train  # lazy, as initial_weights: the training modules import torch
    from DigitalContrastLib.training.parent import initial_weights

    # every option is checked before anything is written
    if args.generate_val_phantoms:
        if not args.val_data:
            raise JobError("--generate-val-phantoms needs --val-data to say where to write them.")
        if args.val_seed_start < args.seed_start + args.generate_phantoms and args.val_seed_start + args.generate_val_phantoms > args.seed_start:
            raise JobError("Validation seeds overlap the training seeds; choose --val-seed-start outside them.")
    for option, value in (("--pseudo-noncontrast-fraction", args.pseudo_noncontrast_fraction),
                          ("--appearance-jitter", args.appearance_jitter),
                          ("--geometric-augment", args.geometric_augment),
                          ("--thrombus-centre-fraction", args.thrombus_centre_fraction)):
        if not 0.0 <= value <= 1.0:
            raise JobError(f"{option} {value:g} is not a fraction; give a value from 0 to 1.")
    if not 0.0 <= args.parent_weight < 1.0:
        raise JobError(f"--parent-weight {args.parent_weight:g} is not a share below 1; give a value from 0 up to (not including) 1.")
    if args.parent_weight and not args.init_from:
        raise JobError("--parent-weight needs --init-from: name the installed model whose weights are blended in.")
    if args.lumen_mask_weight < 0:
        raise JobError(f"--lumen-mask-weight {args.lumen_mask_weight:g} is negative; give 0 (off) or a positive weight.")
    if args.pseudo_noncontrast_margin < 0:
        raise JobError(f"--pseudo-noncontrast-margin {args.pseudo_noncontrast_margin} is negative; give 0 or more voxels.")
    if not 0.0 <= args.rotate_deg <= 180.0:
        raise JobError(f"--rotate-deg {args.rotate_deg:g} is not an angle from 0 to 180 degrees; give one in that range.")
    if not 0.0 <= args.scale_range <= 1.0:
        raise JobError(f"--scale-range {args.scale_range:g} is outside 0 to 1; give e.g. 0.25 for factors 0.8 to 1.25.")
    for option, (low, high) in (("--pseudo-noncontrast-neighbour-gain", args.pseudo_noncontrast_neighbour_gain),
                                ("--appearance-bone-scale", args.appearance_bone_scale)):
        if not 0.0 < low <= high:
            raise JobError(f"{option} {low:g} {high:g} is not a range of positive factors; give LO <= HI, both above 0.")
    if len(args.channels) < 2:
        raise JobError("--channels needs at least two levels, e.g. 8 16 32 64 128.")
    phantom = {"size_xyz": tuple(args.phantom_size), "spacing_xyz_mm": tuple(args.phantom_spacing)}
    config = TrainConfig(
        data_dir=args.data, out_dir=args.out, val_dir=args.val_data, epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, patch_size_zyx=tuple(args.patch_size),
        inference_roi_zyx=tuple(args.roi_size), inference_prediction=args.prediction, channels=tuple(args.channels), strides=(2,) * (len(args.channels) - 1),
        num_res_units=args.res_units, norm=None if args.norm == "none" else args.norm.upper(), target_spacing_xyz_mm=tuple(args.spacing), learning_rate=args.lr,
        clip_hu=tuple(args.clip_hu), offset_hu=args.input_offset_hu, scale_hu=args.input_scale_hu,
        weights_dtype=args.weights_dtype,
        vessel_weight=args.vessel_weight, thrombus_weight=args.thrombus_weight,
        lumen_mask_weight=args.lumen_mask_weight, thrombus_centre_fraction=args.thrombus_centre_fraction,
        pseudo_noncontrast_fraction=args.pseudo_noncontrast_fraction,
        pseudo_noncontrast_margin_voxels=args.pseudo_noncontrast_margin, parent_weight=args.parent_weight,
        pseudo_noncontrast_neighbour_gain=tuple(args.pseudo_noncontrast_neighbour_gain),
        init_from=args.init_from or "",
        appearance_jitter=args.appearance_jitter, geometric_fraction=args.geometric_augment,
        rotate_deg=args.rotate_deg, scale_range=args.scale_range,
        appearance_bone_scale=tuple(args.appearance_bone_scale), mse_warmup_fraction=args.mse_warmup,
        freeze_norm_fraction=args.freeze_norm, ssim_weight=args.ssim_weight, val_cases=args.val_cases, seed=args.seed,
        model_id=args.model_id, version=args.model_version, command=command_line(["train", *_options_as_given(args)]),
        data_description={"phantoms": {"generator": "DigitalContrastLib.phantoms.generator.make_phantom", **{k: list(v) for k, v in phantom.items()}}}
        if args.generate_phantoms or args.generate_val_phantoms or args.generate_chest_phantoms else {},
    )
    if config.init_from:
        initial_weights(config)  # an unknown, tampered or mismatched model is refused before anything is written
    if args.generate_phantoms:
        with ProgressBar("phantoms", weights={"phantoms": 1.0}) as bar:
            generate_phantom_cases(args.data, args.generate_phantoms, args.seed_start, progress=bar, **phantom)
    if args.generate_chest_phantoms:
        from DigitalContrastLib.phantoms.generator import CHEST_CENTER_Z_MM

        with ProgressBar("chest phantoms", weights={"phantoms": 1.0}) as bar:
            generate_phantom_cases(args.data, args.generate_chest_phantoms, args.seed_start, progress=bar,
                                   prefix="chest", center_z_mm=CHEST_CENTER_Z_MM, **phantom)
    if args.generate_val_phantoms:
        with ProgressBar("validation phantoms", weights={"phantoms": 1.0}) as bar:
            generate_phantom_cases(args.val_data, args.generate_val_phantoms, args.val_seed_start, progress=bar, **phantom)

    def step_bar(total: int):
        if not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        return tqdm(total=total, desc="steps", file=sys.stderr, leave=False)

    card_path = train(config, resume=args.resume, step_bar=step_bar)
    print(f"wrote {card_path}")
    return 0


def _options_as_given(args: argparse.Namespace) -> list[str]:
    """Every option of this run spelled out, so the recorded command reproduces it exactly."""
    out: list[str] = []
    for key, value in sorted(vars(args).items()):
        if key.startswith("_") or key == "command" or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            out += [flag, *(str(v) for v in value)]
        else:
            out += [flag, str(value)]
    return out
