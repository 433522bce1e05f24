"""What the Slicer module's panel decides, outside Slicer: default input, PythonSlicer, button states, texts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from module_support import headless, small_phantom

from DigitalContrastLib.mrml.panel_text import describe_task_result, event_line, panel_state, task_event_text
from DigitalContrastLib.worker.process import python_slicer_path


@pytest.mark.mrml
def test_the_default_input_is_a_ct_the_user_loaded_not_one_this_extension_made():
    from DigitalContrastLib.mrml import compare_logic, overlays
    from DigitalContrastLib.mrml import provenance as prov
    from DigitalContrastLib.mrml.volume_nodes import _MADE_HERE_ATTRIBUTES, default_input_node, volume_to_node

    assert set(_MADE_HERE_ATTRIBUTES) == {prov.SYNTHETIC, overlays.OVERLAY_FOR_ATTRIBUTE, compare_logic.REGISTERED_FROM}
    scene, _ = headless()
    case = small_phantom()
    assert default_input_node(scene) is None
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    synthetic = volume_to_node(scene, case.contrast, "x SYNTHETIC contrast", attributes={prov.SYNTHETIC: "1"})
    mask = volume_to_node(scene, case.labels, "field of view")
    mask.SetHideFromEditors(True)
    difference = volume_to_node(scene, case.contrast, "minus", attributes={overlays.OVERLAY_FOR_ATTRIBUTE: "n"})
    assert default_input_node(scene) is None, [labels, synthetic, mask, difference]
    ct = volume_to_node(scene, case.noncontrast, "CT")
    assert default_input_node(scene) is ct


def test_python_slicer_is_found_on_the_path_or_beside_slicer(tmp_path):
    assert python_slicer_path(None, which=lambda name: "/opt/Slicer/bin/PythonSlicer") == \
        __import__("pathlib").Path("/opt/Slicer/bin/PythonSlicer")
    home = tmp_path / "Slicer-5.12.3-linux-amd64"
    assert python_slicer_path(home, which=lambda name: None) is None
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "PythonSlicer.exe").write_text("")
    assert python_slicer_path(home, which=lambda name: None, windows=True) == home / "bin" / "PythonSlicer.exe"
    assert python_slicer_path(home, which=lambda name: None, windows=False) is None
    (home / "bin" / "PythonSlicer").write_text("")  # macOS: Slicer.app/Contents is slicer.app.slicerHome
    assert python_slicer_path(home, which=lambda name: None, windows=False) == home / "bin" / "PythonSlicer"


def test_the_panel_state_follows_the_job_the_tasks_and_an_install():
    node = SimpleNamespace(inputVolume=object(), realVolume=object(), registeredVolume=None, syntheticVolume=object(),
                           customOverlap=False, exportFolder="/data/out")
    idle = panel_state(node, running=False, tasks=set(), installing=False)
    assert (idle.apply_text, idle.apply_enabled, idle.inputs_enabled) == ("Apply", True, True)
    assert idle.review_enabled and idle.register_enabled and idle.metrics_enabled and idle.export_enabled
    running = panel_state(node, running=True, tasks={"registration", "export"}, installing=False)
    assert (running.apply_text, running.apply_enabled, running.inputs_enabled) == ("Cancel", True, False)
    assert running.register_text == "Cancel registration" and not running.export_enabled
    installing = panel_state(node, running=False, tasks=set(), installing=True)
    assert not installing.apply_enabled, "no second install while pip runs"
    empty = panel_state(None, running=False, tasks=set(), installing=False)
    assert not (empty.apply_enabled or empty.review_enabled or empty.export_enabled)
    assert not idle.remote_visible and not empty.remote_visible
    node.device = SimpleNamespace(value="remote")  # the "Remote server..." device shows its URL and token fields
    assert panel_state(node, running=False, tasks=set(), installing=False).remote_visible


def test_the_device_line_describes_a_remote_server_or_the_local_worker():
    check = {"url": "https://gpu1.example.org", "health": {"device": {"kind": "cuda", "name": "NVIDIA H100"},
                                                           "queue_length": 2, "workers": [{}, {}]},
             "models": {"models": [{"id": "aorta-phantom-v1"}, {"id": "site-b-v2"}]}}
    assert describe_task_result("probe", check) == ("Server https://gpu1.example.org: NVIDIA H100, 2 workers, "
                                                    "2 queued; models: aorta-phantom-v1, site-b-v2.")
    hello = {"mode": "probe", "torch": {"installed": False}, "device": {"kind": "cpu", "name": "CPU"}}
    assert not describe_task_result("probe", hello).startswith("Server")


def test_log_lines_and_task_texts():
    event = SimpleNamespace(type="hello", data={"mode": "engine", "device": {"name": "CPU"}})
    assert event_line(event) == "Worker ready (engine, CPU)."
    assert event_line(SimpleNamespace(type="progress", data={})) is None
    progress = SimpleNamespace(type="progress", stage="registration", fraction=0.42)
    assert task_event_text("registration", progress) == "Registration: 42%"
    failed = SimpleNamespace(type="error", error=SimpleNamespace(message="The volume is empty."))
    assert task_event_text("metrics", failed) == "Failed: The volume is empty."
