"""What a volume node carries about its origin: ``DigitalContrast.*`` attributes, subject hierarchy.

Every synthetic volume node says what made it, in node attributes (strings; JSON where a value
is structured), so that it is never mistaken for an acquired scan and a DICOM export can label it:

==========================================  ===================================================
attribute                                   value
==========================================  ===================================================
``DigitalContrast.Synthetic``               ``"1"`` on every synthetic volume
``DigitalContrast.ModelId`` / ``ModelVersion`` / ``WeightsSha256``   the model that made it
``DigitalContrast.Device``                  where the network ran (``cpu``, ``cuda:0``)
``DigitalContrast.JobId``                   the worker job
``DigitalContrast.OutputSha256``            sha256 of the file the worker wrote
``DigitalContrast.GateWarnings``            JSON list of ``{"code", "message"}`` the input gate
                                            raised before the job (empty list: none)
``DigitalContrast.SourceNodeID``            the non-contrast node it was computed from
``DigitalContrast.SourceDicomMeta``         JSON: the non-contrast series' DICOM facts (below)
``DigitalContrast.Provenance``              JSON: the worker's provenance record
==========================================  ===================================================

A non-contrast volume that this library read from DICOM (:func:`load_volume_node`) carries
``DigitalContrast.DicomMeta``: the facts :func:`DigitalContrastLib.ct.dicom_export.export_synthetic_dicom`
needs to put a synthetic series into the source's study and reference its images (study, series
and frame-of-reference UIDs, SOP class and instance UIDs in slice order, patient/study module
values) plus what the input gate reads (Modality, Contrast/Bolus Agent, Slice Thickness). A node
loaded by Slicer's DICOM module has ``DICOM.instanceUIDs`` instead; the Slicer logic finds the
files in Slicer's DICOM database and reads them in a worker task
(:func:`~DigitalContrastLib.ct.dicom_meta.dicom_meta_from_files`).

``slicer`` is imported inside functions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from DigitalContrastLib import __version__
from DigitalContrastLib.ct.dicom_meta import dicom_meta_subset, jsonable_value
from DigitalContrastLib.ct.io import read_volume
from DigitalContrastLib.ct.volume import CTVolume

from .volume_nodes import node_to_volume, volume_to_node

PREFIX = "DigitalContrast."
SYNTHETIC = PREFIX + "Synthetic"
MODEL_ID = PREFIX + "ModelId"
MODEL_VERSION = PREFIX + "ModelVersion"
WEIGHTS_SHA256 = PREFIX + "WeightsSha256"
DEVICE = PREFIX + "Device"
JOB_ID = PREFIX + "JobId"
OUTPUT_SHA256 = PREFIX + "OutputSha256"
GATE_WARNINGS = PREFIX + "GateWarnings"
SOURCE_NODE_ID = PREFIX + "SourceNodeID"
SOURCE_DICOM_META = PREFIX + "SourceDicomMeta"
PROVENANCE = PREFIX + "Provenance"
DICOM_META = PREFIX + "DicomMeta"
SOURCE_PATH = PREFIX + "SourcePath"
#: Slicer's DICOM module: space-separated SOP Instance UIDs of the loaded slices.
SLICER_DICOM_INSTANCE_UIDS = "DICOM.instanceUIDs"

#: The weights hash written for the dummy synthesis (it has no weights): the label stays exact.
DUMMY_WEIGHTS_LABEL = "none (dummy synthesis for self-tests, no model weights)"

def to_json(value: Any) -> str:
    """Compact JSON for an attribute value."""
    return json.dumps(jsonable_value(value), separators=(",", ":"), sort_keys=True)


def json_attribute(node: Any, name: str, default: Any = None) -> Any:
    """A JSON attribute of ``node`` decoded, or ``default`` when absent or unreadable."""
    text = node.GetAttribute(name) if node is not None else None
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def volume_of_node(node: Any) -> CTVolume:
    """``node_to_volume(node)`` plus what the input gate and the export read from the node:
    ``metadata["dicom"]`` from ``DigitalContrast.DicomMeta`` and ``source_path`` naming the node."""

    volume = node_to_volume(node)
    meta = json_attribute(node, DICOM_META)
    if isinstance(meta, dict):
        volume.metadata["dicom"] = meta
        volume.metadata["format"] = "dicom"
    volume.metadata["source_path"] = f"Volume '{node.GetName()}'"
    return volume


# ---------------------------------------------------------------------------- loading
def load_volume_node(scene: Any, path: str | os.PathLike, name: str | None = None, series_uid: str | None = None,
                     window_level: Any = None) -> Any:
    """Read a CT with :func:`DigitalContrastLib.ct.io.read_volume` into a new scalar volume node.

    Geometry and HU are exactly the file's (DICOM series sorted by position, as the CLI reads
    them). A DICOM input keeps its series facts in ``DigitalContrast.DicomMeta`` (JSON) so that a
    synthetic series exported later joins its study and references its images.

    Args:
        path: a DICOM series folder or file, or a .nrrd/.nii(.gz)/.mha file.
        name: node name; default: the DICOM Series Description, else the file name.
        series_uid: which DICOM series when the folder holds several.

    Raises:
        InputError: the file cannot be read (one sentence naming it).
    """

    volume = read_volume(path, series_uid=series_uid)
    meta = volume.metadata.get("dicom")
    attributes = {SOURCE_PATH: str(Path(path).resolve())}
    if isinstance(meta, Mapping):
        attributes[DICOM_META] = to_json(dicom_meta_subset(meta))
    default = (meta or {}).get("SeriesDescription") if isinstance(meta, Mapping) else None
    node_name = name or default or Path(path).name.split(".")[0]
    return volume_to_node(scene, volume, node_name, attributes=attributes, window_level=window_level)


# ---------------------------------------------------------------------------- subject hierarchy
def place_beside(scene: Any, node: Any, sibling: Any) -> int:
    """Put ``node``'s subject-hierarchy item under the same parent as ``sibling``'s (its study).

    Creates the items when the scene has none yet (a headless scene; inside Slicer a plugin has
    made them already). Returns ``node``'s item id.
    """
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    item = hierarchy.GetItemByDataNode(node) or hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)
    if sibling is not None and sibling.GetScene() is scene:
        sibling_item = hierarchy.GetItemByDataNode(sibling) or hierarchy.CreateItem(hierarchy.GetSceneItemID(), sibling)
        parent = hierarchy.GetItemParent(sibling_item)
        if parent and hierarchy.GetItemParent(item) != parent:
            hierarchy.SetItemParent(item, parent)
    return item


# ---------------------------------------------------------------------------- export labels
def export_provenance(synthetic_node: Any) -> dict[str, Any]:
    """The ``provenance`` argument of ``export_synthetic_dicom`` from a synthetic node's attributes.

    A dummy synthesis (self-tests) has no weights: its label says so instead of a hash.
    """

    record = json_attribute(synthetic_node, PROVENANCE, {}) or {}
    dummy = bool(record.get("dummy"))
    weights = synthetic_node.GetAttribute(WEIGHTS_SHA256) or (DUMMY_WEIGHTS_LABEL if dummy else "")
    method = ("dummy synthesis for self-tests (+300 HU in the largest soft-tissue region), not a trained model"
              if dummy else "DigitalContrast deep-network contrast synthesis from a non-contrast CT")
    return {
        "method": method,
        "model_id": synthetic_node.GetAttribute(MODEL_ID) or "",
        "model_version": synthetic_node.GetAttribute(MODEL_VERSION) or "",
        "weights_sha256": weights,
        "software_version": __version__,
    }


def source_dicom_meta(synthetic_node: Any, source_node: Any | None = None) -> dict[str, Any] | None:
    """The source series' DICOM facts for an export: the synthetic node's copy, else the source
    node's (``DigitalContrast.DicomMeta``), else None (a new study is made)."""
    meta = json_attribute(synthetic_node, SOURCE_DICOM_META)
    if isinstance(meta, dict) and meta:
        return meta
    if source_node is None and synthetic_node.GetScene() is not None:
        source_node = synthetic_node.GetScene().GetNodeByID(synthetic_node.GetAttribute(SOURCE_NODE_ID) or "")
    meta = json_attribute(source_node, DICOM_META) if source_node is not None else None
    return meta if isinstance(meta, dict) and meta else None
