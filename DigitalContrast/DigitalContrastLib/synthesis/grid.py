"""From the input grid to the model grid and back (arrays ``[z, y, x]``, HU).

* :func:`canonical_orientation`: the transpose/flip (:class:`Orientation`, views, no copy) that makes
  the index axes run along +x, +y, +z of LPS, as the training phantoms do;
* :func:`model_grid_shape`: the model grid on the same physical extent at the card's spacing (mm);
* :func:`hu_to_model_grid`: input HU -> model grid (area averaging where the grid gets coarser,
  linear interpolation where it gets finer, voxel edges aligned), slab by slab;
* :func:`model_grid_to_input`: a model-grid residual back onto the EXACT input grid, added to the
  input HU where it lies above the body threshold, rounded to int16.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .model_grid import Orientation, axis_weights_np, canonical_orientation, model_grid_shape

__all__ = ["Orientation", "canonical_orientation", "model_grid_shape", "axis_weights", "resample_edges",
           "resample_rows", "hu_to_model_grid", "model_grid_to_input"]


def resample_edges(image: torch.Tensor, shape_zyx: Sequence[int]) -> torch.Tensor:
    """Resample ``[B, C, z, y, x]`` onto ``shape_zyx`` with the voxel edges of both grids aligned.

    Axes that get coarser are box-averaged (``adaptive_avg_pool3d``, anti-aliased), axes that get
    finer are linearly interpolated (``align_corners=False``: both grids share their outer edges).
    """
    shape = tuple(int(v) for v in shape_zyx)
    current = tuple(image.shape[2:])
    if current == shape:
        return image
    coarser = tuple(min(c, s) for c, s in zip(current, shape))
    if coarser != current:
        image = F.adaptive_avg_pool3d(image, coarser)
    if coarser != shape:
        image = F.interpolate(image, size=shape, mode="trilinear", align_corners=False)
    return image


def axis_weights(n_in: int, n_out: int) -> torch.Tensor:
    """Dense ``[n_out, n_in]`` float32 resampling matrix along one axis (:func:`.model_grid.axis_weights_np`)."""
    return torch.from_numpy(axis_weights_np(n_in, n_out))


def resample_rows(source: torch.Tensor, weights: torch.Tensor, rows: range) -> torch.Tensor:
    """Rows ``rows`` of ``weights @ source`` along axis 0 (``source`` ``[n_in, ...]`` float32).

    Only the band of input rows the requested output rows touch is read, so resampling a big
    volume slab by slab stays cheap and cache-friendly.
    """
    block = weights[rows.start: rows.stop]
    used = torch.nonzero(block.abs().sum(dim=0) > 0).flatten()
    first, last = int(used[0]), int(used[-1]) + 1
    band = source[first:last].reshape(last - first, -1)
    return (block[:, first:last] @ band).reshape(len(rows), *source.shape[1:])


_RESIDUAL_LIMIT_HU = 4096  # a residual beyond this is not contrast; it also keeps int16 sums in range


_INT16_HEADROOM = 32767 - _RESIDUAL_LIMIT_HU


def _slab_ranges(n: int, slab: int) -> list[range]:
    return [range(z, min(z + slab, n)) for z in range(0, n, slab)]


def _inplane_mean(block: torch.Tensor, shape_yx: Sequence[int]) -> torch.Tensor:
    """Downsample ``[c, y, x]`` float32 in-plane to ``shape_yx`` (area averaging, edges aligned).

    Integer factors up to 4 use strided sums (several times faster than adaptive pooling on a CPU);
    anything else goes through :func:`resample_edges`.
    """
    c, ny, nx = block.shape
    gy, gx = (int(v) for v in shape_yx)
    if (ny, nx) == (gy, gx):
        return block
    fy, fx = ny // gy, nx // gx
    if ny == fy * gy and nx == fx * gx and fy * fx <= 16:
        total = block[:, 0::fy, 0::fx].clone()
        for i in range(fy):
            for j in range(fx):
                if i or j:
                    total += block[:, i::fy, j::fx]
        return total.mul_(1.0 / (fy * fx))
    return resample_edges(block[None, None], (c, gy, gx))[0, 0]


def _inplane_resample(block: torch.Tensor, shape_yx: Sequence[int]) -> torch.Tensor:
    """Resample ``[c, y, x]`` float32 in-plane to ``shape_yx`` (edges aligned), as :func:`resample_edges`.

    When both in-plane axes get finer this is bilinear interpolation with the slices as channels
    (equal to ``resample_edges``' trilinear with z unchanged, and cheaper).
    """
    c, ny, nx = block.shape
    gy, gx = (int(v) for v in shape_yx)
    if (ny, nx) == (gy, gx):
        return block
    if gy >= ny and gx >= nx:
        return F.interpolate(block[None], size=(gy, gx), mode="bilinear", align_corners=False)[0]
    return resample_edges(block[None, None], (c, gy, gx))[0, 0]


def hu_to_model_grid(canonical_hu: np.ndarray, grid_shape_zyx: Sequence[int], slab: int = 16) -> torch.Tensor:
    """Resample a canonical ``[z, y, x]`` HU array (any dtype, any strides) to the model grid.

    In-plane first, slab by slab (so the full-resolution volume is never held as float32), then
    along z with :func:`axis_weights`. Returns float32 HU ``[gz, gy, gx]``.
    """
    nz = canonical_hu.shape[0]
    gz, gy, gx = (int(v) for v in grid_shape_zyx)
    inplane = torch.empty((nz, gy, gx), dtype=torch.float32)
    for rows in _slab_ranges(nz, slab):
        block = torch.from_numpy(np.ascontiguousarray(canonical_hu[rows.start: rows.stop])).to(torch.float32)
        inplane[rows.start: rows.stop] = _inplane_mean(block, (gy, gx))
    if gz == nz:
        return inplane
    weights = axis_weights(nz, gz)
    return torch.cat([resample_rows(inplane, weights, rows) for rows in _slab_ranges(gz, slab)])


def model_grid_to_input(
    values: torch.Tensor,
    out: np.ndarray,
    base_hu: np.ndarray | None = None,
    threshold_hu: float = -500.0,
    slab: int = 8,
) -> None:
    """Resample model-grid ``values`` ``[gz, gy, gx]`` onto the input grid, slab by slab, into ``out``.

    With ``base_hu`` (the canonical input HU, same shape as ``out``): ``out = base + values`` where
    ``base > threshold_hu`` and ``out = base`` elsewhere, rounded to ``out``'s dtype (int16). Without
    it: ``out = values`` (rounded, clipped at 0 for SD maps written to int16). ``out`` may be a strided
    view (the caller's array seen in canonical order).
    """
    nz, ny, nx = out.shape
    values = values.float()
    weights = axis_weights(values.shape[0], nz)
    info = np.iinfo(out.dtype) if np.issubdtype(out.dtype, np.integer) else None
    for rows in _slab_ranges(nz, slab):
        # along z on the coarse plane first, then in-plane: the same separable map, but no
        # full-resolution float32 copy of the volume is ever allocated (only one slab's)
        block = _inplane_resample(resample_rows(values, weights, rows), (ny, nx))
        if base_hu is not None:
            base = torch.from_numpy(np.ascontiguousarray(base_hu[rows.start: rows.stop]))
            if base.dtype == torch.int16 and out.dtype == np.int16 and int(base.abs().max()) < _INT16_HEADROOM:
                # integer path: the residual is rounded and added in int16 (no float copy of the input)
                step = block.round_().clamp_(-_RESIDUAL_LIMIT_HU, _RESIDUAL_LIMIT_HU).to(torch.int16)
                step.masked_fill_(base <= threshold_hu, 0)
                target = out[rows.start: rows.stop]
                if all(stride > 0 for stride in target.strides):  # write straight into the caller's array
                    torch.add(base, step, out=torch.from_numpy(target))
                else:
                    target[...] = (base + step).numpy()
                continue
            base_f = base.to(torch.float32)
            block = torch.where(base > threshold_hu, base_f + block.clamp_(-_RESIDUAL_LIMIT_HU, _RESIDUAL_LIMIT_HU), base_f)
        if info is not None:
            block = block.round_().clamp_(info.min, info.max)
        out[rows.start: rows.stop] = block.numpy().astype(out.dtype, copy=False)
