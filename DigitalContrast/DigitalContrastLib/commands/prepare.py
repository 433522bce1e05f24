"""``digital-contrast prepare COHORT.csv --out CASES``: a site's paired scans made into training cases."""

from __future__ import annotations

import argparse
import sys

NAME = "prepare"
HELP = "make a site's paired scans (cohort CSV) into training cases: checks, registration, masks, QC report"
ORDER = 55
DESCRIPTION = """\
Read every case of a cohort CSV (columns case_id, noncontrast, contrast; optional labels, patient,
noncontrast_series and contrast_series; DICOM folders, NRRD, NIfTI or MHA; paths relative to the
CSV) and make each pair a training case in CASES/<case_id>/:

  1. the input gate on both scans: the non-contrast scan must not look enhanced, the contrast scan must;
  2. the contrast scan registered onto the non-contrast grid, rigid then B-spline (SimpleITK, Mattes
     mutual information, fixed seed), the grid cropped to the slices both scans show;
  3. the registration's quality before and after (bone-mask Dice, normalised cross-correlation,
     mutual information): a pair that fails the check is excluded with its reason;
  4. an enhancement mask (where the registered contrast scan is brighter: vessels and enhancing
     tissue), which training and scoring use where the CSV gives no labels;
  5. a QC picture (before/after fusion, the mask) and case.json: scanner, kVp, kernel, slice
     thickness, contrast timing, the study month; no patient name, ID, birth date or exact date.

Cases of one patient share a pseudonymous key (from the CSV's patient column, else the DICOM Patient
ID) so that cross-validation splits by patient. A DICOM folder holding several series needs the
Series Instance UID in the noncontrast_series / contrast_series column ('digital-contrast check
FOLDER' lists the series). Excluded and failed cases are listed in CASES/excluded/ and in
CASES/report.html; CASES never holds a half-written case. Rerunning keeps finished cases.

examples:
  digital-contrast prepare pacs-export/cohort.csv --out cases/
  digital-contrast prepare cohort.csv --out cases/ --register rigid --workers 2
  digital-contrast prepare cohort.csv --out /shared/cases --scheduler tcp://scheduler:8786
then: digital-contrast train --data cases/ --init-from aorta-phantom-v1 ...  (see 'train --help')
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cohort", metavar="COHORT.csv", help="the cohort CSV")
    parser.add_argument("--out", required=True, metavar="CASES", help="folder of prepared cases (a previous run there is resumed)")
    parser.add_argument("--register", default="deformable", choices=("rigid", "deformable"),
                        help="rigid only, or rigid then a B-spline (default: deformable)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="local processes (default: one, using every core)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="registration threads per process")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="Dask scheduler address (tcp://host:8786): prepare the cases on that cluster")


def run(args: argparse.Namespace) -> int:
    from DigitalContrastLib.preparation.case import STATUS_PREPARED, PrepareSettings
    from DigitalContrastLib.preparation.run import prepare_cohort

    def on_case(record: dict, kept: bool) -> None:
        if kept:
            line = f"  {record['case_id']}: {record['status']} earlier, kept"
        elif record["status"] == STATUS_PREPARED:
            q = record.get("quality") or {}
            line = (f"  {record['case_id']}: prepared in {record.get('seconds', 0):.0f} s (bone Dice "
                    f"{q.get('bone_dice_before', 0):.2f} -> {q.get('bone_dice_after', 0):.2f}, NCC "
                    f"{q.get('ncc_before', 0):.2f} -> {q.get('ncc_after', 0):.2f})")
        else:
            line = f"  {record['case_id']}: {record['status'].upper()}, {record.get('reason', '')}"
        print(line, flush=True)

    if args.threads is not None and args.threads < 1:
        from DigitalContrastLib.common.errors import JobError

        raise JobError(f"--threads {args.threads} must be at least 1.")
    try:
        result = prepare_cohort(args.cohort, args.out, PrepareSettings(register=args.register, threads=args.threads),
                                workers=args.workers, scheduler=args.scheduler, on_case=on_case,
                                on_plan=lambda where: print(f"Preparing {args.cohort}: {where}", flush=True))
    except KeyboardInterrupt:
        print(f"digital-contrast prepare: interrupted; finished cases are kept in {args.out}, run the same command "
              "again to continue.", file=sys.stderr)
        return 130
    print(f"\n{result.count('prepared')} prepared, {result.count('excluded')} excluded, {result.count('failed')} failed "
          f"({len(result.kept)} kept from an earlier run, {result.seconds:.0f} s).\nreport:   {result.report_html}\n"
          f"summary:  {result.summary_json}")
    return 0
