"""``digital-contrast-reader``: the reader-study command line.

Every sub-command is a small function registered in one table (:data:`COMMANDS`) with the
:func:`command` decorator; its ``arguments`` function adds its options. To add a command, write
one decorated function (see the marked place for the statistics commands near the end).

Every command that takes a store takes a SQLite file's path or a ``postgresql://`` URL. Exit
codes: 0 ok, 1 internal error (a bug, with traceback), 2 bad study or input file, 3 store problem
or failed integrity check, 4 bad answer or value, 6 missing or wrong reader token, 64 usage
error. Errors a user can cause print one sentence and no traceback.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.cli_support import UsageExitParser, run_command_line
from DigitalContrastReaderLib.study.errors import EXIT_STORE, UsageError

from . import __version__
from .cli_common import (
    db_argument,
    key_values,
    open_admin,
    open_reading,
    print_token,
    reader_arguments,
    show_warnings,
    study_dir_argument,
    token_of,
)

PROG = "digital-contrast-reader"
EPILOG = """\
DB is a SQLite file (one site) or postgresql://USER@HOST:PORT/DBNAME (several sites; password from
PGPASSWORD or ~/.pgpass). Readers give their token with --token or DIGITAL_CONTRAST_READER_TOKEN.

exit codes: 0 ok, 1 internal error (a bug), 2 bad study or input file, 3 store problem or failed
integrity check, 4 bad answer or value, 6 missing or wrong reader token, 64 usage error.

Run 'digital-contrast-reader COMMAND --help' for the options of one command.
"""




@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


#: The sub-commands, in the order of ``--help``.
COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None):
    """Register ``run(args) -> exit code`` as sub-command ``name``."""

    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = Command(name, help, arguments, run)
        return run

    return register


def _db_json(p: argparse.ArgumentParser) -> None:
    db_argument(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def _db_reader_or_all(p: argparse.ArgumentParser, all_help: str) -> None:
    db_argument(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--reader", help="reader id (as listed in the study file)")
    who.add_argument("--all", action="store_true", help=all_help)


def _parse_answers(questions: Sequence[dict[str, Any]], pairs: Sequence[str]) -> dict[str, Any]:
    """Typed answers (``QUESTION=VALUE``) parsed by the item's questions (what a reader sees)."""
    from DigitalContrastReaderLib.study.questions import Question

    by_key = {q["key"]: Question.from_config(q) for q in questions}
    answers = {}
    for key, text in key_values(pairs).items():
        if key not in by_key:
            raise UsageError(f"This item has no question '{key}'; answer {', '.join(by_key)}.")
        answers[key] = by_key[key].parse(text)
    return answers


