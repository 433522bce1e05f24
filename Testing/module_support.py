"""Helpers shared by the Slicer module's logic tests: small phantoms, headless scenes, workers."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np

#: A small phantom that keeps worker jobs and registrations quick (whole abdomen, 3 mm slices,
#: so the input gate does not warn about thick slices).
PHANTOM_SIZE_XYZ = (96, 96, 48)
PHANTOM_SPACING_MM = (3.6, 3.6, 3.0)
#: Seed 3: an aneurysm; its arterial member is flagged contrast-enhanced by the input gate.
PHANTOM_SEED = 3


@functools.lru_cache(maxsize=4)
def small_phantom(seed: int = PHANTOM_SEED):
    """The paired phantom (cached: treat its arrays as read-only)."""
    from DigitalContrastLib.phantoms.generator import make_phantom

    return make_phantom(seed, size_xyz=PHANTOM_SIZE_XYZ, spacing_xyz_mm=PHANTOM_SPACING_MM)


def headless():
    from DigitalContrastLib.mrml.headless import make_headless_scene

    return make_headless_scene()


def node_in_study(scene, volume, name: str, patient: str = "Phantom patient", study: str = "Abdomen CT"):
    """A volume node under a patient/study item of the subject hierarchy, as Slicer's DICOM import makes."""
    import slicer

    from DigitalContrastLib.mrml.volume_nodes import volume_to_node

    node = volume_to_node(scene, volume, name)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    patient_item = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), patient)
    study_item = hierarchy.CreateStudyItem(patient_item, study)
    item = hierarchy.GetItemByDataNode(node) or hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)
    hierarchy.SetItemParent(item, study_item)
    return node, study_item


def dummy_client_factory(work_root: Path, **options):
    """A worker client factory for the dummy (numpy-only) worker with job folders in ``work_root``."""
    from DigitalContrastLib.worker.client import WorkerClient

    return lambda: WorkerClient(dummy=True, work_root=work_root, **options)


def scalar_volume_ids(scene) -> list[str]:
    return [scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode").GetID()
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]


def poll_until(logic, predicate, timeout_s: float = 60.0) -> list:
    """Poll a SynthesisLogic as a GUI timer would until an event satisfies ``predicate``."""
    seen, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = logic.poll()
        seen += events
        if any(predicate(e) for e in events):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"timed out; events so far: {[e.type for e in seen]}")


def geometry_of(node) -> tuple:
    from DigitalContrastLib.mrml.volume_nodes import node_geometry_lps

    return node_geometry_lps(node)


def array_of(node) -> np.ndarray:
    from DigitalContrastLib.mrml.volume_nodes import node_to_volume

    return node_to_volume(node).array


def real_engine_unavailable() -> str | None:
    """Why the real synthesis engine cannot run here (None when it can: torch, engine, default model)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    if importlib.util.find_spec("DigitalContrastLib.synthesis.api") is None:
        return "the synthesis engine is not merged yet"
    from DigitalContrastLib.common.errors import ModelError
    from DigitalContrastLib.models.cards import resolve_model

    try:
        resolve_model(None)
    except ModelError as error:
        return f"the default model is not installed: {error}"
    return None
