"""A fake synthesis engine for self-tests where torch is absent (the worker's ``--dummy`` mode).

It honours the engine's contract (``load_engine`` / ``synthesize_file`` in ``synthesis.py``:
same arguments, same progress stages, same errors, a provenance dict with ``output_sha256``,
an atomic write) with numpy only, so the GUI, the client and the process tests run the real
worker path in a second without torch. The output is a deterministic function of the input and
is labelled as fake in its provenance:

    every voxel of the largest 6-connected region with 0..100 HU gets +300 HU
    (clipped to int16), everything else is copied unchanged.

Never import torch here: a test asserts that a dummy job leaves ``torch`` out of ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.checksum import file_sha256
from DigitalContrastLib.common.errors import ModelError, NoGPUError
from DigitalContrastLib.common.progress import ProgressCallback, no_progress
from DigitalContrastLib.ct.io import read_volume, write_volume

from .gate import gate_or_raise
from .options import SynthesisOptions

DUMMY_MODEL_ID = "dummy"
DUMMY_MODEL_VERSION = "0.0.0"
#: HU window of the region that gets enhanced, and the enhancement.
SOFT_TISSUE_HU = (0, 100)
ENHANCEMENT_HU = 300


@dataclass(frozen=True)
class DummyCard:
    """The parts of a model card the worker reports."""

    id: str = DUMMY_MODEL_ID
    version: str = DUMMY_MODEL_VERSION
    weights_sha256: str | None = None


@dataclass
class DummyEngine:
    """Stands in for ``synthesis.SynthesisEngine``: a card and a device."""

    card: DummyCard = field(default_factory=DummyCard)
    device: str = "cpu"


def load_engine(model_id: str | None = None, device: str = "auto", load_seconds: float = 0.0) -> DummyEngine:
    """The dummy engine; ``load_seconds`` of sleep stand in for reading and verifying weights.

    Raises ModelError for any model but ``dummy`` and NoGPUError when a GPU is demanded
    (the dummy never uses one).
    """
    if model_id not in (None, DUMMY_MODEL_ID):
        raise ModelError(
            f"model {model_id!r} is not available in dummy mode; use model 'dummy' or run the worker without --dummy.",
            code="model_missing",
        )
    if device.startswith("cuda") or device == "mps":
        raise NoGPUError(
            f"device {device!r} was required but the dummy worker runs on the CPU only; choose device 'auto' or 'cpu'.",
            code="no_gpu",
        )
    if load_seconds > 0:
        time.sleep(load_seconds)
    return DummyEngine()


def synthesize_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    options: SynthesisOptions = SynthesisOptions(),
    *,
    engine: DummyEngine | None = None,
    progress: ProgressCallback | None = None,
    on_warning: Any = None,
    seconds: float = 0.0,
    spawn_child: bool = False,
) -> dict[str, Any]:
    """Fake synthesis of ``input_path`` into ``output_path`` (atomically); returns provenance.

    Args mirror ``synthesis.synthesize_file``. ``seconds`` spreads that much sleep over the
    inference stage (so a GUI test can cancel mid-job); ``spawn_child`` starts a sleeping child
    process for the job's duration (to prove that cancel kills the whole process tree).
    ``options.uncertainty_output``, when given, receives a zero map on the same grid.
    """
    progress = progress or no_progress
    engine = engine or load_engine(options.model_id, options.device)
    uncertainty_path, series_uid = options.uncertainty_output, options.series_uid
    started = time.perf_counter()
    child = _spawn_sleeping_child() if spawn_child else None
    try:
        progress("load", 0, 1)
        volume = read_volume(input_path, series_uid=series_uid)
        progress("load", 1, 1)

        progress("gate", 0, 1)
        gate_or_raise(volume, on_warning)
        progress("gate", 1, 1)

        progress("preprocess", 0, 1)
        region = _largest_soft_tissue_region(volume.array)
        progress("preprocess", 1, 1)

        inference_started = time.perf_counter()
        out = volume.array.astype(np.int32, copy=True)
        chunks = np.array_split(np.arange(volume.shape_zyx[0]), min(volume.shape_zyx[0], 32))
        progress("inference", 0, len(chunks))
        for done, slab in enumerate(chunks, start=1):
            z = slice(int(slab[0]), int(slab[-1]) + 1)
            out[z][region[z]] += ENHANCEMENT_HU
            if seconds > 0:
                time.sleep(seconds / len(chunks))
            progress("inference", done, len(chunks))
        inference_s = time.perf_counter() - inference_started

        progress("postprocess", 0, 1)
        synthetic = volume.with_array(np.clip(out, -32768, 32767).astype(np.int16))
        progress("postprocess", 1, 1)

        progress("write", 0, 1)
        output = Path(output_path)
        write_volume(synthetic, output)
        output_sha256 = file_sha256(output)
        if uncertainty_path:
            write_volume(volume.with_array(np.zeros(volume.shape_zyx, np.int16)), uncertainty_path)
        provenance = {
            "synthetic": True,
            "dummy": True,
            "note": "fake synthesis for self-tests (+300 HU in the largest 0..100 HU region); not a model output",
            "model": {"id": engine.card.id, "version": engine.card.version,
                      "weights_sha256": engine.card.weights_sha256},
            "device": engine.device,
            "input": {"path": os.path.abspath(input_path)},
            "output": {"path": os.path.abspath(output)},
            "output_sha256": output_sha256,
            "uncertainty": {"path": os.path.abspath(uncertainty_path)} if uncertainty_path else None,
            "overlap": options.overlap,
            "series_uid": series_uid,
            "enhanced_voxels": int(region.sum()),
            "timings_s": {"inference": inference_s, "total": time.perf_counter() - started},
        }
        # like the engine: the provenance JSON beside the output, <output>.json
        atomic_write_text(output.with_name(output.name + ".json"), json.dumps(provenance, indent=2) + "\n")
        progress("write", 1, 1)
    finally:
        if child is not None:
            child.kill()
            child.wait()
    return provenance


def _largest_soft_tissue_region(array: np.ndarray) -> np.ndarray:
    """Boolean ``[z, y, x]`` mask of the largest 6-connected region with HU in SOFT_TISSUE_HU."""
    from scipy import ndimage

    low, high = SOFT_TISSUE_HU
    labels, count = ndimage.label((array >= low) & (array <= high))
    if count == 0:
        return np.zeros(array.shape, bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _spawn_sleeping_child() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
