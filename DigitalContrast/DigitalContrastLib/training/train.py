"""Train a residual synthesis network on paired non-contrast / contrast CT cases.

A case is a folder ``<data>/<case>/`` with ``noncontrast.nrrd`` and ``contrast.nrrd`` on one grid
(HU) and, optionally, ``labels.nrrd`` (phantom label codes). Cases are resampled once to the
model spacing, put in canonical orientation and kept in memory as int16 (``[z, y, x]``).

Each step draws patches (``patch_size_zyx``) centred on a vessel voxel with probability
``positive_fraction`` (aortic lumen, thrombus, wall, calcium, branch arteries from the labels; without
labels, voxels whose HU rises by more than 100 between the scans), else on a random body voxel;
MONAI transforms flip them along z and y (never left-right: anatomy is not mirror-symmetric) and
shift the input HU a little. The network predicts
the residual ``(contrast - noncontrast) / output_scale_hu`` from the normalised non-contrast
input. Loss = vessel-weighted L1 in HU / 100 + ``ssim_weight`` * (1 - SSIM) of the synthetic and
real contrast images in a CTA window at half resolution (MONAI ``SSIMLoss``); the first
``mse_warmup_fraction`` of the steps use a vessel-weighted squared error instead of the L1 (blended
into it over the next 20 %), because L1 alone stalls at predicting no enhancement at all. From
``freeze_norm_fraction`` of the steps on, batch norm uses its running statistics, so the rest of
training optimises exactly what inference computes.

After every epoch: the validation cases are synthesized whole with the engine's own sliding
window and scored (body MAE, lumen MAE/bias, thrombus bias, lumen Dice, diameter error); a
checkpoint (model + AdamW state, safetensors, no pickle) is written, from which ``resume``
continues. At the end the model folder (``model.safetensors`` + a complete ``model_card.json``)
is written to ``out_dir``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from DigitalContrastLib.common.hardware import available_cpu_cores
from DigitalContrastLib.synthesis import engine as E
from DigitalContrastLib.common.errors import InputError, JobError
from DigitalContrastLib.evaluation.metrics import LUMEN_THRESHOLD_HU
from DigitalContrastLib.models.network import build_network, count_parameters
from DigitalContrastLib.common.progress import ProgressCallback, no_progress
from DigitalContrastLib.common.report_html import format_number
from DigitalContrastLib.ct.paired_case import CASE_FILES, has_pair

CHECKPOINT_DIR = "training"
CHECKPOINT_FILE = "checkpoint.safetensors"
HISTORY_FILE = "history.json"
SSIM_WINDOW_HU = (-160.0, 540.0)  # a CTA window (W 700 / L 190) for the SSIM term
LUMEN_MASK_SOFTNESS_HU = 25.0  # sigmoid scale of the lumen-mask term: threshold +- 25 HU is p = 0.27...0.73
ENHANCEMENT_FALLBACK_HU = 100.0  # without labels: a vessel is where HU rises by more than this


@dataclass
class TrainConfig:
    """Everything that defines one training run (recorded in the card).

    Sizes are ``[z, y, x]`` voxels of the model grid; spacing is ``(x, y, z)`` mm.
    """

    data_dir: str
    out_dir: str
    val_dir: str | None = None
    epochs: int = 20
    steps_per_epoch: int = 100
    batch_size: int = 2
    patch_size_zyx: tuple[int, int, int] = (48, 96, 96)
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    vessel_weight: float = 4.0
    # extra weight on thrombus voxels (labels needed): the thrombus sits a few HU below blood and
    # must not light up; without it, the few thrombus voxels barely count against the whole body
    thrombus_weight: float = 0.0
    # weight of a lumen-mask term (labels needed): inside the aortic sac (lumen and thrombus labels) the
    # synthetic HU, read as a mask at metrics.LUMEN_THRESHOLD_HU (a sigmoid with LUMEN_MASK_SOFTNESS_HU),
    # is scored by binary cross-entropy against the lumen label. The L1 learns an HU per voxel; this
    # term learns where the lumen's edge lies, the very threshold that the lumen Dice, the diameter and
    # the thrombus bias read. It saturates once a voxel is on the right side, so it does not fight the
    # L1 over the lumen's level. 0 leaves it out.
    lumen_mask_weight: float = 0.0
    # fraction of the patches centred on a thrombus voxel (labels needed), of a case drawn in proportion
    # to its thrombus volume: thick thrombus, where a model draws the lumen too wide, is seen more often
    thrombus_centre_fraction: float = 0.0
    # fraction of the patches whose input is a pseudo non-contrast scan (labels needed): the contrast
    # scan with only the aortic lumen taken from the non-contrast one, so that enhanced neighbours
    # (heart, pulmonary arteries, branches) do not stop the model from filling a dark aorta. The
    # real-anatomy check builds its input this way from a real CTA; 0 trains on true pairs only.
    pseudo_noncontrast_fraction: float = 0.0
    # voxels by which the unenhanced region of a pseudo non-contrast patch reaches beyond the lumen
    # label (6-connected dilation). With 0 the contrast scan's partial-volume blur of the lumen stays
    # as a bright rim around a dark lumen: a cue that neither a true non-contrast scan nor the real
    # check (whose mask covers the partial-volume layer) has.
    pseudo_noncontrast_margin_voxels: int = 0
    # range of the factor on the enhancement of the blood pools around the aorta (heart chambers,
    # pulmonary arteries, veins, venae cavae) in pseudo non-contrast patches, drawn per label and
    # applied to both scans (the residual there stays 0). A real CTA's neighbours are brighter than
    # the phantoms' (dense contrast inflow in the superior vena cava passes 1000 HU): capping the real
    # check's input at 450 HU outside the aorta raised model 1.6.0's lumen median 176 -> 202 HU.
    pseudo_noncontrast_neighbour_gain: tuple[float, float] = (1.0, 1.0)
    # an installed model (id or folder) whose weights start this run: fine-tuning instead of a random
    # start; its network and input normalisation must be this run's. A checkpoint found by --resume wins.
    init_from: str = ""
    # share of the --init-from parent's weights in the written model: the weights written are
    # parent_weight * parent + (1 - parent_weight) * trained, a weight-space ensemble of the two
    # (WiSE-FT, Wortsman et al. 2022), which keeps more of the parent's behaviour on its own data and
    # part of the fine-tune's gain. Checkpoints (and --resume) keep the trained weights unblended.
    parent_weight: float = 0.0
    # fraction of the patches whose non-vessel tissues (labels needed) get another look, the same in
    # both scans so the residual target is unchanged: each soft tissue and organ shifted by up to
    # +-appearance_offset_hu, bone contrast scaled by a factor in appearance_bone_scale. Blood, vessel
    # walls, thrombus and air keep their values: the aorta is to be found by its shape and place, not
    # by the exact HU of its neighbours in the phantoms (a real CT's bone and organs differ from them).
    appearance_jitter: float = 0.0
    appearance_offset_hu: float = 25.0
    appearance_bone_scale: tuple[float, float] = (0.4, 1.2)
    # fraction of the patches turned about the z axis by up to +-rotate_deg and scaled in-plane by a
    # factor drawn log-uniformly from [1 / (1 + scale_range), 1 + scale_range], the same in both scans
    # and the labels (images linear, labels nearest; cut from a larger crop, so no padding enters).
    # Model 1.6.0 lost 30-55 HU of thoracic lumen on chest phantoms turned by 30 degrees or
    # enlarged by 25 %: real patients lie and measure otherwise than the phantoms.
    geometric_fraction: float = 0.0
    rotate_deg: float = 20.0
    scale_range: float = 0.25
    # fraction of the steps trained with a squared error before the L1 takes over (blended over the
    # following 20 %): L1 alone stalls at "predict no enhancement", because its per-voxel gradient
    # does not grow with the (large, rare) vessel errors
    mse_warmup_fraction: float = 0.3
    # from this fraction of the steps on, batch-norm layers use their running statistics (frozen), so
    # that training optimises the very function that inference computes (with two patches per batch
    # the batch statistics differ a lot from the running ones)
    freeze_norm_fraction: float = 0.4
    ssim_weight: float = 0.1
    positive_fraction: float = 0.6
    intensity_shift_hu: float = 10.0
    val_cases: int = 2
    seed: int = 0
    model_id: str = "aorta-phantom-v1"
    version: str = "1.0.0"
    ifu: str = "aorta"
    title: str = "Aorta CTA from non-contrast CT (phantom-trained demonstration model)"
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    num_res_units: int = 0
    # Batch norm without residual units: with residual units MONAI's UNet puts a norm + PReLU on
    # its 1-channel output, whose batch statistics made the inference output a third of the training
    # output here; with num_res_units=0 the top layer is a plain convolution. Without any norm the
    # network learned the vessels 3x slower.
    norm: str | None = "BATCH"
    target_spacing_xyz_mm: tuple[float, float, float] = (1.4, 1.4, 2.5)
    # a soft-tissue-friendly window: 10 HU is 0.04 network units (lung and air both clip to -300)
    clip_hu: tuple[float, float] = (-300.0, 1200.0)
    offset_hu: float = 40.0
    scale_hu: float = 250.0
    output_scale_hu: float = 500.0
    body_threshold_hu: float = -500.0
    inference_roi_zyx: tuple[int, int, int] = (64, 128, 128)
    inference_overlap: float = 0.25
    inference_sw_batch_size: int = 2
    inference_prediction: str = "single-pass"  # or "flip-tta-mean" (see engine.EngineSettings)
    train_precision: str = "auto"  # auto: bf16 autocast where the CPU has native bf16, else fp32
    weights_dtype: str = "float16"  # storage of the shipped weights (loaded into float32)
    command: str = ""
    data_description: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
        return cls(**values)


# --------------------------------------------------------------------------- cases


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


def _vessel_codes() -> list[int]:
    from DigitalContrastLib.ct.labels import LABELS

    names = ("aortic_lumen", "thrombus", "calcification", "aortic_wall", "branch_artery")
    return [LABELS[n] for n in names if n in LABELS]


def _label_code(name: str) -> int:
    from DigitalContrastLib.ct.labels import LABELS

    return LABELS[name]


def _positive_codes() -> list[int]:
    from DigitalContrastLib.ct.labels import LABELS

    return [LABELS[n] for n in ("aortic_lumen", "thrombus") if n in LABELS]


def load_case(folder: Path, config: TrainConfig, keep_volumes: bool = False, rng: np.random.Generator | None = None,
              max_positives: int = 50_000) -> TrainingCase:
    """Read a case folder, resample it to the model spacing and index its vessel voxels.

    Raises:
        InputError: a file is unreadable or the two scans are on different grids.
    """
    from DigitalContrastLib.ct.io import read_volume

    nc_volume = read_volume(folder / CASE_FILES["noncontrast"])
    c_volume = read_volume(folder / CASE_FILES["contrast"])
    if not nc_volume.same_geometry(c_volume):
        raise InputError(f"{folder}: noncontrast.nrrd and contrast.nrrd are on different grids; resample one onto the other.",
                         code="grid_mismatch")
    label_path = folder / CASE_FILES["labels"]
    labels_volume = read_volume(label_path) if label_path.is_file() else None
    orientation = E.canonical_orientation(nc_volume.direction)
    spacing_zyx = orientation.spacing_zyx(nc_volume.spacing_mm)
    target = config.target_spacing_xyz_mm
    grid = E.model_grid_shape(orientation.to_canonical(nc_volume.array).shape, spacing_zyx, (target[2], target[1], target[0]))

    def to_grid(volume) -> np.ndarray:
        values = E.hu_to_model_grid(orientation.to_canonical(volume.array), grid)
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
        thrombus_centres = labels == _label_code("thrombus") if config.thrombus_centre_fraction > 0 else None
        vessel = thrombus = aortic_lumen = None  # cut from ``tissue`` per patch
    else:
        from scipy.ndimage import uniform_filter

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


# --------------------------------------------------------------------------- patches


def _flat_indices(mask: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted flat indices (int64) of ``mask``'s voxels, at most ``limit`` of them drawn without replacement."""
    flat = np.flatnonzero(mask).astype(np.int64)
    return np.sort(rng.choice(flat, limit, replace=False)) if flat.size > limit else flat


