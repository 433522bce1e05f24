"""The one CT volume type of the project: a HU array with its geometry in LPS.

``CTVolume.array`` is indexed ``[z, y, x]`` (slice, row, column), int16 HU as read from disk or
float32 during processing. Geometry follows ITK/DICOM conventions:

* ``spacing_mm``: voxel size ``(x, y, z)`` in millimetres;
* ``origin_mm``: LPS position ``(x, y, z)`` of the centre of voxel ``[0, 0, 0]`` in millimetres;
* ``direction``: 3x3 direction cosines, row-major, 9 floats; column ``c`` is the LPS unit vector
  of index axis ``c`` (c = 0 for x/column, 1 for y/row, 2 for z/slice), as SimpleITK's
  ``GetDirection()``.

So the LPS position of index ``(i, j, k)`` (x, y, z order) is
``origin + D @ (spacing * [i, j, k])``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Vec3 = tuple[float, float, float]
IDENTITY_DIRECTION: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass
class CTVolume:
    """A 3D scalar CT volume in Hounsfield units with LPS geometry.

    Attributes:
        array: ``[z, y, x]`` voxel values (int16 HU on disk, float32 while processing).
        spacing_mm: voxel size ``(x, y, z)`` in mm, all > 0.
        origin_mm: LPS position of voxel ``[0, 0, 0]``'s centre, ``(x, y, z)`` in mm.
        direction: row-major 3x3 direction cosine matrix (9 floats), ITK convention.
        metadata: free-form facts about where the volume came from (DICOM tags, file path,
            provenance); never used for geometry.
    """

    array: np.ndarray
    spacing_mm: Vec3 = (1.0, 1.0, 1.0)
    origin_mm: Vec3 = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY_DIRECTION
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spacing_mm = tuple(float(v) for v in self.spacing_mm)  # type: ignore[assignment]
        self.origin_mm = tuple(float(v) for v in self.origin_mm)  # type: ignore[assignment]
        self.direction = tuple(float(v) for v in np.asarray(self.direction, dtype=float).ravel())
        if len(self.spacing_mm) != 3 or len(self.origin_mm) != 3 or len(self.direction) != 9:
            raise ValueError("CTVolume needs 3 spacings, 3 origin coordinates and 9 direction cosines")

    # ------------------------------------------------------------------ geometry
    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        """Array shape ``(z, y, x)``."""
        return tuple(int(v) for v in self.array.shape)  # type: ignore[return-value]

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        """Voxel counts ``(x, y, z)`` as ITK reports them."""
        z, y, x = self.array.shape
        return (int(x), int(y), int(z))

    @property
    def direction_matrix(self) -> np.ndarray:
        """The 3x3 direction matrix (columns are the LPS directions of the x, y, z index axes)."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres."""
        sx, sy, sz = self.spacing_mm
        return sx * sy * sz / 1000.0

    def index_to_lps(self, index_xyz: np.ndarray) -> np.ndarray:
        """Map continuous indices ``(..., 3)`` in ``(x, y, z)`` order to LPS mm ``(..., 3)``."""
        idx = np.asarray(index_xyz, dtype=float)
        scaled = idx * np.asarray(self.spacing_mm)
        return scaled @ self.direction_matrix.T + np.asarray(self.origin_mm)

    def lps_to_index(self, points_lps: np.ndarray) -> np.ndarray:
        """Map LPS mm points ``(..., 3)`` to continuous ``(x, y, z)`` indices ``(..., 3)``."""
        pts = np.asarray(points_lps, dtype=float) - np.asarray(self.origin_mm)
        return (pts @ np.linalg.inv(self.direction_matrix).T) / np.asarray(self.spacing_mm)

    def geometry(self) -> dict[str, Any]:
        """Geometry as plain JSON-able values."""
        return {
            "shape_zyx": list(self.shape_zyx),
            "spacing_xyz_mm": list(self.spacing_mm),
            "origin_lps_mm": list(self.origin_mm),
            "direction": list(self.direction),
        }

    def same_geometry(self, other: "CTVolume", tol_mm: float = 1e-4) -> bool:
        """True when shape, spacing, origin and direction agree (to ``tol_mm``/1e-6)."""
        return (
            self.shape_zyx == other.shape_zyx
            and np.allclose(self.spacing_mm, other.spacing_mm, atol=tol_mm, rtol=0)
            and np.allclose(self.origin_mm, other.origin_mm, atol=tol_mm, rtol=0)
            and np.allclose(self.direction, other.direction, atol=1e-6, rtol=0)
        )

    def with_array(self, array: np.ndarray, **metadata: Any) -> "CTVolume":
        """A new volume on the same grid holding ``array`` (same shape), metadata extended."""
        if tuple(array.shape) != self.shape_zyx:
            raise ValueError(f"array shape {array.shape} differs from the grid {self.shape_zyx}")
        return dataclasses.replace(self, array=array, metadata={**self.metadata, **metadata})

    # ------------------------------------------------------------------ SimpleITK
    def to_sitk(self):
        """A ``SimpleITK.Image`` with the same voxels and geometry (no copy of metadata)."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array), isVector=False)
        image.SetSpacing(self.spacing_mm)
        image.SetOrigin(self.origin_mm)
        image.SetDirection(self.direction)
        return image

    @classmethod
    def from_sitk(cls, image, metadata: dict[str, Any] | None = None) -> "CTVolume":
        """Build from a 3D scalar ``SimpleITK.Image`` (geometry copied exactly)."""
        import SimpleITK as sitk

        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError("CTVolume.from_sitk needs a 3D scalar image")
        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing_mm=image.GetSpacing(),
            origin_mm=image.GetOrigin(),
            direction=image.GetDirection(),
            metadata=dict(metadata or {}),
        )
