"""Visual Turing test: can readers tell synthetic images from real ones?

Input: the long reading table where each row is one image shown alone; ``modality`` says what the
image really is (``synthetic`` or the other label, e.g. ``real``) and ``score`` is the reader's
answer to "is this image synthetic?" as a 0/1 call or a confidence (higher = more likely synthetic).
The truth of a read is ``modality == synthetic_label`` (the ``truth`` column is not used). A read is
correct when (score ≥ threshold) equals that truth.

Reported:
- per reader: accuracy with an exact Clopper–Pearson CI (``scipy.stats.binomtest``), the exact
  two-sided binomial p against 0.5, and an exact two one-sided tests (TOST) equivalence test of
  |accuracy − 0.5| < margin;
- all readers: the reader-averaged accuracy and the reader-averaged AUC of the "synthetic?" score
  with Obuchowski–Rockette CIs (random readers and images, Hillis df; the image is the case unit),
  each with a TOST equivalence test; the AUC of all reads pooled is given as a description.

"Indistinguishable" is an equivalence claim: it is made only when the (1 − 2·alpha) CI lies inside
[0.5 − margin, 0.5 + margin] (TOST p < alpha). A non-significant difference from 0.5 is never
reported as "indistinguishable".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from DigitalContrastLib.common.errors import InputError

from .formatting import JsonResult, format_p, format_table
from .long_table import validate_long_table
from .mrmc import AUC, analyse_design, fom_per_group, proportion_correct
from .reading_design import reading_design


@dataclass(frozen=True)
class ReaderTuring:
    """One reader's Turing-test accuracy (exact binomial inference)."""

    reader: str
    n_reads: int
    n_correct: int
    accuracy: float
    ci_lower: float  # Clopper–Pearson, (1 − alpha)
    ci_upper: float
    p_value_vs_chance: float  # exact, two-sided, H0: accuracy = 0.5
    equivalence_p: float  # exact TOST, H0: |accuracy − 0.5| ≥ margin
    equivalent_to_chance: bool


@dataclass(frozen=True)
class PooledEstimate:
    """Reader-averaged figure of merit with an RRRC (Hillis df) CI and a TOST equivalence test to 0.5."""

    name: str
    estimate: float
    std_error: float
    df: float
    ci_lower: float  # (1 − alpha), two-sided
    ci_upper: float
    p_value_vs_chance: float  # two-sided
    equivalence_ci_lower: float  # (1 − 2·alpha): the TOST interval
    equivalence_ci_upper: float
    equivalence_p: float
    equivalent_to_chance: bool


@dataclass(frozen=True)
class TuringResult(JsonResult):
    synthetic_label: str
    other_label: str
    threshold: float
    margin: float
    alpha: float
    readers: tuple[ReaderTuring, ...]
    n_images: int
    accuracy: PooledEstimate | None
    auc: PooledEstimate | None
    pooled_auc_all_reads: float
    conclusion: str
    notes: tuple[str, ...]

    def summary(self) -> str:
        level = f"{100 * (1 - self.alpha):g}%"
        lines = [
            f"Visual Turing test: '{self.synthetic_label}' vs '{self.other_label}', call = score >= {self.threshold:g}, "
            f"equivalence margin +/-{self.margin:g} around 0.5",
        ]
        rows = [
            [r.reader, str(r.n_reads), f"{r.accuracy:.4f}", f"[{r.ci_lower:.4f}, {r.ci_upper:.4f}]", format_p(r.p_value_vs_chance),
             format_p(r.equivalence_p), "yes" if r.equivalent_to_chance else "no"]
            for r in self.readers
        ]
        lines += format_table(["reader", "reads", "accuracy", f"{level} CI (exact)", "p vs 0.5", "TOST p", "equivalent"], rows)
        for pooled in (self.accuracy, self.auc):
            if pooled is not None:
                lines.append(
                    f"{pooled.name}: {pooled.estimate:.4f}, {level} CI [{pooled.ci_lower:.4f}, {pooled.ci_upper:.4f}] "
                    f"(df {pooled.df:.2f}); p vs 0.5 = {format_p(pooled.p_value_vs_chance)}; "
                    f"TOST p = {format_p(pooled.equivalence_p)} ({100 * (1 - 2 * self.alpha):g}% CI "
                    f"[{pooled.equivalence_ci_lower:.4f}, {pooled.equivalence_ci_upper:.4f}])"
                )
        lines.append(f"AUC of all reads pooled (descriptive): {self.pooled_auc_all_reads:.4f}")
        lines.append(f"Conclusion: {self.conclusion}")
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)


