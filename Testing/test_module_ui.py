"""Every scripted module's ``.ui`` matches its module file: the checks Slicer would otherwise
only fail at run time (an AttributeError on ``self.ui.x``, a parameter silently not bound, a
widget class the parameter node cannot drive, a ``.ui`` that does not load).

Parametrized over every module with ``<Module>/Resources/UI/<Module>.ui`` (``ui_static.modules_with_ui``),
so a module that gains a ``.ui`` is checked without editing this file.
"""

from __future__ import annotations

import ast

import pytest
from ui_static import (
    CONNECTOR_WIDGETS,
    base_class,
    field_kind,
    load_ui_offscreen,
    module_constant,
    modules_with_ui,
    parameter_node_classes,
    parameter_node_fields,
    ui_custom_widgets,
    ui_names_used,
    ui_parameter_bindings,
    ui_parameter_properties_are_dynamic,
    ui_widget_names_in_order,
    ui_widgets,
)

MODULES = modules_with_ui()


def test_the_reader_module_is_among_the_checked_modules():
    assert "DigitalContrastReader" in [m.module for m in MODULES]


@pytest.mark.parametrize("module", MODULES, ids=str)
def test_every_self_ui_name_is_a_widget_of_the_ui(module):
    widgets = ui_widgets(module.ui_file)
    used = ui_names_used(module.module_file)
    assert used, f"{module.module_file.name} never uses self.ui"
    missing = sorted(used - set(widgets))
    assert missing == [], f"{module.module_file.name} uses self.ui.{missing[0] if missing else ''} but " \
                          f"{module.ui_file.name} has no widget of that name"


@pytest.mark.parametrize("module", MODULES, ids=str)
def test_widget_names_are_unique_and_custom_widgets_are_declared(module):
    names = ui_widget_names_in_order(module.ui_file)
    assert len(names) == len(set(names)), f"repeated widget names in {module.ui_file.name}"
    custom = ui_custom_widgets(module.ui_file)
    qt_like = {cls for cls in ui_widgets(module.ui_file).values() if cls.startswith("Q") or cls == "Line"}  # Designer's line
    for cls in set(ui_widgets(module.ui_file).values()) - qt_like:
        assert cls in custom, f"{cls} is used in {module.ui_file.name} but not declared in <customwidgets>"
        assert base_class(cls, custom).startswith("Q"), f"{cls} does not extend a Qt class"


@pytest.mark.parametrize("module", MODULES, ids=str)
def test_parameter_names_and_parameter_node_fields_match_both_ways(module):
    classes = parameter_node_classes(module.module_file)
    assert len(classes) == 1, f"{module.module_file.name} needs exactly one @parameterNodeWrapper class"
    fields = parameter_node_fields(module.module_file)
    bindings = ui_parameter_bindings(module.ui_file)
    unbound = module_constant(module.module_file, "UNBOUND_PARAMETERS", set())
    assert isinstance(unbound, (set, frozenset, list, tuple)), "UNBOUND_PARAMETERS must be a literal set of names"
    unknown = sorted(set(bindings.values()) - set(fields))
    assert unknown == [], f"{module.ui_file.name} binds SlicerParameterName '{unknown[0] if unknown else ''}' " \
                          "to no field of the parameter node"
    unbound_but_bound = sorted(set(unbound) & set(bindings.values()))
    assert unbound_but_bound == [], f"'{unbound_but_bound[0] if unbound_but_bound else ''}' is in UNBOUND_PARAMETERS " \
                                    "but bound to a widget"
    not_in_fields = sorted(set(unbound) - set(fields))
    assert not_in_fields == [], f"UNBOUND_PARAMETERS names '{not_in_fields[0] if not_in_fields else ''}', not a field"
    orphans = sorted(set(fields) - set(bindings.values()) - set(unbound))
    assert orphans == [], f"parameter node field '{orphans[0] if orphans else ''}' is bound to no widget; bind it " \
                          "in the .ui or list it in UNBOUND_PARAMETERS"
    values = list(bindings.values())
    assert len(values) == len(set(values)), "one parameter bound to two widgets"
    assert ui_parameter_properties_are_dynamic(module.ui_file) == [], 'SlicerParameterName needs stdset="0"'


@pytest.mark.parametrize("module", MODULES, ids=str)
def test_each_bound_widget_is_a_class_the_parameter_node_can_drive(module):
    fields = parameter_node_fields(module.module_file)
    widgets = ui_widgets(module.ui_file)
    for widget, parameter in ui_parameter_bindings(module.ui_file).items():
        kind = field_kind(fields[parameter], module.module_file)
        assert kind in CONNECTOR_WIDGETS, f"field '{parameter}' has type {ast.unparse(fields[parameter])}, unknown " \
                                          "to ui_static.CONNECTOR_WIDGETS"
        assert widgets[widget] in CONNECTOR_WIDGETS[kind], \
            f"{widget} ({widgets[widget]}) cannot show parameter '{parameter}' of type {kind}; use one of " \
            f"{sorted(CONNECTOR_WIDGETS[kind])}"


