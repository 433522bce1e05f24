"""How an SQL store writes what ``merge`` imports (:class:`~DigitalContrastReaderLib.store.merge.ImportBatch`),
in one transaction, for SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from DigitalContrastReaderLib.study.canonical import canonical_json

from .merge import ImportBatch
from .sql_rows import write_schedule_rows


class SqlImport:
    """Mixin of :class:`~DigitalContrastReaderLib.store.sql_store.SqlStore`: ``import_records``."""

    def import_records(self, batch: ImportBatch) -> dict[str, int]:
        """Write ``batch`` (see :mod:`~DigitalContrastReaderLib.store.merge`) in one transaction:
        each site event appended to the chain with its ``origin`` (and a row in ``origins``, whose
        key refuses a second import), new readers with their schedules and token hashes, the
        items' timing, and the answers with their revisions (their event numbers translated to
        the central chain). A ``merge`` event closes it."""
        with self._transaction() as events:
            seq_of = {r["origin_seq"]: r["seq"] for r in self._db.all(
                "SELECT origin_seq, seq FROM origins WHERE origin_store_id=?", (batch.origin_store_id,))}
            for event in batch.events:
                origin = {"store_id": batch.origin_store_id, "site": batch.origin_site, "seq": event["seq"],
                          "at": event["at"], "prev_hash": event["prev_hash"], "hash": event["hash"]}
                imported = self._event(events, event["kind"], event["reader_id"], event["item_id"],
                                       {**event["payload"], "origin": origin})
                self._db.execute("INSERT INTO origins(origin_store_id, origin_seq, origin_hash, seq) VALUES (?,?,?,?)",
                                 (batch.origin_store_id, event["seq"], event["hash"], imported["seq"]))
                seq_of[event["seq"]] = imported["seq"]
            for reader, schedule in batch.readers:
                write_schedule_rows(self._db, schedule, schedule.study_sha256, reader.token)
            for item in batch.items:
                self._db.execute(
                    "UPDATE items SET shown_at=?, last_shown_at=?, first_interaction_at=?, submitted_at=?, "
                    "active_seconds=?, visits=? WHERE item_id=?",
                    (item.shown_at, item.last_shown_at, item.first_interaction_at, item.submitted_at,
                     item.active_seconds, item.visits, item.item_id))
            for answer in batch.answers:
                self._import_answer(answer, seq_of)
            counts = {"events": len(batch.events), "readers": len(batch.readers), "items": len(batch.items),
                      "answers": len(batch.answers)}
            self._event(events, "merge", None, None, {"store_id": batch.origin_store_id, "site": batch.origin_site,
                                                      **counts})
        return counts

    def _import_answer(self, answer: Any, seq_of: dict[int, int]) -> None:
        r = answer.response
        if answer.first_new == 1:
            response_id = self._db.insert_id(
                "INSERT INTO responses(item_id, reader_id, task_id, question_key, value_json, revision, study_sha256, "
                "answered_at, modified_at, simulated) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (r.item_id, r.reader_id, r.task_id, r.question_key, canonical_json(r.value), r.revision, r.study_sha256,
                 r.answered_at, r.modified_at, int(r.simulated)), "response_id")
        else:
            response_id = self._db.scalar("SELECT response_id FROM responses WHERE item_id=? AND question_key=?",
                                          (r.item_id, r.question_key))
            self._db.execute("UPDATE responses SET value_json=?, revision=?, modified_at=?, study_sha256=? "
                             "WHERE response_id=?", (canonical_json(r.value), r.revision, r.modified_at,
                                                     r.study_sha256, response_id))
        for v in answer.revisions:
            self._insert_revision(response_id, v.revision, v.value, v.changed_at, v.changed_by, v.reason,
                                  seq_of.get(v.event_seq, v.event_seq), v.study_sha256)
