"""What a reader's screen may know about an item, and nothing more.

A reader-facing UI receives :class:`ReaderItem` objects: neutral image handles (``Image`` for a
single image, ``Image A`` = left / ``Image B`` = right for a pair), a path to load each image
from, the questions and the reader's own answers. It never receives the case id, the source
(real/synthetic), a model id or an original file name: each image is a neutral reference (a
random token and the format's extension) and the path of a hard link or copy of the image under
that name, in a folder of such files (``<db>-images/`` beside a SQLite store, or the folder a
reading station is given); never a symbolic link, whose target would name the original. The
mapping handle -> source lives only in the store (``items.source_a`` / ``source_b``).

One leak this cannot hide is the file format: if the real and synthetic images of a case are
stored in different formats the extension differs; :func:`~DigitalContrastReaderLib.study.config.load_study`
warns about it.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HANDLE_SINGLE = "Image"
HANDLES_PAIR = ("Image A", "Image B")


def image_handles(layout: str) -> tuple[str, ...]:
    """The neutral handles of a layout, in display order (left to right)."""
    return (HANDLE_SINGLE,) if layout == "single" else HANDLES_PAIR


def new_blind_name(original: Path) -> str:
    """A random file name that keeps only the format extension of ``original``."""
    name = original.name.lower()
    if name.endswith(".nii.gz"):
        ext = ".nii.gz"
    elif original.is_dir():
        ext = ""
    else:
        ext = original.suffix.lower()
    return secrets.token_hex(8) + ext


@dataclass(frozen=True)
class ReaderItem:
    """One item as a reader-facing UI sees it (blinded).

    Attributes:
        item_id: neutral id (``<reader>-<position>``).
        session_no / sessions_total, position_in_session / items_in_session,
        order_index / items_total: where the reader is (1-based).
        task_id, task_type, instructions: the task (the same for every item of the task).
        training: a training item (not analysed).
        layout: ``single`` or ``pair``.
        images: ``[{"handle": "Image"|"Image A"|"Image B", "ref": <neutral file name>, "path": <its
            verified copy or hard link>}]``, left to right.
        display: window/level in HU and the layout of views.
        questions: the question specs of the task (identical for every item of the task).
        answers: the reader's current answers (``{}`` before the first submit).
        done: submitted already. editable: the answers may still be changed.
        opens_at: None when the item can be read now, else the ISO time it opens (washout).
    """

    item_id: str
    session_no: int
    sessions_total: int
    position_in_session: int
    items_in_session: int
    order_index: int
    items_total: int
    task_id: str
    task_type: str
    instructions: str
    training: bool
    layout: str
    images: tuple[dict[str, str], ...]
    display: dict[str, Any]
    questions: tuple[dict[str, Any], ...]
    answers: dict[str, Any]
    done: bool
    editable: bool
    opens_at: str | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["images"] = [dict(i) for i in self.images]
        data["questions"] = [dict(q) for q in self.questions]
        return data

    def text(self) -> str:
        """A plain-text rendering for the command line (neutral, like the dict)."""
        lines = [
            f"Item {self.item_id}: session {self.session_no}/{self.sessions_total}, "
            f"item {self.position_in_session}/{self.items_in_session} (overall {self.order_index}/{self.items_total})"
            + (" [training]" if self.training else ""),
        ]
        if self.opens_at:
            lines.append(f"Not open yet: this item opens at {self.opens_at} (washout).")
        lines.append(self.instructions)
        lines.append(f"Window {self.display['window']:g} / level {self.display['level']:g} HU")
        for image in self.images:
            lines.append(f"  {image['handle']}: {image['path']}")
        for q in self.questions:
            choices = q.get("levels") or q.get("options") or []
            scale = "; ".join(f"{c['value']} = {c['label']}" for c in choices)
            extra = f" [{scale}]" if scale else f" [{q['type']}]"
            answered = f"  (answer: {self.answers[q['key']]!r})" if q["key"] in self.answers else ""
            lines.append(f"  {q['key']}{'' if q['required'] else ' (optional)'}: {q['text']}{extra}{answered}")
        return "\n".join(lines)