class _Progress:
    """Prints ``checked k of n images`` to stderr at most once a second (long ``init``)."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        import time

        if done == total or time.monotonic() - self.last > 1.0:
            self.last = time.monotonic()
            print(f"checked {done} of {total} images (opened, grids compared, sha256)", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Study admin
# --------------------------------------------------------------------------------------------


def _init_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", type=Path, metavar="STUDY", help="study file (.yaml, .yml or .json)")
    p.add_argument("--db", required=True, help="answer store to create (or to update with a new version): a .sqlite "
                                               "file, or postgresql://USER@HOST:PORT/DBNAME (an existing database)")
    p.add_argument("--site", help="name of this store's site (default: the file or database name); kept by merge")
    p.add_argument("--accept-change", metavar="REASON",
                   help="accept a change of display or scheduling in a study that has answers (logged with REASON)")
    p.add_argument("--backup-dir", type=Path, help="SQLite: folder for backup copies (default: backups/ beside DB; "
                                                   "use another disk)")
    p.add_argument("--backup-every", type=int, default=None, help="SQLite: back up after this many submits (default 25)")
    p.add_argument("--event-log", type=Path, help="SQLite: JSONL event log (default: DB.events.jsonl)")


@command("init", "validate a study file, check and hash its images, create its answer store (or load a new version)",
         _init_args)
def cmd_init(args: argparse.Namespace) -> int:
    from DigitalContrastReaderLib.store.base import DEFAULT_BACKUP_EVERY
    from DigitalContrastReaderLib.store.location import create_store, is_url, open_store
    from DigitalContrastReaderLib.study.config import load_study
    from DigitalContrastReaderLib.study.errors import StoreError
    from DigitalContrastReaderLib.study.images import study_image_facts

    study = load_study(args.study)
    for warning in study.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    facts = study_image_facts(study, progress=_Progress())
    exists = Path(args.db).exists()
    if is_url(args.db):
        try:
            open_store(args.db).close()
            exists = True
        except StoreError as error:
            if error.code != "no_store":
                raise
            exists = False
    if exists:
        with open_store(args.db) as store:
            changed = store.update_study(study, accept_change=args.accept_change, facts=facts)
            version = store.study.version
        print(f"{args.db if not is_url(args.db) else store.location}: "
              f"{'loaded the new version' if changed else 'already holds this version'} of study '{study.study_id}' "
              f"(version {version}, sha256 {study.sha256[:12]}...).")
        return 0
    options = {"site": args.site, "facts": facts}
    if not is_url(args.db):
        options |= {"backup_dir": args.backup_dir, "event_log": args.event_log,
                    "backup_every": args.backup_every or DEFAULT_BACKUP_EVERY}
    with create_store(args.db, study, **options) as store:
        n_main = sum(1 for c in study.cases if not c.training)
        print(f"{store.location}: created for study '{study.study_id}' version {study.version} (sha256 "
              f"{study.sha256[:12]}...): {n_main} cases (+{len(study.cases) - n_main} training), {len(study.readers)} "
              f"readers, tasks {', '.join(t.task_id for t in study.tasks)}, {len(facts)} images checked and hashed.")
        if is_url(args.db):
            print(f"reader role: {store.reader_role}")
            print(f"reader role password: {store.reader_password}")
            print(f"  reading stations connect with {store.reader_url()} and PGPASSWORD set to that password "
                  "(printed once); readers sign in with their id and token (enrol prints it).")
        else:
            print(f"event log {store.event_log_path}, backups in {store.backup_dir}.")
    return 0


def _enrol_args(p: argparse.ArgumentParser) -> None:
    _db_reader_or_all(p, "enrol every listed reader not yet enrolled")
    p.add_argument("--seed", type=int, help="random seed of the schedule (default: a random one, recorded)")


@command("enrol", "store a reader's schedule (once; never recomputed) and print their token (once)", _enrol_args)
def cmd_enrol(args: argparse.Namespace) -> int:
    with open_admin(args) as store:
        enrolled = {r.reader_id for r in store.readers()}
        if args.all:
            if args.seed is not None:
                raise UsageError("--seed applies to one reader; use it with --reader.")
            targets = [r.reader_id for r in store.study.readers if r.reader_id not in enrolled]
        else:
            targets = [args.reader]
        for reader_id in targets:
            enrolment = store.enrol(reader_id, seed=args.seed)
            schedule = enrolment.schedule
            main = sum(1 for i in schedule.items if not i.training)
            print(f"{reader_id}: {len(schedule.items)} items ({main} analysed, {len(schedule.items) - main} training) in "
                  f"{len(schedule.sessions)} sessions, seed {schedule.seed}")
            print_token(reader_id, enrolment.token)
            for s in schedule.sessions:
                print(f"  session {s.session_no} ({s.kind}, wave {s.wave}): opens {s.opens_at[:10]}"
                      + (f", at least {schedule.washout_days:g} days after the last answer of wave "
                         f"{s.washout_after_wave}" if s.washout_after_wave else ""))
        if not targets:
            print("every listed reader is already enrolled")
    show_warnings(store)
    return 0


@command("status", "progress of every reader", _db_json)
def cmd_status(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    with open_admin(args) as store:
        progress = store.progress()
    if args.json:
        print(json.dumps([asdict(p) | {"finished": p.finished} for p in progress], indent=1))
        return 0
    print(f"{'reader':<12} {'group':<8} {'done':>11} {'training':>9} {'session':>8}  next")
    for p in progress:
        if not p.enrolled:
            print(f"{p.reader_id:<12} {p.group or '-':<8} {'not enrolled':>11}")
            continue
        nxt = "finished" if p.finished else (p.next_item_id or "") + (f" (opens {p.next_opens_at[:16]})" if p.next_opens_at else "")
        done = f"{p.items_done}/{p.items_total}"
        training = f"{p.training_done}/{p.training_total}"
        session = f"{p.current_session or '-'}/{p.sessions_total}"
        print(f"{p.reader_id:<12} {p.group or '-':<8} {done:>11} {training:>9} {session:>8}  {nxt}")
    return 0


# --------------------------------------------------------------------------------------------
# Reading (scripted or simulated use)
# --------------------------------------------------------------------------------------------


def _next_args(p: argparse.ArgumentParser) -> None:
    db_argument(p)
    reader_arguments(p)
    p.add_argument("--json", action="store_true", help="print the item as JSON (what a reader UI receives)")
    p.add_argument("--peek", action="store_true", help="show it without recording a display")


@command("next", "show the reader's next item, blinded (records the display time)", _next_args)
def cmd_next(args: argparse.Namespace) -> int:
    token = token_of(args)
    with open_reading(args) as store:
        item = store.resume(args.reader, token=token)
        if item is not None and not item.opens_at and not args.peek:
            item = store.open_item(args.reader, item.item_id, token=token)
    show_warnings(store)
    if item is None:
        print(json.dumps(None) if args.json else f"Reader '{args.reader}' has finished every item.")
        return 0
    print(json.dumps(item.to_dict(), indent=1) if args.json else item.text())
    return 0


def _answer_args(p: argparse.ArgumentParser) -> None:
    db_argument(p)
    reader_arguments(p)
    p.add_argument("--item", required=True, help="item id (as shown by 'next'), or 'next'")
    p.add_argument("--active-seconds", type=float, help="seconds actively spent on the item")
    p.add_argument("answers", nargs="+", metavar="QUESTION=VALUE", help="one answer per question")


@command("answer", "submit a reader's answers to one item (scripted use)", _answer_args)
def cmd_answer(args: argparse.Namespace) -> int:
    token = token_of(args)
    key_values(args.answers)  # a malformed pair is a usage error before anything is opened
    with open_reading(args) as store:
        item_id = args.item
        if item_id == "next":
            item = store.resume(args.reader, token=token)
            if item is None:
                raise UsageError(f"Reader '{args.reader}' has no item left to answer.")
        else:
            item = store.peek_item(args.reader, item_id, token=token)
        receipt = store.submit(args.reader, item.item_id, _parse_answers(item.questions, args.answers), token=token,
                               active_seconds=args.active_seconds)
    print(f"saved {receipt.item_id} at {receipt.submitted_at}"
          + (" (changed answers)" if receipt.modified else "")
          + ("; all items done" if receipt.finished else f"; next {receipt.next_item_id}"))
    for warning in receipt.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    show_warnings(store)
    return 0


def _correct_args(p: argparse.ArgumentParser) -> None:
    db_argument(p)
    p.add_argument("--item", required=True, help="item id")
    p.add_argument("--by", required=True, help="name of the admin making the correction")
    p.add_argument("--reason", required=True, help="why (kept with the revision and in the audit trail)")
    p.add_argument("answers", nargs="+", metavar="QUESTION=VALUE", help="corrected answers")


@command("correct", "admin correction of a submitted answer (a logged revision with its reason)", _correct_args)
def cmd_correct(args: argparse.Namespace) -> int:
    with open_admin(args) as store:
        task = store.study.task(store.item(args.item).task_id)
        answers = _parse_answers([q.spec() for q in task.questions], args.answers)
        for key, value in answers.items():
            revision = store.correct_answer(args.item, key, value, reason=args.reason, corrected_by=args.by)
            print(f"{args.item} {key} = {value!r} (revision {revision})")
    show_warnings(store)
    return 0


def _simulate_args(p: argparse.ArgumentParser) -> None:
    _db_reader_or_all(p, "every listed reader (enrolled first when needed)")
    p.add_argument("--count", type=int, help="answer at most this many items per reader (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated answers")


@command("simulate", "fill a DEMO study with simulated readers (simulated clock; refused for real studies; each "
                     "simulated reader gets a new token)", _simulate_args)
def cmd_simulate(args: argparse.Namespace) -> int:
    from DigitalContrastReaderLib.reading.simulate import SimulatedClock, check_demo, simulate_reader

    clock = SimulatedClock()
    with open_admin(args, clock=clock) as store:
        check_demo(store.study)
        last = store.last_event_at()
        if last is not None:
            clock.jump_to(last)
        readers = [r.reader_id for r in store.study.readers] if args.all else [args.reader]
        enrolled = {r.reader_id for r in store.readers()}
        for k, reader_id in enumerate(readers):
            token = None  # simulate_reader issues a new one
            if args.all and reader_id not in enrolled:
                token = store.enrol(reader_id, seed=args.seed + k).token

            def acknowledge(receipt) -> None:
                print(f"submitted {receipt.item_id}", flush=True)  # printed only after the submit returned

            simulate_reader(store, reader_id, random.Random(f"{args.seed}:{reader_id}"), clock=clock, token=token,
                            count=args.count, on_submit=acknowledge)
    show_warnings(store)
    return 0


# --------------------------------------------------------------------------------------------
# Integrity and exports
# --------------------------------------------------------------------------------------------


def _check_args(p: argparse.ArgumentParser) -> None:
    _db_json(p)
    study_dir_argument(p)


@command("check", "integrity check: storage, hash chain, event log, answers vs schedules, images vs their sha256 "
                  "(exit 3 on failure)", _check_args)
def cmd_check(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    with open_admin(args) as store:
        report = store.integrity_check()
    print(json.dumps(asdict(report), indent=1) if args.json else report.summary())
    return 0 if report.ok else EXIT_STORE


def _export_args(p: argparse.ArgumentParser) -> None:
    db_argument(p)
    p.add_argument("--out", type=Path, required=True, help="folder for the exported files")


@command("export", "write the tidy CSV, analysis tables, iMRMC/JAFROC files, schedules, data dictionary", _export_args)
def cmd_export(args: argparse.Namespace) -> int:
    from DigitalContrastReaderLib.exports.bundle import export_all

    with open_admin(args) as store:
        result = export_all(store, args.out)
    for path in result.files:
        print(path)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _example_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, metavar="OUTDIR", help="folder to create the study in")
    p.add_argument("--cases", type=int, default=12, help="number of dummy cases (default 12)")
    p.add_argument("--training", type=int, default=2, help="how many of them are training cases (default 2)")
    p.add_argument("--readers", type=int, default=3, help="number of readers (default 3)")
    p.add_argument("--tasks", default="grading,turing,preference,detection",
                   help="comma-separated task types (default: all four)")
    p.add_argument("--design", choices=["fully-crossed", "split-plot"], default="fully-crossed")
    p.add_argument("--washout-days", type=float, default=28)
    p.add_argument("--from-cases", type=Path, metavar="FOLDER",
                   help="write a study file for this folder of real cases instead of dummy images")
    p.add_argument("--ifu", default="aorta", choices=["aorta", "pulmonary", "neck-brain", "limb", "coronary"])


@command("example-study", "create a small example study (dummy images + study.yaml), or one for a case folder", _example_args)
def cmd_example_study(args: argparse.Namespace) -> int:
    from DigitalContrastReaderLib.study.example import study_config_from_folder, write_example_study, write_study_file

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.from_cases:
        config = study_config_from_folder(args.from_cases, args.out, ifu=args.ifu, tasks=tasks,
                                          readers=[f"r{j + 1:02d}" for j in range(args.readers)],
                                          training_cases=args.training, washout_days=args.washout_days)
        path = write_study_file(config, args.out / "study.yaml")
    else:
        path = write_example_study(args.out, cases=args.cases, training_cases=args.training, readers=args.readers,
                                   tasks=tasks, ifu=args.ifu, design=args.design, washout_days=args.washout_days)
    print(path)
    return 0


# --------------------------------------------------------------------------------------------
# Statistics sub-commands (mrmc, report)
# --------------------------------------------------------------------------------------------
# Their input is exports.tidy.analysis_table(store, QUESTION, TASK), i.e. the long table
# reader_id, case_id, modality, truth, score (training excluded); see cli_analysis.py.
# --------------------------------------------------------------------------------------------


def _register_analysis_commands() -> None:
    from .cli_analysis import (
        MRMC_HELP,
        PLAN_HELP,
        REPORT_HELP,
        mrmc_arguments,
        plan_arguments,
        report_arguments,
        run_mrmc,
        run_plan,
        run_report,
    )

    command("mrmc", MRMC_HELP, mrmc_arguments)(run_mrmc)
    command("report", REPORT_HELP, report_arguments)(run_report)
    command("plan", PLAN_HELP, plan_arguments)(run_plan)


def _register_site_commands() -> None:
    from . import cli_sites

    for name, help_text, arguments, run in cli_sites.COMMANDS:
        command(name, help_text, arguments)(run)


_register_site_commands()
_register_analysis_commands()


def build_parser() -> argparse.ArgumentParser:
    parser = UsageExitParser(
        prog=PROG,
        description="Blinded reader studies for synthetic contrast CT: study files, stored schedules, answers that "
                    "are never lost, exports for MRMC statistics.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=UsageExitParser)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns (and, as a console script, exits with) the exit code."""
    return run_command_line(build_parser(), argv, PROG, interrupted="interrupted; every answer submitted before is saved.")


if __name__ == "__main__":
    sys.exit(main())
