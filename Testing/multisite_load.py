"""The multi-site reader study under load, on a real PostgreSQL server (benchmark and test driver).

3 sites x 4 readers answer at once, each reader in a process of its own that connects as the
study's reader role (as a reading station does) and reads the blinded images from the folder
``digital-contrast-reader images`` writes: resume, show the item, submit random valid answers
with the reading time a UI would report. After each submit has RETURNED a writer prints
``ack <item> <submit ms> <answers JSON>``. During the run, ``kills`` writers are killed with
SIGKILL at random moments and restarted at once (the new process resumes where the store says).

Then it checks what a study needs:

* every acknowledged answer is in the store exactly once (one submit event, the answers as
  printed) and nothing else was changed;
* ``check`` passes (hash chain, answers against schedules, images...);
* the tidy CSV equals the one of a SQLite store given the same answers, except for the
  store-specific columns (times, visits).

Figures: submitted items per second and p95 submit latency (ms) on PostgreSQL, and, as the
baseline measured in the same run, the rate of one process showing and submitting items in a
SQLite store on the same disk (300 items).

    python Testing/multisite_load.py --seconds 120 --kills 5 --json     # make bench
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITES = ("site-a", "site-b", "site-c")
READERS_PER_SITE = 4
STORE_SPECIFIC_COLUMNS = ("answered_at", "modified_at", "shown_at", "first_interaction_at", "submitted_at", "visits")


# --------------------------------------------------------------------------------------------
# The writer process
# --------------------------------------------------------------------------------------------


def writer_main(url: str, reader_id: str, images: str, deadline: float, seed: int) -> int:
    """One reading station: read and submit until ``deadline`` (epoch seconds) or the end."""
    from DigitalContrastReaderLib.reading.simulate import random_form_answers
    from DigitalContrastReaderLib.store.location import open_reading_store

    token = os.environ["DIGITAL_CONTRAST_READER_TOKEN"]
    rng = random.Random(seed)
    with open_reading_store(url, images_dir=images) as store:
        while time.time() < deadline:
            item = store.resume(reader_id, token=token)
            if item is None:
                print("finished", flush=True)
                break
            item = store.open_item(reader_id, item.item_id, token=token)
            answers = random_form_answers(item.questions, rng)
            seconds = round(rng.uniform(5, 90), 3)
            started = time.perf_counter()
            receipt = store.submit(reader_id, item.item_id, answers, token=token, active_seconds=seconds)
            elapsed_ms = (time.perf_counter() - started) * 1000
            print(f"ack {receipt.item_id} {elapsed_ms:.3f} {json.dumps(answers, sort_keys=True)}", flush=True)
    return 0


class Writer:
    """A writer process and what it acknowledged."""

    def __init__(self, url: str, reader_id: str, token: str, images: Path, deadline: float, seed: int) -> None:
        self.reader_id = reader_id
        env = {**os.environ, "DIGITAL_CONTRAST_READER_TOKEN": token, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--writer", url, reader_id, str(images), repr(deadline),
             str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.acks: list[tuple[str, float, dict]] = []
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("ack "):
                _, item_id, ms, answers = line.rstrip("\n").split(" ", 3)
                self.acks.append((item_id, float(ms), json.loads(answers)))

    def finish(self) -> str:
        self.proc.wait(timeout=300)
        self.thread.join(timeout=30)
        return self.proc.stderr.read()


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def run_load(server, folder: Path, *, seconds: float, kills: int, cases: int, seed: int = 1) -> dict:
    """Run the load on ``server`` (a ``postgres_server.PostgresServer``); returns the figures and
    the outcomes (see the module docstring)."""
    from DigitalContrastReaderLib.cli import main as reader_cli
    from DigitalContrastReaderLib.store.location import create_store, open_store
    from DigitalContrastReaderLib.study.config import load_study
    from DigitalContrastReaderLib.study.example import write_example_study
    from DigitalContrastReaderLib.study.images import study_image_facts

    rng = random.Random(seed)
    path = write_example_study(folder / "study", cases=cases, training_cases=2, readers=len(SITES) * READERS_PER_SITE,
                               tasks=("grading",), washout_days=0)
    study = load_study(path)
    facts = study_image_facts(study)  # opened and hashed once, for the three stores made here
    readers = [r.reader_id for r in study.readers]
    url = server.create_database(f"load_{os.getpid()}_{int(time.time())}")
    tokens, seeds = {}, {}
    with create_store(url, study, site="central", facts=facts) as store:
        reader_url = store.reader_url()
        for k, reader_id in enumerate(readers):
            seeds[reader_id] = 1000 + k
            tokens[reader_id] = store.enrol(reader_id, seed=seeds[reader_id]).token
    images = folder / "blinded-images"
    with open(os.devnull, "w") as quiet:
        saved, sys.stdout = sys.stdout, quiet
        try:
            assert reader_cli(["images", url, "--out", str(images)]) == 0
        finally:
            sys.stdout = saved

    started = time.time()
    deadline = started + seconds
    writers = {r: Writer(reader_url, r, tokens[r], images, deadline, rng.randrange(10**6)) for r in readers}
    finished: list[Writer] = []
    kill_times = sorted(rng.uniform(0.1 * seconds, 0.9 * seconds) for _ in range(kills))
    killed = 0
    for at in kill_times:
        time.sleep(max(0.0, started + at - time.time()))
        alive = [r for r, w in writers.items() if w.proc.poll() is None]
        if not alive:
            break
        victim = rng.choice(alive)
        writers[victim].proc.send_signal(signal.SIGKILL)
        writers[victim].proc.wait()
        killed += 1
        finished.append(writers[victim])
        writers[victim] = Writer(reader_url, victim, tokens[victim], images, deadline, rng.randrange(10**6))
    errors = []
    for w in list(writers.values()) + finished:
        stderr = w.finish()
        if w.proc.returncode not in (0, -signal.SIGKILL):
            errors.append(f"{w.reader_id} exited {w.proc.returncode}: {stderr.strip()[-500:]}")
    elapsed = time.time() - started
    acks = [(w.reader_id, *a) for w in list(writers.values()) + finished for a in w.acks]

    with open_store(url, study_dir=path.parent) as store:
        report = store.integrity_check()
        outcome = _check_acknowledged(store, acks)
        sqlite_rate, tidy_equal, tidy_difference = _compare_with_sqlite(store, study, facts, folder, seeds)
    submits = len(acks)
    latencies = [a[2] for a in acks]
    return {
        "benchmark": "multi-site reader study on PostgreSQL (3 sites x 4 readers, 12 writer processes)",
        "postgres_server": server.version(),
        "seconds": round(elapsed, 1),
        "writer_processes": len(readers),
        "kills": killed,
        "items_submitted": submits,
        "items_submitted_per_s": round(submits / elapsed, 1),
        "question_answers_per_s": round(sum(len(a[3]) for a in acks) / elapsed, 1),
        "submit_latency_ms": {"p50": round(_percentile(latencies, 0.50), 2), "p95": round(_percentile(latencies, 0.95), 2),
                              "max": round(max(latencies, default=float("nan")), 2)},
        "baseline_sqlite_one_process_items_per_s": round(sqlite_rate, 1),
        "ratio_postgres_12_writers_to_sqlite_one_process": round(submits / elapsed / sqlite_rate, 3) if sqlite_rate else None,
        "check_ok": report.ok,
        "check_problems": report.problems[:5],
        "acknowledged_missing": outcome["missing"],
        "acknowledged_changed": outcome["changed"],
        "submitted_more_than_once": outcome["repeated"],
        "tidy_csv_equals_sqlite": tidy_equal,
        "tidy_difference": tidy_difference,
        "writer_errors": errors,
    }


def _check_acknowledged(store, acks) -> dict:
    """Acknowledged answers present exactly once, as printed."""
    stored: dict[str, dict] = {}
    for response in store.responses():
        stored.setdefault(response.item_id, {})[response.question_key] = response.value
    submits: dict[str, int] = {}
    for event in store.events():
        if event["kind"] == "submit":
            submits[event["item_id"]] = submits.get(event["item_id"], 0) + 1
    missing = sorted(item for _, item, _, _ in acks if item not in stored)
    changed = sorted(item for _, item, _, answers in acks if item in stored and stored[item] != answers)
    acked = Counter(item for _, item, _, _ in acks)
    repeated = sorted(item for item, n in submits.items() if n != 1)
    repeated += sorted(item for item, n in acked.items() if n > 1)
    return {"missing": missing[:10], "changed": changed[:10], "repeated": repeated[:10]}


def _compare_with_sqlite(store, study, facts, folder: Path, seeds: dict[str, int], baseline_items: int = 300
                         ) -> tuple[float, bool, str]:
    """Replay the PostgreSQL store's answers into a new SQLite store and compare the tidy CSVs
    without the store-specific columns; returns (items/s of SQLite, equal, a difference).

    The speed baseline replays the first ``baseline_items`` items (show, then submit, as the
    writers did) in one process into a store on ``folder``'s disk. The comparison replays every
    answer (submit only) into a store in /dev/shm when there is one: the same code, without
    waiting for a disk 4 times per item, so that a long run does not take an hour to check.
    """
    import tempfile

    from DigitalContrastReaderLib.exports.tidy import tidy_table
    from DigitalContrastReaderLib.store.sqlite import create_store

    answers: dict[str, dict] = {}
    for response in store.responses():
        answers.setdefault(response.item_id, {})[response.question_key] = response.value
    done = [i for i in store.items() if i.submitted_at is not None]

    def replay(where: Path, items, show: bool):
        target = create_store(where / "replay.sqlite", study, facts=facts)
        tokens = {r: target.enrol(r, seed=s).token for r, s in seeds.items()}
        started = time.perf_counter()
        for item in items:
            if show:
                target.open_item(item.reader_id, item.item_id, token=tokens[item.reader_id])
            target.submit(item.reader_id, item.item_id, answers[item.item_id], token=tokens[item.reader_id],
                          active_seconds=item.active_seconds)
        return target, len(items) / max(time.perf_counter() - started, 1e-9)

    ordered = sorted(done, key=lambda i: (i.reader_id, i.order_index))  # each reader's items in their order
    by_reader: dict[str, list] = {}
    for item in ordered:
        by_reader.setdefault(item.reader_id, []).append(item)
    sample = [i for items in by_reader.values() for i in items[: max(baseline_items // len(by_reader), 1)]]
    (folder / "baseline").mkdir()
    baseline, rate = replay(folder / "baseline", sample, show=True)
    baseline.close()
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else folder
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        full, _ = replay(Path(tmp), ordered, show=False)
        theirs = tidy_table(full).drop(columns=list(STORE_SPECIFIC_COLUMNS))
        full.close()
    ours = tidy_table(store).drop(columns=list(STORE_SPECIFIC_COLUMNS))
    equal = ours.reset_index(drop=True).equals(theirs.reset_index(drop=True))
    difference = "" if equal else str(ours.compare(theirs).head(5)) if ours.shape == theirs.shape else \
        f"shapes {ours.shape} and {theirs.shape}"
    return rate, equal, difference


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--writer":
        url, reader_id, images, deadline, seed = argv[1:6]
        return writer_main(url, reader_id, images, float(deadline), int(seed))
    parser = argparse.ArgumentParser(description="The multi-site reader study under load on a real PostgreSQL.")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--cases", type=int, default=600, help="cases of the study (2 items per case per reader)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from postgres_server import running_server

    with tempfile.TemporaryDirectory(prefix="dc-load-") as tmp, running_server() as server:
        figures = run_load(server, Path(tmp), seconds=args.seconds, kills=args.kills, cases=args.cases)
    print(json.dumps(figures, indent=1) if args.json else figures)
    ok = (figures["check_ok"] and not figures["acknowledged_missing"] and not figures["acknowledged_changed"]
          and not figures["submitted_more_than_once"] and figures["tidy_csv_equals_sqlite"] and not figures["writer_errors"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
