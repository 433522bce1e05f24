"""``merge``: import the stores of sites that read offline into the central store.

A site store is made from the same study file (``init STUDY --db SITE.sqlite --site NAME``);
its readers are enrolled and read there. :func:`merge_store` brings into the central store what
the site has and the central store lacks:

* the site's events, appended to the central hash chain in their order, each with its
  ``origin`` (the site store's id and name, and the event's number, time, link and hash there),
  so every imported event can be traced and re-verified;
* readers enrolled at the site (their stored schedule and token hash), the timing of their
  items, their answers and every revision.

It is idempotent: events already imported (the central store records each origin) and rows
already equal are skipped, so merging the same store again changes nothing. It refuses, naming
the item or reader, anything that would contradict the central store: a reader with another
schedule, an item answered or revised differently, a site event that differs from the one
imported before (a rewritten history). Both hash chains are verified first. Everything is
written in one transaction of the central store (``AnswerStore.import_records``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from DigitalContrastReaderLib.study.canonical import canonical_json
from DigitalContrastReaderLib.study.errors import StoreError
from DigitalContrastReaderLib.study.schedule import Schedule

from .base import AnswerStore, ItemRecord, ReaderRecord, ResponseRecord, RevisionRecord
from .eventlog import chain_problems

TIMING_FIELDS = ("shown_at", "last_shown_at", "first_interaction_at", "submitted_at", "active_seconds", "visits")


@dataclass(frozen=True)
class ImportedAnswer:
    """One answer of the site: the response as it is there, and the revisions the central store
    lacks (``first_new`` = the number of the first of them; 1 when the answer is new)."""

    response: ResponseRecord
    revisions: tuple[RevisionRecord, ...]
    first_new: int


@dataclass
class ImportBatch:
    """What one merge writes into the central store (in one transaction)."""

    origin_store_id: str
    origin_site: str
    events: list[dict[str, Any]] = field(default_factory=list)
    readers: list[tuple[ReaderRecord, Schedule]] = field(default_factory=list)
    items: list[ItemRecord] = field(default_factory=list)  # items whose timing is set to the site's
    answers: list[ImportedAnswer] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.events or self.readers or self.items or self.answers)


@dataclass(frozen=True)
class MergeReport:
    site: str
    store_id: str
    counts: dict[str, int]

    def text(self) -> str:
        if not any(self.counts.values()):
            return f"{self.site}: nothing new to import (merged before)"
        return f"{self.site}: imported " + ", ".join(f"{v} {k}" for k, v in self.counts.items())


def _conflict(site: str, what: str) -> StoreError:
    return StoreError(f"{site}: {what}; nothing was imported. Resolve it in one of the stores (or leave that "
                      "store out), then merge again.", code="merge_conflict")


def _unknown_version(site: str, what: str, sha256: str) -> StoreError:
    return StoreError(f"{site}: {what} under a study version ({sha256[:12]}...) the central store does not hold; "
                      "load that study file into the central store first ('init STUDY --db CENTRAL'), then merge.",
                      code="unknown_version")


def _imported_origins(central: AnswerStore, store_id: str) -> dict[int, dict[str, Any]]:
    """The site events imported before: their number there -> their origin record."""
    found = {}
    for event in central.events():
        origin = event["payload"].get("origin") if isinstance(event["payload"], dict) else None
        if origin and origin.get("store_id") == store_id:
            found[origin["seq"]] = origin
    return found


def plan_merge(central: AnswerStore, site: AnswerStore) -> ImportBatch:
    """What merging ``site`` into ``central`` would write (see the module docstring).

    Raises:
        StoreError: a broken hash chain, another study, or a conflict (one sentence naming it).
    """
    name = site.site or site.location
    if site.store_id == central.store_id:
        raise StoreError(f"{name}: this is the central store itself; name the site stores to merge.", code="merge_self")
    for label, store in (("central store", central), (f"site store {name}", site)):
        problems = chain_problems(store.events())
        if problems:
            raise StoreError(f"{store.location}: the hash chain of the {label} is broken ({problems[0]}); nothing was "
                             "imported, run 'digital-contrast-reader check' on it.", code="broken_chain")
    if site.study.study_id != central.study.study_id:
        raise StoreError(f"{name}: it holds study '{site.study.study_id}', the central store '{central.study.study_id}'; "
                         "merge stores of one study only.", code="other_study")
    known_versions = {v["study_sha256"] for v in central.study_versions()}
    batch = ImportBatch(site.store_id, name)

    imported = _imported_origins(central, site.store_id)
    for event in site.events():
        before = imported.get(event["seq"])
        if before is None:
            batch.events.append(event)
        elif before["hash"] != event["hash"]:
            raise _conflict(name, f"its event {event['seq']} differs from the one imported before (its history was "
                                  "rewritten)")

    central_readers = {r.reader_id: r for r in central.readers()}
    central_items = {i.item_id: i for i in central.items()}
    site_answers: dict[tuple[str, str], ResponseRecord] = {(r.item_id, r.question_key): r for r in site.responses()}
    central_answers = {(r.item_id, r.question_key): r for r in central.responses()}
    site_revisions: dict[int, list[RevisionRecord]] = defaultdict(list)
    for v in site.revisions():
        site_revisions[v.response_id].append(v)
    central_revisions: dict[int, list[RevisionRecord]] = defaultdict(list)
    for v in central.revisions():
        central_revisions[v.response_id].append(v)

    for reader in site.readers():
        schedule = site.schedule(reader.reader_id)
        mine = central_readers.get(reader.reader_id)
        if mine is None:
            if schedule.study_sha256 not in known_versions:
                raise _unknown_version(name, f"reader '{reader.reader_id}' was enrolled", schedule.study_sha256)
            batch.readers.append((reader, schedule))
        elif mine.schedule_sha256 != reader.schedule_sha256:
            raise _conflict(name, f"reader '{reader.reader_id}' is enrolled there with another schedule than in the "
                                  "central store")
    for item in site.items():
        mine = central_items.get(item.item_id)
        if mine is not None and (mine.reader_id, mine.case_id, mine.sources) != (item.reader_id, item.case_id,
                                                                                 item.sources):
            raise _conflict(name, f"item '{item.item_id}' shows other images there than in the central store")
        theirs = tuple(getattr(item, f) for f in TIMING_FIELDS)
        ours = tuple(getattr(mine, f) for f in TIMING_FIELDS) if mine else (None, None, None, None, None, 0)
        if ours != theirs:
            if mine is not None and not _behind(mine, item):
                raise _conflict(name, f"item '{item.item_id}' was read in the central store as well (its timing "
                                      "differs in both)")
            batch.items.append(item)
    for key, response in site_answers.items():
        revisions = sorted(site_revisions[response.response_id], key=lambda v: v.revision)
        for v in revisions:
            if v.study_sha256 not in known_versions:
                raise _unknown_version(name, f"item '{response.item_id}' was answered", v.study_sha256)
        mine = central_answers.get(key)
        if mine is None:
            batch.answers.append(ImportedAnswer(response, tuple(revisions), 1))
            continue
        ours = sorted(central_revisions[mine.response_id], key=lambda v: v.revision)
        if [_revision_key(v) for v in ours] != [_revision_key(v) for v in revisions[: len(ours)]]:
            raise _conflict(name, f"item '{response.item_id}' has another answer to '{response.question_key}' there "
                                  "than in the central store")
        if len(revisions) > len(ours):
            batch.answers.append(ImportedAnswer(response, tuple(revisions[len(ours):]), len(ours) + 1))
    return batch


def _behind(central: ItemRecord, site: ItemRecord) -> bool:
    """Whether the central copy of an item is an earlier state of the site's (read on at the site only)."""
    for name in ("shown_at", "first_interaction_at", "submitted_at"):
        if getattr(central, name) is not None and getattr(central, name) != getattr(site, name):
            return False
    return central.visits <= site.visits


def _revision_key(v: RevisionRecord) -> tuple[Any, ...]:
    return (v.revision, canonical_json(v.value), v.changed_at, v.changed_by, v.reason, v.study_sha256)


def merge_store(central: AnswerStore, site: AnswerStore) -> MergeReport:
    """Merge one site store into the central store (see the module docstring)."""
    batch = plan_merge(central, site)
    counts = {"events": 0, "readers": 0, "items": 0, "answers": 0}
    if not batch.empty:
        counts = central.import_records(batch)
    return MergeReport(batch.origin_site, batch.origin_store_id, counts)
