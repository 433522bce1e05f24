"""Volume nodes to files and back in small steps, so that a GUI thread never blocks on a big volume.

Slicer runs Python on its GUI thread, and a 512 x 512 x 300 CT is 150 MB: writing it at once, or
copying it into a node, holds the GUI for a quarter to half a second. Here both go in slabs:

* :func:`write_node_steps` writes a node's voxels as a raw NRRD (LPS geometry, the node's own
  dtype), a few slices per step, from a zero-copy view of the node's image data;
* :func:`read_volume_steps` reads a raw NRRD (as SimpleITK writes it in the worker) into a new array
  a few slices per step, then :func:`array_to_node` makes the node around that array without a
  copy and with a fixed window/level (an automatic window/level would scan all voxels at once).

Each is a generator: every ``next()`` does one slab (about :data:`SLAB_BYTES`) and yields the
fraction done; :class:`~DigitalContrastLib.mrml.gui_steps.StepRunner` runs as many as fit in a
time budget per timer tick. Arrays are ``[z, y, x]``; geometry on disk is LPS, nodes are RAS.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.errors import InputError
from DigitalContrastLib.ct.display_presets import WindowLevel, get_preset
from DigitalContrastLib.ct.volume import CTVolume
from DigitalContrastLib.worker.outcome import WorkerError

from .volume_nodes import node_geometry_lps, ras_geometry

#: Bytes per step: a few milliseconds of memory bandwidth and page-cache writes.
SLAB_BYTES = 4 * 2**20

_NRRD_TYPES = {np.dtype(np.int8): "int8", np.dtype(np.uint8): "uint8", np.dtype(np.int16): "short",
               np.dtype(np.uint16): "ushort", np.dtype(np.int32): "int", np.dtype(np.uint32): "uint",
               np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_NUMPY_TYPES = {"signed char": np.int8, "int8": np.int8, "int8_t": np.int8, "uchar": np.uint8,
                "unsigned char": np.uint8, "uint8": np.uint8, "uint8_t": np.uint8, "short": np.int16,
                "short int": np.int16, "signed short": np.int16, "int16": np.int16, "int16_t": np.int16,
                "ushort": np.uint16, "unsigned short": np.uint16, "uint16": np.uint16, "uint16_t": np.uint16,
                "int": np.int32, "signed int": np.int32, "int32": np.int32, "int32_t": np.int32,
                "uint": np.uint32, "unsigned int": np.uint32, "uint32": np.uint32, "uint32_t": np.uint32,
                "float": np.float32, "double": np.float64}


@dataclass
class NodeVoxels:
    """A zero-copy view of a scalar volume node's voxels, with its LPS geometry."""

    array: np.ndarray  # [z, y, x], the node's memory: do not write to it
    spacing_mm: tuple[float, ...]
    origin_mm: tuple[float, ...]
    direction: tuple[float, ...]
    name: str


def node_voxels(node: Any) -> NodeVoxels:
    """The node's voxels without copying them.

    Raises:
        InputError: no voxels, several components, or a parent transform (harden it first).
    """
    from vtk.util import numpy_support

    name = node.GetName()
    image = node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"Volume '{name}' has no voxels: load or compute it before using it.", code="empty_node")
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError(f"Volume '{name}' is not a scalar volume: choose a single-component CT volume.")
    if node.GetParentTransformNode() is not None:
        raise InputError(f"Volume '{name}' is under a transform: harden the transform (Data module) before using it.",
                         code="transformed_node")
    nx, ny, nz = image.GetDimensions()
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(nz, ny, nx)
    spacing, origin, direction = node_geometry_lps(node)
    return NodeVoxels(array, spacing, origin, direction, name)


