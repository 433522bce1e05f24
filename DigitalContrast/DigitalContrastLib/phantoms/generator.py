"""Paired procedural CT phantoms: non-contrast CT, arterial-phase CT angiogram and a label map.

The phantoms are the project's training data, demo and ground truth. One seed gives one
patient: the anatomy is drawn in millimetres in the patient's LPS frame (x to the patient's
left, y posterior, z superior; the body's midline is x = 0), then voxelised on the grid asked
for, with identity direction, centred on the body in-plane and on z = ``center_z_mm`` (0 by
default), so the same seed gives the same anatomy at any size, spacing and z centre (only the
noise depends on the grid). A field of view of about 350 mm in-plane shows the whole body; 400 mm
craniocaudal centred on z = 0 spans the lung bases to the hips; centred on z = 250 mm
(:data:`CHEST_CENTER_Z_MM`) it spans the kidneys to the aortic arch.

One label map, two HU tables (non-contrast and arterial phase), partial-volume blur, then
independent, spatially correlated noise for each scan. Every sampled value is recorded in
``PhantomCase.params`` (and ``phantom.json``).

Label codes: :data:`~DigitalContrastLib.ct.labels.LABELS` (the table is in that module).

HU tables (per-case values drawn uniformly in these ranges; ``HU_RANGES``)
========================================================================

Values are the noise-free level of a label, before blur and noise. "blood" is the case's
unenhanced blood level, U(30, 50) HU, shared by the aortic lumen, branch arteries and veins.

==================  ====================  ===================================================
label               non-contrast (HU)     arterial phase (HU)
==================  ====================  ===================================================
outside             -1000                 -1000
soft_tissue         20 ... 40             NC + 0 ... 10
fat                 -120 ... -80          NC + 0 ... 6 (at most -80)
muscle              35 ... 55             50 ... 70 (at least NC + 5)
cortical_bone       750 ... 1800          NC + 0 ... 15
bone_marrow         200 ... 300           NC + 5 ... 25
liver               50 ... 65             60 ... 80 (at least NC + 5)
kidney_cortex       30 ... 40             150 ... 200
kidney_medulla      cortex - 2 ... 5      70 ... 110
vena_cava           blood +- 3            NC + 5 ... 15 below the renal veins (unenhanced);
                                          above them + 30 ... 80 (enhanced renal return)
aortic_lumen        blood (30 ... 50)     250 ... 450 at every level: mid value L with a
                                          craniocaudal gradient of g = 0 ... 15 % across the
                                          aorta, L (1 + g (u - 1/2)), u = 0 ... 1 along it
thrombus            blood - 6 ... 12      NC + 5 ... 20, clipped to 40 ... 90 (no enhancement)
calcification       300 ... 1200          the same value
aortic_wall         40 ... 50             NC + 10 ... 30
branch_artery       blood                 as the aortic lumen at the same level
bowel_gas           -1000 ... -900        the same value
bowel               10 ... 35             NC + 5 ... 20
spleen              40 ... 50             90 ... 130
lung                -910 ... -850         NC + 0 ... 20
disc                70 ... 100            NC + 0 ... 10
vein                blood +- 3            NC + 30 ... 90
pancreas            35 ... 50             100 ... 140
fluid               0 ... 15              NC + 0 ... 5
myocardium          35 ... 50             90 ... 130
heart_left          blood                 the case's aortic mid level + 0 ... 30
pulmonary_artery    blood                 180 ... 450
heart_right         blood                 pulmonary artery - 60 ... + 20, clipped to 120 ... 400
==================  ====================  ===================================================

Image formation
===============

1. The noise-free HU images are the label map through each table (plus the lumen gradient
   and the caval mixing, which vary with z).
2. Optional misregistration: the contrast scan's anatomy is moved by a rigid transform
   (:class:`RigidMisregistration`), resampled with linear interpolation.
3. Partial-volume blur: a Gaussian of ``blur_voxels`` x spacing mm per axis (U(0.5, 1.0) voxel,
   shared by both scans: one scanner, one reconstruction).
4. Noise, independent for each scan: white Gaussian noise shaped in-plane to a noise power
   spectrum ``NPS(f) ~ f exp(-f^2 / (2 f_peak^2))`` (a filtered-backprojection-like band-pass
   with its peak at ``f_peak`` = U(0.2, 0.3) mm^-1 where the grid can hold it), smoothed along z
   by a Gaussian of ``noise_z_sigma_voxels``, then rescaled so that the standard deviation of
   the whole noise field equals the scan's sampled sigma, U(8, 25) HU.
5. Rounded and clipped to -1024 ... 3071 HU (the scanner range, inside int16).

Anatomy: each intended use draws its own patient in ``phantom_<ifu>.py`` (registered with
:func:`register_ifu`); ``phantom_aorta.py`` draws the trunk from the aortic arch to the hips.
Aneurysm: present with probability ``ANEURYSM_PROBABILITY`` (0.7): a fusiform infrarenal sac of
maximum outer diameter U(35, 80) mm with an eccentric crescent of intraluminal thrombus whose
thickness and side vary along z, and calcified plaques in the wall.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.errors import InputError, JobError, OutputError
from DigitalContrastLib.ct.labels import LABELS
from DigitalContrastLib.ct.paired_case import CASE_FILES, PHANTOM_PARAMS_FILE
from DigitalContrastLib.ct.volume import IDENTITY_DIRECTION, CTVolume

GENERATOR_VERSION = "1.4.0"
"""Bumped whenever the same seed and grid give different voxels (1.4.0: lung and soft tissue round the
thoracic aorta instead of fat; fields of view centred on the abdomen are unchanged)."""

#: Documented range of each label's noise-free level: ``name -> ((nc_lo, nc_hi), (c_lo, c_hi))``.
#: The vena cava's contrast range is the unenhanced part below the renal veins.
HU_RANGES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "outside": ((-1000, -1000), (-1000, -1000)),
    "soft_tissue": ((20, 40), (20, 50)),
    "fat": ((-120, -80), (-120, -80)),
    "muscle": ((35, 55), (50, 70)),
    "cortical_bone": ((750, 1800), (750, 1815)),
    "bone_marrow": ((200, 300), (205, 325)),
    "liver": ((50, 65), (60, 80)),
    "kidney_cortex": ((30, 40), (150, 200)),
    "kidney_medulla": ((25, 38), (70, 110)),
    "vena_cava": ((27, 53), (32, 68)),
    "aortic_lumen": ((30, 50), (250, 450)),
    "thrombus": ((18, 44), (40, 64)),
    "calcification": ((300, 1200), (300, 1200)),
    "aortic_wall": ((40, 50), (50, 80)),
    "branch_artery": ((30, 50), (250, 450)),
    "bowel_gas": ((-1000, -900), (-1000, -900)),
    "bowel": ((10, 35), (15, 55)),
    "spleen": ((40, 50), (90, 130)),
    "lung": ((-910, -850), (-910, -830)),
    "disc": ((70, 100), (70, 110)),
    "vein": ((27, 53), (57, 143)),
    "pancreas": ((35, 50), (100, 140)),
    "fluid": ((0, 15), (0, 20)),
    "myocardium": ((35, 50), (90, 130)),
    "heart_left": ((30, 50), (250, 480)),
    "heart_right": ((30, 50), (120, 400)),
    "pulmonary_artery": ((30, 50), (180, 450)),
}

ANEURYSM_PROBABILITY = 0.7
CHEST_CENTER_Z_MM = 250.0
"""A 400 mm field of view centred here (LPS z, mm) reaches from the kidneys to the aortic arch."""
HU_CLIP = (-1024, 3071)
_MAX_VOXELS = 1024 * 1024 * 1024 // 4  # 256 M voxels: several GB of float32 work arrays


# ============================================================================ public types
@dataclass
class RigidMisregistration:
    """A rigid motion of the contrast scan's anatomy relative to the non-contrast scan.

    Convention (ITK ``Euler3DTransform`` with the default Z-X-Y order, LPS millimetres):
    a point ``p`` of the non-contrast anatomy appears in the contrast volume at
    ``T(p) = R (p - c) + c + t`` with ``R = Rz(rotation_z_deg) @ Rx(rotation_x_deg) @ Ry(rotation_y_deg)``,
    ``c`` the centre of the grid and ``t = translation_mm`` (x, y, z).

    ``T`` is thus the transform that registers the pair: ``SimpleITK.Resample(contrast,
    noncontrast, T)`` brings the contrast scan back onto the non-contrast anatomy (ITK transforms
    map fixed-image points to moving-image points).
    """

    rotation_z_deg: float = 0.0
    rotation_x_deg: float = 0.0
    rotation_y_deg: float = 0.0
    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def random(cls, seed: int, max_rotation_deg: float = 3.0, max_translation_mm: float = 5.0) -> "RigidMisregistration":
        """A small random motion drawn from ``seed`` (rotations and shifts uniform in +- the maxima),
        rounded to 1e-6 so that the values recorded in ``phantom.json`` are exactly those applied."""
        rng = np.random.default_rng([int(seed), 101])
        rz, rx, ry = (round(float(v), 6) for v in rng.uniform(-max_rotation_deg, max_rotation_deg, 3))
        t = tuple(round(float(v), 6) for v in rng.uniform(-max_translation_mm, max_translation_mm, 3))
        return cls(rz, rx, ry, t)  # type: ignore[arg-type]

    def rotation_matrix(self) -> np.ndarray:
        """``R = Rz @ Rx @ Ry`` (3x3)."""
        az, ax, ay = (math.radians(v) for v in (self.rotation_z_deg, self.rotation_x_deg, self.rotation_y_deg))
        rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
        rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
        ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
        return rz @ rx @ ry

    def matrix_4x4(self, center_lps_mm: tuple[float, float, float]) -> np.ndarray:
        """The homogeneous 4x4 matrix of ``T`` (LPS mm) for rotation centre ``center_lps_mm``."""
        r = self.rotation_matrix()
        c = np.asarray(center_lps_mm, dtype=float)
        m = np.eye(4)
        m[:3, :3] = r
        m[:3, 3] = c - r @ c + np.asarray(self.translation_mm, dtype=float)
        return m

    def to_sitk(self, center_lps_mm: tuple[float, float, float]):
        """``T`` as a ``SimpleITK.Euler3DTransform`` about ``center_lps_mm``."""
        import SimpleITK as sitk

        transform = sitk.Euler3DTransform()
        transform.SetCenter(tuple(float(v) for v in center_lps_mm))
        transform.SetRotation(
            math.radians(self.rotation_x_deg), math.radians(self.rotation_y_deg), math.radians(self.rotation_z_deg)
        )
        transform.SetTranslation(tuple(float(v) for v in self.translation_mm))
        return transform

    def to_dict(self, center_lps_mm: tuple[float, float, float]) -> dict[str, Any]:
        return {
            "rotation_z_deg": self.rotation_z_deg,
            "rotation_x_deg": self.rotation_x_deg,
            "rotation_y_deg": self.rotation_y_deg,
            "translation_mm": list(self.translation_mm),
            "center_lps_mm": list(center_lps_mm),
            "matrix_4x4": self.matrix_4x4(center_lps_mm).round(9).tolist(),
            "convention": (
                "ITK Euler3DTransform, ZXY order, LPS mm: a non-contrast point p appears in the contrast "
                "volume at R (p - c) + c + t with R = Rz Rx Ry; SimpleITK.Resample(contrast, noncontrast, T) "
                "registers the contrast onto the non-contrast scan"
            ),
        }


@dataclass
class PhantomCase:
    """One paired phantom. All three volumes share one grid (int16, ``[z, y, x]``, LPS).

    Attributes:
        noncontrast: the non-contrast CT, HU.
        contrast: the arterial-phase CT angiogram, HU; with a misregistration its anatomy is
            moved by ``params["misregistration"]``, on the same grid.
        labels: label codes (:data:`LABELS`) on the non-contrast anatomy.
        params: every sampled parameter, the seed, label codes, HU tables, noise and blur,
            geometry and the generator version (JSON-able).
    """

    noncontrast: CTVolume
    contrast: CTVolume
    labels: CTVolume
    params: dict = field(default_factory=dict)


# ============================================================================ drawing primitives (for the IFU anatomies)
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

    def box(self, lo_xyz, hi_xyz) -> Box | None:
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


def smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


class Canvas:
    """The label map being painted; later paint wins, optionally only over given labels."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.labels = np.zeros(grid.shape_zyx, dtype=np.int16)

    def paint(self, box: Box | None, mask: np.ndarray, name: str, over: tuple[str, ...] | None = None) -> None:
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

    def ellipsoid(self, center, radii, name: str, rotation: np.ndarray | None = None, clip=None,
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

    def polyline(self, points, radii, name: str, over: tuple[str, ...] | None = None, clip=None) -> None:
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

    def box_and_fields(self, grid: Grid, margin: float = 0.0):
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


# ============================================================================ HU tables, IFU registry
def sample_hu_tables(rng: np.random.Generator) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Per-case noise-free levels (HU) for both phases, and the z-varying extras."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    blood = u(30, 50)
    nc: dict[str, float] = {"outside": -1000.0}
    c: dict[str, float] = {"outside": -1000.0}
    nc["soft_tissue"] = u(20, 40)
    c["soft_tissue"] = nc["soft_tissue"] + u(0, 10)
    nc["fat"] = u(-120, -80)
    c["fat"] = min(nc["fat"] + u(0, 6), -80.0)
    nc["muscle"] = u(35, 55)
    c["muscle"] = max(u(50, 70), nc["muscle"] + 5)
    nc["cortical_bone"] = u(750, 1800)
    c["cortical_bone"] = nc["cortical_bone"] + u(0, 15)
    nc["bone_marrow"] = u(200, 300)
    c["bone_marrow"] = nc["bone_marrow"] + u(5, 25)
    nc["liver"] = u(50, 65)
    c["liver"] = max(u(60, 80), nc["liver"] + 5)
    nc["kidney_cortex"] = u(30, 40)
    c["kidney_cortex"] = u(150, 200)
    nc["kidney_medulla"] = nc["kidney_cortex"] - u(2, 5)
    c["kidney_medulla"] = u(70, 110)
    nc["vena_cava"] = blood + u(-3, 3)
    c["vena_cava"] = nc["vena_cava"] + u(5, 15)
    gradient = u(0, 0.15)
    lumen_mid = u(250 * (1 + gradient / 2), 450 * (1 - gradient / 2))
    nc["aortic_lumen"] = blood
    c["aortic_lumen"] = lumen_mid
    thrombus_delta = u(6, 12)
    nc["thrombus"] = blood - thrombus_delta
    c["thrombus"] = float(np.clip(nc["thrombus"] + u(5, 20), 40, 90))
    nc["calcification"] = c["calcification"] = u(300, 1200)
    nc["aortic_wall"] = u(40, 50)
    c["aortic_wall"] = nc["aortic_wall"] + u(10, 30)
    nc["branch_artery"] = blood
    c["branch_artery"] = lumen_mid
    nc["bowel_gas"] = c["bowel_gas"] = u(-1000, -900)
    nc["bowel"] = u(10, 35)
    c["bowel"] = nc["bowel"] + u(5, 20)
    nc["spleen"] = u(40, 50)
    c["spleen"] = u(90, 130)
    nc["lung"] = u(-910, -850)
    c["lung"] = nc["lung"] + u(0, 20)
    nc["disc"] = u(70, 100)
    c["disc"] = nc["disc"] + u(0, 10)
    nc["vein"] = blood + u(-3, 3)
    c["vein"] = nc["vein"] + u(30, 90)
    nc["pancreas"] = u(35, 50)
    c["pancreas"] = u(100, 140)
    nc["fluid"] = u(0, 15)
    c["fluid"] = nc["fluid"] + u(0, 5)
    extras = {
        "blood_hu": blood,
        "thrombus_below_blood_hu": thrombus_delta,
        "lumen_contrast_mid_hu": lumen_mid,
        "lumen_gradient_fraction": gradient,
        # +1: brighter cranially (the usual early-arterial picture), -1: brighter caudally
        "lumen_gradient_sign": float(1.0 if rng.random() < 0.7 else -1.0),
        "caval_mixing_above_renal_veins_hu": u(30, 80),
    }
    # the chest (drawn after everything else so that the abdomen's levels stay as they were)
    nc["myocardium"] = u(35, 50)
    c["myocardium"] = u(90, 130)
    nc["heart_left"] = nc["heart_right"] = nc["pulmonary_artery"] = blood
    c["heart_left"] = lumen_mid + u(0, 30)
    c["pulmonary_artery"] = u(180, 450)
    c["heart_right"] = float(np.clip(c["pulmonary_artery"] + u(-60, 20), 120, 400))
    return nc, c, extras


@dataclass
class Anatomy:
    """What an IFU's builder returns: the label map on ``grid`` and the per-case HU tables.

    ``grid`` is the grid the builder was given, re-centred by it on the body where needed.
    """

    grid: Grid
    labels: np.ndarray
    hu_noncontrast: dict[str, float]
    hu_contrast: dict[str, float]
    contrast_z_offsets: dict[str, np.ndarray]  # label name -> (nz,) HU added in the contrast scan
    params: dict[str, Any]
    focus_index_zyx: tuple[int, int, int]  # where a preview should look (aorta, widest slice)


_IFU_BUILDERS: dict[str, Callable[[int, Grid], Anatomy]] = {}
#: Modules that register the built-in IFUs' anatomies (imported on first use, as they import this one).
BUILTIN_IFU_MODULES = ("aorta",)


def register_ifu(name: str):
    """Decorator: register ``builder(seed, grid) -> Anatomy`` as the phantom of an intended use.

    A new IFU is a module beside this one (``phantom_<ifu>.py``, listed in
    :data:`BUILTIN_IFU_MODULES`) whose builder paints a :class:`Canvas` with :data:`LABELS` and
    returns an :class:`Anatomy`; blur, noise, misregistration and files are shared.
    """

    def decorate(builder):
        _IFU_BUILDERS[name] = builder
        return builder

    return decorate


def known_ifus() -> list[str]:
    """Intended uses that have a phantom generator."""
    import importlib

    for module in BUILTIN_IFU_MODULES:
        importlib.import_module(f"{__package__}.{module}")
    return sorted(_IFU_BUILDERS)


def _std(volume: np.ndarray) -> float:
    """Standard deviation of a float32 volume, accumulated slice by slice in float64 (fast, exact enough)."""
    total = squares = 0.0
    for plane in volume.reshape(volume.shape[0], -1):
        total += float(plane.sum(dtype=np.float64))
        squares += float(np.vdot(plane, plane))
    n = volume.size
    return math.sqrt(max(squares / n - (total / n) ** 2, 0.0))


def _correlated_noise(rng: np.random.Generator, shape_zyx, spacing_xyz, sigma_hu: float, peak_per_mm: float,
                      z_sigma_voxels: float) -> tuple[np.ndarray, dict[str, float]]:
    """Noise with an in-plane band-pass NPS peaking at ``peak_per_mm``, rescaled to ``sigma_hu`` exactly."""
    from scipy import fft
    from scipy.ndimage import gaussian_filter1d

    nz, ny, nx = shape_zyx
    white = rng.standard_normal(shape_zyx, dtype=np.float32)
    fy = fft.fftfreq(ny, d=spacing_xyz[1]).astype(np.float32)[:, None]
    fx = fft.rfftfreq(nx, d=spacing_xyz[0]).astype(np.float32)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    nps = f * np.exp(-(f * f) / (2 * peak_per_mm**2))
    amplitude = np.sqrt(nps).astype(np.float32)
    spec = fft.rfft2(white, axes=(1, 2), workers=-1)
    spec *= amplitude[None]
    noise = fft.irfft2(spec, s=(ny, nx), axes=(1, 2), workers=-1).astype(np.float32, copy=False)
    del spec, white
    if z_sigma_voxels > 0 and nz > 1:
        noise = gaussian_filter1d(noise, z_sigma_voxels, axis=0, mode="wrap")
    std = _std(noise)
    noise *= np.float32(sigma_hu / std) if std > 0 else np.float32(0)
    nyquist = 0.5 / max(spacing_xyz[0], spacing_xyz[1])
    return noise, {
        "sigma_sampled_hu": sigma_hu,
        "sigma_realised_hu": _std(noise),
        "nps_peak_per_mm": peak_per_mm,
        "nps_peak_realised_per_mm": float(min(peak_per_mm, nyquist)),
        "z_sigma_voxels": z_sigma_voxels,
    }


def _check_request(seed: int, ifu: str, size_xyz, spacing_xyz_mm) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    if ifu not in known_ifus():
        raise JobError(f"Unknown IFU '{ifu}': choose one of {', '.join(known_ifus())}.")
    try:
        size = tuple(int(v) for v in size_xyz)
        spacing = tuple(float(v) for v in spacing_xyz_mm)
    except (TypeError, ValueError):
        raise JobError("The phantom size must be three integers and the spacing three numbers (x y z).") from None
    if len(size) != 3 or len(spacing) != 3:
        raise JobError("The phantom size and spacing need three values each (x y z).")
    if any(v < 1 for v in size):
        raise JobError(f"The phantom size {list(size)} must be at least 1 voxel along every axis.")
    if not all(math.isfinite(v) and v > 0 for v in spacing):
        raise JobError(f"The phantom spacing {list(spacing)} must be positive millimetres along every axis.")
    if math.prod(size) > _MAX_VOXELS:
        raise JobError(f"The phantom size {list(size)} is too large: keep it under {_MAX_VOXELS:,} voxels.")
    if int(seed) < 0:
        raise JobError(f"The seed {seed} must be zero or a positive integer.")
    return size, spacing  # type: ignore[return-value]


def make_phantom(seed: int, ifu: str = "aorta", size_xyz=(256, 256, 160), spacing_xyz_mm=(1.4, 1.4, 2.5),
                 misregistration: RigidMisregistration | None = None, center_z_mm: float = 0.0) -> PhantomCase:
    """Generate one paired phantom.

    Args:
        seed: non-negative integer; the same seed, IFU and grid give identical arrays.
        ifu: intended use whose anatomy to draw (:func:`known_ifus`; ``"aorta"``).
        size_xyz: voxels ``(x, y, z)``.
        spacing_xyz_mm: voxel size ``(x, y, z)`` in mm. Identity direction; the grid is centred
            on the body (in-plane) and on LPS z = ``center_z_mm``; the anatomy's LPS coordinates
            do not depend on the grid.
        misregistration: when given, the contrast scan's anatomy is moved by this rigid transform
            (recorded in ``params["misregistration"]``); labels stay on the non-contrast anatomy.
        center_z_mm: LPS z (mm) of the grid's centre: 0 shows the abdomen (lung bases to the hips),
            :data:`CHEST_CENTER_Z_MM` the chest (kidneys to the aortic arch).

    Returns:
        A :class:`PhantomCase`; volumes are int16 ``[z, y, x]`` on one grid.

    Raises:
        JobError: an unknown IFU, a size < 1, a spacing <= 0, a negative seed or a z centre that
            is not a finite number.
    """
    from scipy.ndimage import gaussian_filter

    size, spacing = _check_request(seed, ifu, size_xyz, spacing_xyz_mm)
    if not isinstance(center_z_mm, (int, float)) or not math.isfinite(center_z_mm):
        raise JobError(f"The phantom's z centre {center_z_mm!r} must be a finite number of millimetres.")
    anatomy = _IFU_BUILDERS[ifu](int(seed), Grid(size, spacing, (0.0, 0.0, float(center_z_mm))))
    grid = anatomy.grid
    rng = np.random.default_rng([int(seed), 3])
    blur_voxels = uniform(rng, 0.5, 1.0)
    nps_peak = uniform(rng, 0.2, 0.3)
    z_corr = uniform(rng, 0.4, 0.8)
    sigma_nc, sigma_c = uniform(rng, 8, 25), uniform(rng, 8, 25)

    lut_nc = np.zeros(256, np.float32)
    lut_c = np.zeros(256, np.float32)
    for name, code in LABELS.items():
        lut_nc[code] = anatomy.hu_noncontrast[name]
        lut_c[code] = anatomy.hu_contrast[name]
    labels = anatomy.labels
    codes = labels.astype(np.intp)
    noncontrast = lut_nc[codes]
    contrast = lut_c[codes]
    del codes
    for name, per_slice in anatomy.contrast_z_offsets.items():
        mask = labels == LABELS[name]
        contrast += mask * per_slice.astype(np.float32)[:, None, None]

    center = grid.center
    geometry = dict(spacing_mm=grid.spacing, origin_mm=grid.origin, direction=IDENTITY_DIRECTION)
    if misregistration is not None:
        import SimpleITK as sitk

        image = CTVolume(contrast, **geometry).to_sitk()
        inverse = misregistration.to_sitk(center).GetInverse()
        moved = sitk.Resample(image, image, inverse, sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
        contrast = sitk.GetArrayFromImage(moved)

    sigma_vox = (blur_voxels, blur_voxels, blur_voxels)
    noncontrast = gaussian_filter(noncontrast, sigma_vox, mode="nearest", truncate=3.0)
    contrast = gaussian_filter(contrast, sigma_vox, mode="nearest", truncate=3.0)
    noise_nc, info_nc = _correlated_noise(np.random.default_rng([int(seed), 4]), grid.shape_zyx, spacing,
                                          sigma_nc, nps_peak, z_corr)
    noncontrast += noise_nc
    del noise_nc
    noise_c, info_c = _correlated_noise(np.random.default_rng([int(seed), 6]), grid.shape_zyx, spacing,
                                        sigma_c, nps_peak, z_corr)
    contrast += noise_c
    del noise_c

    def to_int16(a: np.ndarray) -> np.ndarray:
        np.rint(a, out=a)
        np.clip(a, HU_CLIP[0], HU_CLIP[1], out=a)
        return a.astype(np.int16)

    params: dict[str, Any] = {
        "generator": "DigitalContrastLib.phantoms.generator",
        "generator_version": GENERATOR_VERSION,
        "ifu": ifu,
        "seed": int(seed),
        "size_xyz": list(size),
        "spacing_xyz_mm": list(spacing),
        "center_z_mm": float(center_z_mm),
        "origin_lps_mm": list(grid.origin),
        "direction": list(IDENTITY_DIRECTION),
        "labels": dict(LABELS),
        "hu_ranges": {k: [list(v[0]), list(v[1])] for k, v in HU_RANGES.items()},
        "hu_noncontrast": anatomy.hu_noncontrast,
        "hu_contrast": anatomy.hu_contrast,
        "blur": {"sigma_voxels": blur_voxels, "sigma_mm": [blur_voxels * s for s in spacing]},
        "noise": {"noncontrast": info_nc, "contrast": info_c},
        "hu_clip": list(HU_CLIP),
        "misregistration": None if misregistration is None else misregistration.to_dict(center),
        "focus_index_zyx": list(anatomy.focus_index_zyx),
        **anatomy.params,
    }
    params = _jsonable(params)
    meta = {"phantom_seed": int(seed), "phantom_ifu": ifu}
    return PhantomCase(
        noncontrast=CTVolume(to_int16(noncontrast), **geometry, metadata={**meta, "phase": "noncontrast"}),
        contrast=CTVolume(to_int16(contrast), **geometry, metadata={**meta, "phase": "arterial"}),
        labels=CTVolume(labels, **geometry, metadata={**meta, "kind": "labels"}),
        params=params,
    )


def _jsonable(value):
    """Plain JSON types (numpy scalars and arrays converted, floats rounded to 6 decimals)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return round(float(value), 6)
    return value


# ============================================================================ files
def write_phantom(case: PhantomCase, outdir) -> dict[str, Path]:
    """Write the case as ``noncontrast.nrrd``, ``contrast.nrrd``, ``labels.nrrd`` (int16, exact
    geometry; labels gzip-compressed) and ``phantom.json`` (the params) into ``outdir``, each
    atomically, ``phantom.json`` last.

    Returns ``{"noncontrast": path, "contrast": path, "labels": path, "params": path}``.

    Raises:
        OutputError: the folder or a file cannot be written (the message names it).
    """
    from DigitalContrastLib.ct.io import write_volume

    out = Path(outdir)
    paths: dict[str, Path] = {}
    try:
        out.mkdir(parents=True, exist_ok=True)
        # phantom.json goes last: a folder whose phantom.json exists holds a complete, matching set
        (out / PHANTOM_PARAMS_FILE).unlink(missing_ok=True)
        for key in ("noncontrast", "contrast", "labels"):
            volume: CTVolume = getattr(case, key)
            paths[key] = write_volume(volume.with_array(np.asarray(volume.array, dtype=np.int16)),
                                      out / CASE_FILES[key], compress=(key == "labels"))
        text = json.dumps(case.params, indent=1) + "\n"
        paths["params"] = atomic_write_text(out / PHANTOM_PARAMS_FILE, text)
    except (OSError, RuntimeError) as error:
        reason = getattr(error, "strerror", None) or "the write failed"
        raise OutputError(f"Cannot write the phantom into {out} ({reason}): choose a folder you can write to.") from None
    return paths


def read_phantom(outdir) -> PhantomCase:
    """Read a case written by :func:`write_phantom`.

    Raises:
        InputError: a file is missing or unreadable (the message names it).
    """
    from DigitalContrastLib.ct.io import read_volume

    folder = Path(outdir)
    volumes = {}
    for key in ("noncontrast", "contrast", "labels"):
        path = folder / CASE_FILES[key]
        if not path.is_file():
            raise InputError(f"{path} is missing: write the phantom again with 'digital-contrast phantom {folder}'.")
        volumes[key] = read_volume(path)
    path = folder / PHANTOM_PARAMS_FILE
    try:
        params = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} is missing: write the phantom again with 'digital-contrast phantom {folder}'.") from None
    except json.JSONDecodeError:
        raise InputError(f"{path} is not valid JSON: write the phantom again.") from None
    return PhantomCase(volumes["noncontrast"], volumes["contrast"], volumes["labels"], params)


def summary_line(case: PhantomCase) -> str:
    """One line for people: aneurysm and its size, lumen HU in both scans, noise."""
    p = case.params
    an = p.get("aneurysm", {})
    sac = f"aneurysm yes, max diameter {an['max_diameter_mm']:.1f} mm" if an.get("present") else "aneurysm no"
    hu_nc, hu_c = p["hu_noncontrast"]["aortic_lumen"], p["hu_contrast"]["aortic_lumen"]
    noise = p["noise"]
    return (f"seed {p['seed']}: {sac}; lumen {hu_nc:.0f} HU non-contrast, {hu_c:.0f} HU contrast; "
            f"noise sigma {noise['noncontrast']['sigma_sampled_hu']:.1f} / {noise['contrast']['sigma_sampled_hu']:.1f} HU")