@pytest.mark.parametrize("module", MODULES, ids=str)
def test_the_ui_loads_offscreen_with_every_named_widget(module):
    from PySide6.QtCore import QObject

    top = load_ui_offscreen(module.ui_file)
    loaded = {child.objectName(): child for child in top.findChildren(QObject)}
    loaded[top.objectName()] = top
    missing = sorted(set(ui_widgets(module.ui_file)) - set(loaded))
    assert missing == [], f"{module.ui_file.name}: widgets not created by QUiLoader: {missing}"
    assert ui_names_used(module.module_file) <= set(loaded)
    for widget, parameter in ui_parameter_bindings(module.ui_file).items():
        assert loaded[widget].property("SlicerParameterName") == parameter  # the dynamic property survives loading
    top.deleteLater()


def test_the_checks_catch_a_broken_ui(tmp_path):
    """The same checks on a deliberately broken module: an unknown self.ui name, a binding to no
    field, a field bound to nothing, a widget class that cannot show its field."""
    folder = tmp_path / "Broken"
    (folder / "Resources" / "UI").mkdir(parents=True)
    (folder / "Broken.py").write_text(
        "import pathlib\n"
        "from slicer.parameterNodeWrapper import parameterNodeWrapper\n"
        "UNBOUND_PARAMETERS = {'hidden'}\n"
        "@parameterNodeWrapper\n"
        "class BrokenParameterNode:\n"
        "    threshold: float\n"
        "    folder: pathlib.Path\n"
        "    hidden: str\n"
        "    forgotten: int\n"
        "class BrokenWidget:\n"
        "    def setup(self):\n"
        "        self.ui.applyButton.enabled = True\n"
        "        self.ui.noSuchWidget.text = 'x'\n"
    )
    (folder / "Resources" / "UI" / "Broken.ui").write_text(
        '<ui version="4.0"><class>Broken</class><widget class="qMRMLWidget" name="Broken">'
        '<layout class="QVBoxLayout" name="l">'
        '<item><widget class="QLineEdit" name="thresholdEdit"><property name="SlicerParameterName" stdset="0">'
        "<string>threshold</string></property></widget></item>"
        '<item><widget class="ctkPathLineEdit" name="folderEdit"><property name="SlicerParameterName" stdset="0">'
        "<string>folder</string></property></widget></item>"
        '<item><widget class="QCheckBox" name="extraBox"><property name="SlicerParameterName" stdset="0">'
        "<string>noSuchField</string></property></widget></item>"
        '<item><widget class="QPushButton" name="applyButton"/></item>'
        "</layout></widget><customwidgets>"
        "<customwidget><class>qMRMLWidget</class><extends>QWidget</extends><header>qMRMLWidget.h</header></customwidget>"
        "<customwidget><class>ctkPathLineEdit</class><extends>QWidget</extends><header>ctkPathLineEdit.h</header></customwidget>"
        "</customwidgets></ui>"
    )
    [module] = modules_with_ui(tmp_path)
    assert ui_names_used(module.module_file) - set(ui_widgets(module.ui_file)) == {"noSuchWidget"}
    with pytest.raises(AssertionError, match="noSuchField"):
        test_parameter_names_and_parameter_node_fields_match_both_ways(module)
    (folder / "Resources" / "UI" / "Broken.ui").write_text(
        (folder / "Resources" / "UI" / "Broken.ui").read_text().replace("noSuchField", "hidden2"))
    fields = parameter_node_fields(module.module_file)
    assert set(fields) == {"threshold", "folder", "hidden", "forgotten"}
    with pytest.raises(AssertionError):
        test_each_bound_widget_is_a_class_the_parameter_node_can_drive(module)  # QLineEdit for a float
    text = (folder / "Resources" / "UI" / "Broken.ui").read_text().replace(
        '<item><widget class="QCheckBox" name="extraBox"><property name="SlicerParameterName" stdset="0">'
        "<string>hidden2</string></property></widget></item>", "")
    (folder / "Resources" / "UI" / "Broken.ui").write_text(text)
    with pytest.raises(AssertionError, match="forgotten"):
        test_parameter_names_and_parameter_node_fields_match_both_ways(module)
    top = load_ui_offscreen(module.ui_file)  # custom classes fell back to QWidget
    assert type(top.findChild(__import__("PySide6.QtWidgets").QtWidgets.QWidget, "folderEdit")).__name__ == "QWidget"