def nrrd_header(shape_zyx: tuple[int, ...], dtype: np.dtype, spacing_mm: tuple[float, ...],
                origin_mm: tuple[float, ...], direction: tuple[float, ...]) -> bytes:
    """A raw NRRD header (NRRD0004, data attached, little endian, LPS space) for a ``[z, y, x]`` array."""
    dtype = np.dtype(dtype)
    if dtype not in _NRRD_TYPES:
        raise InputError(f"Voxels of type {dtype} cannot be written as NRRD here; convert the volume to int16 HU.")
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    axes = " ".join("(" + ",".join(repr(float(d[r, c] * spacing_mm[c])) for r in range(3)) + ")" for c in range(3))
    nz, ny, nx = shape_zyx
    lines = ["NRRD0004", f"type: {_NRRD_TYPES[dtype]}", "dimension: 3", "space: left-posterior-superior",
             f"sizes: {nx} {ny} {nz}", f"space directions: {axes}", "kinds: domain domain domain",
             "endian: little", "encoding: raw", "space origin: (" + ",".join(repr(float(v)) for v in origin_mm) + ")"]
    return ("\n".join(lines) + "\n\n").encode("ascii")


def write_node_steps(node: Any, path: str | os.PathLike, slab_bytes: int = SLAB_BYTES) -> Iterator[float]:
    """Write a node's voxels to ``path`` (raw NRRD), one slab of slices per step; yields the fraction written.

    The file appears under its name only when complete (``path + ".part"`` meanwhile).
    """
    voxels = node_voxels(node)
    array = voxels.array
    yield from write_array_steps(array, voxels.spacing_mm, voxels.origin_mm, voxels.direction, path, slab_bytes)


def write_array_steps(array: np.ndarray, spacing_mm: tuple[float, ...], origin_mm: tuple[float, ...],
                      direction: tuple[float, ...], path: str | os.PathLike,
                      slab_bytes: int = SLAB_BYTES) -> Iterator[float]:
    """:func:`write_node_steps` for an array ``[z, y, x]`` and its LPS geometry."""
    path = Path(path)
    part = path.with_name(path.name + ".part")
    slices_per_step = max(1, slab_bytes // max(1, array[0].nbytes))
    nz = array.shape[0]
    try:
        with open(part, "wb") as handle:
            handle.write(nrrd_header(array.shape, array.dtype, spacing_mm, origin_mm, direction))
            for start in range(0, nz, slices_per_step):
                slab = np.ascontiguousarray(array[start:start + slices_per_step])
                handle.write(slab.astype(slab.dtype.newbyteorder("<"), copy=False).tobytes())
                yield min(1.0, (start + slices_per_step) / nz)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


@dataclass
class VolumeRead:
    """A raw NRRD being read: the array fills slab by slab; geometry from the header (LPS)."""

    array: np.ndarray
    spacing_mm: tuple[float, ...]
    origin_mm: tuple[float, ...]
    direction: tuple[float, ...]
    path: Path
    done: bool = field(default=False)

    def volume(self) -> CTVolume:
        return CTVolume(self.array, self.spacing_mm, self.origin_mm, self.direction)


def _vector(text: str) -> list[float]:
    return [float(v) for v in text.strip().strip("()").split(",")]


def read_nrrd_header(path: str | os.PathLike) -> tuple[dict[str, str], int]:
    """The header fields of a NRRD file and the byte offset of its data.

    Raises:
        InputError: not a NRRD file, or one this reader does not handle (compressed, detached, big endian).
    """
    path = Path(path)
    fields: dict[str, str] = {}
    with open(path, "rb") as handle:
        magic = handle.readline()
        if not magic.startswith(b"NRRD"):
            raise InputError(f"{path} is not a NRRD file; this is a bug, report it with the log.")
        for raw in handle:
            line = raw.decode("ascii", "replace").rstrip("\r\n")
            if not line:
                break
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip()] = value.lstrip("=").strip()
        offset = handle.tell()
    if fields.get("encoding", "raw") != "raw" or "data file" in fields or fields.get("endian", "little") != "little":
        raise InputError(f"{path} is a compressed, detached or big-endian NRRD; this is a bug, report it with the log.")
    return fields, offset


