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
acceptance criteria; the thrombus bias is also split by the phantoms' thrombus burden (how much of
the sac the thrombus fills). --realdata CTA MASK adds the real-anatomy check (aortic lumen of a real CTA
replaced by unenhanced blood). --chest-count N adds N phantoms whose field of view is the chest
(kidneys to the aortic arch) and reports the synthetic thoracic aortic lumen median of each, from
its non-contrast scan and from a pseudo non-contrast scan made like the real-anatomy check.
--write-card stores the results in the model card.

examples:
  digital-contrast validate --seed-start 10000 --count 8
  digital-contrast validate --realdata cta.nii.gz aorta_mask.nii.gz --write-card --json
  digital-contrast validate --count 8 --chest-seed-start 10100 --chest-count 4
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model id or folder (default: aorta-phantom-v1)")
    parser.add_argument("--seed-start", type=int, default=10000, help="first validation seed")
    parser.add_argument("--count", type=int, default=8, help="number of validation phantoms")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--realdata", nargs=2, metavar=("CTA", "MASK"), default=None,
                        help="real CTA and its aorta mask for the real-anatomy check")
    parser.add_argument("--chest-count", type=int, default=0, metavar="N",
                        help="also score N chest-field phantoms (thoracic aortic lumen median; default 0)")
    parser.add_argument("--chest-seed-start", type=int, default=10100, help="first chest phantom seed")
    parser.add_argument("--write-card", action="store_true", help="store the results in the model's card")
    parser.add_argument("--json", action="store_true", help="print the full results as JSON")


def run(args: argparse.Namespace) -> int:
    from DigitalContrastLib.common.errors import JobError
    from DigitalContrastLib.common.progressbar import ProgressBar
    from DigitalContrastLib.synthesis.api import load_engine
    from DigitalContrastLib.training.validation import (
        METHODS,
        chest_check,
        realdata_check,
        validate_model,
        write_validation_to_card,
    )

    if args.count < 1 or args.chest_count < 0 or args.seed_start < 0 or args.chest_seed_start < 0:
        raise JobError("--count must be at least 1, and --chest-count and the seed starts zero or more.")
    engine = load_engine(args.model, args.device)
    seeds = list(range(args.seed_start, args.seed_start + args.count))
    # the real-data check first: a wrong path then fails in seconds, not after every phantom
    realdata = realdata_check(args.realdata[0], args.realdata[1], engine=engine) if args.realdata else None
    with ProgressBar("validate", weights={"validate": 1.0}) as bar:
        report = validate_model(seeds=seeds, engine=engine, progress=bar)
    if realdata is not None:
        report["realdata"] = realdata
    if args.chest_count:
        with ProgressBar("chest phantoms", weights={"chest": 1.0}) as bar:
            chest_seeds = list(range(args.chest_seed_start, args.chest_seed_start + args.chest_count))
            report["chest"] = chest_check(chest_seeds, engine, progress=bar)
    if args.write_card:
        write_validation_to_card(engine.card, report)
    if args.json:
        from DigitalContrastLib.common.json_values import jsonable

        print(json.dumps(jsonable(report), indent=2))
        return 0
    summary = report["summary"]
    keys = ["body_mae_hu", "lumen_mae_hu", "lumen_bias_hu", "thrombus_bias_hu", "lumen_dice",
            "median_abs_max_diameter_error_mm"]
    print(f"{'metric':36s} " + " ".join(f"{m:>10s}" for m in METHODS))
    for key in keys:
        print(f"{key:36s} " + " ".join(f"{summary[m].get(key, float('nan')):10.2f}" for m in METHODS))
    for name, check in report["acceptance"].items():
        print(f"[{'PASS' if check['passed'] else 'FAIL'}] {check['rule']}: {check['value']}{_interval_text(check)}")
        if name == "thrombus_bias":
            placement = report.get("placement_thrombus_bias_hu", {})
            if placement:
                print(f"       from lumen placement alone: model {placement['model']:+.1f} HU, shape observer "
                      f"{placement['shape_observer']:+.1f} HU (told the sac; the lumen one disk per slice)")
            for band in report.get("thrombus_by_burden", []):
                low, high = band["burden"]
                print(f"       thrombus burden {low:.2f} to {high:.2f}: {band['n']} case(s), model "
                      f"{band['model_thrombus_bias_hu']:+.1f} HU, observer {band['observer_thrombus_bias_hu']:+.1f} HU; "
                      f"model max-diameter error {band['model_max_diameter_error_mm']:+.2f} mm; from placement: model "
                      f"{band['model_placement_thrombus_bias_hu']:+.1f} HU, shape observer "
                      f"{band['shape_observer_placement_thrombus_bias_hu']:+.1f} HU")
    if "realdata" in report:
        r = report["realdata"]
        print(f"[{'PASS' if r['passed'] else 'FAIL'}] real CTA: synthetic lumen median {r['synthetic_lumen_median_hu']:.0f} HU "
              f"(real {r['real_lumen_median_hu']:.0f}, pseudo-NCCT {r['pseudo_noncontrast_lumen_median_hu']:.0f})")
        for level in r.get("by_level", []):
            print(f"       {level['level']:9s} third (z {level['z_lps_mm'][0]:.0f} to {level['z_lps_mm'][1]:.0f} mm): synthetic "
                  f"{level['synthetic_median_hu']:.0f} HU, real {level['real_median_hu']:.0f} HU")
    if "chest" in report:
        c = report["chest"]
        print(f"[{'PASS' if c['passed'] else 'FAIL'}] chest phantoms {c['seeds'][0]}-{c['seeds'][-1]}: synthetic thoracic "
              f"lumen median {c['min_thoracic_lumen_median_hu']:.0f}-{c['max_thoracic_lumen_median_hu']:.0f} HU "
              f"(from pseudo-NCCT, median of cases {c['median_pseudo_noncontrast_thoracic_lumen_median_hu']:.0f})")
    return 0


def _interval_text(check: dict) -> str:
    """`` (95% CI of the mean ...: lo to hi, settled)`` for a criterion that has an interval."""
    interval = check.get("ci95")
    if not interval:
        return ""
    low, high = interval["ci95"]
    verdict = "settled" if check.get("settled") else "open: the interval crosses the threshold, more seeds needed"
    return f" (95% CI of the {interval['statistic']} {interval['figure']} over {interval['n']} cases: {low:.2f} to {high:.2f}; {verdict})"
