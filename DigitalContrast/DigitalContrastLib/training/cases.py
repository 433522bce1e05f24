"""Training cases: paired non-contrast / contrast CT folders read onto the model grid.

A case is a folder ``<data>/<case>/`` with ``noncontrast.nrrd`` and ``contrast.nrrd`` on one grid
(HU) and, optionally, ``labels.nrrd`` (phantom label codes, :data:`~DigitalContrastLib.ct.labels.LABELS`).
:func:`load_case` resamples it once to the model spacing, puts it in canonical orientation and keeps
it in memory as int16 HU ``[z, y, x]``, with the flat indices of the vessel (and thrombus) voxels on
which patches are centred. Without labels, a vessel is where HU rises by more than
:data:`ENHANCEMENT_FALLBACK_HU` between the scans.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import uniform_filter

from DigitalContrastLib.common.errors import InputError
from DigitalContrastLib.ct.io import read_volume
from DigitalContrastLib.ct.labels import LABELS
from DigitalContrastLib.ct.paired_case import CASE_FILES, has_pair
from DigitalContrastLib.synthesis.grid import canonical_orientation, hu_to_model_grid, model_grid_shape

from .config import TrainConfig

ENHANCEMENT_FALLBACK_HU = 100.0  # without labels: a vessel is where HU rises by more than this


@dataclass
class TrainingCase:
    """One paired case on the model grid, canonical orientation, int16 HU ``[z, y, x]``."""

    name: str
    folder: Path
    noncontrast: np.ndarray
    contrast: np.ndarray
    vessel: np.ndarray | None  # bool: over-sampled and weighted in the loss (None: derived from ``tissue``)
    thrombus: np.ndarray | None  # bool: weighted in the loss, never enhanced (None: from ``tissue`` or none)
    labels: np.ndarray | None
    aortic_lumen: np.ndarray | None  # bool, for pseudo non-contrast inputs (None: from ``tissue`` or none)
    positives: np.ndarray  # flat indices of vessel voxels to centre patches on (subsampled)
    body_box: tuple[tuple[int, int], ...]  # per axis [lo, hi) of the body's bounding box
    spacing_xyz_mm: tuple[float, float, float]
    source_volume: Any = None  # the non-contrast CTVolume as read (validation synthesizes it)
    contrast_volume: Any = None
    labels_volume: Any = None
    # uint8 label codes on the model grid (cases with labels): the vessel, thrombus and aortic lumen
    # masks of a patch are cut from it, one byte per voxel instead of one per mask
    tissue: np.ndarray | None = None
    # flat indices of thrombus voxels (subsampled) and their total count on the model grid (cases with labels)
    thrombus_positives: np.ndarray | None = None
    thrombus_voxels: int = 0


def find_cases(data_dir: str | Path) -> list[Path]:
    """Case folders under ``data_dir`` holding ``noncontrast.nrrd`` and ``contrast.nrrd``, sorted."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"Training data folder {data_dir} does not exist; give --data a folder of cases.", code="no_data")
    return sorted(p for p in data_dir.iterdir() if p.is_dir() and has_pair(p))


