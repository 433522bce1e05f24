"""Benchmark: does fine-tuning on a site's own pairs beat the shipped model there? (36 min on 2 CPU cores)

``python -m DigitalContrastLib.benchmarks.site_finetune --out bench/site`` runs the whole path of
``docs/site-training.md`` on a generated cohort of the **shifted domain** (a sharp reconstruction
kernel, 100 kVp, a +25 HU calibration offset: :data:`~DigitalContrastLib.phantoms.scanner.SHIFTED_SCANNER`),
24 cases of 20 patients (every 5th patient has a second visit), each pair two DICOM series of
separate acquisitions at the site protocol (:data:`~DigitalContrastLib.phantoms.site_pairs.SITE_PROTOCOL`):

1. ``prepare`` (deformable registration), and the landmark target registration error of every case
   against the generator's motion (``truth.json``);
2. ``train``: the final site model, fine-tuned from ``aorta-phantom-v1`` on all prepared cases;
3. ``validate --cases --folds 3 --recipe``: its recipe retrained on each fold, the held-out cases
   scored for identity, the shipped (starting) model and the fold's model;
4. the shipped model's out-of-distribution verdict on every site case.

Prints JSON (also written to ``OUT/results.json``): the TRE, the counts, the mask MAE of the shipped
and the fine-tuned model with their patient-bootstrap 95 % intervals, the paired difference and its
interval, and the timings. Every step keeps what an earlier run finished (rerun to continue).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: The fine-tuning recipe: the shipped network and input, a short L1 fine-tune with frozen batch norm.
FINE_TUNE = {"epochs": 4, "steps_per_epoch": 50, "learning_rate": 2e-4, "mse_warmup_fraction": 0.0,
             "freeze_norm_fraction": 0.001, "ssim_weight": 0.0, "patch_size_zyx": (64, 128, 128),
             "inference_prediction": "flip-tta-mean", "val_cases": 1}


def _tre(cases_dir: Path, cohort_dir: Path) -> dict[str, Any]:
    import SimpleITK as sitk

    from DigitalContrastLib.phantoms.site_pairs import TRUTH_FILE, target_registration_error_mm

    per_case = {}
    for tfm in sorted(cases_dir.glob("*/registration.tfm")):
        truth = json.loads((cohort_dir / tfm.parent.name / TRUTH_FILE).read_text())
        per_case[tfm.parent.name] = target_registration_error_mm(truth, sitk.ReadTransform(str(tfm)))
    means = [v["mean_mm"] for v in per_case.values()]
    return {"cases": len(per_case), "mean_of_case_means_mm": float(np.mean(means)) if means else None,
            "worst_case_mean_mm": float(max(means)) if means else None,
            "worst_landmark_mm": float(max(v["max_mm"] for v in per_case.values())) if per_case else None,
            "per_case": per_case}


def run_site_finetune_bench(out: str | Path, patients: int = 20, second_visit_every: int = 5, seed_start: int = 31001,
                            folds: int = 3, log=print) -> dict[str, Any]:
    """The benchmark (see the module docstring); returns its figures."""
    from DigitalContrastLib.models.cards import CARD_FILE, load_card, resolve_model
    from DigitalContrastLib.phantoms.scanner import SHIFTED_SCANNER
    from DigitalContrastLib.phantoms.site_pairs import COHORT_CSV, SITE_PROTOCOL, write_site_cohort
    from DigitalContrastLib.preparation.run import prepare_cohort
    from DigitalContrastLib.synthesis.ood import assess_volume
    from DigitalContrastLib.training.config import TrainConfig
    from DigitalContrastLib.training.cross_validation import cross_validate, write_cross_validation_to_card
    from DigitalContrastLib.training.loop import train

    out = Path(out)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    cohort = out / "pacs" / COHORT_CSV
    if not cohort.is_file():
        write_site_cohort(out / "pacs", patients, seed_start=seed_start, protocol=SITE_PROTOCOL, scanner=SHIFTED_SCANNER,
                          second_visit_every=second_visit_every, on_case=lambda c, line: log(f"  {c}: {line}"))
    seconds["generate"] = time.perf_counter() - t
    t = time.perf_counter()
    prepared = prepare_cohort(cohort, out / "cases", on_case=lambda r, kept: log(f"  {r['case_id']}: {r['status']} {r.get('reason', '')}"))
    seconds["prepare"] = time.perf_counter() - t
    tre = _tre(out / "cases", cohort.parent)
    log(f"TRE: mean {tre['mean_of_case_means_mm']:.2f} mm, worst case {tre['worst_case_mean_mm']:.2f} mm")

    t = time.perf_counter()
    model = out / "site-model"
    if not (model / CARD_FILE).is_file():
        config = TrainConfig(data_dir=str(out / "cases"), out_dir=str(model), init_from="aorta-phantom-v1",
                             model_id="site-aorta-bench", version="1.0.0",
                             command="python -m DigitalContrastLib.benchmarks.site_finetune (fine-tune recipe FINE_TUNE)",
                             **FINE_TUNE)
        train(config, resume=True, log=log)
    seconds["train_final_model"] = time.perf_counter() - t
    t = time.perf_counter()
    report = cross_validate(out / "cases", folds, recipe_model=str(model), work_dir=out / "cross-validation",
                            device="cpu", command=f"validate --cases {out / 'cases'} --folds {folds} --recipe {model}",
                            log=log)
    write_cross_validation_to_card(load_card(model), report)
    seconds["cross_validation"] = time.perf_counter() - t

    from DigitalContrastLib.ct.io import read_volume

    shipped = resolve_model("aorta-phantom-v1").data
    warned = [p.parent.name for p in sorted((out / "cases").glob("*/noncontrast.nrrd"))
              if assess_volume(read_volume(p), shipped)["warning"]]
    summary = report["summary"]
    figure = lambda method: summary["methods"][method]["mask_mae_hu"]  # noqa: E731
    difference = summary["differences"]["model_minus_starting"]["mask_mae_hu"]
    results = {
        "cohort": {"patients": patients, "cases": len(prepared.records), "domain": SHIFTED_SCANNER.name,
                   "protocol": SITE_PROTOCOL.name},
        "prepare": {"prepared": prepared.count("prepared"), "excluded": prepared.count("excluded"),
                    "failed": prepared.count("failed")},
        "tre_mm": {k: v for k, v in tre.items() if k != "per_case"},
        "mask_mae_hu": {"identity": figure("identity"), "shipped": figure("starting"), "fine_tuned": figure("model")},
        "fine_tuned_minus_shipped_mask_mae_hu": difference,
        "beats_shipped": difference["better"],
        "body_mae_hu": {m: summary["methods"][m]["body_mae_hu"] for m in summary["methods"]},
        "lumen_dice": {m: summary["methods"][m]["lumen_dice"] for m in summary["methods"]},
        "shipped_model_warns_on_site_cases": {"warned": len(warned), "of": prepared.count("prepared")},
        "site_model_held_out_ood": summary["ood_held_out"],
        "fine_tune": {k: list(v) if isinstance(v, tuple) else v for k, v in FINE_TUNE.items()},
        "statistics": report["statistics"],
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m DigitalContrastLib.benchmarks.site_finetune",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/site", help="working folder (kept: rerun to continue)")
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--folds", type=int, default=3)
    args = parser.parse_args(argv)
    results = run_site_finetune_bench(args.out, patients=args.patients, folds=args.folds,
                                      log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
