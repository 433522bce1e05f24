"""How far could any model get on the thrombus line? The model beside the shape observer; run by hand.

    python Testing/thrombus_reference.py                              # seeds 10000-10031, ~6 min on 2 cores
    python Testing/thrombus_reference.py --seed-start 10000 --count 8 --out /tmp/ref8.json

On every held-out phantom with an aneurysm (validation grid 256 x 256 x 160 at 1.4 x 1.4 x 2.5 mm),
it scores three lumens inside the thrombus-filled sac:

* the model's: the synthetic CTA at >= 150 HU inside the true sac; with the model's own figures
  (``validate``'s thrombus bias, Dice, max-diameter error) and its *placement-only* thrombus bias;
* the shape observer's (:mod:`DigitalContrastLib.shape_observer`): TOLD the sac and the lumen and
  thrombus medians, and knowing that the lumen is a disk on every slice; its disks, and the same
  disks shrunk by 0.5, 1 and 1.5 voxels (an observer can buy a smaller thrombus bias with a narrower lumen).

Every lumen is rendered the way the phantom renders its arterial phase, so the thrombus bias here is
what the lumen's placement alone costs (0 HU for the true lumen). Figures are means over the
aneurysm cases (Dice, bias) and the median |max-diameter error| over those cases (``validate``'s
32-seed median also counts the cases without thrombus, where every method is exact).
Not part of ``make test``; needs the engine's packages.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "DigitalContrast"))

from DigitalContrastLib.phantom import LABELS, make_phantom  # noqa: E402
from DigitalContrastLib.shape_observer import (  # noqa: E402
    disk_lumen_mask,
    fit_lumen_disks,
    lumen_level_hu,
    placement_thrombus_bias_hu,
    rendered_lumen_prediction,
)
from DigitalContrastLib.validation import THROMBUS_BURDEN_EDGES, case_metrics  # noqa: E402

SHRINKS_VOXELS = (0.0, 0.5, 1.0, 1.5)
FIGURES = ("thrombus_bias_hu", "lumen_dice", "max_diameter_error_mm")


def score_case(seed: int, engine) -> dict | None:
    case = make_phantom(seed, size_xyz=(256, 256, 160), spacing_xyz_mm=(1.4, 1.4, 2.5))
    nc, ref, labels = case.noncontrast.array, case.contrast.array, case.labels.array
    spacing = case.noncontrast.spacing_mm
    lumen, thrombus = labels == LABELS["aortic_lumen"], labels == LABELS["thrombus"]
    if not thrombus.any():
        return None
    level = (lumen_level_hu(ref, lumen), float(case.params["hu_contrast"]["thrombus"]),
             float(case.params["blur"]["sigma_voxels"]))
    synthetic = engine.synthesize(case.noncontrast).synthetic.array
    model = case_metrics(synthetic, ref, nc, labels, spacing)
    model_lumen = (lumen | thrombus) & (synthetic >= 150)  # validate's enhanced lumen inside the sac
    row = {"seed": seed, "burden": float(case.params["aneurysm"]["thrombus_burden"]),
           "model": {**{k: model[k] for k in FIGURES},
                     "placement_thrombus_bias_hu": placement_thrombus_bias_hu(model_lumen, lumen, thrombus, ref, *level)}}
    fits = fit_lumen_disks(nc, lumen, thrombus)
    for shrink in SHRINKS_VOXELS:
        drawn = disk_lumen_mask(fits, lumen, thrombus, shrink)
        rendered = np.clip(np.rint(rendered_lumen_prediction(drawn, lumen, ref, *level)), -1024, 3071).astype(np.int16)
        scored = case_metrics(rendered, ref, nc, labels, spacing)
        row[f"shape_observer_shrink_{shrink}"] = {k: scored[k] for k in FIGURES}
    return row


def summary(rows: list[dict]) -> dict:
    methods = [k for k in rows[0] if k not in ("seed", "burden")]
    out = {}
    for method in methods:
        bias_key = "placement_thrombus_bias_hu" if method == "model" else "thrombus_bias_hu"
        out[method] = {"n": len(rows),
                       "placement_thrombus_bias_hu": float(np.mean([r[method][bias_key] for r in rows])),
                       "lumen_dice": float(np.mean([r[method]["lumen_dice"] for r in rows])),
                       "median_abs_max_diameter_error_mm": float(np.median([abs(r[method]["max_diameter_error_mm"]) for r in rows]))}
        if method == "model":
            out[method]["thrombus_bias_hu"] = float(np.mean([r[method]["thrombus_bias_hu"] for r in rows]))
        bounds = [0.0, *THROMBUS_BURDEN_EDGES, 1.0]
        out[method]["placement_thrombus_bias_by_burden_hu"] = {
            f"{lo}-{hi}": float(np.mean([r[method][bias_key] for r in rows if lo <= r["burden"] < hi]))
            for lo, hi in zip(bounds[:-1], bounds[1:]) if any(lo <= r["burden"] < hi for r in rows)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="aorta-phantom-v1", help="installed model id (default: %(default)s)")
    parser.add_argument("--seed-start", type=int, default=10000, help="first held-out phantom seed (default: %(default)s)")
    parser.add_argument("--count", type=int, default=32, help="number of seeds (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="engine device: auto, cpu or cuda (default: %(default)s)")
    parser.add_argument("--out", default="/tmp/thrombus_reference.json", help="JSON written here (default: %(default)s)")
    args = parser.parse_args()
    from DigitalContrastLib.synthesis import load_engine

    engine = load_engine(args.model, args.device)
    rows = []
    for seed in range(args.seed_start, args.seed_start + args.count):
        row = score_case(seed, engine)
        if row is None:
            print(f"seed {seed}: no thrombus, skipped", flush=True)
            continue
        rows.append(row)
        print(f"seed {seed}: burden {row['burden']:.2f}  " + "  ".join(
            f"{m}: {row[m].get('placement_thrombus_bias_hu', row[m]['thrombus_bias_hu']):+.1f} HU" for m in row if m not in ("seed", "burden")),
            flush=True)
    if not rows:
        sys.exit("No seed in that range holds thrombus; give more seeds with --count.")
    result = {"model": {"id": engine.card.id, "version": engine.card.version}, "seeds": [args.seed_start, args.seed_start + args.count - 1],
              "summary": summary(rows), "cases": rows}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\n{len(rows)} cases with thrombus; placement-only thrombus bias, mean Dice, median |max-diameter error|:")
    for method, s in result["summary"].items():
        bands = " / ".join(f"{v:+.1f}" for v in s["placement_thrombus_bias_by_burden_hu"].values())
        extra = f" (validate's thrombus bias {s['thrombus_bias_hu']:+.1f})" if "thrombus_bias_hu" in s else ""
        print(f"  {method:28s} {s['placement_thrombus_bias_hu']:+6.1f} HU{extra}  by burden {bands}  "
              f"Dice {s['lumen_dice']:.3f}  diameter {s['median_abs_max_diameter_error_mm']:.2f} mm")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
