"""The admin half of an answer store, written once in SQL that SQLite and PostgreSQL both run.

:class:`SqlStore` implements what :class:`~DigitalContrastReaderLib.store.base.AnswerStore` adds to
reading: study versions, enrolment and tokens, corrections, progress, the admin views of items,
images, answers and events, and the integrity check. The domain rules come from
:mod:`~DigitalContrastReaderLib.store.rules`. A subclass supplies the connection (``_db``, a
:class:`~DigitalContrastReaderLib.store.sql_rows.SqlDb`), ``_transaction()`` (one transaction that
holds the event chain; yields the list of events it writes), ``_head()`` (the last event's
``(seq, hash)`` inside it), ``_store_folder()``, ``_low_level_problems()``, the reading
primitives of :mod:`~DigitalContrastReaderLib.store.reader_access`, and its attributes
(``location``, ``store_id``, ``site``, ``images_dir``, ``event_log_path``, ``backup_dir``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from DigitalContrastReaderLib.study.canonical import canonical_json
from DigitalContrastReaderLib.study.config import study_from_config
from DigitalContrastReaderLib.study.errors import StoreError, StudyError
from DigitalContrastReaderLib.study.images import ImageFacts, ImageVerifier, link_or_copy, study_image_facts
from DigitalContrastReaderLib.study.reader_view import ReaderStudyView, reader_view
from DigitalContrastReaderLib.study.schedule import Schedule, generate_schedule
from DigitalContrastReaderLib.study.study import Study

from . import rules
from .base import (
    Clock,
    Enrolment,
    ImageRecord,
    ImageRef,
    IntegrityReport,
    ItemRecord,
    ReaderCounts,
    ReaderProgress,
    ReaderRecord,
    ResponseRecord,
    RevisionRecord,
    iso_utc,
    parse_iso,
    utc_now,
)
from .eventlog import JsonlLog, make_event
from .integrity import check_integrity
from .reader_access import ReaderAccess
from .sql_import import SqlImport
from .sql_rows import (
    SqlDb,
    event_from_row,
    item_record,
    reader_record,
    resolve_base_dir,
    response_record,
    revision_record,
    token_columns,
    write_schedule_rows,
    write_study_rows,
)
from .tokens import hash_token, new_token


def image_problem_error(item_id: str) -> StudyError:
    return StudyError(f"An image of item '{item_id}' is missing or was changed since the study was created; ask the "
                      "study admin to restore it ('digital-contrast-reader check' names it).", code="image_changed")


class SqlStore(SqlImport, ReaderAccess):
    """The admin half of an answer store over SQL (see the module docstring)."""

    _db: SqlDb
    _clock: Clock | None
    _event_log: JsonlLog | None = None
    study: Study
    images_dir: Path
    location: str
    store_id: str
    site: str
    recovery_notes: list[str]
    warnings: list[str]
    study_dir: Path | None = None  # overrides the recorded study folder (a PostgreSQL admin elsewhere)

    # -- hooks -----------------------------------------------------------------------------------
    def _store_folder(self) -> Path | None:
        return None

    def _low_level_problems(self) -> list[str]:
        return []

    def _now(self) -> datetime:
        return (self._clock or utc_now)()

    @property
    def _name(self) -> str:
        return self.location

    # -- events ----------------------------------------------------------------------------------
    def _event(self, events: list[dict[str, Any]], kind: str, reader_id: str | None, item_id: str | None,
               payload: dict[str, Any], *, at: str | None = None) -> dict[str, Any]:
        """Append one event to the chain (inside ``_transaction``, which holds the chain)."""
        seq, prev = (events[-1]["seq"], events[-1]["hash"]) if events else self._head()
        event = make_event(seq + 1, at or iso_utc(self._now()), kind, reader_id, item_id, payload, prev)
        self._db.execute(
            "INSERT INTO events(seq, at, kind, reader_id, item_id, payload_json, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)",
            (event["seq"], event["at"], kind, reader_id, item_id, canonical_json(payload), prev, event["hash"]),
        )
        events.append(event)
        return event

    def events(self) -> list[dict[str, Any]]:
        """Every event in order (the audit trail)."""
        return [event_from_row(r) for r in self._db.all("SELECT * FROM events ORDER BY seq")]

    def last_event_at(self) -> datetime | None:
        row = self._db.one("SELECT at FROM events ORDER BY seq DESC LIMIT 1")
        return parse_iso(row["at"]) if row else None

    # -- study versions --------------------------------------------------------------------------
    def _study_base_dir(self, row: Mapping[str, Any]) -> Path:
        if self.study_dir is not None:
            return Path(self.study_dir).resolve()
        return resolve_base_dir(self._store_folder(), row["base_dir"], row["base_dir_rel"])

    def _load_active_study(self) -> Study:
        row = self._db.one("SELECT * FROM studies WHERE active = 1")
        if row is None:
            raise StoreError(f"{self._name}: the store holds no study; it was not created completely, create it again.")
        base = self._study_base_dir(row)
        path = base / Path(row["source_path"]).name if row["source_path"] else None
        study = study_from_config(json.loads(row["config_json"]), base_dir=base, sha256=row["study_sha256"],
                                  path=path, check_files=False)
        return replace(study, version=row["version"])

    def _base_dir_rel(self, study: Study) -> str | None:
        folder = self._store_folder()
        if folder is None:
            return None
        import os

        return Path(os.path.relpath(study.base_dir.resolve(), folder.resolve())).as_posix()

    def _write_study(self, study: Study, events: list[dict[str, Any]], *, first: bool,
                     facts: Mapping[tuple[str, str], ImageFacts], accept_change: str | None = None,
                     changes: Sequence[str] = ()) -> Study:
        known = {r["study_sha256"]: r["version"] for r in self._db.all("SELECT study_sha256, version FROM studies")}
        label = known.get(study.sha256) or rules.version_label(study.version, list(known.values()))
        study = replace(study, version=label)
        write_study_rows(self._db, study, loaded_at=iso_utc(self._now()), base_dir=str(study.base_dir.resolve()),
                         base_dir_rel=self._base_dir_rel(study), facts=facts,
                         accepted_change=accept_change.strip() if accept_change else None, changes=changes)
        payload = {
            "study_id": study.study_id, "version": label, "study_sha256": study.sha256,
            "source_path": str(study.path) if study.path else None, "warnings": list(study.warnings),
        }
        if changes:
            payload |= {"changes": list(changes), "accepted_change": accept_change.strip()}
        self._event(events, "study_loaded" if first else "study_updated", None, None, payload)
        self.study = study
        self._view = None
        return study

    def update_study(self, study: Study, *, accept_change: str | None = None,
                     facts: Mapping[tuple[str, str], ImageFacts] | None = None) -> bool:
        """Load a new version of the study file into the store; False when it is unchanged.

        Every image is opened, checked and hashed first. Refused (StudyError) when it would change
        what existing answers mean, or how items are shown or scheduled without
        ``accept_change`` (:func:`~DigitalContrastReaderLib.store.rules.check_study_update`).
        """
        if study.sha256 == self.study.sha256:
            return False
        facts = facts if facts is not None else study_image_facts(study)
        with self._transaction() as events:
            changes = rules.check_study_update(
                self.study, study, store_name=self._name,
                answered=self._db.scalar("SELECT COUNT(*) FROM responses") > 0,
                simulated=self._db.scalar("SELECT COUNT(*) FROM responses WHERE simulated = 1") > 0,
                scheduled_cases={r["case_id"] for r in self._db.all("SELECT DISTINCT case_id FROM items")},
                enrolled={r.reader_id for r in self.readers()},
                scheduled_tasks={r["task_id"] for r in self._db.all("SELECT DISTINCT task_id FROM items")},
                old_images={(i.case_id, i.source): i.sha256 for i in self.images()},
                new_images={key: fact.sha256 for key, fact in facts.items()},
                accept_change=accept_change,
            )
            self._write_study(study, events, first=False, facts=facts, accept_change=accept_change, changes=changes)
        return True

    def _reader_view(self) -> ReaderStudyView:
        if getattr(self, "_view", None) is None or self._view.sha256 != self.study.sha256:
            self._view = reader_view(self.study)
        return self._view

    # -- enrolment, tokens and schedules ---------------------------------------------------------
    def enrol(self, reader_id: str, *, seed: int | None = None) -> Enrolment:
        """Generate and STORE the reader's schedule (once; a second enrolment is refused), with a
        new token (returned here once; the store keeps only its hash)."""
        self.study.reader(reader_id)
        if seed is None:
            seed = secrets.randbits(31)
        schedule = generate_schedule(self.study, reader_id, seed=int(seed), start=self._now())
        token = new_token()
        with self._transaction() as events:
            row = self._db.one("SELECT * FROM readers WHERE reader_id=?", (reader_id,))
            rules.check_not_enrolled(reader_id, None if row is None else reader_record(row))
            write_schedule_rows(self._db, schedule, self.study.sha256, hash_token(token))
            self._event(events, "enrol", reader_id, None, {
                "seed": schedule.seed, "schedule_sha256": schedule.sha256(), "study_sha256": self.study.sha256,
                "sessions": len(schedule.sessions), "items": len(schedule.items),
            })
        return Enrolment(schedule, token)

    def issue_token(self, reader_id: str) -> str:
        """A new token for an enrolled reader (the old one stops working); returned once."""
        token = new_token()
        with self._transaction() as events:
            if self._db.one("SELECT 1 AS x FROM readers WHERE reader_id=?", (reader_id,)) is None:
                raise rules.not_enrolled_error(self.study, reader_id)
            self._db.execute("UPDATE readers SET token_salt=?, token_n=?, token_r=?, token_p=?, token_digest=? "
                             "WHERE reader_id=?", (*token_columns(hash_token(token)), reader_id))
            self._event(events, "token_issued", reader_id, None, {})
        self._keys = {}
        return token

    def schedule(self, reader_id: str) -> Schedule:
        """The stored schedule of a reader, exactly as generated at enrolment."""
        row = self._db.one("SELECT schedule_json FROM readers WHERE reader_id=?", (reader_id,))
        if row is None:
            raise rules.not_enrolled_error(self.study, reader_id)
        return Schedule.from_dict(json.loads(row["schedule_json"]))

    def opens_at(self, reader_id: str, session_no: int) -> datetime:
        """When a session opens (:func:`~DigitalContrastReaderLib.store.rules.session_opens_at`)."""
        session = self._db.one("SELECT opens_at, washout_after_wave FROM sessions WHERE reader_id=? AND session_no=?",
                               (reader_id, session_no))
        last = None
        if session["washout_after_wave"] is not None:
            last = self._db.scalar("SELECT MAX(submitted_at) FROM items WHERE reader_id=? AND wave=?",
                                   (reader_id, session["washout_after_wave"]))
        return rules.session_opens_at(parse_iso(session["opens_at"]), session["washout_after_wave"],
                                      None if last is None else parse_iso(last), self.study.design.washout_days)

    def _counts(self, reader_id: str) -> ReaderCounts:
        row = self._db.one(
            "SELECT COUNT(*) AS items_total, COUNT(submitted_at) AS items_done, SUM(training) AS training_total, "
            "SUM(CASE WHEN training = 1 AND submitted_at IS NOT NULL THEN 1 ELSE 0 END) AS training_done, "
            "MAX(submitted_at) AS last_submit_at FROM items WHERE reader_id=?", (reader_id,))
        sessions = self._db.scalar("SELECT COUNT(*) FROM sessions WHERE reader_id=?", (reader_id,))
        return ReaderCounts(int(row["items_total"]), int(row["items_done"]), int(row["training_total"] or 0),
                            int(row["training_done"] or 0), int(sessions), row["last_submit_at"])

    def _next_item_row(self, reader_id: str) -> Mapping[str, Any] | None:
        """:func:`~DigitalContrastReaderLib.store.rules.next_item` in SQL (index ``items_next``)."""
        return self._db.one("SELECT * FROM items WHERE reader_id=? AND submitted_at IS NULL ORDER BY order_index "
                            "LIMIT 1", (reader_id,))

    # -- answers (admin) -------------------------------------------------------------------------
    def _insert_revision(self, response_id: int, revision: int, value: Any, at: str, by: str, reason: str,
                         event_seq: int, study_sha256: str) -> None:
        self._db.execute(
            "INSERT INTO revisions(response_id, revision, value_json, changed_at, changed_by, reason, study_sha256, "
            "event_seq) VALUES (?,?,?,?,?,?,?,?)",
            (response_id, revision, canonical_json(value), at, by, reason, study_sha256, event_seq),
        )

    def _set_response(self, item_id: str, reader_id: str, task_id: str, key: str, value: Any, at: str, by: str,
                      reason: str, event_seq: int, study_sha256: str, simulated: bool) -> int:
        """Insert or change one answer and add its revision; returns the revision number."""
        old = self._db.one("SELECT response_id, revision FROM responses WHERE item_id=? AND question_key=?",
                           (item_id, key))
        if old is None:
            response_id = self._db.insert_id(
                "INSERT INTO responses(item_id, reader_id, task_id, question_key, value_json, revision, study_sha256, "
                "answered_at, modified_at, simulated) VALUES (?,?,?,?,?,1,?,?,?,?)",
                (item_id, reader_id, task_id, key, canonical_json(value), study_sha256, at, at, int(simulated)),
                "response_id")
            revision = 1
        else:
            response_id, revision = old["response_id"], old["revision"] + 1
            self._db.execute("UPDATE responses SET value_json=?, revision=?, modified_at=?, study_sha256=? "
                             "WHERE response_id=?", (canonical_json(value), revision, at, study_sha256, response_id))
        self._insert_revision(response_id, revision, value, at, by, reason, event_seq, study_sha256)
        return revision

    def correct_answer(self, item_id: str, question_key: str, value: Any, *, reason: str, corrected_by: str) -> int:
        """An admin correction of a submitted answer: a new revision with the reason, logged as
        an ``admin_correction`` event. Returns the new revision number."""
        rules.check_correction_request(reason, corrected_by)
        with self._transaction() as events:
            item = self.item(item_id)
            value = rules.validated_correction(self.study, item, question_key, value)
            old = self._db.one("SELECT value_json FROM responses WHERE item_id=? AND question_key=?",
                               (item_id, question_key))
            now = iso_utc(self._now())
            event = self._event(events, "admin_correction", item.reader_id, item_id, {
                "question_key": question_key, "from": None if old is None else json.loads(old["value_json"]),
                "to": value, "reason": reason.strip(), "corrected_by": corrected_by.strip(),
                "study_sha256": self.study.sha256,
            }, at=now)
            return self._set_response(item_id, item.reader_id, item.task_id, question_key, value, now,
                                      f"admin:{corrected_by.strip()}", reason.strip(), event["seq"],
                                      self.study.sha256, self.study.demo)

    # -- reading back ----------------------------------------------------------------------------
    def readers(self) -> list[ReaderRecord]:
        return [reader_record(r) for r in self._db.all("SELECT * FROM readers ORDER BY reader_id")]

    def items(self, reader_id: str | None = None) -> list[ItemRecord]:
        query = "SELECT * FROM items" + (" WHERE reader_id=?" if reader_id else "") + " ORDER BY reader_id, order_index"
        return [item_record(r) for r in self._db.all(query, (reader_id,) if reader_id else ())]

    def item(self, item_id: str) -> ItemRecord:
        """One item with its sources and timing (admin view)."""
        row = self._db.one("SELECT * FROM items WHERE item_id=?", (item_id,))
        if row is None:
            raise rules.unknown_item_error(item_id, self._name)
        return item_record(row)

    def images(self) -> list[ImageRecord]:
        """Every image of the study's cases: recorded path, where it is now, size, sha256 (admin view)."""
        base = self.study.base_dir
        return [ImageRecord(r["case_id"], r["source"], base / r["path"], r["size_bytes"], r["sha256"], r["path"],
                            r["blind_name"])
                for r in self._db.all("SELECT * FROM images ORDER BY case_id, source")]

    def study_versions(self) -> list[dict[str, Any]]:
        """Every version of the study file loaded into the store, oldest first: sha256, id, the
        store's version name, source path, when, active, and the reason and list of an accepted
        change of display or scheduling."""
        rows = self._db.all("SELECT study_sha256, study_id, version, source_path, loaded_at, active, accepted_change, "
                            "changes_json FROM studies ORDER BY loaded_at")
        return [{**{k: r[k] for k in ("study_sha256", "study_id", "version", "source_path", "loaded_at", "active",
                                      "accepted_change")}, "changes": json.loads(r["changes_json"])} for r in rows]

    def responses(self) -> list[ResponseRecord]:
        rows = self._db.all("SELECT * FROM responses ORDER BY reader_id, item_id, response_id")
        return [response_record(r) for r in rows]

    def revisions(self) -> list[RevisionRecord]:
        rows = self._db.all(
            "SELECT v.*, r.item_id, r.reader_id, r.question_key FROM revisions v JOIN responses r "
            "ON r.response_id = v.response_id ORDER BY v.response_id, v.revision")
        return [revision_record(r) for r in rows]

    def progress(self) -> list[ReaderProgress]:
        """Progress of every reader listed in the study (enrolled or not)."""
        enrolled = {r.reader_id for r in self.readers()}
        result = []
        for reader in self.study.readers:
            rid = reader.reader_id
            if rid not in enrolled:
                result.append(ReaderProgress(rid, reader.group, enrolled=False))
                continue
            row = self._next_item_row(rid)
            nxt = None if row is None else item_record(row)
            result.append(rules.reader_progress(
                rid, reader.group, self._counts(rid), next_item=nxt,
                next_opens_at=self.opens_at(rid, nxt.session_no) if nxt else None, now=self._now()))
        return result

    # -- images ----------------------------------------------------------------------------------
    @property
    def _verifier(self) -> ImageVerifier:
        if getattr(self, "_image_verifier", None) is None:
            self._image_verifier = ImageVerifier()
        return self._image_verifier

    def _image_path(self, ref: ImageRef, item_id: str) -> Path:
        """The verified blinded file of an image (a hard link or copy of the original under its
        neutral name in ``images_dir``, made when first needed)."""
        target = self.images_dir / ref.ref
        problem = self._verifier.problem(target, ref.sha256)
        if problem is None:
            return target
        row = self._db.one("SELECT path FROM images WHERE blind_name=?", (ref.ref,))
        original = self.study.base_dir / row["path"]
        if self._verifier.problem(original, ref.sha256) is not None:
            raise image_problem_error(item_id)
        try:
            link_or_copy(original, target)
        except OSError as error:
            raise StoreError(f"{self.images_dir}: the blinded copy of an image could not be written ({error.strerror}); "
                             "check the folder's permissions and free space.") from None
        if self._verifier.problem(target, ref.sha256) is not None:
            raise image_problem_error(item_id)
        return target

    # -- integrity -------------------------------------------------------------------------------
    def integrity_check(self) -> IntegrityReport:
        """The store's own low-level checks, then
        :func:`~DigitalContrastReaderLib.store.integrity.check_integrity` (hash chain, event log,
        answers against schedules and questions, images against their sha256)."""
        return check_integrity(self, event_log=self._event_log, low_level_problems=self._low_level_problems(),
                               notes=getattr(self, "recovery_notes", []), verifier=ImageVerifier())
