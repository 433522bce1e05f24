"""A writer killed with SIGKILL at random moments loses no acknowledged answer.

A subprocess (``digital-contrast-reader simulate``) submits answers in a loop and prints
``submitted <item>`` (flushed) after each submit has returned. The test kills it at random
moments, several rounds; after each kill, every acknowledged answer is in the store, the
integrity check passes (hash chain, JSONL log == database after recovery, answers vs schedule)
and resume gives the first unfinished item.
"""

from __future__ import annotations

import random
import sys
import time

import pytest
from killed_process import run_until_killed

from DigitalContrastReaderLib.store.sqlite import create_store, open_store
from DigitalContrastReaderLib.study.config import load_study
from DigitalContrastReaderLib.study.example import write_example_study


def _writer_args(db, round_no: int) -> list[str]:
    return [sys.executable, "-m", "DigitalContrastReaderLib.cli", "simulate", str(db), "--reader", "r01",
            "--seed", str(round_no)]


@pytest.mark.process
@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_acknowledged_answer(tmp_path):
    study = load_study(write_example_study(tmp_path / "ex", cases=150, training_cases=2, readers=1))
    db = tmp_path / "study.sqlite"
    store = create_store(db, study, backup_every=7)
    store.enrol("r01", seed=5)
    total = len(store.items("r01"))
    store.close()

    rng = random.Random(20240611)
    acknowledged: list[str] = []
    kills = recoveries = 0
    started = time.monotonic()
    for round_no in range(8):
        # wait for the first acknowledgement (or the writer's exit), then kill at a random moment
        lines, killed = run_until_killed(_writer_args(db, round_no), ready=bool, delay_s=rng.uniform(0.0, 0.6),
                                         timeout_s=20)
        kills += killed
        acknowledged += [line.split()[1] for line in lines if line.startswith("submitted ")]

        with open_store(db) as store:  # opening runs the event-log recovery
            recoveries += bool(store.recovery_notes)
            report = store.integrity_check()
            assert report.ok, report.summary()
            items = store.items("r01")
            submitted = {i.item_id for i in items if i.submitted_at is not None}
            missing = set(acknowledged) - submitted
            assert not missing, f"acknowledged but lost: {sorted(missing)}"
            answered = {r.item_id for r in store.responses()}
            assert set(acknowledged) <= answered
            first_unfinished = next((i.item_id for i in items if i.submitted_at is None), None)
            token = store.issue_token("r01")  # each simulate round gave r01 a token of its own
            resumed = store.resume("r01", token=token)
            assert (resumed.item_id if resumed else None) == first_unfinished
            assert all(i.submitted_at for i in items if first_unfinished is None or i.order_index < int(first_unfinished[-4:]))
        if first_unfinished is None:
            break
    elapsed = time.monotonic() - started
    print(f"{kills} kills, {len(acknowledged)} acknowledged of {total} items, {recoveries} rounds needed log "
          f"recovery, {elapsed:.1f} s")
    assert kills >= 5 and len(acknowledged) >= 20
