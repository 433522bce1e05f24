"""``digital-contrast check INPUT``: read an input and report what the input gate finds."""

from __future__ import annotations

import argparse
import json

from DigitalContrastLib.common.errors import EXIT_BAD_INPUT, EXIT_OK
from DigitalContrastLib.synthesis.gate import GateReport, check_path

NAME = "check"
HELP = "check that an input is a usable non-contrast CT (reads it, reports errors and warnings)"
ORDER = 10
DESCRIPTION = """\
Read a CT (a DICOM series folder or file, .nrrd, .nhdr, .nii, .nii.gz, .mha, .mhd) and report
what the input gate finds: errors that would stop synthesis, warnings (already contrast-enhanced,
thick slices, very large volume), size, spacing and HU statistics. With --model (a model id or
folder) the input is also compared with that model's training data ("Training data:" line: like
it, or unlike it and why); the synthesis makes the same comparison and records it.

Exit status: 0 when there is no error (warnings allowed), 2 when there is one.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="DICOM folder or file, or a .nrrd/.nii.gz/.mha volume")
    parser.add_argument("--series", metavar="UID", default=None, help="Series Instance UID to read when the DICOM folder holds several series")
    parser.add_argument("--model", metavar="ID", default=None,
                        help="also compare the input with this model's training data (its card's signature)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def format_report(report: GateReport) -> str:
    """The human-readable report: one fact per line, then errors and warnings with their sentence."""
    lines = [f"Input:       {report.source}" + (f" ({report.format})" if report.format else "")]
    verdict = "OK" if report.ok else "NOT USABLE"
    counts = f"{len(report.errors)} error{'s' if len(report.errors) != 1 else ''}, {len(report.warnings)} warning{'s' if len(report.warnings) != 1 else ''}"
    lines.append(f"Result:      {verdict} ({counts})")
    if report.series_uid is not None and report.format == "dicom":
        lines.append(f"Series:      {report.series_uid or '(no UID)'}")
    if report.shape_zyx:
        z, y, x = report.shape_zyx
        lines.append(f"Size:        {x} x {y} voxels per slice, {z} slice{'s' if z != 1 else ''}")
    if report.spacing_xyz_mm:
        sx, sy, sz = report.spacing_xyz_mm
        lines.append(f"Spacing:     {sx:.3f} x {sy:.3f} mm in-plane, {sz:.3f} mm between slices")
    if report.slice_thickness_mm is not None:
        origin = "" if report.format == "dicom" else " (the slice spacing; the file records no thickness)"
        lines.append(f"Thickness:   {report.slice_thickness_mm:g} mm{origin}")
    if report.hu_stats:
        h = report.hu_stats
        lines.append(
            f"HU:          min {h['min']:g}, 1% {h['p1']:g}, median {h['p50']:g}, 99% {h['p99']:g}, max {h['max']:g}, mean {h['mean']:.1f}"
        )
        lines.append(f"Body:        {100 * h['body_fraction']:.1f}% of voxels above -500 HU; air or lung {100 * h['air_fraction']:.1f}%")
    if report.contrast_enhanced is not None or report.contrast_evidence is not None:
        answer = {True: "yes", False: "no", None: "not judged"}[report.contrast_enhanced]
        evidence = report.contrast_evidence or {}
        reasons = report.contrast_reasons or ([f"image: {evidence['reason']}"] if evidence.get("reason") else [])
        lines.append(f"Contrast:    {answer}" + (f" ({'; '.join(reasons)})" if reasons else ""))
    if report.memory_estimate_mb is not None:
        lines.append(f"Memory:      about {report.memory_estimate_mb:.3g} MB of working memory for synthesis")
    if report.ood is not None:
        lines.append(f"Training:    {report.ood['message']}")
    for message in report.errors:
        lines.append(f"ERROR   [{message.code}] {message.message}")
    for message in report.warnings:
        lines.append(f"WARNING [{message.code}] {message.message}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    card_data = None
    if args.model:
        from DigitalContrastLib.models.cards import resolve_model

        card_data = resolve_model(args.model).data  # a model that is not installed: exit 3, one sentence
    report, _ = check_path(args.input, series_uid=args.series, card_data=card_data)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    return EXIT_OK if report.ok else EXIT_BAD_INPUT
