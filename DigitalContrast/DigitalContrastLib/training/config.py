"""What defines one training run: :class:`TrainConfig` and the command line that started it.

The config is recorded in the model card (``training.config``) and in every checkpoint, so a run can
be resumed and reproduced; :func:`command_line` is the ``training.command`` of the card.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    """Everything that defines one training run (recorded in the card).

    Sizes are ``[z, y, x]`` voxels of the model grid; spacing is ``(x, y, z)`` mm.
    """

    data_dir: str
    out_dir: str
    val_dir: str | None = None
    # the cases of data_dir to train on (empty: all): a cross-validation fold's training cases
    case_names: tuple[str, ...] = ()
    # the share of training-like inputs allowed to warn "unlike the training data" (synthesis.ood)
    ood_alpha: float = 0.02
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
    inference_prediction: str = "single-pass"  # or "flip-tta-mean" (see synthesis.settings.EngineSettings)
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


def command_line(argv: Sequence[str]) -> str:
    """The exact command, as recorded in the card."""
    return "digital-contrast " + shlex.join(list(argv))
