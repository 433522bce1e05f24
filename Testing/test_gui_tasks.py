"""Work seen from a GUI thread: bounded steps, node <-> file in slabs, worker --task processes.

Real worker processes, real files, a real MRML scene: what keeps Slicer's GUI thread free while
registration, metrics, the input check and the export run elsewhere.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest
from module_support import headless, small_phantom
from test_client import alive

from DigitalContrastLib.common.errors import InputError, JobError
from DigitalContrastLib.ct.io import read_volume, write_volume
from DigitalContrastLib.ct.volume import CTVolume
from DigitalContrastLib.mrml.gui_steps import WAIT, BlockMonitor, Progress, StepRunner
from DigitalContrastLib.worker.outcome import WorkerError
from DigitalContrastLib.worker.process import popen_launcher
from DigitalContrastLib.worker.task_process import TaskProcess

ROTATED = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def _volume(dtype=np.int16, shape=(30, 40, 50)) -> CTVolume:
    rng = np.random.default_rng(3)
    return CTVolume(rng.integers(-1000, 1500, shape).astype(dtype), (0.7, 0.8, 2.5), (10.0, -20.0, 30.5), ROTATED)


# ----------------------------------------------------------------------------------- steps
def test_a_step_runner_keeps_to_its_budget_and_returns_at_once_on_a_wait():
    def steps():
        for k in range(100):
            time.sleep(0.004)
            yield Progress("slow", k / 100)
        yield WAIT
        return "done"

    runner = StepRunner(steps(), budget_s=0.02)
    calls, longest = 0, 0.0
    while not runner.done:
        started = time.perf_counter()
        runner.advance()
        longest = max(longest, time.perf_counter() - started)
        calls += 1
    assert runner.result == "done" and calls >= 15
    assert longest < 0.02 + 0.015, f"a call held the thread {longest * 1000:.0f} ms"


def test_closing_a_runner_runs_the_generators_cleanup():
    cleaned = []

    def steps():
        try:
            while True:
                yield WAIT
        finally:
            cleaned.append(True)

    runner = StepRunner(steps())
    runner.advance()
    runner.close()
    assert runner.done and cleaned == [True]


def test_the_block_monitor_names_the_longest_call():
    monitor = BlockMonitor()
    with monitor.measure("quick"):
        pass
    with monitor.measure("slow"):
        time.sleep(0.03)
    assert monitor.longest_where == "slow" and monitor.longest_s >= 0.03 and monitor.calls == 2
    assert set(monitor.to_dict()["by_site_ms"]) == {"quick", "slow"}


# ----------------------------------------------------------------------------------- files
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_slab_writes_and_reads_round_trip_through_simpleitk(tmp_path, dtype):
    from DigitalContrastLib.mrml.node_files import read_volume_steps, write_array_steps

    volume = _volume(dtype)
    fractions = list(write_array_steps(volume.array, volume.spacing_mm, volume.origin_mm, volume.direction,
                                       tmp_path / "mine.nrrd", slab_bytes=10_000))
    assert len(fractions) > 5 and fractions[-1] == 1.0
    back = read_volume(tmp_path / "mine.nrrd")  # SimpleITK reads what the GUI wrote
    assert np.array_equal(back.array, volume.array) and back.same_geometry(volume)

    write_volume(volume, tmp_path / "theirs.nrrd")  # the worker writes with SimpleITK; the GUI reads it
    reads = list(read_volume_steps(tmp_path / "theirs.nrrd", slab_bytes=10_000))
    assert len(reads) > 5 and reads[-1].done
    assert np.array_equal(reads[-1].array, volume.array) and reads[-1].volume().same_geometry(volume)


def test_a_truncated_result_is_one_sentence(tmp_path):
    from DigitalContrastLib.mrml.node_files import read_volume_steps

    write_volume(_volume(), tmp_path / "v.nrrd")
    data = (tmp_path / "v.nrrd").read_bytes()
    (tmp_path / "v.nrrd").write_bytes(data[:-1000])
    with pytest.raises(InputError, match="truncated"):
        list(read_volume_steps(tmp_path / "v.nrrd"))


@pytest.mark.mrml
def test_a_node_goes_to_a_file_and_a_file_becomes_a_node_without_copies(tmp_path):
    from DigitalContrastLib.mrml.node_files import array_to_node, node_voxels, write_node_steps
    from DigitalContrastLib.mrml.volume_nodes import node_geometry_lps, volume_to_node

    scene, _ = headless()
    volume = _volume()
    node = volume_to_node(scene, volume, "source")
    for _ in write_node_steps(node, tmp_path / "n.nrrd"):
        pass
    back = read_volume(tmp_path / "n.nrrd")
    assert np.array_equal(back.array, volume.array) and back.same_geometry(volume)

    made = array_to_node(scene, back, "made", {"DigitalContrast.Test": "1"}, "cta")
    assert np.shares_memory(node_voxels(made).array, back.array), "the node wraps the array"
    assert node_geometry_lps(made) == node_geometry_lps(node)
    display = made.GetDisplayNode()
    assert not display.GetAutoWindowLevel() and (display.GetWindow(), display.GetLevel()) == (700.0, 200.0)
    assert made.GetAttribute("DigitalContrast.Test") == "1"


# ----------------------------------------------------------------------------------- task processes
@pytest.mark.process
def test_the_gate_task_answers_with_a_report(tmp_path):
    from DigitalContrastLib.synthesis.gate import GateReport

    write_volume(small_phantom().contrast, tmp_path / "cta.nrrd")
    process = TaskProcess(["--task", "gate"], {"input": str(tmp_path / "cta.nrrd"),
                                                "metadata": {"source_path": "Volume 'Arterial'"}})
    report = GateReport.from_dict(process.wait(60))
    assert report.ok and report.warning_codes() == ["contrast_enhanced"] and "Arterial" in report.warnings[0].message
    assert process.stage == "gate" and process.fraction == 1.0


@pytest.mark.process
def test_task_errors_are_the_user_errors_of_their_exit_codes(tmp_path):
    (tmp_path / "bad.nrrd").write_text("not a volume")
    with pytest.raises(InputError, match="bad.nrrd"):
        TaskProcess(["--task", "gate"], {"input": str(tmp_path / "bad.nrrd")}).wait(60)
    with pytest.raises(JobError, match="unknown task 'nosuch'"):
        TaskProcess(["--task", "nosuch"], {}).wait(60)
    with pytest.raises(JobError, match="lacks its argument"):
        TaskProcess(["--task", "metrics"], {"noncontrast": "x"}).wait(60)


@pytest.mark.process
def test_a_crashing_task_process_is_an_error_with_its_last_words():
    crash = "import ctypes, sys; print('reading the headers', file=sys.stderr, flush=True); ctypes.string_at(0)"
    process = TaskProcess(["--task", "gate"], {}, launcher=popen_launcher([sys.executable, "-c", crash]))
    with pytest.raises(WorkerError, match="SIGSEGV.*reading the headers"):
        process.wait(60)


@pytest.mark.process
def test_a_discarded_task_kills_its_process_and_removes_its_files(tmp_path):
    from DigitalContrastLib.mrml.gui_task import GuiTask, wait_for_process

    sleeper = "import sys, time; sys.stdin.readline(); time.sleep(60)"
    workspace = tmp_path / "task"
    workspace.mkdir()
    (workspace / "input.nrrd").write_bytes(b"x" * 1000)
    holder = {}

    def pipeline():
        process = TaskProcess(["--task", "gate"], {}, launcher=popen_launcher([sys.executable, "-c", sleeper]))
        holder["pid"] = process.pid
        value = yield from wait_for_process(process, "sleeping")
        return value

    task = GuiTask("sleep", pipeline(), workspace)
    task.poll()
    time.sleep(0.3)
    assert alive(holder["pid"])
    started = time.perf_counter()
    task.discard()
    assert time.perf_counter() - started < 0.05, "discard does not wait for the process"
    deadline = time.monotonic() + 5
    while alive(holder["pid"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(holder["pid"]) and not workspace.exists()
    assert task.finished and task.result is None and task.error is None


@pytest.mark.process
def test_the_probe_runs_as_a_task_process():
    hello = TaskProcess(["--probe"]).wait(120)
    assert hello["type"] == "hello" and hello["device"]["kind"] in ("cpu", "cuda", "mps")
    json.dumps(hello)
