"""CTVolume <-> ``vtkMRMLScalarVolumeNode``, and volume files through Slicer's own readers/writers.

This is the one place where LPS (the project's convention, as DICOM and ITK) meets RAS (MRML):

* ``origin_ras = F @ origin_lps`` and ``directions_ras = F @ direction_lps`` with
  ``F = diag(-1, -1, 1)``; spacing is unchanged. Negating is exact in floating point, and the node
  keeps spacing, origin and directions separately (``IJKToRAS`` is derived from them), so a round
  trip reproduces the geometry bit for bit, oblique directions included.
* Voxels: ``CTVolume.array[z, y, x]`` is C-ordered, which is VTK's x-fastest point order, so the
  array is copied as is into ``vtkImageData`` of dimensions ``(x, y, z)``; the dtype is kept
  (int16 HU stays int16).

``slicer``/``vtk`` are imported inside the functions (the core library must import without them).
Functions take the scene (and the application logic where they need one) as arguments: inside
Slicer pass ``slicer.mrmlScene`` / ``slicer.app.applicationLogic()``, outside it the pair from
:func:`DigitalContrastLib.mrml.headless.make_headless_scene`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.atomic import atomic_path
from DigitalContrastLib.common.errors import InputError, OutputError
from DigitalContrastLib.ct.display_presets import WindowLevel, get_preset
from DigitalContrastLib.ct.volume import CTVolume

from .headless import volumes_logic_for

#: LPS <-> RAS: negate the first two axes (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])

#: Single-file formats Slicer's archetype storage node writes (detached headers such as .nhdr or
#: .mhd are refused: their data file could not be renamed atomically with the header).
WRITABLE_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha")

# vtkSlicerVolumesLogic.AddArchetypeVolume loadingOptions bits
_LOAD_SINGLE_FILE = 1 << 2
_LOAD_AUTO_WINDOW_LEVEL = 1 << 3


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def ras_geometry(volume: CTVolume) -> tuple[tuple[float, ...], tuple[float, ...], list[list[float]]]:
    """``(spacing_xyz_mm, origin_ras_mm, directions_ras)`` of ``volume`` for a MRML volume node.

    ``directions_ras`` is a 3x3 nested list whose column ``c`` is the RAS unit vector of index axis
    ``c`` (as ``vtkMRMLVolumeNode.SetIJKToRASDirections`` takes it).
    """
    origin_ras = LPS_TO_RAS @ np.asarray(volume.origin_mm, dtype=float)
    directions_ras = LPS_TO_RAS @ volume.direction_matrix
    return volume.spacing_mm, tuple(float(v) for v in origin_ras), directions_ras.tolist()


def set_window_level(node: Any, window_level: WindowLevel | str | None) -> None:
    """Show ``node`` with a fixed window/level (a preset or its name); ``None``: automatic.

    Creates the node's scalar display node (grey colour table) when it has none.
    """
    import slicer

    display = node.GetDisplayNode()
    if display is None:
        scene = node.GetScene()
        display = slicer.vtkMRMLScalarVolumeDisplayNode()
        scene.AddNode(display)
        display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
        node.SetAndObserveDisplayNodeID(display.GetID())
    if window_level is None:
        display.AutoWindowLevelOn()
        return
    preset = get_preset(window_level) if isinstance(window_level, str) else window_level
    display.AutoWindowLevelOff()
    display.SetWindowLevel(preset.window_hu, preset.level_hu)


def volume_to_node(
    scene: Any,
    volume: CTVolume,
    name: str,
    attributes: dict[str, Any] | None = None,
    window_level: WindowLevel | str | None = None,
) -> Any:
    """Add ``volume`` to ``scene`` as a new ``vtkMRMLScalarVolumeNode`` and return the node.

    Args:
        scene: the ``vtkMRMLScene``.
        volume: voxels ``[z, y, x]`` (dtype kept) with LPS geometry; converted to RAS here.
        name: node name shown in Slicer (made unique by the scene if taken).
        attributes: node attributes (provenance: model id, sha256...); values are stored as
            strings (``str(value)``).
        window_level: a :mod:`display_presets` preset (or its name) for the new display node;
            ``None`` lets Slicer compute one automatically.

    The voxels are copied: later changes to ``volume.array`` do not reach the node.
    """
    import slicer
    import vtk
    from vtk.util import numpy_support

    array = np.asarray(volume.array)
    if array.ndim != 3 or min(array.shape) < 1:
        raise ValueError(f"volume_to_node needs a non-empty 3D [z, y, x] array, got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    image = vtk.vtkImageData()
    nz, ny, nx = array.shape
    image.SetDimensions(nx, ny, nz)
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True)
    scalars.SetName("ImageScalars")
    image.GetPointData().SetScalars(scalars)

    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name)
    spacing, origin_ras, directions_ras = ras_geometry(volume)
    node.SetSpacing(*spacing)
    node.SetOrigin(*origin_ras)
    node.SetIJKToRASDirections(directions_ras)
    node.SetAndObserveImageData(image)
    for key, value in (attributes or {}).items():
        node.SetAttribute(str(key), str(value))
    scene.AddNode(node)
    set_window_level(node, window_level)
    return node


def node_geometry_lps(node: Any) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(spacing_xyz_mm, origin_lps_mm, direction_lps_rowmajor)`` of a MRML volume node."""
    directions_ras = [[0.0] * 3 for _ in range(3)]
    node.GetIJKToRASDirections(directions_ras)
    direction_lps = LPS_TO_RAS @ np.asarray(directions_ras, dtype=float)
    origin_lps = LPS_TO_RAS @ np.asarray(node.GetOrigin(), dtype=float)
    return (
        tuple(float(v) for v in node.GetSpacing()),
        tuple(float(v) for v in origin_lps),
        tuple(float(v) for v in direction_lps.ravel()),
    )


