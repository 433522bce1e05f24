"""The module's synthesis logic on a real vtkMRMLScene with real worker processes.

A phantom's non-contrast scan becomes a volume node; the logic runs the job in the background
worker (the numpy-only ``--dummy`` worker, or the real engine where it is installed) and must give
a node on exactly the input's grid whose voxels are those of the library's own synthesis of the
same input, labelled with its provenance and placed in the input's study. Cancel must leave no
node, no process and no folder; a contrast-enhanced input must be stopped before any job starts.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from module_support import (
    array_of,
    dummy_client_factory,
    geometry_of,
    headless,
    node_in_study,
    poll_until,
    real_engine_unavailable,
    scalar_volume_ids,
    small_phantom,
)
from worker_support import alive, descendants

from DigitalContrastLib.common.errors import GateWarningError, InputError
from DigitalContrastLib.mrml import provenance as prov

pytestmark = [pytest.mark.mrml, pytest.mark.process]


@pytest.fixture
def folders(tmp_path):
    work_root, workspaces = tmp_path / "jobs", tmp_path / "workspaces"
    work_root.mkdir()
    workspaces.mkdir()
    return work_root, workspaces


def test_a_worker_job_gives_a_node_on_the_input_grid_equal_to_the_library_synthesis(folders, tmp_path):
    import slicer

    from DigitalContrastLib.ct.io import read_volume, write_volume
    from DigitalContrastLib.ct.labels import LABELS
    from DigitalContrastLib.mrml.synthesis_logic import SynthesisLogic
    from DigitalContrastLib.synthesis import dummy as dummy_synthesis

    work_root, workspaces = folders
    case = small_phantom()
    scene, app_logic = headless()
    nc_node, study_item = node_in_study(scene, case.noncontrast, "Case 3 NC")
    logic = SynthesisLogic(scene, app_logic, dummy_client_factory(work_root, dummy_seconds=0.5), work_dir=workspaces)
    events = []
    job = logic.start(nc_node)
    assert logic.running and list(workspaces.iterdir()), "the input was written to a private folder"
    node = logic.wait(timeout=120, on_event=events.append)
    logic.close()

    # the library's own synthesis of the same input, in this process
    write_volume(case.noncontrast, tmp_path / "same_input.nrrd")
    dummy_synthesis.synthesize_file(tmp_path / "same_input.nrrd", tmp_path / "reference.nrrd")
    reference = read_volume(tmp_path / "reference.nrrd").array
    synthetic = array_of(node)
    assert synthetic.dtype == np.int16 and np.array_equal(synthetic, reference), "bit-identical voxels"
    assert geometry_of(node) == geometry_of(nc_node), "exactly the input's grid"
    lumen = case.labels.array == LABELS["aortic_lumen"]
    print(f"lumen HU: NC {case.noncontrast.array[lumen].mean():.1f}, synthetic {synthetic[lumen].mean():.1f}, "
          f"library {reference[lumen].mean():.1f}")
    assert synthetic[lumen].mean() > case.noncontrast.array[lumen].mean() + 200

    assert node.GetName() == "Case 3 NC SYNTHETIC contrast"
    assert node.GetAttribute(prov.SYNTHETIC) == "1"
    assert node.GetAttribute(prov.MODEL_ID) == "dummy" and node.GetAttribute(prov.MODEL_VERSION) == "0.0.0"
    assert node.GetAttribute(prov.JOB_ID) == job.job_id and node.GetAttribute(prov.DEVICE) == "cpu"
    assert json.loads(node.GetAttribute(prov.GATE_WARNINGS)) == []
    assert node.GetAttribute(prov.SOURCE_NODE_ID) == nc_node.GetID()
    assert json.loads(node.GetAttribute(prov.PROVENANCE))["dummy"] is True
    assert "SYNTHETIC" in node.GetDescription()
    display = node.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (700.0, 200.0)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study_item, "under the input's study"

    kinds = [e.type for e in events if e.type != "log"]
    assert kinds[0] == "hello" and kinds[-2:] == ["result", "end"]
    fractions = [e.overall_fraction for e in events if e.type == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert job.ok and job.overall_fraction == pytest.approx(1.0) and job.status_text().startswith("done")
    assert any("job" in line for line in job.log), "the worker's log lines reach the module's log box"
    assert list(workspaces.iterdir()) == [] and list(work_root.iterdir()) == [], "no temporary folder is left"


def test_poll_never_blocks_and_the_job_is_finished_only_after_its_end_event(folders):
    from DigitalContrastLib.mrml.synthesis_logic import SynthesisLogic

    work_root, workspaces = folders
    scene, app_logic = headless()
    nc_node = node_in_study(scene, small_phantom().noncontrast, "NC")[0]
    job_s = 3.0
    logic = SynthesisLogic(scene, app_logic, dummy_client_factory(work_root, dummy_seconds=job_s), work_dir=workspaces)
    job = logic.start(nc_node)
    slowest_poll_s, polls, seen = 0.0, 0, []
    while not job.finished:
        started = time.perf_counter()
        seen += logic.poll()
        slowest_poll_s = max(slowest_poll_s, time.perf_counter() - started)
        polls += 1
        assert job.finished == (bool(seen) and seen[-1].type == "end")
        time.sleep(0.1)  # the module's timer interval
    logic.close()
    print(f"{polls} polls, slowest {slowest_poll_s * 1000:.1f} ms (includes loading the result node)")
    assert polls >= 10 and job.ok
    # a poll that waited for the worker would last the job's seconds; half of that leaves room for a
    # busy machine (about 0.1 s here; 0.8 s seen with a training run on both cores)
    assert slowest_poll_s < job_s / 2


def test_cancel_leaves_no_node_no_process_and_no_folder(folders, tmp_path):
    from test_client import slicer_like_launcher

    from DigitalContrastLib.mrml.synthesis_logic import SynthesisLogic
    from DigitalContrastLib.worker.client import WorkerClient

    work_root, workspaces = folders
    scene, app_logic = headless()
    nc_node = node_in_study(scene, small_phantom().noncontrast, "NC")[0]
    before = scalar_volume_ids(scene)
    launcher = slicer_like_launcher(tmp_path)  # PythonSlicer-like: launcher -> Python -> the dummy's child
    logic = SynthesisLogic(
        scene, app_logic,
        lambda: WorkerClient(launcher, dummy=True, dummy_seconds=30, work_root=work_root,
                             worker_args=["--dummy-spawn-child"]),
        work_dir=workspaces)
    job = logic.start(nc_node, uncertainty=True)
    poll_until(logic, lambda e: e.type == "progress" and e.data["stage"] == "inference" and e.data["done"] >= 1)
    launcher_pid = logic.client.worker_pid
    tree = [launcher_pid, *descendants(launcher_pid)]
    assert len(tree) == 3, tree

    started = time.monotonic()
    logic.cancel()
    while any(alive(pid) for pid in tree) and time.monotonic() - started < 5:
        time.sleep(0.01)
    print(f"cancel: every process gone after {time.monotonic() - started:.3f} s")
    assert not [pid for pid in tree if alive(pid)], "the whole process tree is gone"
    assert job.status == "cancelled" and job.finished and job.result_node_id is None
    assert scalar_volume_ids(scene) == before, "no node was added"
    assert list(workspaces.iterdir()) == [] and list(work_root.iterdir()) == [], "no temporary folder is left"
    assert logic.poll() == []
    logic.close()


def test_a_contrast_enhanced_input_waits_for_the_user_before_any_job(folders):
    from DigitalContrastLib.mrml.synthesis_logic import SynthesisLogic

    work_root, workspaces = folders
    case = small_phantom()
    scene, app_logic = headless()
    cta_node = node_in_study(scene, case.contrast, "Arterial phase")[0]
    logic = SynthesisLogic(scene, app_logic, dummy_client_factory(work_root), work_dir=workspaces)
    report = logic.check_input(cta_node)
    assert report.ok and report.warning_codes() == ["contrast_enhanced"]
    before = scalar_volume_ids(scene)

    job = logic.start(cta_node)  # the gate runs in a worker process; the job waits for an answer
    deadline = time.monotonic() + 60
    while job.status != "awaiting_confirmation" and time.monotonic() < deadline:
        logic.poll()
        time.sleep(0.02)
    assert job.status == "awaiting_confirmation" and not job.finished
    assert job.gate_report.warning_codes() == ["contrast_enhanced"]
    assert "Arterial phase" in job.gate_report.warnings[0].message
    assert logic._client is None, "no worker was started"
    logic.cancel()
    assert job.status == "cancelled" and list(workspaces.iterdir()) == [] and scalar_volume_ids(scene) == before

    with pytest.raises(GateWarningError) as refused:  # scripts: nobody accepts, the job stops
        logic.process(cta_node, timeout=120)
    assert refused.value.report.warning_codes() == ["contrast_enhanced"]
    assert "Arterial phase" in str(refused.value) and "already contrast-enhanced" in str(refused.value)
    assert logic._client is None and list(workspaces.iterdir()) == [] and scalar_volume_ids(scene) == before

    job = logic.start(cta_node)
    while job.status != "awaiting_confirmation":
        logic.poll()
        time.sleep(0.02)
    logic.accept_warnings()  # the user chose to go on
    node = logic.wait(timeout=120)
    logic.close()
    warnings = json.loads(node.GetAttribute(prov.GATE_WARNINGS))
    assert [w["code"] for w in warnings] == ["contrast_enhanced"], "the accepted warning stays on the result"
    assert ("contrast_enhanced" in [code for code, _ in logic.job.warnings]), "the worker's gate warned too"


def test_an_input_the_gate_refuses_starts_no_worker(folders):
    from DigitalContrastLib.ct.volume import CTVolume
    from DigitalContrastLib.mrml.synthesis_logic import SynthesisLogic

    work_root, workspaces = folders
    scene, app_logic = headless()
    thin = node_in_study(scene, CTVolume(small_phantom().noncontrast.array[:8], (3.6, 3.6, 3.0)), "Eight slices")[0]
    logic = SynthesisLogic(scene, app_logic, dummy_client_factory(work_root), work_dir=workspaces)
    job = logic.start(thin, allow_warnings=True)
    with pytest.raises(InputError) as refused:
        logic.wait(timeout=60)
    assert refused.value.code == "too_few_slices" and "Eight slices" in refused.value.message
    assert job.status == "error" and job.error_message == refused.value.message
    assert logic._client is None and list(workspaces.iterdir()) == []


def test_the_uncertainty_map_becomes_an_overlay_node_of_the_synthetic_volume(folders):
    from DigitalContrastLib.mrml.overlays import OVERLAY_FOR_ATTRIBUTE, OVERLAY_KIND_ATTRIBUTE
    from DigitalContrastLib.mrml.synthesis_logic import UNCERTAINTY_REFERENCE, SynthesisLogic

    work_root, workspaces = folders
    scene, app_logic = headless()
    nc_node, study_item = node_in_study(scene, small_phantom().noncontrast, "NC")
    logic = SynthesisLogic(scene, app_logic, dummy_client_factory(work_root), work_dir=workspaces)
    node = logic.process(nc_node, uncertainty=True, timeout=120)
    logic.close()
    sd_node = node.GetNodeReference(UNCERTAINTY_REFERENCE)
    assert sd_node is not None and sd_node.GetName() == "NC SYNTHETIC uncertainty"
    assert geometry_of(sd_node) == geometry_of(nc_node)
    assert sd_node.GetAttribute(OVERLAY_FOR_ATTRIBUTE) == node.GetID()
    assert sd_node.GetAttribute(OVERLAY_KIND_ATTRIBUTE) == "uncertainty"
    views = logic.show_review(nc_node, node, overlay=sd_node, overlay_opacity=0.4)
    composite = scene.GetNodeByID("vtkMRMLSliceCompositeNodeDCSynthetic")
    assert composite.GetForegroundVolumeID() == sd_node.GetID() and views.view_names == ["DCNonContrast", "DCSynthetic"]
    del views
    assert list(workspaces.iterdir()) == [] and list(work_root.iterdir()) == []


# ---------------------------------------------------------------------------- the real engine
def _real_engine_or_skip():
    why = real_engine_unavailable()
    if why:
        pytest.skip(why)
    from DigitalContrastLib.synthesis import api as synthesis

    return synthesis


@pytest.mark.slow
def test_the_real_model_through_the_worker_matches_the_in_process_engine(folders):
    """The default model in the worker vs ``synthesis.load_engine().synthesize`` here, same input, CPU."""
    from DigitalContrastLib.ct.labels import LABELS
    from DigitalContrastLib.mrml.synthesis_logic import SynthesisLogic
    from DigitalContrastLib.worker.client import WorkerClient

    synthesis = _real_engine_or_skip()
    work_root, workspaces = folders
    case = small_phantom()
    scene, app_logic = headless()
    nc_node = node_in_study(scene, case.noncontrast, "NC")[0]
    logic = SynthesisLogic(scene, app_logic, lambda: WorkerClient(work_root=work_root), work_dir=workspaces)
    node = logic.process(nc_node, device="cpu", timeout=600)
    logic.close()
    in_process = synthesis.load_engine(device="cpu").synthesize(case.noncontrast).synthetic.array
    from_worker = array_of(node)
    assert geometry_of(node) == geometry_of(nc_node)
    lumen = case.labels.array == LABELS["aortic_lumen"]
    difference = np.abs(from_worker.astype(np.int32) - in_process.astype(np.int32))
    print(f"worker vs in-process: max |diff| {difference.max()} HU, lumen mean {from_worker[lumen].mean():.1f} vs "
          f"{in_process[lumen].mean():.1f} HU (NC {case.noncontrast.array[lumen].mean():.1f})")
    assert difference.max() <= 1, "same model, same input, same CPU: equal up to rounding of the last HU"
    assert node.GetAttribute(prov.MODEL_ID) == synthesis.load_engine(device="cpu").card.id
    assert len(node.GetAttribute(prov.WEIGHTS_SHA256)) == 64
