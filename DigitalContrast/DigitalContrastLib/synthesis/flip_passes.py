"""The test-time flip passes of one synthesis: which flips run, how their progress is counted, how they combine.

The first pass (identity) is the prediction's own pass. The other passes (:data:`FLIP_TTA_AXES`:
z, y, z+y) run when the card's prediction is their mean (``"flip-tta-mean"``) or an uncertainty map
is asked: the prediction is then the mean of the four outputs, the uncertainty the voxel-wise SD
across them (population SD, in HU). Outputs are model-grid ``[z, y, x]`` float32 tensors on the CPU,
in network output units.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Test-time flips for the uncertainty map, as ``[z, y, x]`` axes: identity, z, y, z+y. Never x:
#: the models are trained without left-right flips (the aorta lies on the patient's left).
FLIP_TTA_AXES: tuple[tuple[int, ...], ...] = ((), (0,), (1,), (0, 1))

#: The note a flip-mean prediction adds to the result.
FLIP_MEAN_NOTE = f"prediction: mean of {len(FLIP_TTA_AXES)} test-time flip passes (identity, z, y, z+y)"


class FlipPasses:
    """Bookkeeping of the flip passes of one volume, pass ``0`` (identity) first.

    Progress: pass 0 is the ``"inference"`` stage. With an uncertainty map the other passes are the
    ``"uncertainty"`` stage (the client weighs it as 3 passes), whether they serve the SD alone or
    the flip-mean prediction too; without one they continue ``"inference"``, whose total is then
    all four passes.

    Outputs: without an SD map the passes are summed as they come, in place into the first pass's
    own tensor (no copy, no stack of four model grids); with one they are kept and stacked at the end.

    Args:
        report: ``report(stage, done, total)``, the engine's progress.
        flip_mean: the prediction is the mean of the flip passes (the card's ``prediction``).
        uncertainty: an SD map is asked.
    """

    def __init__(self, report: Callable[[str, int, int], None], flip_mean: bool, uncertainty: bool) -> None:
        self.report = report
        self.flip_mean = flip_mean
        self.uncertainty = uncertainty
        self._kept: list[torch.Tensor] = []  # every pass's output (with an SD map)
        self._sum: torch.Tensor | None = None  # the running sum (without one)

    @property
    def extra_axes(self) -> tuple[tuple[int, ...], ...]:
        """The flips of the passes after the first (passes 1, 2, 3), or none when neither the mean nor
        an SD map needs them."""
        return FLIP_TTA_AXES[1:] if self.flip_mean or self.uncertainty else ()

    def _stage(self, index: int) -> tuple[str, int, int]:
        """``(stage, passes of that stage before pass index, passes in that stage)``."""
        if self.uncertainty and index > 0:
            return "uncertainty", index - 1, len(FLIP_TTA_AXES) - 1
        if self.flip_mean and not self.uncertainty:
            return "inference", index, len(FLIP_TTA_AXES)
        return "inference", 0, 1

    def progress(self, index: int) -> Callable[[int, int], None]:
        """``progress(done, total)`` in windows of pass ``index``, reported as its stage's share."""
        stage, before, count = self._stage(index)
        return lambda done, total: self.report(stage, before * total + done, count * total)

    def add(self, output: torch.Tensor) -> None:
        """Take the next pass's output ``[z, y, x]`` (pass 0's first); it may be summed into in place."""
        if not self.uncertainty and self._sum is None:
            self._sum = output  # the first pass's own tensor: no copy
        elif self._sum is not None:
            self._sum += output
        else:
            self._kept.append(output)

    def combine(self, output_scale_hu: float) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(mean, sd_hu)`` of the passes added: the mean in network units when the prediction is
        the flip mean (else None), the voxel-wise SD times ``output_scale_hu`` when an SD map is
        asked (else None)."""
        total, spread = self._sum, None
        if self.uncertainty and len(self._kept) > 1:
            stack = torch.stack(self._kept)
            spread = stack.std(dim=0, unbiased=False) * output_scale_hu
            total = stack.sum(dim=0) if self.flip_mean else None
            del stack
        if self.flip_mean and total is not None:
            return total.div_(len(FLIP_TTA_AXES)), spread
        return None, spread
