"""Train a residual synthesis network on paired non-contrast / contrast CT cases: the run itself.

:func:`train` reads the cases (:mod:`.cases`), builds the network, the AdamW optimiser, the loss
(:mod:`.loss`) and the patch sampler (:mod:`.sampler`), resumes a checkpoint or starts from a parent
model (:mod:`.parent`), then runs the epochs and writes the model folder.

Each step draws ``batch_size`` patches and fits the residual ``(contrast - noncontrast) /
output_scale_hu`` from the normalised non-contrast input. The first ``mse_warmup_fraction`` of the
steps use a vessel-weighted squared error instead of the L1 (blended into it over the next 20 %),
because L1 alone stalls at predicting no enhancement at all. From ``freeze_norm_fraction`` of the
steps on, batch norm uses its running statistics, so the rest of training optimises exactly what
inference computes (:mod:`.schedule`).

After every epoch: the validation cases are synthesized whole with the engine's own sliding
window and scored (body MAE, lumen MAE/bias, thrombus bias, lumen Dice, diameter error); a
checkpoint (model + AdamW state, safetensors, no pickle; :mod:`.checkpoint`) is written, from which
``resume`` continues. At the end the model folder (``model.safetensors`` + a complete
``model_card.json``, :mod:`.card`) is written to ``out_dir``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from DigitalContrastLib.common.errors import JobError
from DigitalContrastLib.common.progress import ProgressCallback, no_progress
from DigitalContrastLib.common.report_html import format_number
from DigitalContrastLib.models.cards import write_model_folder
from DigitalContrastLib.models.network import build_network
from DigitalContrastLib.synthesis.device import NetworkRunner, choose_precision, cpu_has_fast_bf16, use_all_cpu_cores
from DigitalContrastLib.synthesis.engine import synthesize_volume
from DigitalContrastLib.synthesis.settings import EngineSettings

from .card import card_template, network_kwargs_for, record_training
from .cases import TrainingCase, TrainingData, load_training_data
from .checkpoint import checkpoint_parent, checkpoint_paths, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .loss import SynthesisLoss
from .parent import blend_with_parent, initial_weights, resumed_parent
from .sampler import PatchSampler
from .schedule import freeze_norm_layers, l1_share_at, learning_rate_at
from .validation import case_metrics


@dataclass
class TrainingRun:
    """A run in progress: what each step advances and what the end writes."""

    config: TrainConfig
    network: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: SynthesisLoss
    sampler: PatchSampler
    card: dict[str, Any]  # the card template, completed when the run ends
    settings: EngineSettings  # the engine settings of the card: validation synthesizes with them
    precision: str  # "bf16-autocast" or "fp32" (or the config's explicit choice)
    total_steps: int  # over all epochs, resumed ones included
    freeze_step: int | None  # first step with batch norm frozen (None: never)
    first_epoch: int  # epochs already done (resumed), 0 for a fresh run
    step: int  # global step: optimiser steps done
    history: list[dict[str, Any]]  # one entry per epoch done
    parent: dict[str, Any] | None  # identity of the model this run started from (None: random weights)
    parent_state: dict[str, torch.Tensor]  # its verified weights where read (for --parent-weight), else empty


def train(config: TrainConfig, resume: bool = False, progress: ProgressCallback | None = None,
          log: Callable[[str], None] | None = None, step_bar: Callable[[int], Any] | None = None) -> Path:
    """Run a training; returns the written model card path (``<out_dir>/model_card.json``).

    Args:
        config: the run.
        resume: continue from ``<out_dir>/training/checkpoint.safetensors`` when it exists.
        progress: ``progress("train", epochs done, epochs)``.
        log: receives one line per epoch.
        step_bar: optional factory ``step_bar(total) -> tqdm-like`` for a per-epoch step bar.
    Raises:
        InputError: no usable cases.
        JobError: ``parent_weight`` without ``init_from`` (before anything is read or trained).
    """
    progress = progress or no_progress
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    started = time.perf_counter()
    if config.parent_weight and not config.init_from:
        raise JobError("--parent-weight needs --init-from: the model whose weights are blended in.", code="init_mismatch")
    use_all_cpu_cores()
    out_dir = Path(config.out_dir)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    data = load_training_data(config, rng, log)
    run = start_run(config, data.cases, out_dir, resume, log)
    for epoch in range(run.first_epoch, config.epochs):
        t_epoch = time.perf_counter()
        sums = train_one_epoch(run, step_bar)
        train_seconds = time.perf_counter() - t_epoch
        entry, val = validate_epoch(run, data.validation_cases, epoch, sums, train_seconds)
        run.history.append(entry)
        save_checkpoint(out_dir, run.network, run.optimizer, epoch + 1, run.step, config, run.history, parent=run.parent)
        log(epoch_line(config, entry, val, train_seconds))
        progress("train", epoch + 1, config.epochs)
    return write_trained_model(run, data, out_dir, time.perf_counter() - started, log)


# --------------------------------------------------------------------------- set-up


def start_run(config: TrainConfig, cases: list[TrainingCase], out_dir: Path, resume: bool,
              log: Callable[[str], None]) -> TrainingRun:
    """Build the network, optimiser, loss and sampler; resume the checkpoint or load the parent's weights.

    The network's initial weights come from torch's global generator (seeded by :func:`train`); the
    sampler gets its own generator, seeded with ``[seed, first epoch]``.
    """
    kwargs = network_kwargs_for(config)
    network = build_network("UNet", kwargs)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = SynthesisLoss(config.output_scale_hu, config.ssim_weight, config.lumen_mask_weight)
    total_steps = config.epochs * config.steps_per_epoch
    first_epoch, step, history = _restore_checkpoint(config, out_dir, network, optimizer, resume, log)
    parent, parent_state = _parent_of_run(config, out_dir, network, first_epoch, log)
    precision = _training_precision(config)
    card = card_template(config, kwargs)
    settings = EngineSettings.from_card(card)
    sampler = PatchSampler(cases, config, np.random.default_rng([config.seed, first_epoch]))
    freeze_step = int(config.freeze_norm_fraction * total_steps) if config.freeze_norm_fraction > 0 else None
    network.train()
    return TrainingRun(config=config, network=network, optimizer=optimizer, loss_fn=loss_fn, sampler=sampler, card=card,
                       settings=settings, precision=precision, total_steps=total_steps, freeze_step=freeze_step,
                       first_epoch=first_epoch, step=step, history=history, parent=parent, parent_state=parent_state)


def _restore_checkpoint(config: TrainConfig, out_dir: Path, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        resume: bool, log: Callable[[str], None]) -> tuple[int, int, list[dict[str, Any]]]:
    """``(epochs done, global step, history)``: from the checkpoint when resuming and one exists, else a fresh start."""
    first_epoch, step, history = 0, 0, []
    checkpoint, _ = checkpoint_paths(out_dir)
    if resume and checkpoint.is_file():
        first_epoch, step, history = load_checkpoint(out_dir, network, optimizer)
        log(f"resumed from {checkpoint} after epoch {first_epoch} (step {step})")
    elif resume and not config.init_from:
        log(f"no checkpoint at {checkpoint}: starting from scratch")
    return first_epoch, step, history


def _parent_of_run(config: TrainConfig, out_dir: Path, network: torch.nn.Module, first_epoch: int,
                   log: Callable[[str], None]) -> tuple[dict[str, Any] | None, dict[str, torch.Tensor]]:
    """The parent model's identity and, where read, its weights (loaded into ``network`` on a fresh start).

    A resumed run takes the identity its checkpoint recorded; one that blends (``parent_weight``)
    reads the parent's weights again here, so a changed parent is refused before the epochs.
    """
    parent = checkpoint_parent(out_dir) if first_epoch else None
    parent_state: dict[str, torch.Tensor] = {}
    if config.init_from and first_epoch == 0:
        parent_state, parent = initial_weights(config)
        network.load_state_dict(parent_state)
        log(f"starting from the weights of {parent['id']} {parent['version']} (sha256 {parent['weights_sha256'][:12]}…)")
    elif config.parent_weight > 0:  # refused here, before the epochs, not after them
        parent_state = resumed_parent(config, parent)
    return parent, parent_state


def _training_precision(config: TrainConfig) -> str:
    """``config.train_precision``, with "auto" resolved: bf16 autocast where the CPU has native bf16, else fp32."""
    precision = config.train_precision
    if precision == "auto":
        precision = "bf16-autocast" if cpu_has_fast_bf16() else "fp32"
    return precision


# --------------------------------------------------------------------------- one epoch


def train_one_epoch(run: TrainingRun, step_bar: Callable[[int], Any] | None) -> dict[str, float]:
    """``steps_per_epoch`` optimiser steps; returns the sums over the steps of each loss part."""
    sums: dict[str, float] = {}
    bar = step_bar(run.config.steps_per_epoch) if step_bar else None
    for _ in range(run.config.steps_per_epoch):
        parts = train_step(run)
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        if bar is not None:
            bar.update(1)
            bar.set_postfix(l1_hu=f"{parts['l1_hu']:.1f}")
    if bar is not None:
        bar.close()
    return sums


def train_step(run: TrainingRun) -> dict[str, float]:
    """One optimiser step on a fresh batch (scheduled learning rate, norm freeze and loss blend); returns the loss parts."""
    config, step = run.config, run.step
    for group in run.optimizer.param_groups:
        group["lr"] = learning_rate_at(step, run.total_steps, config)
    if run.freeze_step is not None and step >= run.freeze_step:
        freeze_norm_layers(run.network)
    batch = run.sampler.batch(config.batch_size)
    run.optimizer.zero_grad(set_to_none=True)
    if run.precision == "bf16-autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pred = run.network(batch["image"])
    else:
        pred = run.network(batch["image"])
    loss, parts = run.loss_fn(pred, batch, l1_share=l1_share_at(step, run.total_steps, config))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.network.parameters(), 1.0)
    run.optimizer.step()
    run.step += 1
    return parts


# --------------------------------------------------------------------------- validation after each epoch


def validate_epoch(run: TrainingRun, cases: list[TrainingCase], epoch: int, sums: dict[str, float],
                   train_seconds: float) -> tuple[dict[str, Any], dict[str, float]]:
    """Score the validation ``cases`` after epoch ``epoch`` (0-based); returns its history entry and the scores.

    The entry holds the schedule at the epoch's last step, the mean loss parts (``train_*``), the
    validation means (``val_*``) and the seconds spent.
    """
    config, step = run.config, run.step
    t_val = time.perf_counter()
    val = evaluate_cases(run.network, cases, run.settings)
    entry = {
        "epoch": epoch + 1,
        "step": step,
        "lr": learning_rate_at(step - 1, run.total_steps, config),
        "l1_share": l1_share_at(step - 1, run.total_steps, config),
        "norm_frozen": run.freeze_step is not None and step > run.freeze_step,
        **{f"train_{k}": v / config.steps_per_epoch for k, v in sums.items()},
        **{f"val_{k}": v for k, v in val.items()},
        "seconds_train": round(train_seconds, 1),
        "seconds_val": round(time.perf_counter() - t_val, 1),
    }
    return entry, val


def evaluate_cases(network: torch.nn.Module, cases: list[TrainingCase], settings: EngineSettings,
                   precision: str = "auto") -> dict[str, float]:
    """Synthesize each validation case whole (engine sliding window) and average its metrics."""
    runner = NetworkRunner(network, lambda d: choose_precision(d, settings) if precision == "auto" else precision)
    rows = []
    was_training = network.training
    network.eval()
    try:
        for case in cases:
            out = synthesize_volume(case.source_volume, runner, settings, torch.device("cpu"))
            rows.append(case_metrics(out.synthetic.array, case.contrast_volume.array, case.source_volume.array,
                                     case.labels_volume.array if case.labels_volume is not None else None,
                                     case.source_volume.spacing_mm,
                                     case.enhancement_volume.array if case.enhancement_volume is not None else None))
    finally:
        network.train(was_training)
    keys = sorted({k for r in rows for k in r if isinstance(r[k], (int, float))})
    means = {}
    for key in keys:
        values = [float(r[key]) for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        means[key] = float(np.mean(values)) if values else float("nan")  # nan: no case has that region
    return means


def epoch_line(config: TrainConfig, entry: dict[str, Any], val: dict[str, float], train_seconds: float) -> str:
    """The log line of an epoch: training loss and L1, the main validation figures ("n/a" where none), seconds."""
    return (
        f"epoch {entry['epoch']}/{config.epochs} step {entry['step']}: loss {entry['train_loss']:.4f} "
        f"L1 {entry['train_l1_hu']:.1f} HU | val body MAE {format_number(val.get('body_mae_hu'), 1)} "
        f"lumen MAE {format_number(val.get('lumen_mae_hu'), 1)} "
        f"thrombus bias {format_number(val.get('thrombus_bias_hu'), 1, signed=True)} "
        f"Dice {format_number(val.get('lumen_dice'), 3)}"
        + (f" mask MAE {format_number(val.get('mask_mae_hu'), 1)}" if "mask_mae_hu" in val else "")
        + f" ({train_seconds:.0f}+{entry['seconds_val']:.0f} s)"
    )


# --------------------------------------------------------------------------- the model folder


def write_trained_model(run: TrainingRun, data: TrainingData, out_dir: Path, elapsed: float,
                        log: Callable[[str], None]) -> Path:
    """Complete the card and write the model folder (weights + card) to ``out_dir``; returns the card path.

    ``elapsed`` is this call's wall time in seconds; the epochs of a resumed run's earlier parts are
    added from the history.
    """
    prior = sum(h.get("seconds_train", 0) + h.get("seconds_val", 0) for h in run.history[:run.first_epoch])
    record_training(run.card, run.config, run.network, data, run.step, run.precision, elapsed + prior, run.history,
                    run.parent)
    state = weights_to_write(run)  # notes a blend in the card before it is written
    written = write_model_folder(out_dir, run.card, state)
    log(f"model written: {written.path} (weights sha256 {written.weights_sha256[:12]}…)")
    return written.path


def weights_to_write(run: TrainingRun) -> dict[str, torch.Tensor]:
    """The network's weights as shipped: blended with the parent's (``parent_weight``, noted in the card)
    and floating tensors cast to ``weights_dtype``."""
    config = run.config
    store = {"float16": torch.float16, "float32": torch.float32}[config.weights_dtype]
    state = {k: v.detach().cpu() for k, v in run.network.state_dict().items()}
    if config.parent_weight > 0:
        state = blend_with_parent(state, run.parent_state, config.parent_weight, run.parent)
        run.card["training"]["weights_blend"] = {
            "parent_share": config.parent_weight,
            "rule": "written weights = parent_share * parent + (1 - parent_share) * trained (float32, then stored)",
            "note": "The figures in training.history and validation.during_training are of the trained network "
                    "before the blend.",
        }
    return {k: v.to(store) if v.is_floating_point() else v for k, v in state.items()}
