"""The model grid without torch: orientation, grid shape and separable resampling in numpy.

The engine (:mod:`.grid`, torch) and the input's out-of-distribution features (:mod:`.ood`, which
runs where torch may be absent: the input check, the numpy-only worker) see an input the same way:

* :func:`canonical_orientation`: the transpose/flip (:class:`Orientation`, views, no copy) that makes
  the index axes run along +x, +y, +z of LPS, as the training phantoms do;
* :func:`model_grid_shape`: the grid on the same physical extent at the card's spacing (mm);
* :func:`axis_weights_np`: one axis's resampling matrix, voxel edges aligned (area averaging where
  the grid gets coarser, linear interpolation where it gets finer);
* :func:`to_model_grid_np`: a whole canonical ``[z, y, x]`` array resampled with those matrices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Orientation:
    """How an input array maps to the canonical (LPS-ordered, positive) axis order.

    ``canonical = np.flip(np.transpose(array, permutation), flip_axes)``; both in ``[z, y, x]`` axes.
    """

    permutation: tuple[int, int, int]
    flip_axes: tuple[int, ...]

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        out = np.transpose(array, self.permutation)
        return np.flip(out, self.flip_axes) if self.flip_axes else out

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        out = np.flip(array, self.flip_axes) if self.flip_axes else array
        return np.transpose(out, np.argsort(self.permutation))

    def spacing_zyx(self, spacing_xyz: Sequence[float]) -> tuple[float, float, float]:
        """Spacing of the canonical array's ``[z, y, x]`` axes."""
        zyx = (spacing_xyz[2], spacing_xyz[1], spacing_xyz[0])
        return tuple(float(zyx[p]) for p in self.permutation)  # type: ignore[return-value]


def canonical_orientation(direction: Sequence[float]) -> Orientation:
    """The transpose/flip that brings index axes closest to LPS +x, +y, +z.

    ``direction`` is ITK's row-major 3x3 matrix: column ``c`` is the LPS direction of index axis
    ``c`` (x, y, z). Array axes are ``[z, y, x]`` = index axes ``[2, 1, 0]``.
    """
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    # for each LPS axis (x, y, z) pick the index axis pointing most along it
    index_axis_for_lps: list[int] = []
    remaining = [0, 1, 2]
    for lps_axis in np.argsort(-np.abs(matrix).max(axis=1)):  # most decisive LPS axis first
        best = max(remaining, key=lambda c: abs(matrix[lps_axis, c]))
        remaining.remove(best)
        index_axis_for_lps.append((int(lps_axis), best))
    mapping = dict(index_axis_for_lps)  # lps axis -> index axis
    # canonical array axes [z, y, x] = LPS axes [2, 1, 0]; index axis c is array axis 2 - c
    permutation = tuple(2 - mapping[lps] for lps in (2, 1, 0))
    flips = tuple(a for a, lps in enumerate((2, 1, 0)) if matrix[lps, mapping[lps]] < 0)
    return Orientation(permutation=permutation, flip_axes=flips)  # type: ignore[arg-type]


def model_grid_shape(shape_zyx: Sequence[int], spacing_zyx: Sequence[float],
                     target_spacing_zyx: Sequence[float] | None) -> tuple[int, int, int]:
    """Voxel counts of the model grid covering the same physical extent (edges aligned)."""
    if target_spacing_zyx is None:
        return tuple(int(n) for n in shape_zyx)  # type: ignore[return-value]
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape_zyx, spacing_zyx, target_spacing_zyx))  # type: ignore[return-value]


def axis_weights_np(n_in: int, n_out: int) -> np.ndarray:
    """Dense ``[n_out, n_in]`` float32 resampling matrix along one axis, voxel edges aligned.

    Coarser (``n_out < n_in``): exact area overlap of each output voxel with the input voxels,
    rows summing to 1. Finer: linear interpolation at the output centres, the same as
    ``torch.nn.functional.interpolate(mode="linear", align_corners=False)`` (clamped at the ends).
    """
    if n_out == n_in:
        return np.eye(n_in, dtype=np.float32)
    weights = np.zeros((n_out, n_in), dtype=np.float64)
    ratio = n_in / n_out
    if n_out < n_in:
        for i in range(n_out):
            lo, hi = i * ratio, (i + 1) * ratio
            for j in range(int(math.floor(lo)), min(int(math.ceil(hi)), n_in)):
                weights[i, j] = min(hi, j + 1) - max(lo, j)
        weights /= weights.sum(axis=1, keepdims=True)
    else:
        for i in range(n_out):
            src = max((i + 0.5) * ratio - 0.5, 0.0)
            j0 = min(int(math.floor(src)), n_in - 1)
            j1 = min(j0 + 1, n_in - 1)
            frac = src - j0
            weights[i, j0] += 1.0 - frac
            weights[i, j1] += frac
    return weights.astype(np.float32)


def to_model_grid_np(canonical_hu: np.ndarray, grid_shape_zyx: Sequence[int], slab: int = 16) -> np.ndarray:
    """Resample a canonical ``[z, y, x]`` HU array to ``grid_shape_zyx`` (float32), axis by axis.

    In-plane first, ``slab`` slices at a time (the full-resolution volume is never held as float32),
    then along z. Within float32 rounding the same values as the engine's ``grid.hu_to_model_grid``,
    except where the grid gets coarser in-plane by a non-integer factor: there the engine's adaptive
    pooling averages whole voxels where this weighs the partial ones.
    """
    nz, ny, nx = canonical_hu.shape
    gz, gy, gx = (int(v) for v in grid_shape_zyx)
    wy, wx = axis_weights_np(ny, gy), axis_weights_np(nx, gx)
    inplane = np.empty((nz, gy, gx), dtype=np.float32)
    for start in range(0, nz, slab):
        block = np.asarray(canonical_hu[start: start + slab], dtype=np.float32)
        inplane[start: start + slab] = wy @ block @ wx.T
    if gz == nz:
        return inplane
    wz = axis_weights_np(nz, gz)
    return np.tensordot(wz, inplane, axes=(1, 0)).astype(np.float32, copy=False)