def read_volume_steps(path: str | os.PathLike, slab_bytes: int = SLAB_BYTES,
                      expect_sha256: str | None = None) -> Iterator[VolumeRead]:
    """Read a raw NRRD slab by slab; yields the same :class:`VolumeRead` after each slab (``done`` at the end).

    ``expect_sha256``: the file's SHA-256 as its writer reported it; the bytes are hashed as they are
    read, and a mismatch raises :class:`~DigitalContrastLib.worker.outcome.WorkerError` before ``done``.
    """
    fields, offset = read_nrrd_header(path)
    nx, ny, nz = (int(v) for v in fields["sizes"].split())
    dtype = np.dtype(_NUMPY_TYPES[fields["type"]]).newbyteorder("<")
    columns = [np.asarray(_vector(part)) for part in fields["space directions"].split(") (")]
    spacing = tuple(float(np.linalg.norm(c)) for c in columns)
    direction = tuple(float(v) for v in np.stack([c / s for c, s in zip(columns, spacing)], axis=1).ravel())
    origin = tuple(_vector(fields.get("space origin", "(0,0,0)")))
    if fields.get("space", "left-posterior-superior") not in ("left-posterior-superior", "LPS"):
        raise InputError(f"{path} is not in LPS space; this is a bug, report it with the log.")
    read = VolumeRead(np.empty((nz, ny, nx), dtype=dtype.newbyteorder("=")), spacing, origin, direction, Path(path))
    flat = read.array.reshape(nz, ny * nx)
    slices_per_step = max(1, slab_bytes // max(1, flat[0].nbytes))
    digest = hashlib.sha256() if expect_sha256 else None
    with open(path, "rb") as handle:
        header = handle.read(offset)
        if digest is not None:
            digest.update(header)
        for start in range(0, nz, slices_per_step):
            view = memoryview(flat[start:start + slices_per_step]).cast("B")
            if handle.readinto(view) != view.nbytes:
                raise InputError(f"{path} is truncated; this is a bug, report it with the log.")
            if digest is not None:
                digest.update(view)
            yield read
        if digest is not None:
            digest.update(handle.read())  # anything after the voxels is part of the file too
    if digest is not None and digest.hexdigest() != expect_sha256:
        raise WorkerError(f"the worker's output {Path(path).name} does not match the SHA-256 it reported; "
                          "nothing was added.", code="checksum_mismatch")
    read.done = True
    yield read


def remove_steps(paths: list[Path], slab_bytes: int = 8 * SLAB_BYTES) -> Iterator[float]:
    """Delete files a slab at a time (shrinking each from its end, then unlinking it); yields the fraction done.

    Freeing a 150 MB file's pages at once takes tens of milliseconds (more on a RAM-backed folder),
    so a GUI thread gives them back in slabs.
    """
    for index, path in enumerate(paths):
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        while size > 0:
            size = max(0, size - slab_bytes)
            os.truncate(path, size)
            yield index / len(paths)
        path.unlink(missing_ok=True)
        yield (index + 1) / len(paths)


def array_to_node(scene: Any, volume: CTVolume, name: str, attributes: dict[str, Any] | None = None,
                  window_level: WindowLevel | str = "cta") -> Any:
    """A new scalar volume node around ``volume.array`` (no copy: the node keeps the array alive).

    The display node gets its fixed window/level before it observes the image, so Slicer computes no
    automatic window/level over every voxel.
    """
    import slicer
    import vtk
    from vtk.util import numpy_support

    array = np.ascontiguousarray(volume.array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    nz, ny, nx = array.shape
    image = vtk.vtkImageData()
    image.SetDimensions(nx, ny, nz)
    scalars = numpy_support.numpy_to_vtk(array.reshape(-1), deep=False)  # keeps a reference to the array
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
    preset = get_preset(window_level) if isinstance(window_level, str) else window_level
    display = slicer.vtkMRMLScalarVolumeDisplayNode()
    display.SetAutoWindowLevel(False)
    display.SetWindowLevel(preset.window_hu, preset.level_hu)
    scene.AddNode(display)
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    node.SetAndObserveDisplayNodeID(display.GetID())
    return node
