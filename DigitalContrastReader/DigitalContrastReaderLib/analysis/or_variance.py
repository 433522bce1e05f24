"""Obuchowski–Rockette variance components of reader figures of merit θ[modality, reader]: the
mean squares of the modality × reader ANOVA and the jackknife error covariances (Var, Cov1,
Cov2, Cov3), and the RRRC F test with Hillis denominator degrees of freedom.

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
    ms_r_per_modality: tuple[float, ...]
    var_error_per_modality: tuple[float, ...]
    cov2_per_modality: tuple[float, ...]
    var_error_per_reader: tuple[float, ...]
    cov1_per_reader: tuple[float, ...]


def or_components(theta: np.ndarray, theta_jack: np.ndarray) -> ORComponents:
    """OR mean squares and covariances from θ ``[modality, reader]`` and its jackknife ``[modality, reader, case]``."""
    n_mod, n_rdr, n_cases = theta_jack.shape
    dev = theta_jack - theta_jack.mean(axis=-1, keepdims=True)
    # cov[i, j, i', j'] over the case jackknife
    cov = np.einsum("ijk,lmk->ijlm", dev, dev) * ((n_cases - 1) / n_cases)
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
