"""Metrics (dicts) <-> ``vtkMRMLTableNode``, for Slicer's Tables module and plots.

One dict is one row; the keys are the column names and, by the project's naming rule, carry
their unit (``lumen_mae_hu``, ``diameter_error_mm``, ``seconds_on_case``). The unit is also set
as the column's unit label (from the suffix, :data:`UNIT_SUFFIXES`), which Slicer shows.

Column types follow the values: all ``bool`` -> bit, all integers -> int (64-bit beyond the
int32 range), any other number -> double, anything else -> string. Missing values (a key absent from a row, or ``None``) are NaN
in numeric columns (an int column with a gap becomes double) and ``""`` in string columns; they
come back as ``None``. A bool column with gaps is stored as strings (``"True"``/``"False"``).

``slicer``/``vtk`` are imported inside the functions.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

#: Name suffix -> unit label shown by Slicer (the longest matching suffix wins).
UNIT_SUFFIXES: dict[str, str] = {
    "_hu": "HU",
    "_mm": "mm",
    "_mm2": "mm²",
    "_ml": "mL",
    "_db": "dB",
    "_s": "s",
    "_seconds": "s",
    "_ms": "ms",
    "_pct": "%",
    "_percent": "%",
    "_kwh": "kWh",
    "_g_co2e": "g CO2e",
    "_mib": "MiB",
}

#: Name prefix -> unit label, for names that lead with their unit (``seconds_on_case``).
UNIT_PREFIXES: dict[str, str] = {"seconds_": "s"}

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def unit_of(column: str) -> str:
    """The unit label implied by a column name's suffix or prefix (``""`` when it names none)."""
    name = column.lower()
    for prefix, unit in UNIT_PREFIXES.items():
        if name.startswith(prefix):
            return unit
    matches = [suffix for suffix in UNIT_SUFFIXES if name.endswith(suffix)]
    return UNIT_SUFFIXES[max(matches, key=len)] if matches else ""


def _column_type(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "bit" if len(present) == len(values) else "string"
    if present and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in present):
        if len(present) < len(values):
            return "double"
        if all(_INT32[0] <= int(v) <= _INT32[1] for v in present):
            return "int"
        return "long" if all(_INT64[0] <= int(v) <= _INT64[1] for v in present) else "double"
    if present and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present):
        return "double"
    return "string"


def metrics_to_table_node(scene: Any, metrics: Mapping[str, Any] | Sequence[Mapping[str, Any]], name: str) -> Any:
    """A new ``vtkMRMLTableNode`` in ``scene`` with one row per metrics dict.

    Args:
        scene: the ``vtkMRMLScene``.
        metrics: one dict (one row) or a list of dicts; columns are the union of the keys in
            first-seen order.
        name: the table node's name.
    """
    import slicer
    import vtk

    rows = [dict(metrics)] if isinstance(metrics, Mapping) else [dict(row) for row in metrics]
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)

    node = slicer.vtkMRMLTableNode()
    node.SetName(name)
    scene.AddNode(node)
    table = node.GetTable()
    for column in columns:
        values = [row.get(column) for row in rows]
        kind = _column_type(values)
        array = {
            "bit": vtk.vtkBitArray,
            "int": vtk.vtkIntArray,
            "long": vtk.vtkLongLongArray,
            "double": vtk.vtkDoubleArray,
        }.get(kind, vtk.vtkStringArray)()
        array.SetName(str(column))
        array.SetNumberOfValues(len(values))
        for index, value in enumerate(values):
            if kind == "double":
                array.SetValue(index, math.nan if value is None else float(value))
            elif kind in ("int", "long", "bit"):
                array.SetValue(index, int(value))
            else:
                array.SetValue(index, "" if value is None else str(value))
        table.AddColumn(array)
        unit = unit_of(str(column))
        if unit:
            node.SetColumnUnitLabel(str(column), unit)
    table.Modified()
    return node


def table_node_to_metrics(node: Any) -> list[dict[str, Any]]:
    """The rows of a table node as dicts (inverse of :func:`metrics_to_table_node`).

    Bit columns come back as ``bool``, int as ``int``, double as ``float`` (NaN as ``None``),
    string as ``str`` (``""`` as ``None``).
    """
    import vtk

    table = node.GetTable()
    rows: list[dict[str, Any]] = [{} for _ in range(table.GetNumberOfRows())]
    for column_index in range(table.GetNumberOfColumns()):
        array = table.GetColumn(column_index)
        name = array.GetName()
        for row_index, row in enumerate(rows):
            if isinstance(array, vtk.vtkBitArray):
                row[name] = bool(array.GetValue(row_index))
            elif isinstance(array, vtk.vtkStringArray):
                text = array.GetValue(row_index)
                row[name] = text if text != "" else None
            elif isinstance(array, vtk.vtkDataArray) and array.GetDataType() in (vtk.VTK_FLOAT, vtk.VTK_DOUBLE):
                value = float(array.GetValue(row_index))
                row[name] = None if math.isnan(value) else value
            else:
                row[name] = int(array.GetValue(row_index))
    return rows
