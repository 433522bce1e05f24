"""What changes with the training step: learning rate, the L1 / squared-error blend, frozen batch norm.

Every schedule is a pure function of the global step, so a resumed run continues exactly.
"""

from __future__ import annotations

import math

import torch

from .config import TrainConfig


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
