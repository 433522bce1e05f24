"""The multi-site commands of ``digital-contrast-reader``: ``token`` (a new token for a reader),
``images`` (the folder of blinded images a reading station needs) and ``merge`` (import the
stores of sites that read offline). :mod:`~DigitalContrastReaderLib.cli` registers them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_common import db_argument, open_admin, print_token, show_warnings, study_dir_argument


def _token_args(p: argparse.ArgumentParser) -> None:
    db_argument(p)
    p.add_argument("--reader", required=True, help="reader id (enrolled)")


def run_token(args: argparse.Namespace) -> int:
    with open_admin(args) as store:
        token = store.issue_token(args.reader)
    print_token(args.reader, token)
    print("  (the reader's earlier token no longer works)")
    show_warnings(store)
    return 0


def _images_args(p: argparse.ArgumentParser) -> None:
    db_argument(p)
    p.add_argument("--out", type=Path, required=True, help="folder to write the blinded images into")
    study_dir_argument(p)


def run_images(args: argparse.Namespace) -> int:
    """Write every image under its neutral name (hard link or copy, checked against its sha256)."""
    from DigitalContrastReaderLib.study.errors import StudyError
    from DigitalContrastReaderLib.study.images import ImageVerifier, link_or_copy

    verifier = ImageVerifier()
    written = kept = 0
    with open_admin(args) as store:
        images = store.images()
        for image in images:
            target = args.out / image.blind_name
            if verifier.problem(target, image.sha256) is None:
                kept += 1
                continue
            problem = verifier.problem(image.path, image.sha256)
            if problem is not None:
                raise StudyError(f"{image.path}: the {image.source} image of case '{image.case_id}' is {problem} since "
                                 "the study was created; restore it, then run this again.", code="image_changed")
            link_or_copy(image.path, target)
            if verifier.problem(target, image.sha256) is not None:
                raise StudyError(f"{target}: the copy does not match the recorded sha256; check the disk and run this "
                                 "again.", code="image_changed")
            written += 1
    print(f"{args.out}: {written} blinded images written, {kept} already there, of {len(images)}; give this folder to "
          "reading stations (--images FOLDER or DIGITAL_CONTRAST_READER_IMAGES); it names no source.")
    return 0


def _merge_args(p: argparse.ArgumentParser) -> None:
    db_argument(p, "central", "CENTRAL", "the central store (a .sqlite file or a postgresql:// URL)")
    p.add_argument("sites", nargs="+", metavar="SITE_STORE", help="stores of sites that read offline (.sqlite files)")


def run_merge(args: argparse.Namespace) -> int:
    from DigitalContrastReaderLib.store.location import open_store
    from DigitalContrastReaderLib.store.merge import merge_store

    with open_store(args.central) as central:
        for site in args.sites:
            with open_store(site) as store:
                print(merge_store(central, store).text(), flush=True)
        report = central.integrity_check()
    print(report.summary().splitlines()[0])
    for problem in report.problems:
        print(f"  problem: {problem}", file=sys.stderr)
    show_warnings(central)
    return 0


COMMANDS = (
    ("token", "issue a new token for an enrolled reader (printed once; the old one stops working)", _token_args,
     run_token),
    ("images", "write the folder of blinded images that a reading station needs (PostgreSQL studies)", _images_args,
     run_images),
    ("merge", "import the stores of sites that read offline into the central store (idempotent; conflicts refused)",
     _merge_args, run_merge),
)
