"""Benchmark: the type I error of the RRRC (Obuchowski–Rockette–Hillis) test under the null.

Simulates MRMC ROC studies with two modalities of equal accuracy from the Roe–Metz model
(Roe & Metz, Acad Radiol 1997;4:298-303 and 587-600): for a case of truth t (0 or 1), modality i,
reader j and case k the decision variable is

    X_ijk = μ·t + R_j^t + TR_ij^t + C_k + TC_ik + RC_jk + TRC_ijk

with independent zero-mean normal effects (the reader effects drawn separately for each truth
class, so that readers differ in AUC). Both modalities share μ, so H0 (equal AUC) is true. Each
study is analysed with the trapezoidal AUC and the RRRC F test (Hillis ddf); the rejection rate at
alpha = 0.05 should be close to 5% (the acceptance range of this benchmark is 3%–7%).

Defaults: 5 readers, 50 + 50 cases, μ = 1.5 (reader AUC ≈ 0.86), σ²_R = σ²_TR = 0.011,
σ²_C = σ²_TC = 0.3, σ²_RC = σ²_TRC = 0.2 (a high-reader-variability, high-correlation Roe–Metz
variance structure; the case components sum to 1).

With ``--groups G`` the studies are split-plot (the scheduler's other design): the readers and
the cases are dealt to G groups and each group reads only its own cases, every case in both
modalities; the analysis is the split-plot OR test (``reading_design.py``). G = 1 is the crossed
study; G = number of readers puts one reader in each group.

Run:  python -m DigitalContrastReaderLib.analysis.null_simulation --studies 2000 --json
      python -m DigitalContrastReaderLib.analysis.null_simulation --studies 2000 --readers 6 --groups 2 --json
It prints one JSON object (rejection rate, its Clopper–Pearson 95% CI, studies, seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from .mrmc import AUC, fom_per_group
from .or_variance import or_components_from_covariance, rrrc_f_test
from .reading_design import ReaderGroup, ReadingDesign


@dataclass(frozen=True)
class RoeMetzModel:
    """Variance structure and size of the simulated studies (scores are unit-free decision variables)."""

    n_readers: int = 5
    n_negative: int = 50
    n_positive: int = 50
    n_modalities: int = 2
    mu: float = 1.5
    var_r: float = 0.011
    var_tr: float = 0.011
    var_c: float = 0.3
    var_tc: float = 0.3
    var_rc: float = 0.2
    var_trc: float = 0.2
    n_groups: int = 1


def simulate_study(model: RoeMetzModel, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One null study: ``scores[modality, reader, case]`` and ``truth[case]`` (negatives first)."""
    n_i, n_j = model.n_modalities, model.n_readers
    truth = np.concatenate([np.zeros(model.n_negative), np.ones(model.n_positive)])
    n_k = truth.size
    cls = truth.astype(int)
    reader = rng.normal(0, np.sqrt(model.var_r), (2, n_j))[cls].T  # [reader, case]
    treat_reader = rng.normal(0, np.sqrt(model.var_tr), (2, n_i, n_j))[cls].transpose(1, 2, 0)  # [mod, reader, case]
    case = rng.normal(0, np.sqrt(model.var_c), n_k)
    treat_case = rng.normal(0, np.sqrt(model.var_tc), (n_i, 1, n_k))
    reader_case = rng.normal(0, np.sqrt(model.var_rc), (n_j, n_k))
    error = rng.normal(0, np.sqrt(model.var_trc), (n_i, n_j, n_k))
    scores = model.mu * truth + reader[None] + treat_reader + case + treat_case + reader_case[None] + error
    return scores, truth


def simulate_design(model: RoeMetzModel, rng: np.random.Generator) -> ReadingDesign:
    """One null study as a :class:`ReadingDesign`: ``model.n_groups`` groups of readers, each reading
    its own share of the cases (one group: fully crossed). Readers and cases are dealt in turn."""
    g = model.n_groups
    groups = []
    for k in range(g):
        share = RoeMetzModel(**{**asdict(model), "n_readers": len(range(k, model.n_readers, g)),
                                "n_negative": len(range(k, model.n_negative, g)),
                                "n_positive": len(range(k, model.n_positive, g)), "n_groups": 1})
        scores, truth = simulate_study(share, rng)
        readers = tuple(f"R{j + 1}" for j in range(k, model.n_readers, g))
        groups.append(ReaderGroup(readers, tuple(f"{k}.{c}" for c in range(truth.size)), scores, truth))
    readers = tuple(f"R{j + 1}" for j in range(model.n_readers))
    return ReadingDesign(tuple(str(i) for i in range(model.n_modalities)), readers, tuple(groups))


