"""Tiny models and volumes for the engine, model and CLI tests (small enough to run in well under a second)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from DigitalContrastLib.ct.volume import CTVolume

TINY_CARD = {
    "schema_version": 1,
    "id": "tiny-test",
    "version": "0.0.1",
    "ifu": "aorta",
    "title": "Tiny random network for tests",
    "network": {"class": "UNet", "kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 1,
                                            "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1,
                                            "norm": "BATCH"}},
    "input": {"clip_hu": [-1024, 3071], "offset_hu": 0, "scale_hu": 1000, "target_spacing_xyz_mm": [2.0, 2.0, 3.0],
              "body_threshold_hu": -500},
    "output": {"kind": "residual_hu", "scale_hu": 100},
    "inference": {"roi_size_zyx": [16, 32, 32], "overlap": 0.25, "blend_mode": "gaussian", "sigma_scale": 0.125,
                  "sw_batch_size": 3, "precision": {"cpu": "bf16-if-supported", "cuda": "autocast"},
                  "skip_empty_windows": True, "uncertainty": "flip-tta"},
    "weights": {"file": "model.safetensors", "format": "safetensors", "sha256": "0" * 64, "size_bytes": 1},
    "training": {"command": "none (random weights for tests)", "data": {}},
    "validation": {},
    "intended_use": "Software tests only. Random weights.",
    "limitations": ["random weights"],
    "licence": "Apache-2.0",
    "energy": "negligible",
}


def tiny_card_data(**changes) -> dict:
    data = copy.deepcopy(TINY_CARD)
    data.update(changes)
    return data


def write_tiny_model(folder: Path, seed: int = 0, **changes):
    """A model folder with a tiny random UNet; returns the loaded card."""
    import torch

    from DigitalContrastLib.models.cards import write_model_folder
    from DigitalContrastLib.models.network import build_network

    data = tiny_card_data(**changes)
    torch.manual_seed(seed)
    network = build_network(data["network"]["class"], data["network"]["kwargs"])
    # give the batch-norm layers non-trivial statistics so the output is not ~0
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return write_model_folder(folder, data, network.state_dict())


def body_volume(shape_zyx=(20, 48, 96), spacing_xyz=(1.5, 1.5, 2.5), seed: int = 0,
                direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> CTVolume:
    """An elliptic 'body' of soft tissue with a bright 'vessel' in air, int16 HU with noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape_zyx[0], : shape_zyx[1], : shape_zyx[2]]
    cy, cx = shape_zyx[1] / 2, shape_zyx[2] / 4
    # the body fills the left ~45 % of the field of view: windows over the air on the right are skipped
    body = ((y - cy) / (0.4 * shape_zyx[1])) ** 2 + ((x - cx) / (0.2 * shape_zyx[2])) ** 2 < 1
    vessel = ((y - cy) ** 2 + (x - cx) ** 2) < 9
    array = np.full(shape_zyx, -1000.0)
    array[np.broadcast_to(body, shape_zyx)] = 40
    array[np.broadcast_to(vessel, shape_zyx)] = 45
    array += rng.normal(0, 10, shape_zyx)
    return CTVolume(np.rint(array).astype(np.int16), spacing_mm=spacing_xyz, origin_mm=(-40.0, 12.5, 300.0),
                    direction=direction)