def phantom_seeds(case_dirs: Sequence[Path]) -> list[int]:
    """Seeds of the phantom cases among ``case_dirs`` (from their ``phantom.json``), sorted."""
    seeds = []
    for folder in case_dirs:
        try:
            seeds.append(int(json.loads((folder / "phantom.json").read_text())["seed"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(seeds)


def vessel_codes() -> list[int]:
    """Label codes of the vessel voxels: over-sampled as patch centres and weighted in the loss."""
    names = ("aortic_lumen", "thrombus", "calcification", "aortic_wall", "branch_artery")
    return [LABELS[n] for n in names if n in LABELS]


def label_code(name: str) -> int:
    """The label code of tissue ``name`` (:data:`~DigitalContrastLib.ct.labels.LABELS`)."""
    return LABELS[name]


def _positive_codes() -> list[int]:
    return [LABELS[n] for n in ("aortic_lumen", "thrombus") if n in LABELS]


def load_case(folder: Path, config: TrainConfig, keep_volumes: bool = False, rng: np.random.Generator | None = None,
              max_positives: int = 50_000) -> TrainingCase:
    """Read a case folder, resample it to the model spacing and index its vessel voxels.

    Raises:
        InputError: a file is unreadable or the two scans are on different grids.
    """
    nc_volume = read_volume(folder / CASE_FILES["noncontrast"])
    c_volume = read_volume(folder / CASE_FILES["contrast"])
    if not nc_volume.same_geometry(c_volume):
        raise InputError(f"{folder}: noncontrast.nrrd and contrast.nrrd are on different grids; resample one onto the other.",
                         code="grid_mismatch")
    label_path = folder / CASE_FILES["labels"]
    labels_volume = read_volume(label_path) if label_path.is_file() else None
    orientation = canonical_orientation(nc_volume.direction)
    spacing_zyx = orientation.spacing_zyx(nc_volume.spacing_mm)
    target = config.target_spacing_xyz_mm
    grid = model_grid_shape(orientation.to_canonical(nc_volume.array).shape, spacing_zyx, (target[2], target[1], target[0]))

    def to_grid(volume) -> np.ndarray:
        values = hu_to_model_grid(orientation.to_canonical(volume.array), grid)
        return values.round_().clamp_(-32768, 32767).to(torch.int16).numpy()

    nc, c = to_grid(nc_volume), to_grid(c_volume)
    labels = None
    if labels_volume is not None:
        canonical = torch.from_numpy(np.ascontiguousarray(orientation.to_canonical(labels_volume.array)).astype(np.int16))
        labels = torch.nn.functional.interpolate(canonical[None, None].float(), size=grid, mode="nearest")[0, 0]
        labels = labels.to(torch.int16).numpy()
        if labels.min() < 0 or labels.max() > 255:
            raise InputError(f"{label_path}: label codes must lie in 0-255; relabel the case.", code="bad_labels")
        tissue = labels.astype(np.uint8)
        positive = np.isin(labels, _positive_codes())
        # centres of thrombus-centred patches, only where the run draws them
        thrombus_centres = labels == label_code("thrombus") if config.thrombus_centre_fraction > 0 else None
        vessel = thrombus = aortic_lumen = None  # cut from ``tissue`` per patch
    else:
        rise = uniform_filter((c.astype(np.float32) - nc.astype(np.float32)), size=3)
        vessel = rise > ENHANCEMENT_FALLBACK_HU
        positive = vessel
        thrombus = None
        aortic_lumen = None
        tissue = None
        thrombus_centres = None
    body = nc > config.body_threshold_hu
    coords = np.nonzero(body)
    if not coords[0].size:
        raise InputError(f"{folder}: the non-contrast scan holds no body (nothing above {config.body_threshold_hu} HU).",
                         code="empty_case")
    box = tuple((int(a.min()), int(a.max()) + 1) for a in coords)
    rng = rng or np.random.default_rng(0)
    positives = _flat_indices(positive, max_positives, rng)
    thrombus_voxels = int(np.count_nonzero(thrombus_centres)) if thrombus_centres is not None else 0
    thrombus_positives = _flat_indices(thrombus_centres, max_positives, rng) if thrombus_voxels else None
    spacing_xyz = (target[0], target[1], target[2])
    return TrainingCase(
        name=folder.name, folder=folder, noncontrast=nc, contrast=c, vessel=vessel, thrombus=thrombus,
        labels=labels if keep_volumes else None,  # training needs only the vessel mask: save the memory
        aortic_lumen=aortic_lumen,
        positives=positives, body_box=box, spacing_xyz_mm=spacing_xyz,
        thrombus_positives=thrombus_positives, thrombus_voxels=thrombus_voxels,
        source_volume=nc_volume if keep_volumes else None,
        contrast_volume=c_volume if keep_volumes else None,
        labels_volume=labels_volume if keep_volumes else None,
        tissue=tissue,
    )


def _flat_indices(mask: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted flat indices (int64) of ``mask``'s voxels, at most ``limit`` of them drawn without replacement."""
    flat = np.flatnonzero(mask).astype(np.int64)
    return np.sort(rng.choice(flat, limit, replace=False)) if flat.size > limit else flat


@dataclass
class TrainingData:
    """The cases of one run, loaded onto the model grid, and the folders they came from."""

    case_dirs: list[Path]
    validation_dirs: list[Path]  # the validation folders scored (at most ``val_cases`` of them)
    validation_note: str  # whether the validation cases are separate from the training cases
    cases: list[TrainingCase]
    validation_cases: list[TrainingCase]  # with their volumes as read (validation synthesizes them)


def load_training_data(config: TrainConfig, rng: np.random.Generator, log: Callable[[str], None]) -> TrainingData:
    """Load the training cases of ``config.data_dir`` (positives drawn from ``rng``) and the validation cases.

    Without ``config.val_dir`` (or without cases there), the last training case is scored.

    Raises:
        InputError: no case folders under ``config.data_dir``, or a case is unreadable.
    """
    case_dirs = find_cases(config.data_dir)
    if not case_dirs:
        raise InputError(f"Training data folder {config.data_dir} holds no case folders with noncontrast.nrrd and "
                         "contrast.nrrd; generate phantoms with --generate-phantoms or point --data elsewhere.",
                         code="no_data")
    val_dirs = find_cases(config.val_dir) if config.val_dir else []
    val_note = "separate validation cases"
    if not val_dirs:
        val_dirs, val_note = case_dirs[-1:], "no separate validation data: scored on a TRAINING case"
    log(f"loading {len(case_dirs)} training cases from {config.data_dir}")
    cases = [load_case(p, config, rng=rng) for p in case_dirs]
    used_val = val_dirs[: max(1, config.val_cases)]
    val_cases = [load_case(p, config, keep_volumes=True) for p in used_val]
    return TrainingData(case_dirs=case_dirs, validation_dirs=used_val, validation_note=val_note, cases=cases,
                        validation_cases=val_cases)
