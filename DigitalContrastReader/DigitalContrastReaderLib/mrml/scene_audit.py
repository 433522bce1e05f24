"""Blinding audit of a MRML scene: does any text in it reveal where an image came from?

:func:`scene_strings` collects every text a scene holds: each node's name, description,
attributes, singleton tag and (for storable nodes) storage file names and URIs; every
subject-hierarchy item's name, attributes and UIDs; the current layout description; the scene's
URL and root folder; and the whole scene written as a ``.mrml`` string
(``SetSaveToXMLString`` + ``Commit``), which is what a saved scene would give away.
:func:`forbidden_tokens` lists what must not appear for a study: the source words
(``synthetic``, ``real``, ``contrast``, ``AI``), every model id, case id, original image file
name and stem and the name of the folder holding each image, and the neutral link names of the
items shown. :func:`audit_scene` returns every :class:`Leak` (empty when blind).

Matching is case-insensitive. The module's own name (:data:`ALLOWED_NAMES`: ``DigitalContrastReader``,
the name of its parameter node inside Slicer) is known to every reader and is the same for every
item; it is taken out of a text before matching, although it contains the word "contrast". Tokens shorter than :data:`SUBSTRING_MIN_LENGTH` characters must
stand alone (not inside a longer word: ``real`` does not match ``Rainbow`` or ``surreal``;
``AI`` does not match ``Crosshair``), longer ones match anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from DigitalContrastReaderLib.study.blinding import HANDLE_SINGLE, HANDLES_PAIR, ReaderItem
from DigitalContrastReaderLib.study.study import Study

#: Words that say what an image is (the sources and how they are made).
SOURCE_WORDS = ("synthetic", "real", "contrast", "noncontrast", "AI")
#: Exact names removed from a text before matching (see the module docstring).
ALLOWED_NAMES = ("DigitalContrastReader",)
#: Tokens this short must stand alone to count (see the module docstring).
SUBSTRING_MIN_LENGTH = 6
#: File or folder stems too generic to reveal anything (and shared with neutral names).
NEUTRAL_STEMS = {h.lower() for h in (HANDLE_SINGLE, *HANDLES_PAIR)} | {"image", "images", "volume", "data", "cases", "case"}


@dataclass(frozen=True)
class Leak:
    """One text in the scene that contains a forbidden token."""

    where: str
    token: str
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.token!r} in {self.text[:160]!r}"


def _stem(name: str) -> str:
    lower = name.lower()
    for suffix in (".nii.gz", ".seg.nrrd"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def forbidden_tokens(study: Study, items: Iterable[ReaderItem] = (), *, hide_case_ids: bool = True) -> list[str]:
    """What no reader-visible text may contain for ``study``.

    Args:
        items: reader items shown (their neutral link names are forbidden as well: a file name
            in the scene is a leak even when it is neutral).
        hide_case_ids: case ids are forbidden (the reader module never shows them).
    """
    tokens: set[str] = set(SOURCE_WORDS)
    for case in study.cases:
        if hide_case_ids:
            tokens.add(case.case_id)
        for source, path in case.images.items():
            if ":" in source:
                tokens.add(source.split(":", 1)[1])  # the model id
            path = Path(path)
            for name in (path.name, _stem(path.name), path.parent.name):
                if name and name.lower() not in NEUTRAL_STEMS:
                    tokens.add(name)
    for item in items:
        for image in item.images:
            tokens.add(Path(image["path"]).name)
    return sorted(tokens, key=str.lower)


def _pattern(token: str) -> re.Pattern[str]:
    escaped = re.escape(token)
    if len(token) < SUBSTRING_MIN_LENGTH:
        escaped = rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])"
    return re.compile(escaped, re.IGNORECASE)


def find_leaks(strings: Iterable[tuple[str, str]], tokens: Iterable[str],
               allowed: Iterable[str] = ALLOWED_NAMES) -> list[Leak]:
    """Every ``(where, text)`` whose text contains one of ``tokens`` (see the module docstring)."""
    patterns = [(token, _pattern(token)) for token in tokens if token]
    allowed = [a for a in allowed if a]
    leaks = []
    for where, text in strings:
        if not text:
            continue
        checked = text
        for name in allowed:
            checked = checked.replace(name, " ")
        for token, pattern in patterns:
            if pattern.search(checked):
                leaks.append(Leak(where, token, text))
    return leaks


def string_list(values: Any) -> list[str]:
    """Names from VTK (a ``vtkStringArray``, a tuple or a list) as a Python list."""
    if values is None:
        return []
    if hasattr(values, "GetNumberOfValues"):
        return [values.GetValue(i) for i in range(values.GetNumberOfValues())]
    return [str(v) for v in values]


def scene_xml(scene: Any) -> str:
    """The scene written as a ``.mrml`` document, in memory (nothing is written to disk)."""
    scene.SetSaveToXMLString(1)
    try:
        scene.Commit()
        return scene.GetSceneXMLString() or ""
    finally:
        scene.SetSaveToXMLString(0)


def scene_strings(scene: Any) -> list[tuple[str, str]]:
    """Every text of ``scene`` as ``(where, text)`` pairs (see the module docstring)."""
    import vtk

    strings: list[tuple[str, str]] = [("scene URL", scene.GetURL() or ""), ("scene root folder", scene.GetRootDirectory() or "")]
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        where = f"{node.GetClassName()} {node.GetID()}"
        strings.append((f"{where} name", node.GetName() or ""))
        strings.append((f"{where} description", node.GetDescription() or ""))
        strings.append((f"{where} singleton tag", node.GetSingletonTag() or ""))
        for key in string_list(node.GetAttributeNames()):
            strings.append((f"{where} attribute", f"{key}={node.GetAttribute(key)}"))
        if node.IsA("vtkMRMLStorageNode"):
            strings.append((f"{where} file name", node.GetFileName() or ""))
            strings.append((f"{where} URI", node.GetURI() or ""))
            for n in range(node.GetNumberOfFileNames()):
                strings.append((f"{where} file name {n}", node.GetNthFileName(n) or ""))
        if node.IsA("vtkMRMLLayoutNode"):
            strings.append((f"{where} current layout", node.GetCurrentLayoutDescription() or ""))
        if node.IsA("vtkMRMLSubjectHierarchyNode"):
            children = vtk.vtkIdList()
            node.GetItemChildren(node.GetSceneItemID(), children, True)
            for i in range(children.GetNumberOfIds()):
                item = children.GetId(i)
                item_where = f"subject hierarchy item {item}"
                strings.append((f"{item_where} name", node.GetItemName(item) or ""))
                strings.append((f"{item_where} level", node.GetItemLevel(item) or ""))
                for key in string_list(node.GetItemAttributeNames(item)):
                    strings.append((f"{item_where} attribute", f"{key}={node.GetItemAttribute(item, key)}"))
                for key in string_list(node.GetItemUIDNames(item)):
                    strings.append((f"{item_where} UID", f"{key}={node.GetItemUID(item, key)}"))
    strings.append(("scene as .mrml", scene_xml(scene)))
    return strings


def audit_scene(scene: Any, tokens: Iterable[str]) -> list[Leak]:
    """Every text of ``scene`` that reveals a forbidden token (empty: the scene is blind)."""
    return find_leaks(scene_strings(scene), list(tokens))
