"""The parts of the 3D Slicer *application* that slicer-core does not provide, faked for the stand-in.

A stock Slicer is its Python (3.12), the packages it bundles, its MRML libraries (slicer-core gives the
real ones) and the application around them. The application cannot run here, so this module adds to
the real ``slicer`` package only what the two modules' files reach outside their Qt widgets:

* ``slicer.app`` (application logic of a real headless scene, a temporary folder, ``slicerHome``);
* ``slicer.mrmlScene`` (a real ``vtkMRMLScene``);
* ``slicer.ScriptedLoadableModule`` (the four base classes, as thin as Slicer's);
* ``slicer.parameterNodeWrapper`` (typed fields stored in a real ``vtkMRMLScriptedModuleNode``);
* ``slicer.i18n.tr``;
* dialogs in ``slicer.util`` (they record what they were asked and answer as told);
* ``slicer.util.pip_install`` running the real pip of this interpreter, as Slicer's does, and, for a
  5.12 stand-in, ``slicer.packaging.pip_ensure`` likewise;
* a ``PythonSlicer`` launcher on the PATH that runs this interpreter (as Slicer's launcher does).

Everything else, worker processes and pip included, is real.
"""

from __future__ import annotations

import enum
import os
import pathlib
import shlex
import stat
import subprocess
import sys
import tempfile
import types
import typing
import unittest

import slicer
import slicer.util

#: What the dialogs were asked, in order: ``(kind, text)``.
DIALOGS: list[tuple[str, str]] = []
#: What ``confirmOkCancelDisplay`` answers.
ANSWERS = {"confirm": True}
#: Every pip command run through the stand-in: the argument lists after ``pip install``.
PIP_CALLS: list[list[str]] = []


class _App:
    def __init__(self, app_logic, home: pathlib.Path) -> None:
        self._app_logic = app_logic
        self.temporaryPath = str(home / "tmp")
        self.slicerHome = str(home)
        self.applicationName = "Slicer"
        pathlib.Path(self.temporaryPath).mkdir(parents=True, exist_ok=True)

    def applicationLogic(self):
        return self._app_logic

    def processEvents(self) -> None:
        pass

    def testingEnabled(self) -> bool:
        return True


def _pip(args: list[str]) -> None:
    PIP_CALLS.append(list(args))
    subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args], check=True)


def _pip_install(requirements) -> None:
    _pip(shlex.split(requirements) if isinstance(requirements, str) else list(requirements))


def _pip_ensure(requirements, constraints=None, skip_packages=None, prompt_install=True, prompt_restart=True,
                requester=None, skip_in_testing=True, show_progress=True):
    if prompt_install and not ANSWERS["confirm"]:
        raise RuntimeError("User declined installation")
    _pip([*(["--constraint", str(constraints)] if constraints else []), *[str(r) for r in requirements]])


def _record(kind):
    def show(text, *args, **kwargs):
        DIALOGS.append((kind, str(text)))
        return ANSWERS["confirm"] if kind == "confirm" else None

    return show


class _TryWithErrorDisplay:
    def __init__(self, message=None, **kwargs):
        self.message = message

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if error is not None:
            DIALOGS.append(("error", f"{self.message} {error}"))
        return False


# ------------------------------------------------------------------------------ ScriptedLoadableModule
class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = type(self).__name__


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent
        self.moduleName = type(self).__name__[: -len("Widget")]


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = type(self).__name__[: -len("Logic")]

    def getParameterNode(self):
        return slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode") or \
            slicer.mrmlScene.AddNode(_singleton(self.moduleName))


def _singleton(tag: str):
    node = slicer.vtkMRMLScriptedModuleNode()
    node.SetSingletonTag(tag)
    node.SetName(tag)
    return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=None):
        DIALOGS.append(("delay", message))


# ------------------------------------------------------------------------------ parameterNodeWrapper
class WithinRange:
    def __init__(self, low, high):
        self.low, self.high = low, high


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)


def _field_type(annotation):
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def parameterNodeWrapper(cls):
    """Typed fields stored in a real ``vtkMRMLScriptedModuleNode`` (strings, or node references)."""
    fields = {name: _field_type(kind) for name, kind in typing.get_type_hints(cls, include_extras=True).items()}
    defaults = {name: getattr(cls, name) for name in fields if hasattr(cls, name)}

    class Wrapper:
        def __init__(self, parameterNode):
            self.parameterNode = parameterNode

        def connectGui(self, ui):  # the widgets need the Qt application
            return object()

        def disconnectGui(self, tag):
            pass

    def accessor(name, kind):
        is_node = isinstance(kind, type) and issubclass(kind, slicer.vtkMRMLNode)

        def get(self):
            node = self.parameterNode
            if is_node:
                return node.GetNodeReference(name)
            text = node.GetParameter(name)
            if text == "" and name not in _set(node):
                return defaults.get(name, None if kind not in (str, bool, float, int) else kind())
            if kind is bool:
                return text == "True"
            if kind in (int, float):
                return kind(text)
            if kind is pathlib.Path:
                return pathlib.Path(text)
            if isinstance(kind, type) and issubclass(kind, enum.Enum):
                return kind[text]
            return text

        def set_(self, value):
            node = self.parameterNode
            if is_node:
                node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
                return
            text = value.name if isinstance(value, enum.Enum) else str(value)
            node.SetParameter(name, text)
            node.SetAttribute(f"standin.set.{name}", "1")

        return property(get, set_)

    for name, kind in fields.items():
        setattr(Wrapper, name, accessor(name, kind))
    Wrapper.__name__ = Wrapper.__qualname__ = cls.__name__
    Wrapper.__doc__ = cls.__doc__
    return Wrapper


def _set(node) -> set[str]:
    return {key[len("standin.set."):] for key in node.GetAttributeNames() if key.startswith("standin.set.")}


# ------------------------------------------------------------------------------ install
def _python_slicer(home: pathlib.Path) -> None:
    """``<home>/bin/PythonSlicer``, a launcher running this interpreter (Slicer's starts its real Python)."""
    bin_dir = home / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    launcher = bin_dir / "PythonSlicer"
    launcher.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def install(release: str, home: str | os.PathLike | None = None) -> None:
    """Make ``import slicer`` look like Slicer ``release`` (``"5.10.0"`` or ``"5.12.3"``) to module code."""
    from DigitalContrastLib.mrml.headless import make_headless_scene

    home = pathlib.Path(home or tempfile.mkdtemp(prefix="stock-slicer-home-"))
    scene, app_logic = make_headless_scene()
    slicer.mrmlScene = scene
    slicer.app = _App(app_logic, home)
    _python_slicer(home)

    module = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(module, cls.__name__, cls)
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper, wrapper.WithinRange, wrapper.Choice = parameterNodeWrapper, WithinRange, Choice
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    for name, mod in (("ScriptedLoadableModule", module), ("parameterNodeWrapper", wrapper), ("i18n", i18n)):
        sys.modules[f"slicer.{name}"] = mod
        setattr(slicer, name, mod)

    util = slicer.util
    util.confirmOkCancelDisplay = _record("confirm")
    util.errorDisplay = _record("error")
    util.infoDisplay = _record("info")
    util.warningDisplay = _record("warning")
    util.delayDisplay = _record("delay")
    util.tryWithErrorDisplay = _TryWithErrorDisplay
    util.pip_install = _pip_install
    if tuple(int(p) for p in release.split(".")[:2]) >= (5, 12):
        packaging = types.ModuleType("slicer.packaging")
        packaging.pip_ensure = _pip_ensure
        sys.modules["slicer.packaging"] = packaging
        slicer.packaging = packaging
