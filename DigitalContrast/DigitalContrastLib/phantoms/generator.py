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

HU tables: :mod:`DigitalContrastLib.phantoms.hu_tables` (each label's level in both scans, drawn per
case; ``HU_RANGES``).

Image formation
===============

1. The noise-free HU images are the label map through each table (plus the lumen gradient
   and the caval mixing, which vary with z).
2. Optional misregistration: the contrast scan's anatomy is moved by a rigid transform
   (:class:`~DigitalContrastLib.phantoms.misregistration.RigidMisregistration`), resampled with
   linear interpolation.
3. Partial-volume blur: a Gaussian of ``blur_voxels`` x spacing mm per axis (U(0.5, 1.0) voxel,
   shared by both scans: one scanner, one reconstruction).
4. Noise, independent for each scan: white Gaussian noise shaped in-plane to a noise power
   spectrum ``NPS(f) ~ f exp(-f^2 / (2 f_peak^2))`` (a filtered-backprojection-like band-pass
   with its peak at ``f_peak`` = U(0.2, 0.3) mm^-1 where the grid can hold it), smoothed along z
   by a Gaussian of ``noise_z_sigma_voxels``, then rescaled so that the standard deviation of
   the whole noise field equals the scan's sampled sigma, U(8, 25) HU.
5. Rounded and clipped to -1024 ... 3071 HU (the scanner range, inside int16).

Anatomy: each intended use draws its own patient (an :class:`~DigitalContrastLib.phantoms.anatomy.Anatomy`)
in a subpackage of its own, listed in :data:`IFU_BUILDERS`; :mod:`DigitalContrastLib.phantoms.aorta`
draws the trunk from the aortic arch to the hips, with an optional abdominal aortic aneurysm.
Drawing primitives: :mod:`DigitalContrastLib.phantoms.canvas`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.errors import InputError, JobError, OutputError
from DigitalContrastLib.ct.io import read_volume, write_volume
from DigitalContrastLib.ct.labels import LABELS
from DigitalContrastLib.ct.paired_case import CASE_FILES, PHANTOM_PARAMS_FILE
from DigitalContrastLib.ct.volume import IDENTITY_DIRECTION, CTVolume

from .anatomy import Anatomy, AnatomyBuilder
from .aorta.build import build_aorta
from .canvas import Grid, uniform
from .hu_tables import HU_RANGES
from .misregistration import RigidMisregistration

GENERATOR_VERSION = "1.4.0"
"""Bumped whenever the same seed and grid give different voxels (1.4.0: lung and soft tissue round the
thoracic aorta instead of fat; fields of view centred on the abdomen are unchanged)."""

CHEST_CENTER_Z_MM = 250.0
"""A 400 mm field of view centred here (LPS z, mm) reaches from the kidneys to the aortic arch."""
HU_CLIP = (-1024, 3071)
_MAX_VOXELS = 1024 * 1024 * 1024 // 4  # 256 M voxels: several GB of float32 work arrays


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


#: The intended uses that have a phantom patient: name -> ``build(seed, grid) -> Anatomy``. A new IFU
#: is a subpackage beside ``aorta/`` whose builder paints a :class:`~DigitalContrastLib.phantoms.canvas.Canvas`
#: with :data:`LABELS` and returns an :class:`~DigitalContrastLib.phantoms.anatomy.Anatomy`, listed here;
#: image formation (misregistration, blur, noise) and the files are shared.
IFU_BUILDERS: dict[str, AnatomyBuilder] = {"aorta": build_aorta}


def known_ifus() -> list[str]:
    """Intended uses that have a phantom generator."""
    return sorted(IFU_BUILDERS)


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


def _noise_free_images(anatomy: Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """The label map through each HU table (float32 ``[z, y, x]``, HU): non-contrast and contrast,
    the contrast one with the anatomy's per-slice offsets (lumen gradient, caval mixing)."""
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
    return noncontrast, contrast


def _moved(contrast: CTVolume, misregistration: RigidMisregistration,
           center_lps_mm: tuple[float, float, float]) -> np.ndarray:
    """The contrast image's anatomy moved by ``misregistration`` about ``center_lps_mm`` (linear
    interpolation, -1000 HU outside; float32 ``[z, y, x]`` on the same grid)."""
    import SimpleITK as sitk

    image = contrast.to_sitk()
    inverse = misregistration.to_sitk(center_lps_mm).GetInverse()
    moved = sitk.Resample(image, image, inverse, sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(moved)


def _to_int16(a: np.ndarray) -> np.ndarray:
    """Rounded and clipped to :data:`HU_CLIP` (in place), as int16."""
    np.rint(a, out=a)
    np.clip(a, HU_CLIP[0], HU_CLIP[1], out=a)
    return a.astype(np.int16)


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
    anatomy = IFU_BUILDERS[ifu](int(seed), Grid(size, spacing, (0.0, 0.0, float(center_z_mm))))
    grid = anatomy.grid
    rng = np.random.default_rng([int(seed), 3])
    blur_voxels = uniform(rng, 0.5, 1.0)
    nps_peak = uniform(rng, 0.2, 0.3)
    z_corr = uniform(rng, 0.4, 0.8)
    sigma_nc, sigma_c = uniform(rng, 8, 25), uniform(rng, 8, 25)

    labels = anatomy.labels
    noncontrast, contrast = _noise_free_images(anatomy)
    center = grid.center
    geometry = dict(spacing_mm=grid.spacing, origin_mm=grid.origin, direction=IDENTITY_DIRECTION)
    if misregistration is not None:
        contrast = _moved(CTVolume(contrast, **geometry), misregistration, center)

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
        noncontrast=CTVolume(_to_int16(noncontrast), **geometry, metadata={**meta, "phase": "noncontrast"}),
        contrast=CTVolume(_to_int16(contrast), **geometry, metadata={**meta, "phase": "arterial"}),
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
