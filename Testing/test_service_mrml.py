"""The Slicer module's logic with the remote client (its "Remote server..." device) on a real
vtkMRMLScene and a real service: the same result node, provenance, progress and cancel as locally."""

from __future__ import annotations

import time

import numpy as np
import pytest
from module_support import array_of, dummy_client_factory, geometry_of, headless, node_in_study, small_phantom
from service_support import start_service

from DigitalContrastLib.mrml import provenance as prov
from DigitalContrastLib.worker.relay import RelayWorkerClient
from DigitalContrastLib.worker.remote_client import RemoteWorkerClient

pytestmark = [pytest.mark.mrml, pytest.mark.process, pytest.mark.slow]
pytest.importorskip("fastapi", reason="the service extra is not installed (pip install -e .[service])")


def remote_client_factory(kind: str, url: str, token: str):
    """``relay``: the Slicer module's way (a worker process does the HTTP: Python threads crawl in Slicer);
    ``thread``: the remote client itself (scripts, notebooks, the browser review page)."""
    if kind == "relay":
        return lambda: RelayWorkerClient(url, token)
    return lambda: RemoteWorkerClient(url, token)


@pytest.mark.parametrize("kind", ["relay", "thread"])
def test_the_module_logic_with_a_remote_client_gives_the_local_node_and_names_the_server(tmp_path, kind):
    from DigitalContrastLib.mrml.synthesis_logic import SynthesisLogic

    case = small_phantom()
    service = start_service(tmp_path, users=("ws3",), dummy_seconds=2.0)
    try:
        scene, app_logic = headless()
        nc_node, _ = node_in_study(scene, case.noncontrast, "Case NC")
        remote = SynthesisLogic(scene, app_logic, remote_client_factory(kind, service.url, service.tokens["ws3"]),
                                work_dir=tmp_path / "remote")
        (tmp_path / "remote").mkdir()
        events = []
        job = remote.start(nc_node)
        while not job.finished:
            events += remote.poll()
            time.sleep(0.02)
        assert job.ok, job.error_message
        node = scene.GetNodeByID(job.result_node_id)
        (tmp_path / "local").mkdir()
        (tmp_path / "jobs").mkdir()
        local = SynthesisLogic(scene, app_logic, dummy_client_factory(tmp_path / "jobs"), work_dir=tmp_path / "local")
        local_node = local.process(nc_node, timeout=120)
        assert np.array_equal(array_of(node), array_of(local_node))
        assert geometry_of(node) == geometry_of(nc_node)
        record = prov.json_attribute(node, prov.PROVENANCE, {})
        assert record["server"]["url"] == service.url and node.GetAttribute(prov.DEVICE) == "cpu"
        fractions = [e.overall_fraction for e in events if e.type == "progress"]
        assert len(fractions) > 3 and fractions == sorted(fractions)
        stages = [e.data["stage"] for e in events if e.type == "stage"]
        assert stages[0] == "upload" and "inference" in stages and stages[-1] == "download", stages
        # cancel mid-job: no node, the job cancelled on the server too
        count = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
        job = remote.start(nc_node)
        deadline = time.monotonic() + 60
        while job.stage != "inference":
            remote.poll()
            assert time.monotonic() < deadline and not job.finished
            time.sleep(0.02)
        server_id = remote.client.server_job_id
        remote.cancel()
        assert job.status == "cancelled" and scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == count
        deadline = time.monotonic() + 20
        while service.json("GET", f"/v1/jobs/{server_id}", user="ws3")[1]["status"] != "cancelled":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        remote.close()
        local.close()
    finally:
        service.stop()
