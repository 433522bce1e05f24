"""Obuchowski–Rockette variance components of reader figures of merit θ[modality, reader]: the
mean squares of the modality × reader ANOVA and the jackknife error covariances (Var, Cov1,
Cov2, Cov3), and the RRRC F test with Hillis denominator degrees of freedom.

The covariances are averages over all pairs of the given error covariance matrix. In a
split-plot design (``reading_design.py``) the pairs of readers in different groups have zero
covariance (independent cases), so Cov2 and Cov3 are ``p`` times their within-group values, ``p``
the share of reader pairs that are in the same group; with them the OR expected mean squares,
the F test, its Hillis df and the CIs of the crossed design hold unchanged
(E[MS(TR)] = σ²_TR + Var − Cov1 − Cov2 + Cov3 and Var(θ̄_1· − θ̄_2·) = 2/J·[σ²_TR + Var − Cov1 +
(J − 1)(Cov2 − Cov3)] with these averages). ``p`` = 1 is the crossed design; ``p`` = 0 (one reader
per group) gives Cov2 = Cov3 = 0, MRMCaov's "cases nested within readers".

See :mod:`~DigitalContrastReaderLib.analysis.mrmc` for the analyses built on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


@dataclass(frozen=True)
class ORComponents:
    """Mean squares of the reader figures of merit and jackknife error covariances.

    ``var_r`` and ``var_tr`` are the OR variance components (ANOVA estimates; can be negative).
    ``cov2``/``cov3`` average over all reader pairs; ``same_group_pair_fraction`` is the share of
    reader pairs in the same split-plot group (1 when fully crossed) and ``cov2_within_group``/
    ``cov3_within_group`` the averages over those pairs only.
    Per-modality and per-reader tuples follow the modality and reader order of the analysis.
    """

    n_modalities: int
    n_readers: int
    n_cases: int
    ms_t: float
    ms_r: float
    ms_tr: float
    var_error: float
    cov1: float
    cov2: float
    cov3: float
    var_r: float
    var_tr: float
    same_group_pair_fraction: float
    cov2_within_group: float
    cov3_within_group: float
    ms_r_per_modality: tuple[float, ...]
    var_error_per_modality: tuple[float, ...]
    cov2_per_modality: tuple[float, ...]
    var_error_per_reader: tuple[float, ...]
    cov1_per_reader: tuple[float, ...]


def jackknife_covariance(theta_jack: np.ndarray) -> np.ndarray:
    """``cov[i, j, i', j']`` = (K−1)/K · Σ_k (θ_ij(−k) − mean)(θ_i'j'(−k) − mean) from ``[modality, reader, case]``."""
    n_cases = theta_jack.shape[-1]
    dev = theta_jack - theta_jack.mean(axis=-1, keepdims=True)
    return np.einsum("ijk,lmk->ijlm", dev, dev) * ((n_cases - 1) / n_cases)


def or_components(theta: np.ndarray, theta_jack: np.ndarray) -> ORComponents:
    """OR mean squares and covariances of a crossed design: θ ``[modality, reader]``, jackknife ``[modality, reader, case]``."""
    return or_components_from_covariance(theta, jackknife_covariance(theta_jack), n_cases=theta_jack.shape[-1])


def or_components_from_covariance(
    theta: np.ndarray, cov: np.ndarray, n_cases: int, same_group: np.ndarray | None = None
) -> ORComponents:
    """OR mean squares and covariances from θ ``[modality, reader]`` and the error covariance
    ``cov[modality, reader, modality, reader]``; ``same_group[reader, reader]`` (default: all True)
    marks the reader pairs that read the same cases (split-plot groups)."""
    n_mod, n_rdr = theta.shape
    if same_group is None:
        same_group = np.ones((n_rdr, n_rdr), dtype=bool)
    off_diagonal = ~np.eye(n_rdr, dtype=bool)
    pairs = int(off_diagonal.sum())
    fraction = float((same_group & off_diagonal).sum() / pairs) if pairs else math.nan
    same_mod = np.eye(n_mod, dtype=bool)[:, None, :, None]
    same_rdr = np.eye(n_rdr, dtype=bool)[None, :, None, :]
    var_error = _mean_or_nan(cov[same_mod & same_rdr])
    cov1 = _mean_or_nan(cov[~same_mod & same_rdr])
    cov2 = _mean_or_nan(cov[same_mod & ~same_rdr])
    cov3 = _mean_or_nan(cov[~same_mod & ~same_rdr])
    per_mod = [cov[i, :, i, :] for i in range(n_mod)]
    off_r = ~np.eye(n_rdr, dtype=bool)
    per_rdr = [cov[:, j, :, j] for j in range(n_rdr)]
    off_m = ~np.eye(n_mod, dtype=bool)

    mod_mean = theta.mean(axis=1)
    rdr_mean = theta.mean(axis=0)
    grand = theta.mean()
    ms_t = n_rdr * np.sum((mod_mean - grand) ** 2) / (n_mod - 1) if n_mod > 1 else math.nan
    ms_r = n_mod * np.sum((rdr_mean - grand) ** 2) / (n_rdr - 1) if n_rdr > 1 else math.nan
    if n_mod > 1 and n_rdr > 1:
        resid = theta - mod_mean[:, None] - rdr_mean[None, :] + grand
        ms_tr = float(np.sum(resid**2) / ((n_mod - 1) * (n_rdr - 1)))
        var_tr = ms_tr - var_error + cov1 + cov2 - cov3
        var_r = (ms_r - var_error - (n_mod - 1) * cov1 + cov2 + (n_mod - 1) * cov3 - var_tr) / n_mod
    else:
        ms_tr = var_tr = var_r = math.nan
    ms_r_i = tuple(
        float(np.sum((theta[i] - mod_mean[i]) ** 2) / (n_rdr - 1)) if n_rdr > 1 else math.nan for i in range(n_mod)
    )
    return ORComponents(
        n_modalities=n_mod,
        n_readers=n_rdr,
        n_cases=n_cases,
        ms_t=float(ms_t),
        ms_r=float(ms_r),
        ms_tr=float(ms_tr),
        var_error=var_error,
        cov1=cov1,
        cov2=cov2,
        cov3=cov3,
        var_r=float(var_r),
        var_tr=float(var_tr),
        same_group_pair_fraction=fraction,
        cov2_within_group=cov2 / fraction if fraction > 0 else math.nan,
        cov3_within_group=cov3 / fraction if fraction > 0 else math.nan,
        ms_r_per_modality=ms_r_i,
        var_error_per_modality=tuple(float(np.diag(m).mean()) for m in per_mod),
        cov2_per_modality=tuple(_mean_or_nan(m[off_r]) for m in per_mod),
        var_error_per_reader=tuple(float(np.diag(m).mean()) for m in per_rdr),
        cov1_per_reader=tuple(_mean_or_nan(m[off_m]) for m in per_rdr),
    )


def rrrc_f_test(c: ORComponents) -> tuple[float, float, float, float]:
    """RRRC global test: ``(F, ndf, ddf_H, p)``; the error term is MS(TR) + J·max(Cov2 − Cov3, 0)."""
    n_mod, n_rdr = c.n_modalities, c.n_readers
    error_term = c.ms_tr + n_rdr * max(c.cov2 - c.cov3, 0.0)
    ndf = n_mod - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        f_value = c.ms_t / error_term if error_term > 0 else math.nan
        ddf = error_term**2 / (c.ms_tr**2 / ((n_mod - 1) * (n_rdr - 1))) if c.ms_tr > 0 else math.inf
    p_value = float(stats.f.sf(f_value, ndf, ddf)) if np.isfinite(f_value) else math.nan
    return float(f_value), float(ndf), float(ddf), p_value