def run(n_studies: int, model: RoeMetzModel, seed: int = 20240607, alpha: float = 0.05) -> dict:
    """Simulate ``n_studies`` null studies and return the RRRC rejection figures (a JSON-ready dict)."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    rejections = 0
    p_values = np.empty(n_studies)
    mean_auc = 0.0
    for s in range(n_studies):
        design = simulate_design(model, rng)
        theta, cov = design.covariance(fom_per_group(AUC))
        components = or_components_from_covariance(theta, cov, design.n_cases, design.same_group())
        _, _, _, p_value = rrrc_f_test(components)
        p_values[s] = p_value
        rejections += bool(p_value < alpha)
        mean_auc += theta.mean() / n_studies
    seconds = time.perf_counter() - start
    ci = stats.binomtest(rejections, n_studies).proportion_ci(0.95, method="exact")
    rate = rejections / n_studies
    return {
        "benchmark": "mrmc_rrrc_null_rejection_rate",
        "method": "Obuchowski-Rockette RRRC F test, Hillis ddf, jackknife covariances, trapezoidal AUC"
        + (f"; split-plot with {model.n_groups} reader groups" if model.n_groups > 1 else "; fully crossed"),
        "model": {"name": "Roe-Metz", **asdict(model)},
        "alpha": alpha,
        "n_studies": n_studies,
        "seed": seed,
        "rejections": rejections,
        "rejection_rate": rate,
        "rejection_rate_ci95": [float(ci.low), float(ci.high)],
        "acceptance_range": [0.03, 0.07],
        "within_acceptance_range": bool(0.03 <= rate <= 0.07),
        "mean_reader_auc": float(mean_auc),
        "p_value_uniformity_ks_p": float(stats.kstest(p_values[np.isfinite(p_values)], "uniform").pvalue),
        "seconds": seconds,
        "studies_per_second": n_studies / seconds if seconds > 0 else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m DigitalContrastReaderLib.analysis.null_simulation",
        description="Type I error of the RRRC MRMC test on Roe-Metz null studies (a benchmark, not a test).",
    )
    defaults = RoeMetzModel()
    parser.add_argument("--studies", type=int, default=2000, help="number of simulated studies (default 2000)")
    parser.add_argument("--readers", type=int, default=defaults.n_readers)
    parser.add_argument("--negative", type=int, default=defaults.n_negative, help="non-diseased cases per study")
    parser.add_argument("--positive", type=int, default=defaults.n_positive, help="diseased cases per study")
    parser.add_argument("--groups", type=int, default=1, help="split-plot reader groups (default 1: fully crossed)")
    parser.add_argument("--seed", type=int, default=20240607)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    if args.studies < 1 or args.readers < 2 or args.negative < 2 or args.positive < 2:
        parser.error("need at least 1 study, 2 readers and 2 cases of each truth")
    if not 1 <= args.groups <= args.readers or min(args.negative, args.positive) < 2 * args.groups:
        parser.error("--groups must be between 1 and the number of readers, with at least 2 cases of each truth per group")
    model = RoeMetzModel(n_readers=args.readers, n_negative=args.negative, n_positive=args.positive, n_groups=args.groups)
    result = run(args.studies, model, seed=args.seed, alpha=args.alpha)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        low, high = result["rejection_rate_ci95"]
        print(
            f"RRRC rejection rate under H0: {result['rejection_rate']:.4f} (95% CI {low:.4f}-{high:.4f}) over "
            f"{result['n_studies']} studies of {model.n_readers} readers x {model.n_negative + model.n_positive} cases "
            f"({'fully crossed' if model.n_groups == 1 else f'split-plot, {model.n_groups} groups'}); "
            f"mean reader AUC {result['mean_reader_auc']:.3f}; {result['seconds']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
