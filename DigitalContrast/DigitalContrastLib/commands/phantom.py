"""``digital-contrast phantom``: write one paired CT phantom (non-contrast, contrast, labels)."""

from __future__ import annotations

import argparse
import time

NAME = "phantom"
HELP = "write a paired procedural CT phantom (non-contrast, arterial contrast, labels)"
ORDER = 20
DESCRIPTION = """\
Write one paired procedural CT phantom into OUTDIR: noncontrast.nrrd, contrast.nrrd and
labels.nrrd (int16, same grid, LPS) and phantom.json (every sampled parameter, the label codes,
the HU tables, the seed and the generator version). The same seed gives the same phantom.
These are synthetic images for training, demos and tests, never patient data.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("outdir", metavar="OUTDIR", help="folder to write the phantom into (created if missing)")
    parser.add_argument("--seed", type=int, required=True, metavar="N", help="random seed (an integer >= 0)")
    parser.add_argument("--ifu", default="aorta", help="intended use whose anatomy to draw (default: aorta)")
    parser.add_argument("--size", type=int, nargs=3, default=(256, 256, 160), metavar=("X", "Y", "Z"),
                        help="voxels along x, y, z (default: 256 256 160)")
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.4, 1.4, 2.5), metavar=("X", "Y", "Z"),
                        help="voxel size in mm along x, y, z (default: 1.4 1.4 2.5)")
    parser.add_argument("--chest", action="store_true",
                        help="centre the field of view on the chest (z = 250 mm: kidneys to the aortic arch, "
                             "with heart, lungs and the thoracic aorta) instead of the abdomen (z = 0)")
    parser.add_argument("--misregister", action="store_true",
                        help="move the contrast scan's anatomy by a small random rigid transform (recorded)")
    parser.add_argument("--png", action="store_true", help="also write preview.png (axial and coronal views)")


def run(args: argparse.Namespace) -> int:
    from DigitalContrastLib.phantoms.generator import (
        CHEST_CENTER_Z_MM,
        make_phantom,
        summary_line,
        write_phantom,
    )
    from DigitalContrastLib.phantoms.misregistration import RigidMisregistration

    misregistration = RigidMisregistration.random(args.seed) if args.misregister and args.seed >= 0 else None
    started = time.perf_counter()
    case = make_phantom(args.seed, ifu=args.ifu, size_xyz=args.size, spacing_xyz_mm=args.spacing,
                        misregistration=misregistration, center_z_mm=CHEST_CENTER_Z_MM if args.chest else 0.0)
    seconds = time.perf_counter() - started
    paths = write_phantom(case, args.outdir)
    if args.png:
        from DigitalContrastLib.ct.render import save_png
        from DigitalContrastLib.phantoms.preview import phantom_preview

        paths["preview"] = save_png(phantom_preview(case), paths["params"].parent / "preview.png")
    for key, path in paths.items():
        print(f"wrote {path}")
    print(summary_line(case) + f"; generated in {seconds:.1f} s")
    if misregistration is not None:
        m = case.params["misregistration"]
        print(f"contrast moved: rotation z/x/y {m['rotation_z_deg']:.2f}/{m['rotation_x_deg']:.2f}/"
              f"{m['rotation_y_deg']:.2f} deg, translation {', '.join(f'{v:.2f}' for v in m['translation_mm'])} mm")
    return 0
