"""How far could any model get on the thrombus line? The model beside the shape observer; run by hand.

    python Testing/thrombus_reference.py                              # seeds 10000-10031, 5-7 min on 2 cores
    python Testing/thrombus_reference.py --seed-start 10000 --count 8 --out /tmp/ref8.json
    python Testing/thrombus_reference.py --figure thrombus_reference.png --figure-only   # README's picture

On every held-out phantom with an aneurysm (validation grid 256 x 256 x 160 at 1.4 x 1.4 x 2.5 mm),
it scores three lumens inside the thrombus-filled sac:

* the model's: the synthetic CTA at >= 150 HU inside the true sac; with the model's own figures
  (``validate``'s thrombus bias, Dice, max-diameter error) and its *placement-only* thrombus bias;
* the shape observer's (:mod:`DigitalContrastLib.evaluation.shape_observer`): TOLD the sac and the lumen and
  thrombus medians, and knowing that the lumen is a disk on every slice; its robust disks (each
  voxel's evidence clipped to +-25 HU, so that the blur of a calcified plaque cannot pull a disk),
  the plain maximum-likelihood disks, and both drawn one voxel narrower (an observer can buy a
  smaller thrombus bias with a narrower lumen).

Every lumen is rendered the way the phantom renders its arterial phase, so the thrombus bias here is
what the lumen's placement alone costs (0 HU for the true lumen). Figures are means over the
aneurysm cases (bias, Dice) and the median |max-diameter error| over every seed, as ``validate``
takes it (on a seed without thrombus the observers are the label oracle, exact).
Not part of ``make test``; needs the engine's packages.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "DigitalContrast"))

from DigitalContrastLib.common.atomic import atomic_write_text  # noqa: E402
from DigitalContrastLib.common.errors import EXIT_BAD_JOB, EXIT_OUTPUT, UserError  # noqa: E402
from DigitalContrastLib.ct.labels import LABELS
from DigitalContrastLib.evaluation.metrics import roi_metrics  # noqa: E402
from DigitalContrastLib.evaluation.shape_observer import (  # noqa: E402
    EVIDENCE_CLIP_HU,
    disk_lumen_mask,
    enhanced_lumen_mask,
    fit_lumen_disks,
    lumen_level_hu,
    placement_thrombus_bias_hu,
    rendered_lumen_prediction,
)
from DigitalContrastLib.phantoms.generator import make_phantom  # noqa: E402
from DigitalContrastLib.training.validation import THROMBUS_BURDEN_EDGES  # noqa: E402

#: name -> (evidence clip in HU or None, disk radius shrink in voxels)
OBSERVERS = {"shape_observer": (EVIDENCE_CLIP_HU, 0.0), "shape_observer_1_voxel_narrower": (EVIDENCE_CLIP_HU, 1.0),
             "shape_observer_unclipped": (None, 0.0), "shape_observer_unclipped_1_voxel_narrower": (None, 1.0)}
FIGURES = ("thrombus_bias_hu", "lumen_dice", "max_diameter_error_mm")


def score_case(seed: int, engine) -> dict | None:
    case = make_phantom(seed, size_xyz=(256, 256, 160), spacing_xyz_mm=(1.4, 1.4, 2.5))
    nc, ref, labels = case.noncontrast.array, case.contrast.array, case.labels.array
    spacing = case.noncontrast.spacing_mm
    lumen, thrombus = labels == LABELS["aortic_lumen"], labels == LABELS["thrombus"]
    synthetic = engine.synthesize(case.noncontrast).synthetic.array
    model = roi_metrics(synthetic, ref, labels, spacing)
    if not thrombus.any():  # only the diameter counts here; the observers are the label oracle: exact
        return {"seed": seed, "burden": None, "model": {"max_diameter_error_mm": model["max_diameter_error_mm"]},
                **{name: {"max_diameter_error_mm": 0.0} for name in OBSERVERS}}
    level = (lumen_level_hu(ref, lumen), float(case.params["hu_contrast"]["thrombus"]),
             float(case.params["blur"]["sigma_voxels"]))
    model_lumen = enhanced_lumen_mask(synthetic, lumen, thrombus)  # validate's enhanced lumen inside the sac
    row = {"seed": seed, "burden": float(case.params["aneurysm"]["thrombus_burden"]),
           "model": {**{k: model[k] for k in FIGURES},
                     "placement_thrombus_bias_hu": placement_thrombus_bias_hu(model_lumen, lumen, thrombus, *level)}}
    fits = {clip: fit_lumen_disks(nc, lumen, thrombus, evidence_clip_hu=clip) for clip in (EVIDENCE_CLIP_HU, None)}
    for name, (clip, shrink) in OBSERVERS.items():
        drawn = disk_lumen_mask(fits[clip], lumen, thrombus, shrink)
        rendered = np.clip(np.rint(rendered_lumen_prediction(drawn, lumen, ref, *level)), -1024, 3071).astype(np.int16)
        scored = roi_metrics(rendered, ref, labels, spacing)
        row[name] = {k: scored[k] for k in FIGURES}
    return row


def save_figure(seed: int, engine, path: str) -> None:
    """One axial slice of phantom ``seed`` (the one with most thrombus), cropped to the sac: the
    non-contrast scan in a narrow window, the synthetic and the real contrast scan, with the true
    lumen (white), the model's (red) and the shape observer's (cyan) drawn on each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    case = make_phantom(seed, size_xyz=(256, 256, 160), spacing_xyz_mm=(1.4, 1.4, 2.5))
    nc, ref, labels = case.noncontrast.array, case.contrast.array, case.labels.array
    lumen, thrombus = labels == LABELS["aortic_lumen"], labels == LABELS["thrombus"]
    if not thrombus.any():
        sys.exit(f"Phantom seed {seed} holds no thrombus; give --figure-seed a seed with an aneurysm (e.g. 10007).")
    synthetic = engine.synthesize(case.noncontrast).synthetic.array
    observer = disk_lumen_mask(fit_lumen_disks(nc, lumen, thrombus), lumen, thrombus)
    z = int(np.argmax(thrombus.sum(axis=(1, 2))))
    sac = lumen[z] | thrombus[z]
    ys, xs = np.nonzero(sac)
    box = (slice(max(ys.min() - 12, 0), ys.max() + 13), slice(max(xs.min() - 12, 0), xs.max() + 13))
    masks = (("true", lumen[z], "white"), ("model, >= 150 HU", enhanced_lumen_mask(synthetic[z], lumen[z], thrombus[z]), "red"),
             ("shape observer", observer[z], "cyan"))
    panels = (("non-contrast, W120/L40", nc[z], 40, 120), ("synthetic CTA, W700/L200", synthetic[z], 200, 700),
              ("real contrast, W700/L200", ref[z], 200, 700))
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.2), facecolor="black")
    for ax, (title, image, level, width) in zip(axes, panels):
        ax.imshow(image[box], cmap="gray", vmin=level - width / 2, vmax=level + width / 2, interpolation="nearest")
        for _, mask, colour in masks:
            ax.contour(mask[box].astype(float), levels=[0.5], colors=colour, linewidths=1.2)
        ax.set_title(title, color="white", fontsize=10)
        ax.axis("off")
    burden = case.params["aneurysm"]["thrombus_burden"]
    fig.suptitle(f"phantom {seed}, thrombus burden {burden:.2f}, axial slice {z}; lumens: " +
                 ", ".join(f"{name} ({colour})" for name, _, colour in masks), color="white", fontsize=10)
    fig.savefig(path, dpi=100, facecolor="black", bbox_inches="tight")
    plt.close(fig)
    print(f"figure: {path}")


