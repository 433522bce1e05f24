"""The training loss: vessel-weighted L1 (or squared error in the warm-up), SSIM and a lumen-mask term.

Loss = vessel-weighted L1 in HU / 100 + ``ssim_weight`` * (1 - SSIM) of the synthetic and real
contrast images in a CTA window (:data:`SSIM_WINDOW_HU`) at half resolution (MONAI ``SSIMLoss``)
+ ``lumen_mask_weight`` * :func:`lumen_mask_loss`. Tensors are ``[batch, 1, z, y, x]``.
"""

from __future__ import annotations

import torch

from DigitalContrastLib.evaluation.metrics import LUMEN_THRESHOLD_HU

SSIM_WINDOW_HU = (-160.0, 540.0)  # a CTA window (W 700 / L 190) for the SSIM term


LUMEN_MASK_SOFTNESS_HU = 25.0  # sigmoid scale of the lumen-mask term: threshold +- 25 HU is p = 0.27...0.73


class SynthesisLoss(torch.nn.Module):
    """Vessel-weighted L1 in HU (divided by 100) + ``ssim_weight`` * MONAI SSIM loss in a CTA window.

    ``l1_share`` (0...1) blends the L1 with a vessel-weighted squared error (HU^2 / 10^4) for the
    warm-up (see :func:`.schedule.l1_share_at`).

    The SSIM term compares the synthetic and real contrast images (``nc_hu + residual`` vs ``c_hu``,
    windowed to :data:`SSIM_WINDOW_HU` and scaled to [0, 1]) at half resolution (2x2x2 mean).
    """

    def __init__(self, output_scale_hu: float, ssim_weight: float, lumen_mask_weight: float = 0.0) -> None:
        super().__init__()
        from monai.losses import SSIMLoss  # lazy: MONAI is slow to import

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
