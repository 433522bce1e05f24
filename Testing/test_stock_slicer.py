"""A fresh install on a stock 3D Slicer, stood in for: Slicer's Python and exactly its bundled packages.

For each supported release (5.10.0: pydicom 2.4.4, numpy 2.0.2; 5.12.3: pydicom 3.0.2, numpy 2.4.6;
both Python 3.12) a clone of the stand-in environment (Testing/stock_slicer_env.py) runs the scenarios
of Testing/stock_slicer/scenarios.py in subprocesses, with the two module folders on ``sys.path`` as in
Slicer. Nothing outside Slicer's bundle is installed before the scenarios, and what the plan installs
goes in with real pip. Only the Slicer application itself (dialogs, Qt widgets) is faked.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from stock_slicer_env import RELEASES, base_env, clone, freeze, python312

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "Testing" / "stock_slicer" / "scenarios.py"
#: What must never be installed by a plan (Slicer bundles them, or the PyTorch extension brings them).
NEVER = {"numpy", "scipy", "simpleitk", "pydicom", "pillow", "requests", "torch", "monai"}

pytestmark = [pytest.mark.stock_slicer, pytest.mark.process, pytest.mark.slow]


@pytest.fixture(scope="module", params=RELEASES)
def stand_in(request, tmp_path_factory):
    if python312() is None:
        pytest.skip("no Python 3.12 to stand in for Slicer's (install it, e.g. with pyenv)")
    env = clone(base_env(request.param), tmp_path_factory.mktemp("stock") / request.param)
    folder = tmp_path_factory.mktemp("study")
    from DigitalContrastReaderLib.store.sqlite import create_store
    from DigitalContrastReaderLib.study.config import load_study
    from DigitalContrastReaderLib.study.example import write_example_study

    study = load_study(write_example_study(folder / "example", cases=3, training_cases=0, readers=1,
                                           tasks=("grading",), washout_days=0))
    with create_store(folder / "example" / "study.sqlite", study) as store:  # the admin enrols r01: a token
        (folder / "r01.token").write_text(store.enrol("r01").token)
    return request.param, env, folder, freeze(env)


def run(stand_in, scenario: str, timeout_s: float = 900, env_extra: dict[str, str] | None = None) -> dict:
    release, env, folder, _ = stand_in
    paths = [ROOT / "Testing" / "stock_slicer" / "app", ROOT / "DigitalContrast", ROOT / "DigitalContrastReader"]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths)), "PYTHONNOUSERSITE": "1",
                   "DIGITALCONTRAST_MODEL_PATH": "", "DIGITAL_CONTRAST_READER_TOKEN": (folder / "r01.token").read_text(),
                   **(env_extra or {})}
    done = subprocess.run([str(env / "bin" / "python"), str(SCENARIOS), release, scenario, str(folder)],
                          capture_output=True, text=True, timeout=timeout_s, env=environment, cwd=folder)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no result (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    assert "crash" not in result, result["crash"] + "\n" + done.stderr[-3000:]
    return result


def test_first_run_says_what_is_missing_instead_of_failing(stand_in):
    result = run(stand_in, "first_run")
    assert result["imported"], "both module files import on a stock Slicer"
    assert set(result["third_party_after_import"]) <= {"numpy", "scipy", "SimpleITK", "pydicom", "PIL", "requests",
                                                       "packaging"}, result["third_party_after_import"]
    # the panel: an install note, not an exception, and no model list yet (cards need jsonschema)
    assert result["models"] == [] and "jsonschema" in result["models_note"] and "press Apply" in result["models_note"]
    plan = result["plan"]
    assert plan["torch_missing"] and plan["waiting_for_torch"] == ["monai"]
    assert plan["to_install"] == ["jsonschema>=4.18", "safetensors>=0.4", "pylibjpeg>=2.0", "pylibjpeg-openjpeg>=2.3"]
    assert not {line.split(">")[0].lower() for line in plan["to_install"]} & NEVER
    # the probe runs in a worker process and says torch is missing instead of failing on psutil
    assert result["probe"]["error"] is None, result["probe"]
    assert result["probe"]["torch"]["imported"] is False and "PyTorch" in result["probe"]["text"]
    # the reader: a plan for reading (no PyTorch), and a sentence instead of an exception when it starts
    assert result["reader_plan"] == {"to_install": ["jsonschema>=4.18", "PyYAML>=6"], "torch_missing": False}
    assert result["reader_start"].startswith("MissingPackageError") and "press Apply" in result["reader_start"]


def test_the_plan_installs_for_real_and_everything_works_without_a_restart(stand_in):
    release = stand_in[0]
    result = run(stand_in, "install")
    assert result["models_before"] == []
    assert result["torch_plan"] == {"torch_missing": True, "waiting": ["monai"]}, "torch comes from the PyTorch extension"
    installed = {arg.split(">")[0].lower() for call in result["pip_calls"] for arg in call if not arg.startswith("-")
                 and not arg.endswith(".txt")}
    assert installed == {"jsonschema", "safetensors", "pylibjpeg", "pylibjpeg-openjpeg", "pyyaml"}, installed
    assert all("--constraint" in call for call in result["pip_calls"]), "Slicer's packages are pinned for pip"
    assert result["reader_install_problem"] is None
    assert result["models_after"] == ["aorta-phantom-v1"], "the model list recovers in the same session"
    assert result["plan_after"] == {"to_install": [], "torch_missing": True}
    assert result["job"] == {"status": "ok", "error": None}
    export = result["export"]
    assert export["error"] is None and export["files"] == 48
    assert export["pydicom"] == {"5.10.0": "2.4.4", "5.12.3": "3.0.2"}[release], "read back with Slicer's own pydicom"
    assert export["synthetic_data"] == "YES" and export["series_description"].startswith("SYNTHETIC")
    assert result["reading"] == {"state": "reading", "item": True}

    after = freeze(stand_in[1])
    before = stand_in[3]
    changed = {name: (version, after.get(name)) for name, version in before.items() if after.get(name) != version}
    assert changed == {}, f"a package Slicer bundles changed: {changed}"
    assert set(after) - set(before) >= {"jsonschema", "safetensors", "pyyaml"}


def test_the_remote_server_device_runs_and_cancels_jobs_with_nothing_but_the_panel_packages(stand_in, tmp_path):
    """Slicer's process does no HTTP (a relay worker under PythonSlicer does) and needs no PyTorch."""
    pytest.importorskip("fastapi", reason="the service extra is not installed (pip install -e .[service])")
    from service_support import start_service

    service = start_service(tmp_path, users=("ws7",), dummy_seconds=3.0)
    try:
        result = run(stand_in, "remote_server", env_extra={"DC_SCENARIO_SERVER_URL": service.url,
                                                           "DC_SCENARIO_SERVER_TOKEN": service.tokens["ws7"]})
        server_job = result["cancelled_server_job"]
        status = service.wait_until(server_job, "ws7", timeout=30) if server_job else None
    finally:
        service.stop()
    assert result["plan"]["torch_missing"] is False and set(result["plan"]["to_install"]) <= {"jsonschema>=4.18"}
    assert result["install_problem"] is None
    assert result["check"].startswith(f"Server {service.url}:") and "dummy" in result["check"], result["check"]
    assert result["job"]["status"] == "ok", result["job"]
    assert result["job"]["stages"][0] == "upload" and result["job"]["stages"][-1] == "download", result["job"]
    assert result["result"] == {"server": service.url, "device": "cpu", "same_grid": True}
    assert result["cancel_status"] == "cancelled" and status["status"] == "cancelled", status
    # the worker packages may be installed by the install scenario before: the remote path must not load them
    assert result["torch_imported"] is False
    assert not set(result["third_party_loaded"]) & {"torch", "monai", "safetensors", "pylibjpeg", "fastapi",
                                                    "uvicorn"}, result["third_party_loaded"]


@pytest.mark.parametrize(("scenario", "test"), [("self_test_synthesis", "DigitalContrastTest"),
                                               ("self_test_reader", "DigitalContrastReaderTest")])
def test_each_self_test_passes_in_the_stand_in(stand_in, scenario, test):
    """Each in a process of its own, as ``slicer_add_python_unittest`` runs it under ctest."""
    result = run(stand_in, scenario)
    assert result[test] == "passed", result[test]
