"""Blinding: nothing a reader UI receives reveals the source of an image."""

from __future__ import annotations

import json
import os
import random
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from DigitalContrastLib.ct.io import write_volume
from DigitalContrastLib.ct.volume import CTVolume
from DigitalContrastReaderLib.reading.simulate import SimulatedClock, simulated_answers
from DigitalContrastReaderLib.store.sqlite import create_store
from DigitalContrastReaderLib.study.config import load_study
from DigitalContrastReaderLib.study.example import study_config_from_folder, write_study_file

MODELS = ("unetv3", "diffusionx")
SOURCE_WORDS = re.compile(r"synthetic|\breal\b|noncontrast|non-contrast|unetv3|diffusionx|patient\d", re.I)


def _study(tmp_path: Path, tasks: list[str]) -> Path:
    cases = tmp_path / "cases"
    for k in range(1, 6):
        folder = cases / f"patient{k}"
        folder.mkdir(parents=True)
        for j, name in enumerate(("real", "noncontrast", *(f"synthetic-{m}" for m in MODELS))):
            # a small real volume per image (init opens and hashes every one), each with other voxels
            volume = CTVolume(np.full((2, 4, 4), 10 * k + j, dtype=np.int16), (1.0, 1.0, 2.0))
            write_volume(volume, folder / f"{name}.nrrd")
        (folder / "truth.json").write_text(json.dumps({"disease_present": k % 2}))
    config = study_config_from_folder(cases, tmp_path, tasks=tasks, training_cases=1, readers=["r1", "r2"])
    config["demo"] = True
    return write_study_file(config, tmp_path / "study.yaml")


def _every_item(tmp_path: Path, study_path: Path):
    """Read the whole study as the readers would; yield (store, reader, item dict) for every item."""
    clock = SimulatedClock(datetime(2025, 1, 1, tzinfo=timezone.utc))
    store = create_store(tmp_path / "db.sqlite", load_study(study_path), clock=clock)
    rng = random.Random(0)
    for reader in ("r1", "r2"):
        token = store.enrol(reader, seed=3).token
        while (item := store.resume(reader, token=token)) is not None:
            if item.opens_at:
                clock.jump_to(datetime.fromisoformat(item.opens_at))
            shown = store.open_item(reader, item.item_id, token=token)
            yield store, reader, shown.to_dict()
            record = store.item(item.item_id)
            answers = simulated_answers(store.study.task(record.task_id), record.sources,
                                        store.study.case(record.case_id).truth, rng)
            store.submit(reader, item.item_id, answers, token=token)
            revisit = store.open_item(reader, item.item_id, token=token)
            yield store, reader, revisit.to_dict()  # a revisit, answers included
    store.close()


def _check_paths(store, item: dict, originals: set[str]) -> None:
    record = store.item(item["item_id"])
    for image, source in zip(item["images"], record.sources):
        path = Path(image["path"])
        assert path.parent == store.images_dir
        assert re.fullmatch(r"[0-9a-f]{16}\.nrrd", path.name)
        assert image["path"] not in originals
        # the stored mapping handle -> source is what the neutral file holds: a hard link or a copy,
        # never a symbolic link (`ls -l` would show the original's name)
        expected = store.study.case(record.case_id).images[source]
        assert not path.is_symlink() and os.path.realpath(path) == str(path)
        assert path.read_bytes() == expected.read_bytes()


def test_grading_preference_and_detection_items_reveal_no_source(tmp_path):
    study_path = _study(tmp_path, ["grading", "preference", "detection"])
    originals = {str(p) for c in load_study(study_path).cases for p in c.images.values()}
    seen = 0
    for store, _, item in _every_item(tmp_path, study_path):
        text = json.dumps(item)
        assert not SOURCE_WORDS.search(text), SOURCE_WORDS.search(text)
        assert "cases" not in text and ".nrrd" in text
        handles = [i["handle"] for i in item["images"]]
        assert handles in (["Image"], ["Image A", "Image B"])
        _check_paths(store, item, originals)
        seen += 1
    # 2 readers x (3 training + 4 cases x (3 synthetic/real sources grading + 1 preference + 3 detection)) x 2 views
    assert seen == 2 * (3 + 4 * 7) * 2


def test_turing_items_reveal_no_source_beyond_the_shared_question(tmp_path):
    study_path = _study(tmp_path, ["turing"])
    originals = {str(p) for c in load_study(study_path).cases for p in c.images.values()}
    shared = None
    for store, _, item in _every_item(tmp_path, study_path):
        # the question ("synthetic or real?") and instructions are the same for every item of the task
        common = json.dumps({"q": item.pop("questions"), "i": item.pop("instructions")}, sort_keys=True)
        shared = shared or common
        assert common == shared
        answers = item.pop("answers")
        assert set(answers) <= {"synthetic_or_real", "confidence"}  # the reader's own answer, shown back
        text = json.dumps(item)
        assert not SOURCE_WORDS.search(text), SOURCE_WORDS.search(text)
        _check_paths(store, item, originals)
