"""A working MRML scene without the Slicer application (slicer-core wheel, no Qt, no OpenGL).

Inside Slicer the logic uses ``slicer.mrmlScene`` and ``slicer.app.applicationLogic()``; tests,
the CLI and report rendering use :func:`make_headless_scene` instead. Every function of the
``mrml`` package takes the scene (and the application logic where it needs one) as arguments,
so the same code runs in both places.

``slicer`` and ``vtk`` are imported inside the functions: this module is importable (though not
callable) in a venv without slicer-core.
"""

from __future__ import annotations

from typing import Any


def make_headless_scene() -> tuple[Any, Any]:
    """A new ``vtkMRMLScene`` set up like Slicer's, and its ``vtkSlicerApplicationLogic``.

    The set-up (found to be what headless volume loading, layouts and slice rendering need):

    * a crosshair node (slice logics and linked views look it up);
    * a ``vtkSlicerApplicationLogic`` on the scene, with an empty slice-logic collection;
    * a ``vtkMRMLColorLogic`` that adds the default colour tables, registered on the application
      logic as module logic ``"Colors"`` (volume loading looks it up and logs an error otherwise);
    * a ``vtkSlicerVolumesLogic`` on the scene, registered as module logic ``"Volumes"``;
    * the default slice orientation presets (Axial, Sagittal, Coronal), before any view exists;
    * a ``vtkMRMLLayoutLogic``, which creates the layout node and the default slice views, and
      the views of any layout selected later (as the layout manager does inside Slicer).

    Returns:
        ``(scene, app_logic)``. The application logic refers to its module logics by weak
        pointer, so the colour, volumes and layout logics are kept alive in its Python attribute
        ``headless_logics`` (a dict by name) for as long as ``app_logic`` is referenced.
    """
    import slicer
    import vtk

    scene = slicer.vtkMRMLScene()

    crosshair = slicer.vtkMRMLCrosshairNode()
    crosshair.SetSingletonTag("default")
    scene.AddNode(crosshair)

    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    if app_logic.GetSliceLogics() is None:
        app_logic.SetSliceLogics(vtk.vtkCollection())

    color_logic = slicer.vtkMRMLColorLogic()
    color_logic.SetMRMLScene(scene)  # adds the default colour nodes (Grey, Iron, Labels...)
    app_logic.SetModuleLogic("Colors", color_logic)

    volumes_logic = slicer.vtkSlicerVolumesLogic()
    volumes_logic.SetMRMLScene(scene)
    volumes_logic.SetMRMLApplicationLogic(app_logic)
    app_logic.SetModuleLogic("Volumes", volumes_logic)

    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)

    layout_logic = slicer.vtkMRMLLayoutLogic()
    layout_logic.SetMRMLScene(scene)
    # The application logic holds module logics by weak pointer only: keep them alive with it.
    app_logic.headless_logics = {"Colors": color_logic, "Volumes": volumes_logic, "Layout": layout_logic}
    return scene, app_logic


def volumes_logic_for(scene: Any, app_logic: Any | None = None) -> Any:
    """The ``vtkSlicerVolumesLogic`` to load volumes into ``scene``.

    Uses the application logic's ``"Volumes"`` module logic when it serves this scene (inside
    Slicer, or a scene from :func:`make_headless_scene`), else a new one on ``scene``.
    """
    import slicer

    if app_logic is not None:
        logic = app_logic.GetModuleLogic("Volumes")
        if logic is not None and logic.GetMRMLScene() is scene:
            return logic
    logic = slicer.vtkSlicerVolumesLogic()
    logic.SetMRMLScene(scene)
    if app_logic is not None:
        logic.SetMRMLApplicationLogic(app_logic)
    return logic
