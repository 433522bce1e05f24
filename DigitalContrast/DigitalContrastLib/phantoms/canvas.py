"""Drawing primitives for the IFU anatomies: the voxel grid, its boxes, the label canvas and vessel tubes.

Everything is drawn in millimetres in the patient's LPS frame (x to the patient's left, y posterior,
z superior) and voxelised on a :class:`Grid` with identity direction; arrays are ``[z, y, x]``.
A builder paints label names (:data:`~DigitalContrastLib.ct.labels.LABELS`) on a :class:`Canvas`
(later paint wins, optionally only over given labels) with boxes, ellipsoids, polyline tubes and
slice-by-slice vessels (:class:`SliceTube`); the helpers below shape profiles and draw random values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from DigitalContrastLib.ct.labels import LABELS


@dataclass
class Box:
    """A sub-block of the grid: its slices and broadcastable LPS coordinates (mm)."""

    sl: tuple[slice, slice, slice]
    z_index: np.ndarray  # (nzb,) grid z indices
    Z: np.ndarray  # (nzb, 1, 1)
    Y: np.ndarray  # (1, nyb, 1)
    X: np.ndarray  # (1, 1, nxb)


class Grid:
    """The voxel grid: sizes, spacing, origin, and per-axis LPS coordinates of voxel centres.

    Identity direction; the grid's centre sits at ``center_lps_mm``.
    """

    def __init__(self, size_xyz: tuple[int, int, int], spacing_xyz_mm: tuple[float, float, float],
                 center_lps_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        self.size_xyz = tuple(int(v) for v in size_xyz)
        self.spacing = tuple(float(v) for v in spacing_xyz_mm)
        self.center = tuple(float(v) for v in center_lps_mm)
        self.origin = tuple(c - (n - 1) / 2.0 * s for c, n, s in zip(self.center, self.size_xyz, self.spacing))
        nx, ny, nz = self.size_xyz
        self.x = (self.origin[0] + np.arange(nx) * self.spacing[0]).astype(np.float32)
        self.y = (self.origin[1] + np.arange(ny) * self.spacing[1]).astype(np.float32)
        self.z = (self.origin[2] + np.arange(nz) * self.spacing[2]).astype(np.float32)
        self.shape_zyx = (nz, ny, nx)

    def centered_at(self, center_lps_mm: tuple[float, float, float]) -> "Grid":
        """The same size and spacing, centred elsewhere."""
        return Grid(self.size_xyz, self.spacing, center_lps_mm)

    def _range(self, axis: np.ndarray, lo: float, hi: float) -> slice:
        i0 = int(np.searchsorted(axis, lo, side="left"))
        i1 = int(np.searchsorted(axis, hi, side="right"))
        return slice(i0, max(i0, i1))

    def box(self, lo_xyz: Sequence[float], hi_xyz: Sequence[float]) -> Box | None:
        """The voxels whose centres lie in the LPS box ``[lo, hi]`` (mm), or None if empty."""
        sx = self._range(self.x, lo_xyz[0], hi_xyz[0])
        sy = self._range(self.y, lo_xyz[1], hi_xyz[1])
        sz = self._range(self.z, lo_xyz[2], hi_xyz[2])
        if sx.start >= sx.stop or sy.start >= sy.stop or sz.start >= sz.stop:
            return None
        zi = np.arange(sz.start, sz.stop)
        return Box(
            (sz, sy, sx), zi, self.z[sz][:, None, None], self.y[sy][None, :, None], self.x[sx][None, None, :]
        )


#: ``clip(box) -> mask``: limits a painted shape to part of its box (broadcastable to the box).
Clip = Callable[[Box], np.ndarray]


def smoothstep(t: np.ndarray | float) -> np.ndarray:
    """0 below 0, 1 above 1, the cubic ``3 t^2 - 2 t^3`` between."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One draw, uniform in ``[lo, hi)``, as a Python float."""
    return float(rng.uniform(lo, hi))


