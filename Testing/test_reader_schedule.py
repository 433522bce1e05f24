"""Reading schedules: stored once, reproducible from the seed, balanced, with washout."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from DigitalContrastReaderLib.exports.tidy import analysis_table
from DigitalContrastReaderLib.reading.simulate import SimulatedClock, simulate_reader, simulated_answers
from DigitalContrastReaderLib.store.sqlite import create_store
from DigitalContrastReaderLib.study.config import load_study
from DigitalContrastReaderLib.study.errors import AnswerError
from DigitalContrastReaderLib.study.example import write_example_study
from DigitalContrastReaderLib.study.schedule import generate_schedule

START = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schedule")
    return load_study(write_example_study(folder / "ex", cases=13, training_cases=2, readers=4))


def test_same_seed_same_schedule_other_seed_other_order(study):
    a = generate_schedule(study, "r01", seed=7, start=START)
    b = generate_schedule(study, "r01", seed=7, start=START)
    c = generate_schedule(study, "r01", seed=8, start=START)
    assert a.to_dict() == b.to_dict() and a.sha256() == b.sha256()
    assert [i.case_id for i in a.items] != [i.case_id for i in c.items]
    assert a.seed == 7


def test_the_stored_schedule_is_reproducible_and_never_recomputed(study, tmp_path):
    stores = [create_store(tmp_path / f"s{k}.sqlite", study, clock=SimulatedClock(START)) for k in range(2)]
    schedules = [s.enrol("r02", seed=99).schedule for s in stores]
    assert schedules[0].to_dict() == schedules[1].to_dict()
    assert stores[0].schedule("r02").to_dict() == schedules[0].to_dict()
    with pytest.raises(AnswerError, match="never recomputed"):
        stores[0].enrol("r02", seed=1)
    for s in stores:
        s.close()


def test_synthetic_side_is_balanced_within_one_per_reader(study):
    for seed in range(12):
        for reader in ("r01", "r02", "r03"):
            pairs = [i for i in generate_schedule(study, reader, seed=seed, start=START).items
                     if i.layout == "pair" and not i.training]
            assert len(pairs) == 11  # odd: the balance can only be within one
            left = sum(i.sources[0] == "synthetic" for i in pairs)
            assert abs(left - (len(pairs) - left)) <= 1
            assert all(set(i.sources) == {"synthetic", "real"} for i in pairs)


def test_each_case_once_per_wave_in_each_source_with_balanced_first_source(study):
    for seed in range(10):
        schedule = generate_schedule(study, "r01", seed=seed, start=START)
        for task in ("grading", "turing", "detection"):
            items = [i for i in schedule.items if i.task_id == task and not i.training]
            waves = sorted({i.wave for i in items})
            assert len(waves) == 2
            by_case = defaultdict(list)
            for i in sorted(items, key=lambda i: i.order_index):
                by_case[i.case_id].append((i.wave, i.sources[0]))
            assert all(len(v) == 2 and v[0][0] < v[1][0] and {v[0][1], v[1][1]} == {"real", "synthetic"}
                       for v in by_case.values())
            first = Counter(v[0][1] for v in by_case.values())
            assert abs(first["real"] - first["synthetic"]) <= 1


def test_no_session_shows_one_case_twice_in_a_single_image_task(tmp_path):
    study = load_study(write_example_study(tmp_path / "ex", cases=9, training_cases=2, readers=2,
                                           tasks=("turing", "grading"), max_items_per_session=4))
    for seed in range(5):
        schedule = generate_schedule(study, "r02", seed=seed, start=START)
        sessions = defaultdict(list)
        for i in schedule.items:
            sessions[(i.session_no, i.task_id)].append(i.case_id)
        assert all(len(cases) == len(set(cases)) for cases in sessions.values())
        assert max(Counter(i.session_no for i in schedule.items).values()) <= 4
        # sittings of one wave open together; only a new wave waits for the washout
        for s in schedule.sessions:
            same_wave = [o for o in schedule.sessions if o.wave == s.wave]
            assert {o.opens_at for o in same_wave} == {s.opens_at}


def test_training_comes_first_marked_and_is_left_out_of_analysis(study, tmp_path):
    schedule = generate_schedule(study, "r03", seed=3, start=START)
    training = [i for i in schedule.items if i.training]
    assert len(training) == 2 * len(study.tasks)
    assert [i.order_index for i in training] == list(range(1, len(training) + 1))
    assert schedule.sessions[0].kind == "training" and schedule.sessions[0].wave == 0
    assert {i.case_id for i in training} == {c.case_id for c in study.cases if c.training}

    clock = SimulatedClock(START)
    store = create_store(tmp_path / "db.sqlite", study, clock=clock)
    store.enrol("r03", seed=3)
    simulate_reader(store, "r03", random.Random(0), clock=clock)
    training_cases = {c.case_id for c in study.cases if c.training}
    table = analysis_table(store, "overall_confidence", "grading")
    assert not set(table["case_id"]) & training_cases
    assert len(table) == 2 * 11  # 11 main cases x 2 sources, one reader
    with_training = analysis_table(store, "overall_confidence", "grading", include_training=True)
    assert set(with_training["case_id"]) & training_cases
    store.close()


def test_washout_is_enforced_against_the_actual_submit_times(study, tmp_path):
    clock = SimulatedClock(START)
    store = create_store(tmp_path / "db.sqlite", study, clock=clock)
    enrolment = store.enrol("r01", seed=11)
    schedule, token = enrolment.schedule, enrolment.token
    assert datetime.fromisoformat(schedule.sessions[2].opens_at) == START + timedelta(days=28)  # wave 2 planned
    rng = random.Random(1)
    # read training and wave 1 late: 40 days after enrolment, so the planned date has passed
    clock.jump_to(START + timedelta(days=40))
    while True:
        item = store.resume("r01", token=token)
        record = store.item(item.item_id)
        if record.wave == 2:
            break
        store.open_item("r01", item.item_id, token=token)
        clock.advance(30)
        answers = simulated_answers(study.task(record.task_id), record.sources, study.case(record.case_id).truth, rng)
        store.submit("r01", item.item_id, answers, token=token)
    last_wave1 = max(datetime.fromisoformat(i.submitted_at) for i in store.items("r01") if i.wave == 1)
    assert item.opens_at is not None and datetime.fromisoformat(item.opens_at) == last_wave1 + timedelta(days=28)
    clock.jump_to(last_wave1 + timedelta(days=27, hours=23))
    with pytest.raises(AnswerError, match="28-day washout"):
        store.open_item("r01", item.item_id, token=token)
    with pytest.raises(AnswerError, match="28-day washout"):
        store.submit("r01", item.item_id, simulated_answers(study.task(record.task_id), record.sources, {}, rng),
                     token=token)
    assert store.resume("r01", token=token).opens_at is not None
    clock.jump_to(last_wave1 + timedelta(days=28, seconds=1))
    assert store.resume("r01", token=token).opens_at is None
    store.open_item("r01", item.item_id, token=token)
    # the whole schedule, read with the simulated clock, respects the washout for every case
    simulate_reader(store, "r01", rng, clock=clock, token=token)
    done = store.items("r01")
    assert all(i.submitted_at for i in done)
    gaps = defaultdict(list)
    for i in done:
        if not i.training:
            gaps[i.case_id].append((i.wave, datetime.fromisoformat(i.submitted_at)))
    for readings in gaps.values():
        readings.sort()
        for (w1, t1), (w2, t2) in zip(readings, readings[1:]):
            assert w2 > w1 and t2 - t1 >= timedelta(days=28)
    assert store.integrity_check().ok
    store.close()


def test_split_plot_groups_read_only_their_blocks(tmp_path):
    study = load_study(write_example_study(tmp_path / "ex", cases=10, training_cases=2, readers=4, design="split-plot"))
    assert study.design.type == "split-plot" and study.design.group_blocks == {"A": ("A",), "B": ("B",)}
    blocks = {c.case_id: c.block for c in study.cases if not c.training}
    assert Counter(blocks.values()) == {"A": 4, "B": 4}
    read = {}
    for reader in study.readers:
        schedule = generate_schedule(study, reader.reader_id, seed=1, start=START)
        main = {i.case_id for i in schedule.items if not i.training}
        assert {blocks[c] for c in main} == {reader.group}
        assert main == {c for c, b in blocks.items() if b == reader.group}
        assert {i.case_id for i in schedule.items if i.training} == {c.case_id for c in study.cases if c.training}
        read[reader.reader_id] = main
    assert read["r01"] == read["r03"] and read["r02"] == read["r04"] and not read["r01"] & read["r02"]
