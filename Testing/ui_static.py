"""Static checks of Slicer module files and their Qt Designer ``.ui`` files, without Slicer.

Used by ``test_module_ui.py`` for EVERY module that has ``<Module>/Resources/UI/<Module>.ui``
(a module that gains a ``.ui`` is covered without editing the test). What is read:

* the ``.ui`` XML: widget names and classes, custom widgets and the class each extends, the
  ``SlicerParameterName`` dynamic properties (the binding ``connectGui`` makes);
* the module file's syntax tree (never imported: it needs the Slicer application): every
  ``self.ui.<name>``, the fields of the ``@parameterNodeWrapper`` class and their types, and
  module-level constants such as ``UNBOUND_PARAMETERS``;
* the ``.ui`` loaded for real with PySide6's ``QUiLoader`` (offscreen), after Slicer's custom
  widgets are rewritten to the Qt base class they declare (``<extends>``).
"""

from __future__ import annotations

import ast
import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PARAMETER_NAME_PROPERTY = "SlicerParameterName"

#: Widget classes Slicer's parameterNodeWrapper can bind to a field of each type (its GUI
#: connectors match the widget's exact class). Extend it when a module uses another pair.
CONNECTOR_WIDGETS: dict[str, set[str]] = {
    "bool": {"QCheckBox", "QPushButton"},
    "int": {"QSpinBox", "QSlider", "QComboBox"},
    "float": {"QDoubleSpinBox", "ctkSliderWidget", "QComboBox"},
    "str": {"QLineEdit", "QTextEdit", "QComboBox"},
    "pathlib.Path": {"ctkPathLineEdit", "ctkDirectoryButton"},
    "FloatRange": {"ctkRangeWidget"},
    "enum": {"QComboBox"},
    "node": {"qMRMLNodeComboBox"},
}


@dataclass(frozen=True)
class ModuleUI:
    """A scripted module with a Designer file: ``<root>/<module>/<module>.py`` and
    ``<root>/<module>/Resources/UI/<module>.ui``."""

    module: str
    module_file: Path
    ui_file: Path

    def __str__(self) -> str:  # pytest ids
        return self.module


def modules_with_ui(root: Path = ROOT) -> list[ModuleUI]:
    """Every module folder under ``root`` whose module file has a ``.ui`` of the same name."""
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        module_file = folder / f"{folder.name}.py"
        ui_file = folder / "Resources" / "UI" / f"{folder.name}.ui"
        if module_file.is_file() and ui_file.is_file():
            found.append(ModuleUI(folder.name, module_file, ui_file))
    return found


# -------------------------------------------------------------------------------- the .ui XML
def _tree(ui_file: Path) -> ElementTree.Element:
    return ElementTree.parse(ui_file).getroot()


def ui_widgets(ui_file: Path) -> dict[str, str]:
    """Widget name -> class (as written, custom classes included) of every ``<widget>``."""
    return {w.get("name"): w.get("class") for w in _tree(ui_file).iter("widget")}


def ui_widget_names_in_order(ui_file: Path) -> list[str]:
    """Every ``<widget>`` name, repeats kept (to find duplicates)."""
    return [w.get("name") for w in _tree(ui_file).iter("widget")]


def ui_custom_widgets(ui_file: Path) -> dict[str, str]:
    """Custom widget class -> the class it extends (``<customwidgets>``)."""
    result = {}
    for custom in _tree(ui_file).iter("customwidget"):
        result[custom.findtext("class")] = custom.findtext("extends")
    return result


def ui_parameter_bindings(ui_file: Path) -> dict[str, str]:
    """Widget name -> its ``SlicerParameterName`` (only widgets that have one)."""
    bindings = {}
    for widget in _tree(ui_file).iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == PARAMETER_NAME_PROPERTY:
                bindings[widget.get("name")] = (prop.findtext("string") or "").strip()
    return bindings


def ui_parameter_properties_are_dynamic(ui_file: Path) -> list[str]:
    """Widgets whose ``SlicerParameterName`` lacks ``stdset="0"`` (it would be dropped on load)."""
    bad = []
    for widget in _tree(ui_file).iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == PARAMETER_NAME_PROPERTY and prop.get("stdset") != "0":
                bad.append(widget.get("name"))
    return bad