def reader_accuracy(reader: str, n_correct: int, n_reads: int, margin: float, alpha: float) -> ReaderTuring:
    """Exact binomial accuracy, Clopper–Pearson CI, p against 0.5 and exact TOST for one reader."""
    test = stats.binomtest(n_correct, n_reads, 0.5)
    ci = test.proportion_ci(confidence_level=1 - alpha, method="exact")
    # TOST: H0a accuracy <= 0.5 - margin (reject for many correct), H0b accuracy >= 0.5 + margin
    p_low = float(stats.binom.sf(n_correct - 1, n_reads, 0.5 - margin))
    p_high = float(stats.binom.cdf(n_correct, n_reads, 0.5 + margin))
    p_tost = max(p_low, p_high)
    return ReaderTuring(
        reader=reader,
        n_reads=n_reads,
        n_correct=n_correct,
        accuracy=n_correct / n_reads,
        ci_lower=float(ci.low),
        ci_upper=float(ci.high),
        p_value_vs_chance=float(test.pvalue),
        equivalence_p=p_tost,
        equivalent_to_chance=bool(p_tost < alpha),
    )


def _pooled(name: str, estimate, se: float, df: float, margin: float, alpha: float) -> PooledEstimate:
    dist = stats.norm if np.isinf(df) else stats.t(df)
    z = (estimate - 0.5) / se if se > 0 else math.inf * np.sign(estimate - 0.5)
    p_chance = float(2 * dist.sf(abs(z))) if se > 0 else (1.0 if estimate == 0.5 else 0.0)
    if se > 0:
        p_low = float(dist.sf((estimate - (0.5 - margin)) / se))
        p_high = float(dist.cdf((estimate - (0.5 + margin)) / se))
    else:
        p_low = 0.0 if estimate > 0.5 - margin else 1.0
        p_high = 0.0 if estimate < 0.5 + margin else 1.0
    half = float(dist.ppf(1 - alpha / 2)) * se
    half_tost = float(dist.ppf(1 - alpha)) * se
    p_tost = max(p_low, p_high)
    return PooledEstimate(
        name, float(estimate), float(se), float(df), estimate - half, estimate + half, p_chance,
        estimate - half_tost, estimate + half_tost, p_tost, bool(p_tost < alpha),
    )


