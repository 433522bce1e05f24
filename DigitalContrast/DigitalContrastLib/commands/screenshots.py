"""``digital-contrast screenshots``: the README's review screenshot, made from a synthesized phantom."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "screenshots"
HELP = "render the review screenshot (phantom synthesized by the worker, shown in the Slicer review layout)"
ORDER = 90
DESCRIPTION = """\
Synthesize a procedural phantom in the background worker and render the module's review layout
(non-contrast | synthetic | real contrast, linked views, CTA window, coronal row) headless into
OUT/review.png, the picture README.md shows. Needs slicer-core (the test extra).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="Resources/Screenshots", metavar="DIR",
                        help="folder for review.png (default: Resources/Screenshots)")
    parser.add_argument("--model", default=None, metavar="ID", help="model id (default: the default model)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    parser.add_argument("--dummy", action="store_true", help="the worker's fake synthesis instead of a model (no torch)")


def run(args: argparse.Namespace) -> int:
    from DigitalContrastLib.mrml.screenshots import make_review_screenshot
    from DigitalContrastLib.worker.client import WorkerClient

    shot = make_review_screenshot(Path(args.out) / "review.png", client_factory=lambda: WorkerClient(dummy=args.dummy),
                                  model_id=args.model, device=args.device)
    grey = ", ".join(f"{name} {value:.0f}" for name, value in shot.lumen_grey.items())
    print(f"{shot.path}: model {shot.model}; aortic lumen mean grey ({shot.lumen_voxels} voxels): {grey}")
    return 0
