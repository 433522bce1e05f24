"""The OpenVINO backend (the ``cpu-fast`` extra, installed by ``.[test]``): the same synthesis as torch,
chosen by ``--backend``, recorded in the provenance, compiled once per window shape, and silent
(no telemetry, nothing written to the user's home folder)."""

from __future__ import annotations

import dataclasses
import json
import platform

import numpy as np
import pytest
import torch
from model_fixtures import body_volume, write_tiny_model

from DigitalContrastLib.commands.cli import main
from DigitalContrastLib.common.errors import EXIT_USAGE, JobError
from DigitalContrastLib.common.hardware import available_cpu_cores, physical_cores
from DigitalContrastLib.synthesis import device as devices
from DigitalContrastLib.synthesis.api import SynthesisEngine, load_engine
from DigitalContrastLib.worker.protocol import validate_job

X86 = platform.machine().lower() in {"x86_64", "amd64"}


@pytest.fixture(scope="module")
def tiny_card(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-test")


@pytest.fixture
def fp32(monkeypatch):
    """Both backends in fp32, whatever the CPU: bf16 rounds differently in each library."""
    monkeypatch.setenv("DIGITALCONTRAST_CPU_BF16", "0")


@pytest.mark.slow
def test_openvino_agrees_with_torch_within_1_hu_on_a_phantom(fp32):
    """The shipped model on a small phantom (the bench volume's kind at 2.8 mm): every voxel within 1 HU."""
    from DigitalContrastLib.phantoms.generator import make_phantom

    volume = make_phantom(10506, size_xyz=(128, 128, 96), spacing_xyz_mm=(2.8, 2.8, 2.5)).noncontrast
    engine = load_engine(None, "cpu")
    with_torch = engine.synthesize(volume, backend="torch")
    with_openvino = engine.synthesize(volume, backend="openvino")
    assert (with_torch.backend, with_openvino.backend) == ("torch", "openvino")
    assert with_torch.precision == with_openvino.precision == "fp32"
    a, b = with_torch.synthetic.array.astype(int), with_openvino.synthetic.array.astype(int)
    difference = np.abs(a - b)
    print(f"OpenVINO against torch (fp32): max |difference| {difference.max()} HU, mean {difference.mean():.6f} HU, "
          f"{int((difference > 0).sum())} of {difference.size} voxels differ")
    assert difference.max() <= 1
    body = volume.array > -500
    assert np.abs(a - volume.array)[body].mean() > 5, "the network added nothing: the comparison would be empty"


def test_one_compiled_model_per_window_shape_kept_with_the_engine(tiny_card, fp32):
    engine = SynthesisEngine(tiny_card, device="cpu")
    engine.settings = dataclasses.replace(engine.settings, max_window_voxels=48**3)  # windows sized by the volume
    volume = body_volume()
    first = engine.synthesize(volume, backend="openvino")
    assert any("network converted" in note for note in first.notes), first.notes
    compiled = [note for note in first.notes if note.startswith("OpenVINO compiled")]
    assert compiled, first.notes
    again = engine.synthesize(volume, backend="openvino")
    assert not [note for note in again.notes if "compiled" in note or "converted" in note], again.notes
    np.testing.assert_array_equal(again.synthetic.array, first.synthetic.array)
    runner = engine.runner_for("openvino")[0]
    shapes = runner.compiled_shapes
    assert len(shapes) == len(compiled)
    engine.synthesize(body_volume(shape_zyx=(30, 48, 96)), backend="openvino")  # another grid: another shape
    assert len(runner.compiled_shapes) > len(shapes)
    request = runner.request(shapes[0])
    compiled_model = request.get_compiled_model()
    assert str(compiled_model.get_property("PERFORMANCE_HINT")) in {"LATENCY", "PerformanceMode.LATENCY"}
    assert int(compiled_model.get_property("INFERENCE_NUM_THREADS")) == min(physical_cores(), available_cpu_cores())


def test_backend_choice(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)  # a device name, no GPU needed
    assert devices.choose_backend("auto", cpu) == ("openvino" if X86 else "torch")
    assert devices.choose_backend("auto", gpu) == "torch"
    assert devices.choose_backend("torch", cpu) == "torch"
    with pytest.raises(JobError, match="CPU only"):
        devices.choose_backend("openvino", gpu)
    with pytest.raises(JobError, match="not one of auto, torch, openvino"):
        devices.choose_backend("onnx", cpu)
    monkeypatch.setattr(devices, "openvino_installed", lambda: False)  # a machine without the cpu-fast extra
    assert devices.choose_backend("auto", cpu) == "torch"
    with pytest.raises(JobError, match=r"pip install 'digital-contrast\[cpu-fast\]'"):
        devices.choose_backend("openvino", cpu)


def test_without_openvino_auto_runs_torch(tiny_card, monkeypatch):
    monkeypatch.setattr(devices, "openvino_installed", lambda: False)
    result = SynthesisEngine(tiny_card, device="cpu").synthesize(body_volume())
    assert result.backend == "torch" and "(torch)" in result.notes[0]


def test_a_model_openvino_cannot_convert_falls_back_to_torch_under_auto(tiny_card, monkeypatch):
    from DigitalContrastLib.common.errors import ModelError
    from DigitalContrastLib.synthesis import openvino_runner

    def refuse(self):
        raise RuntimeError("Check 'is_conversion_successful' failed: unsupported operation aten::foo")

    monkeypatch.setattr(openvino_runner.OpenVinoRunner, "converted", refuse)
    engine = SynthesisEngine(tiny_card, device="cpu")
    if X86:
        result = engine.synthesize(body_volume())
        assert result.backend == "torch"
        assert any("OpenVINO could not run this model" in note for note in result.notes), result.notes
    with pytest.raises(ModelError, match="use --backend torch"):
        engine.synthesize(body_volume(), backend="openvino")


def test_the_job_carries_the_backend_and_refuses_unknown_ones():
    job = {"input": "/in.nrrd", "output": "/out.nrrd", "options": {"backend": "openvino"}}
    assert validate_job(job)["options"]["backend"] == "openvino"
    assert validate_job({"input": "/in.nrrd", "output": "/out.nrrd"})["options"]["backend"] == "auto"
    with pytest.raises(JobError, match="options.backend"):
        validate_job({**job, "options": {"backend": "tensorrt"}})


@pytest.mark.process
def test_cli_records_the_backend_and_openvino_sends_no_telemetry(tiny_card, tmp_path, monkeypatch, capsys):
    """Through the CLI and the worker process: the provenance names the backend (and OpenVINO's
    version); OpenVINO leaves no client id or usage statistics under the user's home folder (a
    plain ``import openvino`` writes ``~/intel/openvino_ga_cid`` and sends an event unless a CI
    variable is set)."""
    from worker_support import write_tiny_ct

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for variable in ("CI", "TF_BUILD", "JENKINS_URL"):
        monkeypatch.delenv(variable, raising=False)
    write_tiny_ct(tmp_path / "ncct.nrrd")
    for backend in ("openvino", "torch"):
        out = tmp_path / f"{backend}.nrrd"
        assert main(["synthesize", str(tmp_path / "ncct.nrrd"), str(out), "--model", str(tiny_card.path),
                     "--device", "cpu", "--backend", backend, "--json"]) == 0
        provenance = json.loads(capsys.readouterr().out)
        assert provenance["backend"] == backend
        assert ("openvino" in provenance["software"]) == (backend == "openvino")
    telemetry = [p for p in home.rglob("*") if "intel" in p.name.lower() or "openvino" in p.name.lower()]
    assert not telemetry, telemetry


def test_cli_backend_typo_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["synthesize", str(tmp_path / "in.nrrd"), str(tmp_path / "out.nrrd"), "--backend", "onnx"])
    assert stop.value.code == EXIT_USAGE
    assert "--backend" in capsys.readouterr().err


def test_out_of_memory_under_openvino_walks_down_to_the_cards_windows(tiny_card, fp32):
    engine = SynthesisEngine(tiny_card, device="cpu")
    engine.settings = dataclasses.replace(engine.settings, max_window_voxels=48**3)
    volume = body_volume(shape_zyx=(40, 96, 160), seed=6)

    def fail_large(attempt):
        if attempt.window_voxels:
            raise RuntimeError("std::bad_alloc (injected)")  # how OpenVINO reports an allocation failure

    engine.attempt_hook = fail_large
    result = engine.synthesize(volume, backend="openvino")
    assert result.backend == "openvino" and result.window_zyx == tuple(engine.settings.roi_size_zyx)
    assert any("out of memory with cpu, windows of up to" in note for note in result.notes), result.notes
    engine.attempt_hook = None
    expected = engine.synthesize(volume, backend="torch")
    assert expected.window_zyx != result.window_zyx  # torch ran the large window: a different plan
    body = volume.array > -500
    assert np.abs(result.synthetic.array.astype(int) - expected.synthetic.array)[body].mean() <= 2.0