class Canvas:
    """The label map being painted; later paint wins, optionally only over given labels."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.labels = np.zeros(grid.shape_zyx, dtype=np.int16)

    def paint(self, box: Box | None, mask: np.ndarray, name: str, over: tuple[str, ...] | None = None) -> None:
        """Paint label ``name`` where ``mask`` (broadcast to ``box``) holds; only over the labels ``over`` if given."""
        if box is None:
            return
        sub = self.labels[box.sl]
        mask = np.broadcast_to(mask, sub.shape)
        if over is not None:
            allowed = np.zeros(sub.shape, dtype=bool)
            for other in over:
                allowed |= sub == LABELS[other]
            mask = mask & allowed
        sub[mask] = LABELS[name]

    def ellipsoid(self, center: Sequence[float], radii: Sequence[float], name: str,
                  rotation: np.ndarray | None = None, clip: Clip | None = None,
                  over: tuple[str, ...] | None = None) -> None:
        """Paint an ellipsoid (``rotation`` columns = its axes in LPS); ``clip(box) -> mask`` limits it."""
        reach = float(max(radii))
        c = np.asarray(center, dtype=float)
        box = self.grid.box(c - reach, c + reach)
        if box is None:
            return
        dx, dy, dz = box.X - c[0], box.Y - c[1], box.Z - c[2]
        if rotation is None:
            q = (dx / radii[0]) ** 2 + (dy / radii[1]) ** 2 + (dz / radii[2]) ** 2
        else:
            q = 0
            for k in range(3):
                local = dx * rotation[0, k] + dy * rotation[1, k] + dz * rotation[2, k]
                q = q + (local / radii[k]) ** 2
        mask = q <= 1.0
        if clip is not None:
            mask = mask & clip(box)
        self.paint(box, mask, name, over)

    def polyline(self, points: np.ndarray, radii: float | Sequence[float], name: str,
                 over: tuple[str, ...] | None = None, clip: Clip | None = None) -> None:
        """Paint a tube of varying radius along a 3D polyline (capsules between points, mm)."""
        pts = np.asarray(points, dtype=float)
        rad = np.broadcast_to(np.asarray(radii, dtype=float), (len(pts),))
        for p0, p1, r0, r1 in zip(pts[:-1], pts[1:], rad[:-1], rad[1:]):
            reach = max(r0, r1)
            box = self.grid.box(np.minimum(p0, p1) - reach, np.maximum(p0, p1) + reach)
            if box is None or reach <= 0:
                continue
            v = p1 - p0
            vv = float(v @ v) or 1e-9
            dx, dy, dz = box.X - p0[0], box.Y - p0[1], box.Z - p0[2]
            t = np.clip((dx * v[0] + dy * v[1] + dz * v[2]) / vv, 0.0, 1.0)
            d2 = (dx - t * v[0]) ** 2 + (dy - t * v[1]) ** 2 + (dz - t * v[2]) ** 2
            mask = d2 <= (r0 + t * (r1 - r0)) ** 2
            if clip is not None:
                mask = mask & clip(box)
            self.paint(box, mask, name, over)


@dataclass
class SliceTube:
    """A vessel described slice by slice on a fine z lattice (mm): centre, tangent, radii.

    ``lumen_dx/dy`` offset the lumen centre from the outer (sac) centre (eccentric thrombus).
    ``outer`` <= 0 where the vessel is absent. Evaluated on grid slices by interpolation.
    """

    z: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    outer: np.ndarray
    inner: np.ndarray
    lumen: np.ndarray
    lumen_dx: np.ndarray
    lumen_dy: np.ndarray

    def at(self, zq: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for name in ("cx", "cy", "outer", "inner", "lumen", "lumen_dx", "lumen_dy"):
            out[name] = np.interp(zq, self.z, getattr(self, name), left=0.0, right=0.0)
        out["outer"] = np.where(
            (zq < self.z[0]) | (zq > self.z[-1]), 0.0, out["outer"]
        )
        tx = np.gradient(self.cx, self.z)
        ty = np.gradient(self.cy, self.z)
        norm = np.sqrt(1 + tx * tx + ty * ty)
        out["tx"] = np.interp(zq, self.z, tx / norm)
        out["ty"] = np.interp(zq, self.z, ty / norm)
        return out

    def box_and_fields(self, grid: Grid, margin: float = 0.0) -> tuple[Box | None, dict[str, np.ndarray] | None]:
        """The grid box holding the tube, and per-slice fields with distances (mm)."""
        valid = self.outer > 0
        if not valid.any():
            return None, None
        zs, xs, ys, rs = self.z[valid], self.cx[valid], self.cy[valid], self.outer[valid]
        reach = float(rs.max()) + margin
        box = grid.box((xs.min() - reach, ys.min() - reach, zs.min()), (xs.max() + reach, ys.max() + reach, zs.max()))
        if box is None:
            return None, None
        f = self.at(grid.z[box.z_index])
        dx = box.X - f["cx"][:, None, None].astype(np.float32)
        dy = box.Y - f["cy"][:, None, None].astype(np.float32)
        tx = f["tx"][:, None, None].astype(np.float32)
        ty = f["ty"][:, None, None].astype(np.float32)
        proj = dx * tx + dy * ty
        d_outer = np.sqrt(np.maximum(dx * dx + dy * dy - proj * proj, 0))
        lx = dx - f["lumen_dx"][:, None, None].astype(np.float32)
        ly = dy - f["lumen_dy"][:, None, None].astype(np.float32)
        proj = lx * tx + ly * ty
        d_lumen = np.sqrt(np.maximum(lx * lx + ly * ly - proj * proj, 0))
        f.update(dx=dx, dy=dy, d_outer=d_outer, d_lumen=d_lumen)
        return box, f


def capped_radius(z: np.ndarray, radius: np.ndarray, z_end: float, below: bool) -> np.ndarray:
    """Round off a tube's end at ``z_end`` (hemispherical cap): radius per slice beyond the end."""
    r_end = float(np.interp(z_end, z, radius))
    dz = (z_end - z) if below else (z - z_end)
    beyond = dz > 0
    capped = np.sqrt(np.maximum(r_end * r_end - dz * dz, 0.0))
    return np.where(beyond, capped, radius)


def smooth_noise_1d(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """``n`` samples of Gaussian-smoothed white noise (``sigma`` samples), unit standard deviation."""
    from scipy.ndimage import gaussian_filter1d

    v = gaussian_filter1d(rng.standard_normal(n), sigma, mode="nearest")
    return v / (v.std() or 1.0)
