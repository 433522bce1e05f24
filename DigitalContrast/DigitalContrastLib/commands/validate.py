"""``digital-contrast validate``: score a model on held-out phantoms (identity / oracle / observer / model)."""

from __future__ import annotations

import argparse
import json

NAME = "validate"
HELP = "validate a synthesis model on held-out phantom seeds (and optionally a real CTA)"
ORDER = 65
DESCRIPTION = """\
Generate phantoms from seeds never used in training, synthesize each, and score the non-contrast
input (identity), a label oracle (true lumen filled with 350 HU), an intensity observer (told the
aortic sac and the lumen and thrombus HU, it thresholds the smoothed NCCT inside the sac: how far
NCCT intensity alone separates lumen from thrombus) and the model side by side:
body MAE, lumen MAE/bias, thrombus bias, lumen Dice at 150 HU, diameter error; then check the
acceptance criteria. --realdata CTA MASK adds the real-anatomy check (aortic lumen of a real CTA
replaced by unenhanced blood). --write-card stores the results in the model card.

examples:
  digital-contrast validate --seed-start 10000 --count 8
  digital-contrast validate --realdata cta.nii.gz aorta_mask.nii.gz --write-card --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model id or folder (default: aorta-phantom-v1)")
    parser.add_argument("--seed-start", type=int, default=10000, help="first validation seed")
    parser.add_argument("--count", type=int, default=8, help="number of validation phantoms")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--realdata", nargs=2, metavar=("CTA", "MASK"), default=None,
                        help="real CTA and its aorta mask for the real-anatomy check")
    parser.add_argument("--write-card", action="store_true", help="store the results in the model's card")
    parser.add_argument("--json", action="store_true", help="print the full results as JSON")


def run(args: argparse.Namespace) -> int:
    from ..progressbar import ProgressBar
    from ..synthesis import load_engine
    from ..validation import METHODS, realdata_check, validate_model, write_validation_to_card

    engine = load_engine(args.model, args.device)
    seeds = list(range(args.seed_start, args.seed_start + args.count))
    # the real-data check first: a wrong path then fails in seconds, not after every phantom
    realdata = realdata_check(args.realdata[0], args.realdata[1], engine=engine) if args.realdata else None
    with ProgressBar("validate", weights={"validate": 1.0}) as bar:
        report = validate_model(seeds=seeds, engine=engine, progress=bar)
    if realdata is not None:
        report["realdata"] = realdata
    if args.write_card:
        write_validation_to_card(engine.card, report)
    if args.json:
        from ..json_values import jsonable

        print(json.dumps(jsonable(report), indent=2))
        return 0
    summary = report["summary"]
    keys = ["body_mae_hu", "lumen_mae_hu", "lumen_bias_hu", "thrombus_bias_hu", "lumen_dice",
            "median_abs_max_diameter_error_mm"]
    print(f"{'metric':36s} " + " ".join(f"{m:>10s}" for m in METHODS))
    for key in keys:
        print(f"{key:36s} " + " ".join(f"{summary[m].get(key, float('nan')):10.2f}" for m in METHODS))
    for name, check in report["acceptance"].items():
        print(f"[{'PASS' if check['passed'] else 'FAIL'}] {check['rule']}: {check['value']}")
    if "realdata" in report:
        r = report["realdata"]
        print(f"[{'PASS' if r['passed'] else 'FAIL'}] real CTA: synthetic lumen median {r['synthetic_lumen_median_hu']:.0f} HU "
              f"(real {r['real_lumen_median_hu']:.0f}, pseudo-NCCT {r['pseudo_noncontrast_lumen_median_hu']:.0f})")
    return 0
