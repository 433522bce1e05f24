"""The contrast scan's rigid misregistration: a small motion of its anatomy relative to the non-contrast scan.

:func:`~DigitalContrastLib.phantoms.generator.make_phantom` resamples the contrast scan's noise-free
image through it (linear interpolation) before blur and noise; the labels stay on the non-contrast
anatomy, and ``phantom.json`` records the transform (:meth:`RigidMisregistration.to_dict`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


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