def node_to_volume(node: Any) -> CTVolume:
    """A :class:`CTVolume` copy of a scalar volume node: array ``[z, y, x]``, LPS geometry.

    The dtype of the node's voxels is kept. ``metadata`` holds ``mrml_node_name`` and
    ``mrml_attributes`` (the node's attributes, strings).

    Raises:
        InputError: the node has no voxels, or more than one component per voxel, or sits under
            a transform (its grid would not say where it is; harden the transform first).
    """
    from vtk.util import numpy_support

    name = node.GetName()
    image = node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"Volume '{name}' has no voxels: load or compute it before using it.", code="empty_node")
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError(f"Volume '{name}' is not a scalar volume: choose a single-component CT volume.")
    if node.GetParentTransformNode() is not None:
        raise InputError(
            f"Volume '{name}' is under a transform: harden the transform (Data module) before using it.",
            code="transformed_node",
        )
    nx, ny, nz = image.GetDimensions()
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(nz, ny, nx).copy()
    spacing, origin, direction = node_geometry_lps(node)
    attributes = {key: node.GetAttribute(key) for key in node.GetAttributeNames()}
    return CTVolume(
        array=array,
        spacing_mm=spacing,
        origin_mm=origin,
        direction=direction,
        metadata={"mrml_node_name": name, "mrml_attributes": attributes},
    )


def load_volume_file(scene: Any, path: str | os.PathLike, name: str, app_logic: Any | None = None) -> Any:
    """Read a volume file (.nrrd, .nii, .nii.gz, .mha...) into a new scalar volume node.

    Uses ``vtkSlicerVolumesLogic.AddArchetypeVolume`` (Slicer's own readers: geometry as Slicer
    shows it) as a single file, with Slicer's automatic window/level.

    Raises:
        InputError: the file does not exist or Slicer's readers cannot read it.
    """

    path = Path(path)
    if not path.is_file():
        raise InputError(f"Volume file {path} does not exist: check the path.", code="missing_file")
    logic = volumes_logic_for(scene, app_logic)
    node = logic.AddArchetypeVolume(str(path), name, _LOAD_SINGLE_FILE | _LOAD_AUTO_WINDOW_LEVEL)
    if node is None or node.GetImageData() is None:
        raise InputError(
            f"Slicer could not read {path}: save it as .nrrd, .nii.gz or .mha and try again.", code="unreadable"
        )
    return node


def save_volume_node(node: Any, path: str | os.PathLike, compress: bool = False) -> Path:
    """Write a volume node to ``path`` with a ``vtkMRMLVolumeArchetypeStorageNode``, atomically.

    The data goes to a temporary name beside ``path`` (same extension, so the same writer) and is
    renamed once complete; nothing half-written is left behind on failure.

    Args:
        node: a scalar volume node (geometry written in RAS/LPS as Slicer writes it).
        path: ``.nrrd`` (default choice: raw NRRD writes fastest), ``.nii``, ``.nii.gz`` or ``.mha``.
        compress: compress the voxel data (gzip for NRRD/MetaImage; ``.nii.gz`` always is).

    Raises:
        OutputError: unsupported extension, or the writer failed (permissions, disk full).
    """
    import slicer

    path = Path(path)
    if _suffix(path) not in WRITABLE_SUFFIXES:
        raise OutputError(
            f"Cannot write volume file {path}: use one of {', '.join(WRITABLE_SUFFIXES)}.", code="bad_extension"
        )
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetUseCompression(bool(compress) or _suffix(path) == ".nii.gz")
    try:
        with atomic_path(path) as tmp:
            tmp.unlink()  # the writer creates it (an existing file only makes it log a notice)
            storage.SetFileName(str(tmp))
            if not storage.WriteData(node):
                raise OutputError(
                    f"Could not write {path}: check that the folder is writable and the disk is not full.",
                    code="write_failed",
                )
    except PermissionError as error:
        raise OutputError(f"Could not write {path}: {error.strerror}; choose a writable folder.") from error
    return path


def default_input_node(scene: Any) -> Any | None:
    """The scalar volume the module should offer as its input: the first that is a CT a user loaded.

    Not a label map, nor anything this extension made (a synthetic volume, an uncertainty or
    difference overlay, a registered scan or its field-of-view mask), nor a node hidden from editors.
    """
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
        if node.IsA("vtkMRMLLabelMapVolumeNode") or node.GetHideFromEditors():
            continue
        if any(node.GetAttribute(name) for name in _MADE_HERE_ATTRIBUTES):
            continue
        return node
    return None


#: Attributes this extension puts on the volumes it makes (synthetic, overlays, registered scans, masks).
_MADE_HERE_ATTRIBUTES = ("DigitalContrast.Synthetic", "DigitalContrast.OverlayFor", "DigitalContrast.RegisteredFrom")
