"""Metrics dicts <-> vtkMRMLTableNode on a real scene: nothing lost, units shown."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.mrml


@pytest.fixture()
def scene():
    from DigitalContrastLib.mrml.headless import make_headless_scene

    return make_headless_scene()[0]


def test_rows_round_trip_with_types_units_and_gaps(scene):
    from DigitalContrastLib.mrml.table_nodes import metrics_to_table_node, table_node_to_metrics

    rows = [
        {"case": "P001", "roi": "lumen", "mae_hu": 41.25, "voxels": 1200, "passed_qc": True, "psnr_db": 31.5},
        {"case": "P002", "roi": "thrombus", "mae_hu": 12.0, "voxels": 800, "passed_qc": False},
        {"case": "P003", "roi": "lumen", "mae_hu": None, "voxels": 3_000_000_000, "passed_qc": True, "psnr_db": 29},
    ]
    node = metrics_to_table_node(scene, rows, "Metrics")
    assert scene.GetNodeByID(node.GetID()) is node
    assert node.GetNumberOfRows() == 3
    assert [node.GetColumnName(i) for i in range(node.GetNumberOfColumns())] == [
        "case", "roi", "mae_hu", "voxels", "passed_qc", "psnr_db"
    ]
    assert node.GetColumnUnitLabel("mae_hu") == "HU"
    assert node.GetColumnUnitLabel("psnr_db") == "dB"
    assert node.GetColumnUnitLabel("case") == ""
    assert node.GetCellText(0, 2) == "41.25"

    back = table_node_to_metrics(node)
    assert back[0] == rows[0]
    assert back[1] == {**rows[1], "psnr_db": None}  # absent key -> gap
    assert back[2]["mae_hu"] is None
    assert back[2]["voxels"] == 3_000_000_000  # beyond int32: a 64-bit integer column
    assert back[2]["psnr_db"] == 29.0
    assert isinstance(back[0]["passed_qc"], bool) and isinstance(back[0]["voxels"], int)


def test_one_dict_is_one_row(scene):
    from DigitalContrastLib.mrml.table_nodes import metrics_to_table_node, table_node_to_metrics, unit_of

    metrics = {"body_mae_hu": 38.2, "ssim": 0.91, "seconds_on_case": 12.5, "volume_ml": math.pi}
    node = metrics_to_table_node(scene, metrics, "Body metrics")
    assert table_node_to_metrics(node) == [metrics]
    assert unit_of("seconds_on_case") == "s"
    assert unit_of("synthesis_seconds") == "s"
    assert node.GetColumnUnitLabel("volume_ml") == "mL"
    assert node.GetColumnUnitLabel("seconds_on_case") == "s"
