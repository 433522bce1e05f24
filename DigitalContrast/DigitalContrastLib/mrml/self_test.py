"""The module's self-test flow (``DigitalContrastTest`` in Slicer, and the stock-Slicer stand-in).

Phantom -> synthesis in the background worker -> registration of the real scan -> review layout ->
metrics -> labelled DICOM export, driven as the module's timer drives them (a poll, the GUI's events,
a short sleep: no busy loop). The headless suite checks each step's figures; this checks that the
steps run together in Slicer, that nothing imports torch in Slicer's process, and that the GUI
thread is never held for long. Failures raise AssertionError with one line saying what went wrong.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

#: The longest the GUI thread may be held by one step of the flow (s).
LONGEST_GUI_HOLD_S = 0.5


def drive(poll: Callable[[], Any], finished: Callable[[], bool], process_events: Callable[[], None],
          task: Any = None) -> Any:
    """Poll as the module's timer does until ``finished()``; a task's result (or its error raised)."""
    while not finished():
        poll()
        process_events()
        time.sleep(0.02)
    if task is not None and task.error is not None:
        raise task.error
    return task.result if task is not None else None


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def whole_flow(logic: Any, node: Any, scene: Any, say: Callable[[str], None], process_events: Callable[[], None],
               temporary_dir: str | None = None) -> dict[str, Any]:
    """Run the flow with ``logic`` (a ``DigitalContrastLogic`` with the dummy worker) on parameter node
    ``node`` in ``scene``; ``say`` shows a step, ``process_events`` lets the GUI breathe. Returns figures."""
    import pydicom

    from DigitalContrastLib.mrml.volume_nodes import node_geometry_lps, volume_to_node
    from DigitalContrastLib.phantoms.generator import make_phantom
    from DigitalContrastLib.phantoms.misregistration import RigidMisregistration

    torch_before = "torch" in sys.modules  # the PyTorch extension may have imported it: not ours to judge
    case = make_phantom(3, size_xyz=(96, 96, 48), spacing_xyz_mm=(3.6, 3.6, 3.0),
                        misregistration=RigidMisregistration(2.0, -1.0, 1.0, (3.0, -2.0, 4.0)))
    node.inputVolume = volume_to_node(scene, case.noncontrast, "Phantom NC")
    node.realVolume = volume_to_node(scene, case.contrast, "Phantom arterial")
    node.labelVolume = volume_to_node(scene, case.labels, "Phantom labels")

    say("Synthesizing in the background worker (dummy)")
    job = logic.startSynthesis(node)
    drive(logic.synthesis.poll, lambda: job.finished, process_events)
    check(job.status == "ok", f"the synthesis ended {job.status}: {job.error_message}")
    node.syntheticVolume = scene.GetNodeByID(job.result_node_id)
    check(node.syntheticVolume.GetAttribute("DigitalContrast.Synthetic") == "1", "the result is not labelled synthetic")
    geometry = node_geometry_lps(node.inputVolume)
    check(node_geometry_lps(node.syntheticVolume) == geometry, "the synthetic volume left the input's grid")

    say("Registration, review, metrics")
    task = logic.startRegistration(node)
    node.registeredVolume = drive(task.poll, lambda: task.finished, process_events, task).node
    check(node_geometry_lps(node.registeredVolume) == geometry, "the registered real scan is not on the input's grid")
    views = logic.showReview(node)
    check(views == ["DCNonContrast", "DCSynthetic", "DCReal"], f"the review layout shows {views}")
    task = logic.startMetrics(node)
    rows = drive(task.poll, lambda: task.finished, process_events, task).rows
    check(rows[0]["lumen_mae_hu"] < rows[1]["lumen_mae_hu"], "the synthetic is not closer to the real scan")

    say("Labelled DICOM export")
    node.exportFolder = pathlib.Path(tempfile.mkdtemp(prefix="dc-selftest-", dir=temporary_dir))
    task = logic.startExport(node)
    files = drive(task.poll, lambda: task.finished, process_events, task)
    first = pydicom.dcmread(files[0])
    label = first[0x0008001C].value  # by tag: pydicom 2.4 (Slicer 5.10) lacks the SyntheticData keyword
    check((len(files), label) == (48, "YES"), f"the export wrote {len(files)} files labelled {label!r}")
    check(first.SeriesDescription.startswith("SYNTHETIC"), "the series description does not say SYNTHETIC")
    check(("torch" in sys.modules) == torch_before, "something in the flow imported torch in Slicer's process")
    monitor = logic.synthesis.monitor
    check(monitor.longest_s < LONGEST_GUI_HOLD_S,
          f"the GUI thread was held {monitor.longest_s:.2f} s ({monitor.longest_where})")
    return {"lumen_mae_hu": rows[0]["lumen_mae_hu"], "files": len(files), "longest_gui_hold_s": monitor.longest_s}