def turing_test(
    frame: pd.DataFrame,
    synthetic_label: str = "synthetic",
    threshold: float = 0.5,
    margin: float = 0.10,
    alpha: float = 0.05,
    source: str = "the reading table",
) -> TuringResult:
    """Per-reader and reader-averaged Turing-test statistics (see the module docstring).

    Args:
        frame: long table; one row per (reader, image); ``modality`` = what the image is.
        synthetic_label: the ``modality`` value of synthetic images; exactly one other label must occur.
        threshold: a score ≥ threshold is the call "synthetic" (0.5 for 0/1 or probability answers).
        margin: equivalence margin around chance (0.10 → accuracy and AUC within 0.40–0.60).
        alpha: CIs are (1 − alpha) two-sided; TOST at level alpha uses the (1 − 2·alpha) CI.
    """
    frame = validate_long_table(frame, source)
    labels = sorted(frame["modality"].unique())
    synthetic_label = str(synthetic_label)
    others = [m for m in labels if m != synthetic_label]
    if synthetic_label not in labels or len(others) != 1:
        raise InputError(
            f"{source}: a Turing test needs exactly two modalities, '{synthetic_label}' and one other; the table has "
            f"{', '.join(labels)} (name the synthetic one with --synthetic LABEL).",
            code="turing_modalities",
        )
    if not 0 < margin < 0.5:
        raise InputError(f"{source}: the equivalence margin must be between 0 and 0.5, not {margin!r}.", code="bad_margin")
    work = frame.assign(
        truth=(frame["modality"] == synthetic_label).astype(float),
        case_id=frame["case_id"] + "|" + frame["modality"],
        modality="turing",
    )
    truth = work["truth"].to_numpy() == 1
    correct = (work["score"].to_numpy() >= threshold) == truth
    per_reader = []
    for reader, group in work.assign(correct=correct).groupby("reader_id", sort=False):
        per_reader.append(reader_accuracy(str(reader), int(group["correct"].sum()), len(group), margin, alpha))
    per_reader.sort(key=lambda r: r.reader)
    pooled_auc_all = float(AUC.values(work["score"].to_numpy(), work["truth"].to_numpy())) if 0 < truth.sum() < len(truth) else math.nan

    notes: list[str] = []
    accuracy = auc = None
    try:
        design = reading_design(work, source=source)
    except InputError:
        design = None
        notes.append(
            "readers did not read the images in reader groups (every reader of a group every image of the group), "
            "so no reader- and image-aware pooled CI is given; see the per-reader exact intervals"
        )
    if design is not None and len(design.readers) < 2:
        notes.append("one reader: pooled random-reader intervals need at least two readers")
        design = None
    if design is not None and min(len(g.cases) for g in design.groups) < 2:
        notes.append("a reader group read fewer than two images: no pooled CI")
        design = None
    if design is not None:
        for fom, name in ((proportion_correct(threshold), "mean reader accuracy"), (AUC, "mean reader AUC of the 'synthetic?' score")):
            if fom is AUC and any(np.sum(g.truth == 1) < 2 or np.sum(g.truth == 0) < 2 for g in design.groups):
                continue
            _, _, rrrc, _, _, _ = analyse_design(design, fom_per_group(fom), ["turing"], alpha)
            m = rrrc.modalities[0]
            estimate = _pooled(name, m.estimate, m.std_error, m.df, margin, alpha)
            if fom is AUC:
                auc = estimate
            else:
                accuracy = estimate
    conclusion = _conclusion(accuracy, auc, per_reader, margin, alpha)
    return TuringResult(
        synthetic_label=synthetic_label,
        other_label=others[0],
        threshold=float(threshold),
        margin=float(margin),
        alpha=float(alpha),
        readers=tuple(per_reader),
        n_images=int(work["case_id"].nunique()),
        accuracy=accuracy,
        auc=auc,
        pooled_auc_all_reads=pooled_auc_all,
        conclusion=conclusion,
        notes=tuple(notes),
    )


def _conclusion(accuracy, auc, per_reader, margin, alpha) -> str:
    band = f"[{0.5 - margin:.2f}, {0.5 + margin:.2f}]"
    primary = accuracy
    if primary is None:
        n_eq = sum(r.equivalent_to_chance for r in per_reader)
        n_better = sum(r.ci_lower > 0.5 for r in per_reader)
        return (
            f"{n_eq} of {len(per_reader)} readers were shown to be at chance within {band} (exact TOST at {alpha:g}); "
            f"{n_better} identified synthetic images better than chance."
        )
    if primary.equivalent_to_chance and (auc is None or auc.equivalent_to_chance):
        return (
            f"readers could not tell synthetic from real beyond chance: the {100 * (1 - 2 * alpha):g}% CI of the mean accuracy "
            f"{'and AUC ' if auc is not None else ''}lies inside {band} (equivalence shown, TOST p = {format_p(primary.equivalence_p)})."
        )
    if primary.ci_lower > 0.5 or (auc is not None and auc.ci_lower > 0.5):
        return "readers identified synthetic images better than chance (the CI excludes 0.5): the images are distinguishable."
    return (
        f"equivalence to chance within {band} was NOT shown (the CI is too wide or reaches outside the band); "
        "a non-significant difference from 0.5 does not mean the images are indistinguishable: more reads are needed."
    )
