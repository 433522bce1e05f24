"""Fine-tuning from an installed model (``--init-from``) and blending with it (``--parent-weight``).

:func:`initial_weights` reads and checks the parent's weights when the run starts;
:func:`resumed_parent` does the same for a resumed run, refusing a parent that has changed since;
:func:`blend_with_parent` makes the weight-space ensemble that is written at the end.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from DigitalContrastLib.common.errors import JobError
from DigitalContrastLib.models.cards import resolve_model
from DigitalContrastLib.models.weights import load_state_dict

from .card import card_template, network_kwargs_for
from .config import TrainConfig


def initial_weights(config: TrainConfig) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The verified weights (float32) of the installed model ``config.init_from``, and its identity.

    The identity (id, version, weights sha256, its training command) goes into the new card as
    ``training.initialised_from``.

    Raises:
        ModelError: not installed, or its weights fail the checksum / are not safetensors.
        JobError: its network or input normalisation differs from this run's (the field is named).
    """
    card = resolve_model(config.init_from)
    ours = card_template(config, network_kwargs_for(config))
    theirs = json.loads(json.dumps(card.data))
    fields = [("network", "class", "--channels/--norm"), ("network", "kwargs", "--channels, --res-units and --norm"),
              ("input", "clip_hu", "--clip-hu"), ("input", "offset_hu", "--input-offset-hu"),
              ("input", "scale_hu", "--input-scale-hu"), ("input", "target_spacing_xyz_mm", "--spacing"),
              ("output", "scale_hu", "the output scale")]
    for section, key, option in fields:
        want, have = ours[section][key], theirs.get(section, {}).get(key)
        if json.dumps(want, sort_keys=True) != json.dumps(have, sort_keys=True):
            raise JobError(f"--init-from {config.init_from}: its card has {section}.{key} = {json.dumps(have)} but this "
                           f"run has {json.dumps(want)}; give the same {option} as {card.id} {card.version}.",
                           code="init_mismatch")
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_state_dict(card.weights).items()}
    return state, {"id": card.id, "version": card.version, "weights_sha256": card.weights_sha256,
                   "command": theirs.get("training", {}).get("command", "")}


def blend_with_parent(state: dict[str, torch.Tensor], parent: dict[str, torch.Tensor], parent_weight: float,
                      identity: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``parent_weight`` * ``parent`` + the rest * ``state`` (the trained weights).

    Floating tensors are blended in float32 (and returned so); integer buffers (batch-norm counters)
    keep the trained values. ``parent`` is the verified state of :func:`initial_weights`, read once
    when the run starts; ``identity`` (its id and version) names it in the error.

    Raises:
        JobError: its tensors do not match the trained network's.
    """
    if set(parent) != set(state) or any(parent[k].shape != state[k].shape for k in state):
        raise JobError(f"--parent-weight: the weights of {identity['id']} {identity['version']} do not match the trained "
                       "network's tensors; train with the same network options.", code="init_mismatch")
    w = float(parent_weight)
    return {k: (w * parent[k].float() + (1.0 - w) * v.float() if v.is_floating_point() else v)
            for k, v in state.items()}


def resumed_parent(config: TrainConfig, started_from: dict[str, Any] | None) -> dict[str, torch.Tensor]:
    """The parent's verified weights for the blend of a resumed run, refused unless this run started from them.

    ``started_from`` is the identity the checkpoint recorded (:func:`.checkpoint.checkpoint_parent`). The model
    installed as ``config.init_from`` may have changed since (a new version shipped under the same
    id): blending with it would write weights that the card does not describe.

    Raises:
        JobError: the checkpointed run started from random weights or from other weights (sha256).
    """
    if started_from is None:
        raise JobError(f"--parent-weight: the checkpoint in {config.out_dir} started from random weights, not from "
                       f"{config.init_from}; resume without --parent-weight.", code="init_mismatch")
    state, installed = initial_weights(config)
    if installed["weights_sha256"] != started_from["weights_sha256"]:
        raise JobError(f"--parent-weight: {config.init_from} is now {installed['id']} {installed['version']} (sha256 "
                       f"{installed['weights_sha256'][:12]}…), but the run in {config.out_dir} started from "
                       f"{started_from['version']} (sha256 {started_from['weights_sha256'][:12]}…); install that "
                       "version again or resume without --parent-weight.", code="init_mismatch")
    return state