def _crop(array: np.ndarray, start: Sequence[int], size: Sequence[int], fill: float) -> np.ndarray:
    """``array[start:start+size]`` with ``fill`` where the window leaves the array."""
    out = np.full(tuple(size), fill, dtype=array.dtype)
    src, dst = [], []
    for s, n, length in zip(start, size, array.shape):
        lo, hi = max(s, 0), min(s + n, length)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = array[tuple(src)]
    return out


def inplane_footprint(size_yx: Sequence[int], angle_rad: float, scale: float) -> tuple[int, int]:
    """In-plane size (voxels) of the crop that a ``size_yx`` patch turned by ``angle_rad`` and scaled by
    ``scale`` (> 1: anatomy enlarged) samples from, with one voxel to spare on each side."""
    reach = (abs(math.cos(angle_rad)) + abs(math.sin(angle_rad))) / scale
    return tuple(int(math.ceil(n * reach)) + 2 for n in size_yx)  # type: ignore[return-value]


def inplane_grid(crop_zyx: Sequence[int], size_zyx: Sequence[int], angle_rad: float, scale: float) -> torch.Tensor:
    """Sampling grid (for :func:`warp_inplane`) of the centre ``size_zyx`` of a ``crop_zyx`` block turned by
    ``angle_rad`` about z and scaled by ``scale``.

    Output voxel ``p`` (from the output centre, in voxels; x and y spacing equal) samples the block at
    ``R(angle) p / scale`` from its centre; z is kept (``size_zyx[0]`` must equal ``crop_zyx[0]``).
    One grid serves every array cut from the same crop.
    """
    depth, height, width = (int(v) for v in crop_zyx)
    d, h, w = (int(v) for v in size_zyx)
    if d != depth:
        raise ValueError(f"inplane_grid keeps z: {d} output slices from {depth}")
    cos, sin = math.cos(angle_rad) / scale, math.sin(angle_rad) / scale
    theta = torch.tensor([[[cos * w / width, -sin * h / width, 0.0, 0.0],
                           [sin * w / height, cos * h / height, 0.0, 0.0],
                           [0.0, 0.0, 1.0, 0.0]]], dtype=torch.float32)
    return torch.nn.functional.affine_grid(theta, [1, 1, d, h, w], align_corners=False)


