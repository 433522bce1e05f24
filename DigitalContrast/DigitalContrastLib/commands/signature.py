"""``digital-contrast signature``: a model's training-data signature for out-of-distribution warnings."""

from __future__ import annotations

import argparse
import json

NAME = "signature"
HELP = "compute a model's training-data signature (out-of-distribution warnings), check it and store it in its card"
ORDER = 67
DESCRIPTION = """\
'train' writes the signature of the cases it trained on. For a model trained on phantoms before
that existed, this command generates its training phantoms again (the seeds and grid its card
records), measures their image statistics (HU percentiles, lung and bright shares, soft-tissue and
fat peaks, noise SD and texture, on the model grid inside the body), sets the threshold from their
leave-one-out distances (split-conformal, --alpha), then checks it: held-out phantoms (never
trained on) must warn less than 5 % of the time, and with --realdata the pseudo non-contrast scan of
a real CT angiogram must warn. --write-card stores the signature and the checks in the card (its
weights are untouched).

example (the shipped model):
  digital-contrast signature --model aorta-phantom-v1 --seeds 0 160 --chest-seeds 0 100 \\
      --held-out-seeds 10000 40 --held-out-chest-seeds 10100 20 \\
      --realdata ../shared/data/real/cta_chest_arterial.nii.gz ../shared/data/real/cta_chest_arterial_aorta_mask.nii.gz \\
      --write-card
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model id or folder (default: aorta-phantom-v1)")
    parser.add_argument("--seeds", type=int, nargs=2, metavar=("FIRST", "COUNT"), default=(0, 160),
                        help="abdominal training phantoms: first seed and count")
    parser.add_argument("--chest-seeds", type=int, nargs=2, metavar=("FIRST", "COUNT"), default=(0, 100),
                        help="chest training phantoms: first seed and count")
    parser.add_argument("--held-out-seeds", type=int, nargs=2, metavar=("FIRST", "COUNT"), default=(10000, 40))
    parser.add_argument("--held-out-chest-seeds", type=int, nargs=2, metavar=("FIRST", "COUNT"), default=(10100, 20))
    parser.add_argument("--phantom-size", type=int, nargs=3, metavar=("X", "Y", "Z"), default=(256, 256, 160))
    parser.add_argument("--phantom-spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), default=(1.4, 1.4, 2.5))
    parser.add_argument("--alpha", type=float, default=0.02,
                        help="share of training-like inputs allowed to warn (sets the threshold; default 0.02)")
    parser.add_argument("--realdata", nargs=2, metavar=("CTA", "MASK"), default=None,
                        help="a real CTA and its aorta mask: its pseudo non-contrast scan must warn")
    parser.add_argument("--write-card", action="store_true", help="store the signature and its checks in the card")
    parser.add_argument("--json", action="store_true", help="print the signature as JSON")


def run(args: argparse.Namespace) -> int:
    from DigitalContrastLib.common.errors import JobError
    from DigitalContrastLib.common.progressbar import ProgressBar
    from DigitalContrastLib.models.cards import resolve_model
    from DigitalContrastLib.training.config import command_line
    from DigitalContrastLib.training.signature import (
        held_out_check,
        make_signature,
        phantom_features,
        realdata_check,
        write_signature_to_card,
    )

    if not 0.0 < args.alpha < 1.0:
        raise JobError(f"--alpha {args.alpha:g} is not a share; give a value between 0 and 1, e.g. 0.02.")
    card = resolve_model(args.model)
    target = card.data["input"]["target_spacing_xyz_mm"]
    if args.realdata:  # a wrong path fails now, not after the phantoms
        from DigitalContrastLib.ct.io import read_volume

        for path in args.realdata:
            read_volume(path)
    seeds, chest = range(args.seeds[0], sum(args.seeds)), range(args.chest_seeds[0], sum(args.chest_seeds))
    held, held_chest = (range(args.held_out_seeds[0], sum(args.held_out_seeds)),
                        range(args.held_out_chest_seeds[0], sum(args.held_out_chest_seeds)))
    if set(held) & set(seeds) or set(held_chest) & set(chest):
        raise JobError("The held-out seeds overlap the training seeds; choose held-out seeds outside them.")
    grid = dict(size_xyz=args.phantom_size, spacing_xyz_mm=args.phantom_spacing, target_spacing_xyz_mm=target)
    with ProgressBar("signature", weights={"training phantoms": 0.8, "held-out phantoms": 0.2}) as bar:
        rows = phantom_features(seeds, chest, progress=bar, stage="training phantoms", **grid)
        held_rows = phantom_features(held, held_chest, progress=bar, stage="held-out phantoms", **grid)
    signature = make_signature(rows, args.alpha, target,
                               f"phantoms regenerated from the card's training seeds: abdomen {seeds.start}-"
                               f"{seeds.stop - 1}, chest {chest.start}-{chest.stop - 1}, "
                               f"{'x'.join(map(str, args.phantom_size))} voxels at {args.phantom_spacing} mm")
    checks = {"held_out_phantoms": held_out_check(signature, held_rows, held, held_chest)}
    if args.realdata:
        checks["realdata"] = realdata_check(signature, args.realdata[0], args.realdata[1], target)
    signature["checks"] = checks
    signature["command"] = command_line(["signature", "--model", card.id, "--seeds", *map(str, args.seeds),
                                         "--chest-seeds", *map(str, args.chest_seeds), "--held-out-seeds",
                                         *map(str, args.held_out_seeds), "--held-out-chest-seeds",
                                         *map(str, args.held_out_chest_seeds), "--alpha", f"{args.alpha:g}"]
                                        + (["--realdata", "CTA", "MASK"] if args.realdata else []) + ["--write-card"])
    if args.write_card:
        write_signature_to_card(card, signature)
    if args.json:
        print(json.dumps(signature, indent=2, default=str))
        return 0
    held_check = checks["held_out_phantoms"]
    print(f"signature of {signature['cases']} training phantoms: threshold {signature['threshold']:.2f} SD "
          f"(alpha {args.alpha:g}, leave-one-out median {signature['calibration']['leave_one_out_distance']['median']:.2f})")
    print(f"[{'PASS' if held_check['passed'] else 'FAIL'}] held-out phantoms: {len(held_check['warned'])} of "
          f"{held_check['n']} warn ({held_check['rate']:.1%}); distance median {held_check['distance']['median']:.2f}, "
          f"max {held_check['distance']['max']:.2f}")
    if "realdata" in checks:
        real = checks["realdata"]
        print(f"[{'PASS' if real['passed'] else 'FAIL'}] real anatomy: distance {real['distance']:.1f} SD: {real['message']}")
    if args.write_card:
        print(f"stored in {card.path}")
    return 0
