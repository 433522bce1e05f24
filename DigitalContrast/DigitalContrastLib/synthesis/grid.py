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

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from DigitalContrastLib.synthesis.slab_threads import run_slabs

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


def empty_int16_volume(shape_zyx: Sequence[int]) -> np.ndarray:
    """An uninitialised int16 ``[z, y, x]`` array for a synthesis output, its memory allocated by torch.

    numpy asks the kernel for transparent huge pages on large arrays; on a machine whose memory is
    fragmented the first touch of each 2 MiB page may wait for the kernel to compact memory (about
    0.4 s for a 512 x 512 x 300 volume on an Intel Xeon, issue 31). torch's allocation is faulted in
    4 KiB pages: a steadier cost (0.03-0.05 s more than numpy's where huge pages come free).
    """
    return torch.empty(tuple(int(v) for v in shape_zyx), dtype=torch.int16).numpy()


def model_grid_to_input(
    values: torch.Tensor,
    out: np.ndarray,
    base_hu: np.ndarray | None = None,
    threshold_hu: float = -500.0,
    slab: int = 4,
    workers: int | None = None,
) -> None:
    """Resample model-grid ``values`` ``[gz, gy, gx]`` onto the input grid, slab by slab, into ``out``.

    With ``base_hu`` (the canonical input HU, same shape as ``out``): ``out = base + values`` where
    ``base > threshold_hu`` and ``out = base`` elsewhere, rounded to ``out``'s dtype (int16). Without
    it: ``out = values`` (rounded, clipped at 0 for SD maps written to int16). ``out`` may be a strided
    view (the caller's array seen in canonical order).

    The slabs run on ``workers`` threads with torch at one thread each (:func:`.slab_threads.run_slabs`),
    so another process taking a core slows this stage by no more than that core's share. What is
    the same for every slab is decided once: whether the residual needs its ±4096 HU clamp (only
    when the coarse grid reaches it: linear interpolation stays inside its inputs' range) and
    whether the whole input fits the int16 path (one ``aminmax``; where it does not, each block of
    8 slices decides for itself). The output is the same, voxel for voxel, as the loop of slabs of 8
    that each decided for themselves (``Testing/test_postprocess.py``). ``slab`` must divide 8.
    """
    nz, ny, nx = out.shape
    values = values.float()
    weights = axis_weights(values.shape[0], nz)
    info = np.iinfo(out.dtype) if np.issubdtype(out.dtype, np.integer) else None
    clamp = _needs_residual_clamp(values)
    int16_blocks = _int16_path_blocks(base_hu, out.dtype) if base_hu is not None else []
    if _INT16_DECISION_SLICES % slab:
        raise ValueError(f"slab {slab} does not divide {_INT16_DECISION_SLICES}")
    # an int16 voxel lies above threshold_hu exactly when it lies above its floor: an integer
    # comparison, several times faster than one that promotes every voxel to float
    floor = math.floor(threshold_hu)
    int16_threshold: float = floor if -32768 <= floor <= 32767 else threshold_hu

    def one_slab(rows: range) -> None:
        # along z on the coarse plane first, then in-plane: the same separable map, but no
        # full-resolution float32 copy of the volume is ever allocated (only one slab's)
        block = _inplane_resample(resample_rows(values, weights, rows), (ny, nx))
        target = out[rows.start: rows.stop]
        if base_hu is not None:
            base = torch.from_numpy(np.ascontiguousarray(base_hu[rows.start: rows.stop]))
            if int16_blocks[rows.start // _INT16_DECISION_SLICES]:
                # integer path: the residual is rounded and added in int16 (no float copy of the input);
                # times 0 or 1 rather than masked_fill/where, which torch runs unvectorised on int16
                step = block.round_()
                if clamp:
                    step.clamp_(-_RESIDUAL_LIMIT_HU, _RESIDUAL_LIMIT_HU)
                step = step.to(torch.int16).mul_(base > int16_threshold)
                _add_into(base, step, target)
                return
            base_f = base.to(torch.float32)
            if clamp:
                block.clamp_(-_RESIDUAL_LIMIT_HU, _RESIDUAL_LIMIT_HU)
            block = torch.where(base > threshold_hu, base_f + block, base_f)
        if info is not None:
            block = block.round_().clamp_(info.min, info.max)
        target[...] = block.numpy().astype(out.dtype, copy=False)

    run_slabs(one_slab, _slab_ranges(nz, slab), workers)


def _needs_residual_clamp(values: torch.Tensor) -> bool:
    """Whether the residual (HU, model grid) reaches the ±4096 HU clamp anywhere.

    Below it by a margin of 1 HU, the interpolated values (convex combinations, a few float32
    roundings off) stay inside the clamp too, so clamping each slab would change nothing.
    """
    if values.numel() == 0:
        return False
    low, high = torch.aminmax(values)
    return not (-(_RESIDUAL_LIMIT_HU - 1) < float(low) and float(high) < _RESIDUAL_LIMIT_HU - 1)


#: The int16 path is chosen per block of this many slices, as the loop of slabs of 8 before issue 31
#: did: the two paths round a residual of exactly x.5 HU differently, so this keeps the output the same.
_INT16_DECISION_SLICES = 8


def _int16_path_blocks(base_hu: np.ndarray, out_dtype: np.dtype) -> list[bool]:
    """Per block of :data:`_INT16_DECISION_SLICES` slices of ``base_hu`` (canonical ``[z, y, x]`` HU): whether
    the residual is added in int16 there (int16 in and out, every ``|HU|`` below the headroom).

    One ``aminmax`` over the whole input answers for every block when it fits (always, for a CT on
    the usual scale); otherwise each block is checked on its own, exactly as the loop of slabs of 8
    did (``abs`` wraps -32768 to itself there, so padding at -32768 does not count against it).
    """
    count = -(-base_hu.shape[0] // _INT16_DECISION_SLICES)
    if base_hu.dtype != np.int16 or out_dtype != np.int16:
        return [False] * count
    if base_hu.size == 0:
        return [True] * count
    flips = tuple(axis for axis, stride in enumerate(base_hu.strides) if stride < 0)
    positive = np.flip(base_hu, flips) if flips else base_hu  # same values, strides torch can view
    low, high = torch.aminmax(torch.from_numpy(positive))
    if -_INT16_HEADROOM < int(low) and int(high) < _INT16_HEADROOM:
        return [True] * count
    return [int(torch.from_numpy(np.ascontiguousarray(base_hu[rows.start: rows.stop])).abs().max()) < _INT16_HEADROOM
            for rows in _slab_ranges(base_hu.shape[0], _INT16_DECISION_SLICES)]


def _add_into(base: torch.Tensor, step: torch.Tensor, target: np.ndarray) -> None:
    """``target[...] = base + step``, written straight into the caller's array where its strides allow a
    torch view (positive strides), through a copy otherwise."""
    if all(stride > 0 for stride in target.strides):
        torch.add(base, step, out=torch.from_numpy(target))
    else:
        target[...] = (base + step).numpy()