def summary(rows: list[dict]) -> dict:
    """Means over the cases with thrombus (bias, Dice) and the median |max-diameter error| over every seed."""
    aneurysms = [r for r in rows if r["burden"] is not None]
    bounds = [0.0, *THROMBUS_BURDEN_EDGES, 1.0]
    out = {}
    for method in ("model", *OBSERVERS):
        bias_key = "placement_thrombus_bias_hu" if method == "model" else "thrombus_bias_hu"
        out[method] = {"n_with_thrombus": len(aneurysms), "n_seeds": len(rows),
                       "placement_thrombus_bias_hu": float(np.mean([r[method][bias_key] for r in aneurysms])),
                       "lumen_dice": float(np.mean([r[method]["lumen_dice"] for r in aneurysms])),
                       "median_abs_max_diameter_error_mm": float(np.median([abs(r[method]["max_diameter_error_mm"]) for r in rows])),
                       "placement_thrombus_bias_by_burden_hu": {
                           f"{lo}-{hi}": float(np.mean([r[method][bias_key] for r in aneurysms if lo <= r["burden"] < hi]))
                           for lo, hi in zip(bounds[:-1], bounds[1:]) if any(lo <= r["burden"] < hi for r in aneurysms)}}
        if method == "model":
            out[method]["thrombus_bias_hu"] = float(np.mean([r[method]["thrombus_bias_hu"] for r in aneurysms]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="aorta-phantom-v1", help="installed model id (default: %(default)s)")
    parser.add_argument("--seed-start", type=int, default=10000, help="first held-out phantom seed (default: %(default)s)")
    parser.add_argument("--count", type=int, default=32, help="number of seeds (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="engine device: auto, cpu or cuda (default: %(default)s)")
    parser.add_argument("--out", default="/tmp/thrombus_reference.json", help="JSON written here (default: %(default)s)")
    parser.add_argument("--figure", metavar="PNG", help="also draw one slice of --figure-seed with the three lumens")
    parser.add_argument("--figure-seed", type=int, default=10007, help="phantom seed of the figure (default: %(default)s)")
    parser.add_argument("--figure-only", action="store_true", help="draw the figure and stop")
    args = parser.parse_args()
    if args.count < 1:
        parser.error(f"--count {args.count}: give at least one seed")
    for path in (args.out, args.figure):
        if path and not Path(path).resolve().parent.is_dir():
            print(f"Cannot write {path}: its folder does not exist; create it or give another path.", file=sys.stderr)
            sys.exit(EXIT_OUTPUT)
    from DigitalContrastLib.synthesis.api import load_engine

    try:
        engine = load_engine(args.model, args.device)
    except UserError as error:
        print(error.message, file=sys.stderr)
        sys.exit(error.exit_code)
    if args.figure:
        save_figure(args.figure_seed, engine, args.figure)
    if args.figure_only:
        return
    rows = []
    for seed in range(args.seed_start, args.seed_start + args.count):
        row = score_case(seed, engine)
        rows.append(row)
        if row["burden"] is None:
            print(f"seed {seed}: no thrombus (diameter only)", flush=True)
            continue
        print(f"seed {seed}: burden {row['burden']:.2f}  " + "  ".join(
            f"{m}: {row[m].get('placement_thrombus_bias_hu', row[m]['thrombus_bias_hu']):+.1f} HU" for m in row if m not in ("seed", "burden")),
            flush=True)
    if all(r["burden"] is None for r in rows):
        print("No seed in that range holds thrombus; give more seeds with --count.", file=sys.stderr)
        sys.exit(EXIT_BAD_JOB)
    result = {"model": {"id": engine.card.id, "version": engine.card.version}, "seeds": [args.seed_start, args.seed_start + args.count - 1],
              "summary": summary(rows), "cases": rows}
    atomic_write_text(args.out, json.dumps(result, indent=1))
    n = result["summary"]["model"]["n_with_thrombus"]
    print(f"\n{n} cases with thrombus: thrombus bias from placement and mean Dice over them; "
          f"median |max-diameter error| over all {len(rows)} seeds:")
    for method, s in result["summary"].items():
        bands = " / ".join(f"{v:+.1f}" for v in s["placement_thrombus_bias_by_burden_hu"].values())
        extra = f" (validate's thrombus bias {s['thrombus_bias_hu']:+.1f})" if "thrombus_bias_hu" in s else ""
        print(f"  {method:42s} {s['placement_thrombus_bias_hu']:+6.1f} HU{extra}  by burden {bands}  "
              f"Dice {s['lumen_dice']:.3f}  diameter {s['median_abs_max_diameter_error_mm']:.2f} mm")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
