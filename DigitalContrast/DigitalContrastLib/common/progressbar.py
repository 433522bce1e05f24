"""A terminal progress bar (tqdm on stderr) fed by ``progress(stage, done, total)`` callbacks.

The bar shows the overall fraction of the job (:func:`progress.overall_fraction` with the stage
weights) and the current stage's name; it is silent when stderr is not a terminal unless forced.
"""

from __future__ import annotations

import sys
from typing import Any

from .progress import STAGES, overall_fraction


class ProgressBar:
    """Use as a context manager; call the instance as a progress callback."""

    def __init__(self, description: str = "", weights: dict[str, float] | None = None, enabled: bool | None = None,
                 unit_total: int = 1000) -> None:
        self.description = description
        self.weights = dict(weights or STAGES)
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.unit_total = unit_total
        self._bar: Any = None
        self._shown = 0

    def __enter__(self) -> "ProgressBar":
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=self.unit_total, desc=self.description, file=sys.stderr, leave=True,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self._bar is None:
            return
        target = int(round(overall_fraction(stage, done, total, self.weights) * self.unit_total))
        if target > self._shown:
            self._bar.update(target - self._shown)
            self._shown = target
        self._bar.set_description_str(f"{self.description} [{stage}]" if self.description else stage, refresh=False)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            if exc[0] is None and self._shown < self.unit_total:
                self._bar.update(self.unit_total - self._shown)
            self._bar.close()
            self._bar = None
