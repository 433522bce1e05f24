"""What a radiologist's first minutes on a stock 3D Slicer do, run inside the stock-Slicer stand-in.

Run by Testing/test_stock_slicer.py with the stand-in's Python (Slicer's Python version and exactly
its bundled packages, nothing else installed)::

    python scenarios.py RELEASE SCENARIO STUDY_FOLDER

The module folders are on ``sys.path`` as in Slicer; ``app/`` provides what slicer-core lacks of the
Slicer application (:mod:`slicer_standin`). Each scenario prints one JSON line that the test checks.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import sys
import time
import traceback

RELEASE, SCENARIO, FOLDER = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
HOME = FOLDER / "slicer-home"

import slicer_standin  # noqa: E402  (the app/ folder is on sys.path)

slicer_standin.install(RELEASE, HOME)
import slicer  # noqa: E402


def third_party_loaded() -> list[str]:
    """Top-level modules from outside the standard library, slicer-core and this project."""
    own = {"DigitalContrastLib", "DigitalContrastReaderLib", "DigitalContrast", "DigitalContrastReader", "slicer",
           "slicer_core", "vtk", "vtkmodules", "slicer_standin", "qt", "ctk", "__main__", "scenarios"}
    names = {name.split(".")[0] for name in sys.modules}
    return sorted(n for n in names if n not in sys.stdlib_module_names and n not in own and not n.startswith("_"))


def modules():
    import DigitalContrast as synthesis_module
    import DigitalContrastReader as reader_module

    return synthesis_module, reader_module


def drive(poll, finished, limit_s=300.0):
    deadline = time.monotonic() + limit_s
    while not finished():
        if time.monotonic() > deadline:
            raise TimeoutError("the task did not finish")
        poll()
        time.sleep(0.02)


def phantom_nodes():
    from DigitalContrastLib.mrml.volume_nodes import volume_to_node
    from DigitalContrastLib.phantoms.generator import make_phantom

    case = make_phantom(3, size_xyz=(96, 96, 48), spacing_xyz_mm=(3.6, 3.6, 3.0))
    return case, volume_to_node(slicer.mrmlScene, case.noncontrast, "Phantom NC")


# ------------------------------------------------------------------------------------ scenarios
def scenario_first_run() -> dict:
    """Import both modules, open the panel's logic, probe the device, open a study: what happens."""
    synthesis, reader = modules()
    out: dict = {"imported": True, "third_party_after_import": third_party_loaded()}
    logic = synthesis.DigitalContrastLogic()
    choices, note = logic.availableModels()
    out["models"], out["models_note"] = [c.model_id for c in choices], note
    plan = logic.dependencyPlan()
    out["plan"] = {"torch_missing": plan.torch_missing, "to_install": plan.to_install,
                   "waiting_for_torch": [r.name for r in plan.waiting_for_torch], "message": plan.message()}
    probe = logic.startDeviceProbe()
    drive(probe.poll, lambda: probe.finished)
    out["probe"] = {"error": getattr(probe.error, "message", None) or (str(probe.error) if probe.error else None),
                    "text": logic.describeTaskResult("probe", probe.result, None) if probe.result else None,
                    "torch": (probe.result or {}).get("torch")}
    reader_logic = reader.DigitalContrastReaderLogic()
    rplan = reader_logic.dependencyPlan()
    out["reader_plan"] = {"to_install": rplan.to_install, "torch_missing": rplan.torch_missing}
    node = reader_logic.getParameterNode()
    node.studyPath = FOLDER / "example" / "study.yaml"
    node.readerCode = "r01"
    try:
        reader_logic.startSession(node)
        out["reader_start"] = "started"
    except Exception as error:  # noqa: BLE001 - what the reader would be told
        out["reader_start"] = f"{type(error).__name__}: {getattr(error, 'message', error)}"
    out["third_party_loaded"] = third_party_loaded()
    return out


