"""Kill and resume: a reading session killed with SIGKILL loses no acknowledged answer and
resumes at the next unfinished item, in the same order.

``reader_session_script.py`` runs the real session logic on a headless MRML scene in a separate
process and prints ``submitted <item> <answers>`` after each submit has returned. The test kills
it at random moments (SIGKILL: no cleanup, no atexit, as when Slicer crashes or is closed by
force), starts it again, and after every round checks the store: every acknowledged answer is
there with exactly the acknowledged values, the integrity check passes, and the restarted
session shows the first unfinished item of the stored schedule.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
from killed_process import run_until_killed

SCRIPT = Path(__file__).with_name("reader_session_script.py")


@pytest.mark.mrml
@pytest.mark.process
@pytest.mark.slow
def test_sigkill_during_a_session_loses_nothing_and_resumes_in_order(tmp_path):
    from DigitalContrastReaderLib.store.sqlite import create_store, open_store
    from DigitalContrastReaderLib.study.config import load_study
    from DigitalContrastReaderLib.study.example import write_example_study

    study = load_study(write_example_study(tmp_path / "ex", cases=16, training_cases=1, readers=1,
                                           tasks=("grading", "preference"), washout_days=0))
    db = tmp_path / "study.sqlite"
    with create_store(db, study) as store:
        token = store.enrol("r01").token

    rng = random.Random(20250101)
    acknowledged: dict[str, dict] = {}
    kills = resumed_checks = 0
    expected_first = None  # later rounds must resume at the store's next item
    for round_no in range(6):
        # let it submit 1-4 items, then kill it at a random moment of the next one
        wanted = rng.randint(1, 4)
        lines, killed = run_until_killed(
            [sys.executable, str(SCRIPT), str(db), "r01", str(round_no)],
            ready=lambda out, n=wanted: sum(line.startswith("submitted ") for line in out) >= n,
            delay_s=rng.uniform(0.0, 0.05), env={"DIGITAL_CONTRAST_READER_TOKEN": token},
        )
        kills += killed
        shows = [line.split()[1] for line in lines if line.startswith("showing ")]
        if expected_first is not None and shows:
            assert shows[0] == expected_first, "the restarted session did not resume at the next unfinished item"
            resumed_checks += 1
        for line in lines:
            if line.startswith("submitted "):
                _, item_id, answers = line.split(" ", 2)
                acknowledged[item_id] = json.loads(answers)

        with open_store(db) as store:
            report = store.integrity_check()
            assert report.ok, report.summary()
            stored: dict[str, dict] = {}
            for response in store.responses():
                stored.setdefault(response.item_id, {})[response.question_key] = response.value
            for item_id, answers in acknowledged.items():
                assert stored.get(item_id) == answers, f"acknowledged answer to {item_id} lost or changed"
            order = [i.item_id for i in store.schedule("r01").items]
            done = [i.item_id for i in store.items("r01") if i.submitted_at is not None]
            assert done == order[: len(done)]  # no gap: submitted items are a prefix of the schedule
            resumed = store.resume("r01", token=token)
            first_unfinished = order[len(done)] if len(done) < len(order) else None
            assert (resumed.item_id if resumed else None) == first_unfinished
        if first_unfinished is None:
            break
        expected_first = first_unfinished
    assert kills >= 3 and len(acknowledged) >= 6 and resumed_checks >= 3
    print(f"{kills} kills, {len(acknowledged)} acknowledged answers, {resumed_checks} resumes checked")
