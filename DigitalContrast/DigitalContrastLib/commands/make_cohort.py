"""``digital-contrast make-cohort DIR --cases N``: a phantom cohort (case folders + cohort.csv)."""

from __future__ import annotations

import argparse

NAME = "make-cohort"
HELP = "write a phantom cohort (case folders and cohort.csv) for demos and tests of 'evaluate'"
ORDER = 41
DESCRIPTION = """\
Write N paired phantom cases (non-contrast, arterial contrast moved by a small random rigid
transform, labels) into DIR/c001, DIR/c002, ... and DIR/cohort.csv listing them, ready for
'digital-contrast evaluate DIR/cohort.csv --out RESULTS'. --broken K damages the non-contrast
file of K cases (truncated, too few slices, missing) so that the report shows failed cases.
Synthetic phantoms, never patient data.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from DigitalContrastLib.cohort.phantom_cohort import DEFAULT_SEED_START, SMALL_SIZE_XYZ, SMALL_SPACING_XYZ_MM

    parser.add_argument("outdir", metavar="DIR", help="folder to write the cohort into")
    parser.add_argument("--cases", type=int, default=5, metavar="N", help="number of cases (default 5)")
    parser.add_argument("--seed-start", type=int, default=DEFAULT_SEED_START, metavar="S",
                        help=f"seed of the first case; the next ones count up (default {DEFAULT_SEED_START})")
    parser.add_argument("--broken", type=int, default=0, metavar="K", help="cases with a damaged non-contrast file (default 0)")
    parser.add_argument("--size", type=int, nargs=3, default=SMALL_SIZE_XYZ, metavar=("X", "Y", "Z"),
                        help="voxels along x, y, z (default: %(default)s)")
    parser.add_argument("--spacing", type=float, nargs=3, default=SMALL_SPACING_XYZ_MM, metavar=("X", "Y", "Z"),
                        help="voxel size in mm (default: %(default)s)")
    parser.add_argument("--aligned", action="store_true", help="do not move the contrast scans (no misregistration)")


def run(args: argparse.Namespace) -> int:
    from DigitalContrastLib.cohort.phantom_cohort import make_phantom_cohort

    csv_path = make_phantom_cohort(args.outdir, cases=args.cases, seed_start=args.seed_start, broken=args.broken,
                                   size_xyz=tuple(args.size), spacing_xyz_mm=tuple(args.spacing),
                                   misregister=not args.aligned,
                                   on_case=lambda case_id, line: print(f"  {case_id}: {line}", flush=True))
    print(f"cohort: {csv_path}")
    return 0