def warp_inplane(array: np.ndarray, grid: torch.Tensor, nearest: bool = False) -> np.ndarray:
    """``array`` ``[z, y, x]`` sampled on ``grid`` (from :func:`inplane_grid` for ``array.shape``).

    Linear interpolation, or nearest for labels and masks; the dtype is kept (bool stays bool).
    """
    source = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    out = torch.nn.functional.grid_sample(source, grid, mode="nearest" if nearest else "bilinear",
                                          padding_mode="border", align_corners=False)[0, 0].numpy()
    if array.dtype == bool:
        return out > 0.5
    if np.issubdtype(array.dtype, np.integer):
        return np.rint(out).astype(array.dtype)
    return out.astype(array.dtype)


def labels_present(tissue: np.ndarray) -> set[int]:
    """The label codes found in a uint8 ``tissue`` patch (a bincount: no sort of the patch)."""
    return set(np.flatnonzero(np.bincount(tissue.ravel(), minlength=256)).tolist())


#: blood pools beside the aorta whose enhancement brighten_blood_pools scales (never the aorta or its branches)
NEIGHBOUR_BLOOD_POOLS = ("heart_left", "heart_right", "pulmonary_artery", "vein", "vena_cava")


def brighten_blood_pools(nc_hu: np.ndarray, c_hu: np.ndarray, tissue: np.ndarray, rng: np.random.Generator,
                         gain: Sequence[float]) -> None:
    """Scale the enhancement (contrast - non-contrast, HU) of each :data:`NEIGHBOUR_BLOOD_POOLS` label in
    ``tissue`` by its own factor drawn from ``gain`` (lo, hi), in ``c_hu`` (in place). ``tissue`` is a
    uint8 label array (0 where excluded); a pseudo non-contrast patch built from ``c_hu`` afterwards sees
    the brighter pools in its input and its target alike."""
    present = labels_present(tissue)
    for name in NEIGHBOUR_BLOOD_POOLS:
        code = _label_code(name)
        if code in present:
            where = tissue == code
            c_hu[where] = nc_hu[where] + float(rng.uniform(*gain)) * (c_hu[where] - nc_hu[where])


# tissues whose look is varied by jitter_appearance (same change in both scans); every other label
# (blood, vessel walls, thrombus, calcification, air, lung) keeps its values
APPEARANCE_OFFSET_TISSUES = ("soft_tissue", "fat", "muscle", "liver", "kidney_cortex", "kidney_medulla", "bowel",
                             "spleen", "disc", "pancreas", "fluid", "myocardium")
APPEARANCE_BONE_TISSUES = ("cortical_bone", "bone_marrow")
BONE_SCALE_CENTRE_HU = 40.0


