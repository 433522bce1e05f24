"""What the SQLite and PostgreSQL stores share below the store classes: a small database
adapter (:class:`SqlDb`: ``?`` placeholders, rows read by column name), how study versions and
schedules fill the tables, and how rows become records.

Both stores have the same tables and columns (``sqlite_schema.py``, ``postgres_schema.py``);
flags are integers 0/1 and times ISO 8601 text in both, so the SQL here runs on either.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from DigitalContrastReaderLib.study.blinding import new_blind_name
from DigitalContrastReaderLib.study.canonical import canonical_json
from DigitalContrastReaderLib.study.images import ImageFacts, relative_image_path
from DigitalContrastReaderLib.study.reader_view import reader_view
from DigitalContrastReaderLib.study.schedule import Schedule
from DigitalContrastReaderLib.study.study import Study, source_kind, source_model

from .base import ItemRecord, ReaderRecord, ResponseRecord, RevisionRecord
from .tokens import TokenHash

Row = Mapping[str, Any]


class SqlDb(Protocol):
    """A connection that runs SQL written with ``?`` placeholders and returns rows as mappings."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def insert_id(self, sql: str, params: Sequence[Any], id_column: str) -> int: ...


# --------------------------------------------------------------------------------------------
# Study versions and schedules -> rows
# --------------------------------------------------------------------------------------------


def write_study_rows(db: SqlDb, study: Study, *, loaded_at: str, base_dir: str, base_dir_rel: str | None,
                     facts: Mapping[tuple[str, str], ImageFacts], accepted_change: str | None = None,
                     changes: Sequence[str] = ()) -> None:
    """Make ``study`` the active version (inside the caller's transaction): its row in
    ``studies`` (``study.version`` is the store's version name) and its cases, images, tasks and
    questions.

    Image paths are stored relative to the study folder (``base_dir``); an image keeps its
    neutral name while its bytes are unchanged and gets a new one when they change.
    """
    db.execute("UPDATE studies SET active = 0")
    db.execute(
        "INSERT INTO studies(study_sha256, study_id, version, config_json, source_path, base_dir, base_dir_rel, "
        "loaded_at, active, demo, accepted_change, changes_json, reader_view_json) VALUES (?,?,?,?,?,?,?,?,1,?,?,?,?) "
        "ON CONFLICT(study_sha256) DO UPDATE SET active = 1, version = excluded.version, "
        "source_path = excluded.source_path, base_dir = excluded.base_dir, base_dir_rel = excluded.base_dir_rel",
        (study.sha256, study.study_id, study.version, study.config_json(),
         str(study.path.resolve()) if study.path else None, base_dir, base_dir_rel, loaded_at, int(study.demo),
         accepted_change, canonical_json(list(changes)), canonical_json(reader_view(study).to_dict())),
    )
    for case in study.cases:
        db.execute(
            "INSERT INTO cases(case_id, training, block, truth_json) VALUES (?,?,?,?) "
            "ON CONFLICT(case_id) DO UPDATE SET training=excluded.training, block=excluded.block, "
            "truth_json=excluded.truth_json",
            (case.case_id, int(case.training), case.block, canonical_json(case.truth)),
        )
        for source, path in case.images.items():
            fact = facts[(case.case_id, source)]
            relative = relative_image_path(path, study.base_dir)
            known = db.one("SELECT sha256 FROM images WHERE case_id=? AND source=?", (case.case_id, source))
            if known is None:
                db.execute(
                    "INSERT INTO images(case_id, source, source_kind, model_id, path, size_bytes, sha256, geometry_json, "
                    "blind_name) VALUES (?,?,?,?,?,?,?,?,?)",
                    (case.case_id, source, source_kind(source), source_model(source), relative, fact.size_bytes,
                     fact.sha256, canonical_json(fact.geometry), new_blind_name(path)),
                )
            else:
                renamed = known["sha256"] != fact.sha256
                db.execute(
                    "UPDATE images SET path=?, size_bytes=?, sha256=?, geometry_json=?"
                    + (", blind_name=?" if renamed else "") + " WHERE case_id=? AND source=?",
                    (relative, fact.size_bytes, fact.sha256, canonical_json(fact.geometry),
                     *([new_blind_name(path)] if renamed else []), case.case_id, source),
                )
    wanted = {(t.task_id, q.key) for t in study.tasks for q in t.questions}
    for row in db.all("SELECT task_id, question_key FROM questions"):
        if (row["task_id"], row["question_key"]) not in wanted:  # never answered (frozen otherwise)
            db.execute("DELETE FROM questions WHERE task_id=? AND question_key=?", (row["task_id"], row["question_key"]))
    for position, task in enumerate(study.tasks):
        spec = {"type": task.type, "sources": list(task.sources), "compare": list(task.compare or []),
                "truth_column": task.truth_column, "finding": task.finding, "instructions": task.instructions}
        db.execute(
            "INSERT INTO tasks(task_id, task_type, position, spec_json) VALUES (?,?,?,?) "
            "ON CONFLICT(task_id) DO UPDATE SET task_type=excluded.task_type, position=excluded.position, "
            "spec_json=excluded.spec_json",
            (task.task_id, task.type, position, canonical_json(spec)),
        )
        for qpos, q in enumerate(task.questions):
            db.execute(
                "INSERT INTO questions(task_id, question_key, position, question_type, required, spec_json) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(task_id, question_key) DO UPDATE SET position=excluded.position, "
                "question_type=excluded.question_type, required=excluded.required, spec_json=excluded.spec_json",
                (task.task_id, q.key, qpos, q.type, int(q.required), canonical_json(q.spec())),
            )