def base_class(cls: str, custom: dict[str, str]) -> str:
    """The Qt class a (possibly custom) widget class falls back to, following ``<extends>``."""
    seen = set()
    while cls in custom and cls not in seen:
        seen.add(cls)
        cls = custom[cls]
    return cls


def ui_xml_with_base_classes(ui_file: Path) -> bytes:
    """The ``.ui`` with every custom widget class replaced by its base class, and the
    ``<customwidgets>`` and ``<connections>`` sections removed (their slots need Slicer)."""
    root = _tree(ui_file)
    custom = ui_custom_widgets(ui_file)
    for widget in root.iter("widget"):
        widget.set("class", base_class(widget.get("class"), custom))
    for section in ("customwidgets", "connections"):
        for element in root.findall(section):
            root.remove(element)
    return ElementTree.tostring(root, encoding="utf-8")


def load_ui_offscreen(ui_file: Path) -> Any:
    """Load the ``.ui`` (base classes) with PySide6's ``QUiLoader`` on the offscreen platform.

    Returns the top-level ``QWidget``; the caller keeps a reference while it inspects it.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    buffer = QBuffer()
    buffer.setData(QByteArray(ui_xml_with_base_classes(ui_file)))
    buffer.open(QIODevice.ReadOnly)
    widget = QUiLoader().load(buffer)
    buffer.close()
    if widget is None:
        raise RuntimeError(f"QUiLoader could not load {ui_file}")
    widget._keep_app_alive = app  # the application must outlive the widget
    return widget


# -------------------------------------------------------------------------------- the module file
def _module_tree(module_file: Path) -> ast.Module:
    return ast.parse(module_file.read_text(encoding="utf-8"), filename=str(module_file))


def ui_names_used(module_file: Path) -> set[str]:
    """Every ``<name>`` of ``self.ui.<name>`` in the module file."""
    names = set()
    for node in ast.walk(_module_tree(module_file)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
            names.add(node.attr)
    return names


def _is_parameter_node_wrapper(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Name) and target.id == "parameterNodeWrapper") or \
        (isinstance(target, ast.Attribute) and target.attr == "parameterNodeWrapper")


def parameter_node_classes(module_file: Path) -> list[ast.ClassDef]:
    """The classes decorated with ``@parameterNodeWrapper``."""
    return [node for node in _module_tree(module_file).body if isinstance(node, ast.ClassDef)
            and any(_is_parameter_node_wrapper(d) for d in node.decorator_list)]


def parameter_node_fields(module_file: Path) -> dict[str, ast.expr]:
    """Field name -> annotation of every ``@parameterNodeWrapper`` class in the module file."""
    fields = {}
    for cls in parameter_node_classes(module_file):
        for statement in cls.body:
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                fields[statement.target.id] = statement.annotation
    return fields


def module_constant(module_file: Path, name: str, default: Any = None) -> Any:
    """The literal value of a module-level constant (``UNBOUND_PARAMETERS = {...}``)."""
    for node in _module_tree(module_file).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name) and target.id == name and node.value is not None:
                return ast.literal_eval(node.value)
    return default


def _enum_classes(module_file: Path) -> set[str]:
    names = set()
    for node in _module_tree(module_file).body:
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b).split(".")[-1] in ("Enum", "IntEnum", "StrEnum")
                                                  for b in node.bases):
            names.add(node.name)
    return names


def field_kind(annotation: ast.expr, module_file: Path) -> str:
    """The key of :data:`CONNECTOR_WIDGETS` for a field annotation (``Annotated`` unwrapped)."""
    if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value).split(".")[-1] == "Annotated":
        inner = annotation.slice.elts[0] if isinstance(annotation.slice, ast.Tuple) else annotation.slice
        return field_kind(inner, module_file)
    text = ast.unparse(annotation)
    short = text.split(".")[-1]
    if text in ("pathlib.Path", "Path", "pathlib.PurePath"):
        return "pathlib.Path"
    if short.startswith("vtkMRML") or "vtkMRML" in text:
        return "node"
    if short in _enum_classes(module_file):
        return "enum"
    return short
