"""The README stays a short user's guide, and it and the pages under docs/ hold together.

Checked over README.md and every docs/**/*.md:

* README.md has at most :data:`README_MAX_LINES` lines (the rest belongs in docs/);
* every relative link and image points at a file or folder that exists (paths are relative to
  the page, as GitHub resolves them);
* every link to a heading anchor (``page.md#anchor`` or ``#anchor``) names a heading of the target
  page, slugged as GitHub does (lower case, punctuation dropped, spaces to ``-``, ``-1``, ``-2``
  for repeated headings);
* every docs/ page is linked from at least one other page.

Links inside code blocks and inline code are not links. External links (``https:`` ...) are not
fetched. The tests at the end feed the checker broken pages to prove that it catches them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 450

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target "title") and ![alt](target); the text may hold one level of brackets.
LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.I)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass(frozen=True)
class Link:
    page: Path
    line: int
    target: str
    image: bool


def pages(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/."""
    found = [root / "README.md"] if (root / "README.md").is_file() else []
    return found + sorted((root / "docs").rglob("*.md"))


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans blanked."""
    out, fenced = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if match:
            if fenced is None:
                fenced = match.group(1)
            elif match.group(1) == fenced:
                fenced = None
            continue
        if fenced is None:
            out.append((number, INLINE_CODE.sub(lambda m: "code", line)))
    return out


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text, lower case, punctuation dropped, spaces to '-'."""
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\([^)]*\)", r"\1", text)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # HTML tags
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w is Unicode: letters, digits, underscore
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a page (repeated headings get -1, -2...) and explicit HTML anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    text = path.read_text(encoding="utf-8")
    fenced = None
    for line in text.splitlines():
        match = FENCE.match(line)
        if match:
            fenced = match.group(1) if fenced is None else (None if match.group(1) == fenced else fenced)
            continue
        if fenced is not None:
            continue
        found.update(HTML_ANCHOR.findall(line))
        heading = HEADING.match(line)
        if heading:
            slug = github_slug(heading.group(2))
            if slug in seen:
                seen[slug] += 1
                found.add(f"{slug}-{seen[slug]}")
            else:
                seen[slug] = 0
                found.add(slug)
    return found


def links_of(path: Path) -> list[Link]:
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in LINK.finditer(line):
            found.append(Link(path, number, match.group(3), bool(match.group(1))))
    return found


def resolve(link: Link, root: Path) -> tuple[Path | None, str]:
    """The file a relative link points at (None for an external link) and its anchor ('' when none)."""
    target = link.target
    if SCHEME.match(target):
        return None, ""
    path_part, _, anchor = target.partition("#")
    if not path_part:
        return link.page, anchor
    base = root if path_part.startswith("/") else link.page.parent
    return (base / path_part.lstrip("/")).resolve(), anchor


def problems(root: Path = ROOT, max_readme_lines: int = README_MAX_LINES) -> list[str]:
    """One line per broken rule: ``page:line: what is wrong``."""
    root = root.resolve()
    found = []
    readme = root / "README.md"
    if readme.is_file():
        count = len(readme.read_text(encoding="utf-8").splitlines())
        if count > max_readme_lines:
            found.append(f"README.md has {count} lines, more than {max_readme_lines}: move details to docs/")
    all_pages = [p.resolve() for p in pages(root)]
    linked: set[Path] = set()
    anchor_cache: dict[Path, set[str]] = {}
    for page in all_pages:
        for link in links_of(page):
            where = f"{page.relative_to(root)}:{link.line}"
            kind = "image" if link.image else "link"
            if not link.target:
                found.append(f"{where}: {kind} with an empty target")
                continue
            target, anchor = resolve(link, root)
            if target is None:
                continue
            if not target.is_relative_to(root):
                found.append(f"{where}: {kind} {link.target} points outside the repository")
                continue
            if not target.exists():
                found.append(f"{where}: {kind} {link.target}: {target.relative_to(root)} does not exist")
                continue
            if target != page:
                linked.add(target)
            if anchor and target.suffix == ".md":
                if target not in anchor_cache:
                    anchor_cache[target] = anchors(target)
                if anchor not in anchor_cache[target]:
                    found.append(f"{where}: {kind} {link.target}: {target.relative_to(root)} has no heading "
                                 f"with the anchor #{anchor}")
    for page in all_pages:
        if page.is_relative_to(root / "docs") and page not in linked:
            found.append(f"{page.relative_to(root)}: no page links to it (link it from docs/README.md)")
    return found


# ------------------------------------------------------------------------------------ the project
def test_readme_and_docs_hold_together():
    assert problems() == []


def test_readme_is_a_short_users_guide():
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move details to docs/"


def test_the_readme_links_the_docs_index():
    targets = {resolve(link, ROOT)[0] for link in links_of(ROOT / "README.md")}
    assert (ROOT / "docs" / "README.md").resolve() in targets


# ------------------------------------------------------------------------------- the checker works
@pytest.mark.parametrize(("heading", "slug"), [
    ("Speed on a CPU (`make bench`)", "speed-on-a-cpu-make-bench"),
    ("How far could any model get?", "how-far-could-any-model-get"),
    ("Tried after 1.8.0, not shipped", "tried-after-180-not-shipped"),
    ("Reader quick start (in Slicer)", "reader-quick-start-in-slicer"),
    ("The shipped model: `aorta-phantom-v1` 1.8.0", "the-shipped-model-aorta-phantom-v1-180"),
    ("**Bold** and [a link](x.md) & more", "bold-and-a-link--more"),
    ("Exit codes", "exit-codes"),
])
def test_github_slug(heading, slug):
    assert github_slug(heading) == slug


def _site(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


GOOD = {
    "README.md": "# Top\n\n## Install\n\nSee [docs](docs/README.md) and [install](#install).\n"
                 "![shot](pics/a.png)\n\n```\n[not a link](missing.md)\n```\n`[code](missing.md)`\n",
    "pics/a.png": "png",
    "docs/README.md": "# Index\n\n[Page](sub/page.md#a-section) [back](../README.md#install)\n",
    "docs/sub/page.md": "# Page\n\n## A section\n\n## A section\n\n[again](#a-section-1) "
                        "![up](../../pics/a.png) [web](https://example.org/#nowhere)\n",
}


PAGE = "# Page\n\n## A section\n\n"


def test_the_checker_accepts_a_good_site(tmp_path):
    assert problems(_site(tmp_path, GOOD)) == []


@pytest.mark.parametrize(("rel", "text", "why"), [
    ("docs/sub/page.md", PAGE + "[gone](missing.md)\n", "missing.md does not exist"),
    ("docs/sub/page.md", PAGE + "![pic](../pics/a.png)\n", "image ../pics/a.png"),
    ("docs/sub/page.md", PAGE + "[x](../../README.md#no-such-heading)\n", "no heading with the anchor #no-such-heading"),
    ("docs/sub/page.md", PAGE + "[x](#page-1)\n", "anchor #page-1"),
    ("docs/README.md", "# Index\n\nNothing linked here.\n", "docs/sub/page.md: no page links to it"),
    ("README.md", "# Top\n\n## Install\n\n[docs](docs/README.md)\n" + "line\n" * 460, "more than 450"),
])
def test_the_checker_catches_a_broken_site(tmp_path, rel, text, why):
    found = problems(_site(tmp_path, {**GOOD, rel: text}))
    assert len(found) == 1 and why in found[0], found
