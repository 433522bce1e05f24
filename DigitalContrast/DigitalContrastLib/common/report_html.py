"""Building blocks of the project's static HTML reports (reader study, cohort evaluation).

Plain HTML with one style sheet, tables with escaped cells, figures drawn with matplotlib's object
API on the Agg canvas (no pyplot and no global backend change: safe inside Slicer and in worker
processes) and saved as PNG files beside the report, each written atomically.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes

BASE_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { border-bottom: 2px solid #345; } h2 { margin-top: 2em; border-bottom: 1px solid #aaa; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #eef; } td:first-child, th:first-child { text-align: left; }
.note { color: #555; font-size: 0.9em; } .verdict { font-weight: 600; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.4em 0; }
"""


class RawHTML(str):
    """A table cell that is already HTML (a link, an image): :func:`html_table` does not escape it."""


def html_table(headers: Sequence[str], rows: Sequence[Sequence[object]], css_class: str | None = None,
               row_classes: Sequence[str | None] | None = None) -> str:
    """An HTML table; every cell is escaped unless it is :class:`RawHTML`.

    ``css_class`` is the table's class; ``row_classes`` gives each body row's class (None: none).
    """

    def cell(value: object) -> str:
        return str(value) if isinstance(value, RawHTML) else html.escape(str(value))

    def tr(k: int) -> str:
        name = row_classes[k] if row_classes is not None and k < len(row_classes) else None
        return f'<tr class="{html.escape(name)}">' if name else "<tr>"

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(tr(k) + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for k, row in enumerate(rows))
    table = f'<table class="{html.escape(css_class)}">' if css_class else "<table>"
    return f"{table}<tr>{head}</tr>{body}</table>"


def format_number(value: float | None, digits: int = 4, signed: bool = False) -> str:
    """``value`` with ``digits`` decimals (a leading ``+`` on positives when ``signed``); ``n/a`` for None,
    NaN or infinity."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:{'+' if signed else ''}.{digits}f}"


def format_ci(lower: float | None, upper: float | None, digits: int = 4) -> str:
    """``[lower, upper]`` with :func:`format_number`."""
    return f"[{format_number(lower, digits)}, {format_number(upper, digits)}]"


def html_img(src: str, alt: str) -> str:
    """An ``<img>`` element (``src`` relative to the report)."""
    return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}">'


class FigureWriter:
    """Saves matplotlib figures as PNG files under ``out_dir/folder`` and returns their paths
    relative to ``out_dir`` (what an ``<img src>`` in ``out_dir/report.html`` needs)."""

    def __init__(self, out_dir: Path, folder: str = "figures", dpi: int = 110) -> None:
        self.out_dir = Path(out_dir)
        self.folder = self.out_dir / folder
        self.dpi = dpi

    def save(self, name: str, draw: Callable, size=(6.4, 4.2)) -> str:
        """Draw with ``draw(figure)`` on a new Agg figure of ``size`` inches; write ``<name>.png``."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=size, dpi=self.dpi, layout="constrained")
        FigureCanvasAgg(figure)
        draw(figure)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        path = self.folder / f"{name}.png"
        atomic_write_bytes(path, buffer.getvalue())
        return path.relative_to(self.out_dir).as_posix()