def jitter_appearance(nc_hu: np.ndarray, c_hu: np.ndarray, tissue: np.ndarray, rng: np.random.Generator,
                      offset_hu: float, bone_scale: Sequence[float]) -> None:
    """Give a patch's non-vessel tissues another look, in place and identically in both scans.

    Each tissue of :data:`APPEARANCE_OFFSET_TISSUES` present is shifted by its own offset drawn from
    ``U(-offset_hu, offset_hu)``; bone (:data:`APPEARANCE_BONE_TISSUES`) has its contrast against
    40 HU scaled by one factor from ``U(*bone_scale)`` in the non-contrast scan, its enhancement kept.
    ``c_hu - nc_hu`` (the residual the network learns) is unchanged everywhere.

    Args:
        nc_hu, c_hu: float32 ``[z, y, x]`` patches in HU (modified).
        tissue: uint8 label codes of the patch (phantom :data:`~DigitalContrastLib.phantoms.generator.LABELS`).
    """
    present = labels_present(tissue)
    for name in APPEARANCE_OFFSET_TISSUES:
        code = _label_code(name)
        if code in present:
            where = tissue == code
            offset = float(rng.uniform(-offset_hu, offset_hu))
            nc_hu[where] += offset
            c_hu[where] += offset
    bone = np.isin(tissue, [_label_code(n) for n in APPEARANCE_BONE_TISSUES])
    if bone.any():
        scale = float(rng.uniform(*bone_scale))
        enhancement = c_hu[bone] - nc_hu[bone]
        nc_hu[bone] = BONE_SCALE_CENTRE_HU + (nc_hu[bone] - BONE_SCALE_CENTRE_HU) * scale
        c_hu[bone] = nc_hu[bone] + enhancement