def scenario_install() -> dict:
    """Carry out both modules' plans (real pip), then, in the same process, list models, run a dummy
    job, export and re-read it, and start a reading session: recovery without a restart."""
    from DigitalContrastLib.common.slicer_install import ensure_dependencies, install_packages

    synthesis, reader = modules()
    logic = synthesis.DigitalContrastLogic(dummy=True)
    before_models = logic.availableModels()
    out: dict = {"models_before": [c.model_id for c in before_models[0]]}
    full = synthesis.DigitalContrastLogic()
    plan = full.dependencyPlan()
    out["torch_plan"] = {"torch_missing": plan.torch_missing, "waiting": [r.name for r in plan.waiting_for_torch]}
    # torch, and MONAI (which would pull torch from the registry), come from the PyTorch extension in
    # Slicer: the plan says so; everything else of both modules is installed for real
    install_packages(plan, slicer, ask=True)
    reader_logic = reader.DigitalContrastReaderLogic()
    problem = ensure_dependencies(lambda: reader_logic.dependencyPlan(), slicer, ask=True)
    out["reader_install_problem"] = problem
    out["pip_calls"] = slicer_standin.PIP_CALLS
    out["models_after"] = [c.model_id for c in logic.availableModels()[0]]
    out["plan_after"] = {"to_install": full.dependencyPlan().to_install,
                         "torch_missing": full.dependencyPlan().torch_missing}

    case, nc_node = phantom_nodes()
    node = logic.getParameterNode()
    node.inputVolume = nc_node
    job = logic.startSynthesis(node)
    drive(logic.synthesis.poll, lambda: job.finished)
    out["job"] = {"status": job.status, "error": job.error_message}
    if job.ok:
        node.syntheticVolume = slicer.mrmlScene.GetNodeByID(job.result_node_id)
        node.exportFolder = FOLDER / "export"
        task = logic.startExport(node)
        drive(task.poll, lambda: task.finished)
        files = task.result or []
        import pydicom

        first = pydicom.dcmread(str(files[0])) if files else None
        out["export"] = {"files": len(files), "error": str(task.error) if task.error else None,
                         "pydicom": pydicom.__version__,
                         "synthetic_data": str(first[0x0008001C].value) if first else None,  # by tag (pydicom 2.4)
                         "series_description": str(first.SeriesDescription) if first else None}
    logic.close()

    rnode = reader_logic.getParameterNode()
    rnode.studyPath = FOLDER / "example" / "study.yaml"
    rnode.readerCode = "r01"
    session = reader_logic.startSession(rnode)
    out["reading"] = {"state": session.state, "item": bool(session.current_item)}
    reader_logic.endSession(session, rnode)
    out["third_party_loaded"] = third_party_loaded()
    return out


def scenario_remote_server() -> dict:
    """The "Remote server..." device against a real service (its URL and token in the environment of this
    scenario, set into Slicer's settings as the panel does): the check, a job, a cancel mid-job."""
    import os

    import qt
    from DigitalContrastLib.common.slicer_install import ensure_dependencies

    synthesis, _ = modules()
    settings = qt.QSettings()
    settings.setValue(synthesis.REMOTE_URL_SETTING, os.environ["DC_SCENARIO_SERVER_URL"])
    settings.setValue(synthesis.REMOTE_TOKEN_SETTING, os.environ["DC_SCENARIO_SERVER_TOKEN"])
    logic = synthesis.DigitalContrastLogic()
    plan = logic.dependencyPlan(remote=True)
    out: dict = {"plan": {"to_install": plan.to_install, "torch_missing": plan.torch_missing}}
    out["install_problem"] = ensure_dependencies(lambda: logic.dependencyPlan(remote=True), slicer, ask=True)
    check = logic.startDeviceProbe(remote=True)
    drive(check.poll, lambda: check.finished)
    out["check"] = logic.describeTaskResult("probe", check.result, None) if check.result else str(check.error)

    case, nc_node = phantom_nodes()
    node = logic.getParameterNode()
    node.inputVolume = nc_node
    node.device = synthesis.Device.REMOTE
    job = logic.startSynthesis(node)
    stages = []
    drive(lambda: stages.extend(e.data["stage"] for e in logic.synthesis.poll() if e.type == "stage"),
          lambda: job.finished)
    out["job"] = {"status": job.status, "error": job.error_message, "stages": stages}
    if job.ok:
        result = slicer.mrmlScene.GetNodeByID(job.result_node_id)
        provenance = json.loads(result.GetAttribute("DigitalContrast.Provenance") or "{}")
        out["result"] = {"server": (provenance.get("server") or {}).get("url"),
                         "device": result.GetAttribute("DigitalContrast.Device"),
                         "same_grid": result.GetImageData().GetDimensions() == nc_node.GetImageData().GetDimensions()}
    job = logic.startSynthesis(node)
    drive(logic.synthesis.poll, lambda: job.stage == "inference" or job.finished)
    client = logic.synthesis.client
    out["cancelled_server_job"] = client.server_job_id
    logic.synthesis.cancel("the scenario cancels")
    out["cancel_status"] = job.status
    deadline = time.monotonic() + 30
    while client._cancels and time.monotonic() < deadline:  # noqa: SLF001 - the cancel task reaches the server
        client.poll()
        time.sleep(0.05)
    logic.close()
    out["torch_imported"] = "torch" in sys.modules
    out["third_party_loaded"] = third_party_loaded()
    return out


def _self_test(module_index: int) -> dict:
    """One module's self-test (what does not need the Qt application), alone in this process as ctest runs it."""
    test = (modules()[0].DigitalContrastTest, modules()[1].DigitalContrastReaderTest)[module_index]
    try:
        test().runTest()
        return {test.__name__: "passed"}
    except Exception:  # noqa: BLE001 - reported to the test with its traceback
        return {test.__name__: traceback.format_exc()}


def scenario_self_test_synthesis() -> dict:
    return _self_test(0)


def scenario_self_test_reader() -> dict:
    return _self_test(1)


if __name__ == "__main__":
    result = {"release": RELEASE, "scenario": SCENARIO}
    try:
        result.update(globals()[f"scenario_{SCENARIO}"]())
    except Exception:  # noqa: BLE001 - the test shows it
        result["crash"] = traceback.format_exc()
    print("RESULT " + json.dumps(result, default=str), flush=True)
    importlib.invalidate_caches()