def write_schedule_rows(db: SqlDb, schedule: Schedule, study_sha256: str, token: TokenHash | None) -> None:
    """Store a reader's schedule as generated: the ``readers`` row (with the schedule's JSON,
    its sha256 and the token hash), its ``sessions`` and its ``items`` (inside the caller's
    transaction)."""
    reader_id = schedule.reader_id
    db.execute(
        "INSERT INTO readers(reader_id, reader_group, enrolled_at, seed, study_sha256, schedule_json, "
        "schedule_sha256, token_salt, token_n, token_r, token_p, token_digest) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (reader_id, schedule.reader_group, schedule.created_at, schedule.seed, study_sha256,
         canonical_json(schedule.to_dict()), schedule.sha256(), *token_columns(token)),
    )
    db.many(
        "INSERT INTO sessions(reader_id, session_no, kind, wave, opens_at, washout_after_wave) VALUES (?,?,?,?,?,?)",
        [(reader_id, s.session_no, s.kind, s.wave, s.opens_at, s.washout_after_wave) for s in schedule.sessions],
    )
    db.many(
        "INSERT INTO items(item_id, reader_id, session_no, position_in_session, order_index, task_id, case_id, "
        "training, layout, wave, source_a, source_b) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [(i.item_id, reader_id, i.session_no, i.position_in_session, i.order_index, i.task_id, i.case_id,
          int(i.training), i.layout, i.wave, i.sources[0], i.sources[1] if len(i.sources) > 1 else None)
         for i in schedule.items],
    )


def token_columns(token: TokenHash | None) -> tuple[Any, ...]:
    """``token_salt, token_n, token_r, token_p, token_digest`` of a token hash (NULLs for none)."""
    if token is None:
        return (None, None, None, None, None)
    return (token.salt_hex, token.n, token.r, token.p, token.digest_hex)


# --------------------------------------------------------------------------------------------
# Rows -> records
# --------------------------------------------------------------------------------------------

ITEM_COLUMNS = ("item_id", "reader_id", "session_no", "position_in_session", "order_index", "task_id", "case_id",
                "training", "layout", "wave", "source_a", "source_b", "shown_at", "last_shown_at",
                "first_interaction_at", "submitted_at", "active_seconds", "visits")


def item_record(row: Row) -> ItemRecord:
    return ItemRecord(**{k: (bool(row[k]) if k == "training" else row[k]) for k in ITEM_COLUMNS})


def token_hash(row: Row) -> TokenHash | None:
    if row["token_digest"] is None:
        return None
    return TokenHash(row["token_salt"], int(row["token_n"]), int(row["token_r"]), int(row["token_p"]),
                     row["token_digest"])


def reader_record(row: Row) -> ReaderRecord:
    return ReaderRecord(row["reader_id"], row["reader_group"], row["enrolled_at"], row["seed"], row["schedule_sha256"],
                        token_hash(row))


def response_record(r: Row) -> ResponseRecord:
    return ResponseRecord(r["response_id"], r["item_id"], r["reader_id"], r["task_id"], r["question_key"],
                          json.loads(r["value_json"]), r["revision"], r["study_sha256"], r["answered_at"],
                          r["modified_at"], bool(r["simulated"]))


def revision_record(r: Row) -> RevisionRecord:
    """A row of ``revisions`` joined with its response's item, reader and question key."""
    return RevisionRecord(r["response_id"], r["item_id"], r["reader_id"], r["question_key"], r["revision"],
                          json.loads(r["value_json"]), r["changed_at"], r["changed_by"], r["reason"],
                          r["study_sha256"], r["event_seq"])


def event_from_row(r: Row) -> dict[str, Any]:
    return {
        "seq": r["seq"], "at": r["at"], "kind": r["kind"], "reader_id": r["reader_id"], "item_id": r["item_id"],
        "payload": json.loads(r["payload_json"]), "prev_hash": r["prev_hash"], "hash": r["hash"],
    }


def resolve_base_dir(store_folder: Path | None, base_dir: str, base_dir_rel: str | None) -> Path:
    """The study folder of a study version: relative to the store's folder when that exists (a
    moved or copied study folder), else the folder recorded when it was loaded."""
    if store_folder is not None and base_dir_rel is not None:
        candidate = (store_folder / base_dir_rel).resolve()
        if candidate.is_dir() or not Path(base_dir).is_dir():
            return candidate
    return Path(base_dir)