class PatchSampler:
    """Draws vessel-over-sampled training patches and applies MONAI augmentations."""

    def __init__(self, cases: list[TrainingCase], config: TrainConfig, rng: np.random.Generator) -> None:
        from monai.transforms import Compose, RandFlipd, RandShiftIntensityd

        self.cases = cases
        self.config = config
        self.rng = rng
        keys = ["image", "target", "weight", "nc_hu", "c_hu"]
        if config.lumen_mask_weight > 0:
            keys += ["lumen", "sac"]
        shift = config.intensity_shift_hu / config.scale_hu
        # flips along z and y only: a left-right flip would swap the aorta (patient's left) and the
        # inferior vena cava (right), two blood-density tubes of which only the aorta enhances
        self.augment = Compose([
            RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
            RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
            # a calibration offset of the scanner: shifts the input only (the residual is unchanged)
            RandShiftIntensityd(keys=["image"], offsets=(-shift, shift), prob=0.5),
        ])
        self.augment.set_random_state(seed=int(rng.integers(2**31)))
        volumes = np.array([c.thrombus_voxels for c in cases], dtype=np.float64)
        self.thrombus_case_p = volumes / volumes.sum() if volumes.sum() > 0 else None

    def _centre(self, case: TrainingCase) -> tuple[int, int, int]:
        if case.positives.size and self.rng.random() < self.config.positive_fraction:
            flat = int(case.positives[self.rng.integers(case.positives.size)])
            return tuple(int(v) for v in np.unravel_index(flat, case.noncontrast.shape))  # type: ignore[return-value]
        return tuple(int(self.rng.integers(lo, hi)) for lo, hi in case.body_box)  # type: ignore[return-value]

    def sample(self) -> dict[str, torch.Tensor]:
        """One patch: ``image``/``target``/``weight``/``nc_hu``/``c_hu`` as ``[1, z, y, x]`` float32."""
        size = self.config.patch_size_zyx
        if (self.thrombus_case_p is not None and self.config.thrombus_centre_fraction > 0
                and self.rng.random() < self.config.thrombus_centre_fraction):
            case = self.cases[int(self.rng.choice(len(self.cases), p=self.thrombus_case_p))]
            flat = int(case.thrombus_positives[self.rng.integers(case.thrombus_positives.size)])
            centre = tuple(int(v) for v in np.unravel_index(flat, case.noncontrast.shape))
        else:
            case = self.cases[int(self.rng.integers(len(self.cases)))]
            centre = self._centre(case)
        cfg = self.config
        turn = cfg.geometric_fraction > 0 and self.rng.random() < cfg.geometric_fraction
        if turn:
            angle = math.radians(float(self.rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)))
            scale = math.exp(float(self.rng.uniform(-1.0, 1.0)) * math.log1p(cfg.scale_range))
            crop_size = (size[0], *inplane_footprint(size[1:], angle, scale))
            grid = inplane_grid(crop_size, size, angle, scale)  # one grid for every array of this patch
        else:
            crop_size = tuple(size)
        start = [c - n // 2 for c, n in zip(centre, crop_size)]
        # keep the patch inside the volume where the volume is big enough
        start = [min(max(s, 0), max(length - n, 0)) for s, n, length in zip(start, crop_size, case.noncontrast.shape)]

        def cut(array: np.ndarray, fill: float, nearest: bool = False) -> np.ndarray:
            out = _crop(array, start, crop_size, fill)
            return warp_inplane(out, grid, nearest=nearest) if turn else out

        nc = cut(case.noncontrast, -1024).astype(np.float32)
        c = cut(case.contrast, -1024).astype(np.float32)
        tissue = cut(case.tissue, 0, nearest=True) if case.tissue is not None else None

        def mask(name: str, stored: np.ndarray | None) -> np.ndarray | None:
            if tissue is not None:
                return tissue == _label_code(name)
            return cut(stored, False, nearest=True) if stored is not None else None

        lumen_label = (mask("aortic_lumen", case.aortic_lumen)
                       if cfg.pseudo_noncontrast_fraction > 0 or cfg.lumen_mask_weight > 0 else None)
        if cfg.pseudo_noncontrast_fraction > 0:
            lumen = lumen_label
            if lumen is not None and self.rng.random() < cfg.pseudo_noncontrast_fraction:
                # pseudo non-contrast input: the contrast phase everywhere but in the aortic lumen
                if cfg.pseudo_noncontrast_margin_voxels > 0:
                    lumen = ndimage.binary_dilation(lumen, iterations=cfg.pseudo_noncontrast_margin_voxels)
                if tissue is not None and tuple(cfg.pseudo_noncontrast_neighbour_gain) != (1.0, 1.0):
                    brighten_blood_pools(nc, c, np.where(lumen, 0, tissue), self.rng, cfg.pseudo_noncontrast_neighbour_gain)
                nc = np.where(lumen, nc, c)
        if tissue is not None and cfg.appearance_jitter > 0 and self.rng.random() < cfg.appearance_jitter:
            jitter_appearance(nc, c, tissue, self.rng, cfg.appearance_offset_hu, cfg.appearance_bone_scale)
        vessel = np.isin(tissue, _vessel_codes()) if tissue is not None else cut(case.vessel, False, nearest=True)
        weight = 1.0 + cfg.vessel_weight * vessel.astype(np.float32)
        thrombus = mask("thrombus", case.thrombus)
        if thrombus is not None and cfg.thrombus_weight:
            weight += cfg.thrombus_weight * thrombus.astype(np.float32)
        item = {
            "image": ((np.clip(nc, *cfg.clip_hu) - cfg.offset_hu) / cfg.scale_hu)[None],
            "target": ((c - nc) / cfg.output_scale_hu)[None],
            "weight": weight[None],
            "nc_hu": nc[None],
            "c_hu": c[None],
        }
        if cfg.lumen_mask_weight > 0:
            # without labels the case has no sac: both masks empty, the term leaves the patch out
            empty = np.zeros(nc.shape, dtype=bool)
            lumen_mask = lumen_label if lumen_label is not None else empty
            item["lumen"] = lumen_mask[None].astype(np.float32)
            item["sac"] = (lumen_mask | (thrombus if thrombus is not None else empty))[None].astype(np.float32)
        item = self.augment({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in item.items()})
        return {k: torch.as_tensor(np.ascontiguousarray(v)).float() for k, v in item.items()}

    def batch(self, size: int) -> dict[str, torch.Tensor]:
        items = [self.sample() for _ in range(size)]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


# --------------------------------------------------------------------------- loss


class SynthesisLoss(torch.nn.Module):
    """Vessel-weighted L1 in HU (divided by 100) + ``ssim_weight`` * MONAI SSIM loss in a CTA window.

    ``l1_share`` (0...1) blends the L1 with a vessel-weighted squared error (HU^2 / 10^4) for the
    warm-up (see :func:`l1_share_at`).

    The SSIM term compares the synthetic and real contrast images (``nc_hu + residual`` vs ``c_hu``,
    windowed to :data:`SSIM_WINDOW_HU` and scaled to [0, 1]) at half resolution (2x2x2 mean).
    """

    def __init__(self, output_scale_hu: float, ssim_weight: float, lumen_mask_weight: float = 0.0) -> None:
        super().__init__()
        from monai.losses import SSIMLoss

        self.output_scale_hu = output_scale_hu
        self.ssim_weight = ssim_weight
        self.lumen_mask_weight = lumen_mask_weight
        self.ssim = SSIMLoss(spatial_dims=3, data_range=1.0, win_size=5, kernel_sigma=1.0) if ssim_weight > 0 else None

    def forward(self, pred: torch.Tensor, batch: dict[str, torch.Tensor],
                l1_share: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
        pred = pred.float()
        err_hu = (pred - batch["target"]).abs() * self.output_scale_hu
        weight = batch["weight"]
        l1_hu = (err_hu * weight).sum() / weight.sum()
        loss = l1_hu / 100.0 * l1_share
        parts = {"l1_hu": float(l1_hu.detach())}
        if l1_share < 1.0:
            mse = (err_hu.square() * weight).sum() / weight.sum() / 1e4
            loss = loss + (1.0 - l1_share) * mse
            parts["mse_1e4hu2"] = float(mse.detach())
        if self.ssim is not None:
            lo, hi = SSIM_WINDOW_HU
            synth = ((batch["nc_hu"] + pred * self.output_scale_hu - lo) / (hi - lo)).clamp(0, 1)
            real = ((batch["c_hu"] - lo) / (hi - lo)).clamp(0, 1)
            # at half resolution: MONAI's 3D SSIM costs ~5x the network's backward pass at full resolution
            # on a CPU; the L1 term already works voxel by voxel
            ssim_loss = self.ssim(torch.nn.functional.avg_pool3d(synth, 2), torch.nn.functional.avg_pool3d(real, 2))
            loss = loss + self.ssim_weight * ssim_loss
            parts["ssim_loss"] = float(ssim_loss.detach())
        if self.lumen_mask_weight > 0 and "sac" in batch:
            mask_loss = lumen_mask_loss(batch["nc_hu"] + pred * self.output_scale_hu, batch["lumen"], batch["sac"])
            loss = loss + self.lumen_mask_weight * mask_loss
            parts["lumen_mask_bce"] = float(mask_loss.detach())
        parts["loss"] = float(loss.detach())
        return loss, parts


def lumen_mask_loss(synthetic_hu: torch.Tensor, lumen: torch.Tensor, sac: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy, over the sac's voxels, of the synthetic HU read as a lumen mask.

    ``synthetic_hu``, ``lumen`` and ``sac`` are ``[batch, 1, z, y, x]``; ``lumen`` and ``sac`` are 0/1.
    The mask's logit is (HU - metrics.LUMEN_THRESHOLD_HU) / LUMEN_MASK_SOFTNESS_HU. A batch without sac
    voxels gives 0 (with a gradient, so that the graph stays the same).
    """
    logits = (synthetic_hu - LUMEN_THRESHOLD_HU) / LUMEN_MASK_SOFTNESS_HU
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, lumen, reduction="none")
    return (bce * sac).sum() / sac.sum().clamp(min=1.0)


def l1_share_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """0 (squared error only) for the warm-up, a linear blend over the next 20 % of steps, then 1 (L1)."""
    start = config.mse_warmup_fraction * total_steps
    ramp = 0.2 * total_steps
    if config.mse_warmup_fraction <= 0 or step >= start + ramp:
        return 1.0
    return max(0.0, (step - start) / ramp)


def freeze_norm_layers(network: torch.nn.Module) -> None:
    """Put every batch-norm layer in inference mode (running statistics used and kept fixed)."""
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def learning_rate_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 5 % of the peak (stateless, so resuming is exact)."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    return config.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


# --------------------------------------------------------------------------- card


def card_template(config: TrainConfig, network_kwargs: dict[str, Any]) -> dict[str, Any]:
    """A model card for ``config`` (weights, training and validation filled in later)."""
    return {
        "schema_version": 1,
        "id": config.model_id,
        "version": config.version,
        "ifu": config.ifu,
        "title": config.title,
        "network": {"class": "UNet", "kwargs": network_kwargs},
        "input": {
            "clip_hu": list(config.clip_hu),
            "offset_hu": config.offset_hu,
            "scale_hu": config.scale_hu,
            "target_spacing_xyz_mm": list(config.target_spacing_xyz_mm),
            "body_threshold_hu": config.body_threshold_hu,
        },
        "output": {"kind": "residual_hu", "scale_hu": config.output_scale_hu},
        "inference": {
            "roi_size_zyx": list(config.inference_roi_zyx),
            "overlap": config.inference_overlap,
            "blend_mode": "gaussian",
            "sigma_scale": 0.125,
            "sw_batch_size": config.inference_sw_batch_size,
            "precision": {"cpu": "bf16-if-supported", "cuda": "autocast"},
            "skip_empty_windows": True,
            "max_window_voxels": E.DEFAULT_MAX_WINDOW_VOXELS,
            "prediction": config.inference_prediction,
            "uncertainty": "flip-tta",
        },
        "weights": {"file": "model.safetensors", "format": "safetensors", "sha256": "0" * 64, "size_bytes": 1},
        "training": {"command": config.command or "(not recorded)", "data": dict(config.data_description)},
        "validation": {},
        "intended_use": (
            "Demonstrates the DigitalContrast pipeline: turns a non-contrast CT of the abdomen or chest into a "
            "synthetic arterial-phase CT angiogram of the aorta, for software testing, teaching and research on "
            "procedural phantoms. Not for clinical use: it was trained only on procedural phantoms, never on patient "
            "scans."
        ),
        "limitations": [
            "Trained on procedural phantoms only (the fields of view its training data held); real anatomy, "
            "pathology, implants and scanners differ.",
            "Predicts the average enhancement: the true bolus level (250-450 HU) of a given scan cannot be known from "
            "a non-contrast CT.",
            "Smooths image noise inside enhancing structures (L1 training against a target with independent noise).",
            "Not validated on patient data; must not be used for diagnosis or treatment decisions.",
        ],
        "licence": "Apache-2.0 (weights and card)",
        "energy": "",
    }


def network_kwargs_for(config: TrainConfig) -> dict[str, Any]:
    return {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 1,
        "channels": list(config.channels),
        "strides": list(config.strides),
        "num_res_units": config.num_res_units,
        "norm": config.norm,
    }


def initial_weights(config: TrainConfig) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The verified weights (float32) of the installed model ``config.init_from``, and its identity.

    The identity (id, version, weights sha256, its training command) goes into the new card as
    ``training.initialised_from``.

    Raises:
        ModelError: not installed, or its weights fail the checksum / are not safetensors.
        JobError: its network or input normalisation differs from this run's (the field is named).
    """
    from DigitalContrastLib.models.cards import resolve_model
    from DigitalContrastLib.models.weights import load_state_dict

    card = resolve_model(config.init_from)
    ours = card_template(config, network_kwargs_for(config))
    theirs = json.loads(json.dumps(card.data))
    fields = [("network", "class", "--channels/--norm"), ("network", "kwargs", "--channels, --res-units and --norm"),
              ("input", "clip_hu", "--clip-hu"), ("input", "offset_hu", "--input-offset-hu"),
              ("input", "scale_hu", "--input-scale-hu"), ("input", "target_spacing_xyz_mm", "--spacing"),
              ("output", "scale_hu", "the output scale")]
    for section, key, option in fields:
        want, have = ours[section][key], theirs.get(section, {}).get(key)
        if json.dumps(want, sort_keys=True) != json.dumps(have, sort_keys=True):
            raise JobError(f"--init-from {config.init_from}: its card has {section}.{key} = {json.dumps(have)} but this "
                           f"run has {json.dumps(want)}; give the same {option} as {card.id} {card.version}.",
                           code="init_mismatch")
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_state_dict(card.weights).items()}
    return state, {"id": card.id, "version": card.version, "weights_sha256": card.weights_sha256,
                   "command": theirs.get("training", {}).get("command", "")}


def blend_with_parent(state: dict[str, torch.Tensor], parent: dict[str, torch.Tensor], parent_weight: float,
                      identity: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``parent_weight`` * ``parent`` + the rest * ``state`` (the trained weights).

    Floating tensors are blended in float32 (and returned so); integer buffers (batch-norm counters)
    keep the trained values. ``parent`` is the verified state of :func:`initial_weights`, read once
    when the run starts; ``identity`` (its id and version) names it in the error.

    Raises:
        JobError: its tensors do not match the trained network's.
    """
    if set(parent) != set(state) or any(parent[k].shape != state[k].shape for k in state):
        raise JobError(f"--parent-weight: the weights of {identity['id']} {identity['version']} do not match the trained "
                       "network's tensors; train with the same network options.", code="init_mismatch")
    w = float(parent_weight)
    return {k: (w * parent[k].float() + (1.0 - w) * v.float() if v.is_floating_point() else v)
            for k, v in state.items()}


def resumed_parent(config: TrainConfig, started_from: dict[str, Any] | None) -> dict[str, torch.Tensor]:
    """The parent's verified weights for the blend of a resumed run, refused unless this run started from them.

    ``started_from`` is the identity the checkpoint recorded (:func:`checkpoint_parent`). The model
    installed as ``config.init_from`` may have changed since (a new version shipped under the same
    id): blending with it would write weights that the card does not describe.

    Raises:
        JobError: the checkpointed run started from random weights or from other weights (sha256).
    """
    if started_from is None:
        raise JobError(f"--parent-weight: the checkpoint in {config.out_dir} started from random weights, not from "
                       f"{config.init_from}; resume without --parent-weight.", code="init_mismatch")
    state, installed = initial_weights(config)
    if installed["weights_sha256"] != started_from["weights_sha256"]:
        raise JobError(f"--parent-weight: {config.init_from} is now {installed['id']} {installed['version']} (sha256 "
                       f"{installed['weights_sha256'][:12]}…), but the run in {config.out_dir} started from "
                       f"{started_from['version']} (sha256 {started_from['weights_sha256'][:12]}…); install that "
                       "version again or resume without --parent-weight.", code="init_mismatch")
    return state


# --------------------------------------------------------------------------- validation during training


def evaluate_cases(network: torch.nn.Module, cases: list[TrainingCase], settings: E.EngineSettings,
                   precision: str = "auto") -> dict[str, float]:
    """Synthesize each validation case whole (engine sliding window) and average its metrics."""
    from .validation import case_metrics

    runner = E.NetworkRunner(network, lambda d: E.choose_precision(d, settings) if precision == "auto" else precision)
    rows = []
    was_training = network.training
    network.eval()
    try:
        for case in cases:
            out = E.synthesize_volume(case.source_volume, runner, settings, torch.device("cpu"))
            rows.append(case_metrics(out.synthetic.array, case.contrast_volume.array, case.source_volume.array,
                                     case.labels_volume.array if case.labels_volume is not None else None,
                                     case.source_volume.spacing_mm))
    finally:
        network.train(was_training)
    keys = sorted({k for r in rows for k in r if isinstance(r[k], (int, float))})
    means = {}
    for key in keys:
        values = [float(r[key]) for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        means[key] = float(np.mean(values)) if values else float("nan")  # nan: no case has that region
    return means


# --------------------------------------------------------------------------- the run


def _checkpoint_paths(out_dir: Path) -> tuple[Path, Path]:
    folder = out_dir / CHECKPOINT_DIR
    return folder / CHECKPOINT_FILE, folder / HISTORY_FILE


def save_checkpoint(out_dir: Path, network: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int, step: int,
                    config: TrainConfig, history: list[dict[str, Any]], parent: dict[str, Any] | None = None) -> Path:
    """Model + optimizer state as safetensors (no pickle) and the history as JSON, atomically.

    ``parent`` (the model a fine-tuning started from, see :func:`initial_weights`) is kept in the
    checkpoint's metadata, so a resumed run still names it in its card.
    """
    from DigitalContrastLib.common.atomic import atomic_write_text
    from DigitalContrastLib.common.json_values import jsonable
    from DigitalContrastLib.models.weights import optimizer_state_to_tensors, save_state_dict

    path, history_path = _checkpoint_paths(out_dir)
    tensors = {f"model.{k}": v for k, v in network.state_dict().items()}
    optim_tensors, optim_json = optimizer_state_to_tensors(optimizer.state_dict())
    tensors.update(optim_tensors)
    save_state_dict(tensors, path, metadata={
        "epoch": str(epoch), "step": str(step), "optimizer": optim_json, "config": json.dumps(config.to_json()),
        **({"initialised_from": json.dumps(parent)} if parent else {}),
    })
    # strict JSON: a region no validation case has (NaN) is written as null
    atomic_write_text(history_path, json.dumps(jsonable(history), indent=1, allow_nan=False) + "\n")
    return path


def load_checkpoint(out_dir: Path, network: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, int, list]:
    """Restore a checkpoint; returns ``(epoch done, global step, history)``."""
    from DigitalContrastLib.models.weights import load_unverified, optimizer_state_from_tensors

    path, history_path = _checkpoint_paths(out_dir)
    tensors, metadata = load_unverified(path)
    network.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(optimizer_state_from_tensors(tensors, metadata["optimizer"]))
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    return int(metadata["epoch"]), int(metadata["step"]), history


def checkpoint_parent(out_dir: Path) -> dict[str, Any] | None:
    """The model the checkpointed run started from (``None``: random weights)."""
    from DigitalContrastLib.models.weights import load_unverified

    path, _ = _checkpoint_paths(out_dir)
    _, metadata = load_unverified(path)
    return json.loads(metadata["initialised_from"]) if "initialised_from" in metadata else None


def train(config: TrainConfig, resume: bool = False, progress: ProgressCallback | None = None,
          log: Callable[[str], None] | None = None, step_bar: Callable[[int], Any] | None = None) -> Path:
    """Run a training; returns the written model card path (``<out_dir>/model_card.json``).

    Args:
        config: the run.
        resume: continue from ``<out_dir>/training/checkpoint.safetensors`` when it exists.
        progress: ``progress("train", epochs done, epochs)``.
        log: receives one line per epoch.
        step_bar: optional factory ``step_bar(total) -> tqdm-like`` for a per-epoch step bar.
    Raises:
        InputError: no usable cases.
        JobError: ``parent_weight`` without ``init_from`` (before anything is read or trained).
    """
    from DigitalContrastLib.models.cards import write_model_folder

    progress = progress or no_progress
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    started = time.perf_counter()
    if config.parent_weight and not config.init_from:
        raise JobError("--parent-weight needs --init-from: the model whose weights are blended in.", code="init_mismatch")
    E.use_all_cpu_cores()
    out_dir = Path(config.out_dir)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)

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
    val_cases = [load_case(p, config, keep_volumes=True) for p in val_dirs[: max(1, config.val_cases)]]

    kwargs = network_kwargs_for(config)
    network = build_network("UNet", kwargs)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = SynthesisLoss(config.output_scale_hu, config.ssim_weight, config.lumen_mask_weight)
    total_steps = config.epochs * config.steps_per_epoch
    first_epoch, step, history = 0, 0, []
    checkpoint, _ = _checkpoint_paths(out_dir)
    if resume and checkpoint.is_file():
        first_epoch, step, history = load_checkpoint(out_dir, network, optimizer)
        log(f"resumed from {checkpoint} after epoch {first_epoch} (step {step})")
    elif resume and not config.init_from:
        log(f"no checkpoint at {checkpoint}: starting from scratch")
    parent = checkpoint_parent(out_dir) if first_epoch else None
    parent_state: dict[str, torch.Tensor] = {}
    if config.init_from and first_epoch == 0:
        parent_state, parent = initial_weights(config)
        network.load_state_dict(parent_state)
        log(f"starting from the weights of {parent['id']} {parent['version']} (sha256 {parent['weights_sha256'][:12]}…)")
    elif config.parent_weight > 0:  # refused here, before the epochs, not after them
        parent_state = resumed_parent(config, parent)
    precision = config.train_precision
    if precision == "auto":
        precision = "bf16-autocast" if E.cpu_has_fast_bf16() else "fp32"
    card = card_template(config, kwargs)
    settings = E.EngineSettings.from_card(card)
    sampler = PatchSampler(cases, config, np.random.default_rng([config.seed, first_epoch]))

    freeze_step = int(config.freeze_norm_fraction * total_steps) if config.freeze_norm_fraction > 0 else None
    network.train()
    for epoch in range(first_epoch, config.epochs):
        t_epoch = time.perf_counter()
        sums: dict[str, float] = {}
        bar = step_bar(config.steps_per_epoch) if step_bar else None
        for _ in range(config.steps_per_epoch):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, total_steps, config)
            if freeze_step is not None and step >= freeze_step:
                freeze_norm_layers(network)
            batch = sampler.batch(config.batch_size)
            optimizer.zero_grad(set_to_none=True)
            if precision == "bf16-autocast":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    pred = network(batch["image"])
            else:
                pred = network(batch["image"])
            loss, parts = loss_fn(pred, batch, l1_share=l1_share_at(step, total_steps, config))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            optimizer.step()
            step += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            if bar is not None:
                bar.update(1)
                bar.set_postfix(l1_hu=f"{parts['l1_hu']:.1f}")
        if bar is not None:
            bar.close()
        train_seconds = time.perf_counter() - t_epoch
        t_val = time.perf_counter()
        val = evaluate_cases(network, val_cases, settings)
        entry = {
            "epoch": epoch + 1,
            "step": step,
            "lr": learning_rate_at(step - 1, total_steps, config),
            "l1_share": l1_share_at(step - 1, total_steps, config),
            "norm_frozen": freeze_step is not None and step > freeze_step,
            **{f"train_{k}": v / config.steps_per_epoch for k, v in sums.items()},
            **{f"val_{k}": v for k, v in val.items()},
            "seconds_train": round(train_seconds, 1),
            "seconds_val": round(time.perf_counter() - t_val, 1),
        }
        history.append(entry)
        save_checkpoint(out_dir, network, optimizer, epoch + 1, step, config, history, parent=parent)
        log(
            f"epoch {epoch + 1}/{config.epochs} step {step}: loss {entry['train_loss']:.4f} "
            f"L1 {entry['train_l1_hu']:.1f} HU | val body MAE {format_number(val.get('body_mae_hu'), 1)} "
            f"lumen MAE {format_number(val.get('lumen_mae_hu'), 1)} "
            f"thrombus bias {format_number(val.get('thrombus_bias_hu'), 1, signed=True)} "
            f"Dice {format_number(val.get('lumen_dice'), 3)} ({train_seconds:.0f}+{entry['seconds_val']:.0f} s)"
        )
        progress("train", epoch + 1, config.epochs)

    elapsed = time.perf_counter() - started
    prior = sum(h.get("seconds_train", 0) + h.get("seconds_val", 0) for h in history[:first_epoch])
    card["network"]["parameters"] = count_parameters(network)
    card["network"]["weights_stored_as"] = config.weights_dtype
    used_val = val_dirs[: max(1, config.val_cases)]
    card["training"].update({
        "train_seeds": phantom_seeds(case_dirs),
        "validation_seeds": phantom_seeds(used_val),
        "data": {**config.data_description, "train_cases": [p.name for p in case_dirs],
                 "validation_cases": [p.name for p in used_val], "validation_note": val_note},
        "config": config.to_json(),
        "epochs": config.epochs,
        "steps": step,
        "patches_seen": step * config.batch_size,
        "precision": precision,
        "seconds": round(elapsed + prior, 1),
        "hardware": f"{platform.processor() or platform.machine()}, {available_cpu_cores()} CPU cores, torch {torch.__version__}",
        "history": history,
    })
    if parent is not None:
        card["training"]["initialised_from"] = parent
    last = history[-1] if history else {}
    card["validation"] = {
        "during_training": {k[4:]: v for k, v in last.items() if k.startswith("val_")},
        "note": "Scored on the validation cases after the last epoch; 'digital-contrast validate' gives the full table.",
    }
    cpu_hours = (elapsed + prior) * available_cpu_cores() / 3600
    card["energy"] = (
        f"Training took {cpu_hours:.2f} CPU-core-hours; at an assumed 15 W per busy core that is about "
        f"{cpu_hours * 15:.0f} Wh (estimate from wall time, no power meter). One CPU synthesis of a 512x512x300 CT takes "
        "a few seconds, well under 0.1 Wh."
    )
    store = {"float16": torch.float16, "float32": torch.float32}[config.weights_dtype]
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    if config.parent_weight > 0:
        state = blend_with_parent(state, parent_state, config.parent_weight, parent)
        card["training"]["weights_blend"] = {
            "parent_share": config.parent_weight,
            "rule": "written weights = parent_share * parent + (1 - parent_share) * trained (float32, then stored)",
            "note": "The figures in training.history and validation.during_training are of the trained network "
                    "before the blend.",
        }
    state = {k: v.to(store) if v.is_floating_point() else v for k, v in state.items()}
    written = write_model_folder(out_dir, card, state)
    log(f"model written: {written.path} (weights sha256 {written.weights_sha256[:12]}…)")
    return written.path


def command_line(argv: Sequence[str]) -> str:
    """The exact command, as recorded in the card."""
    return "digital-contrast " + shlex.join(list(argv))
