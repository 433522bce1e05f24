"""What the module panel shows: its buttons' states and texts, log lines, task results (no Qt, so it is tested).

The widget only copies these into its widgets; every decision is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from DigitalContrastLib.models.choices import device_text


def describe_task_result(name: str, result: Any) -> str:
    """One line for the panel about a finished task: ``probe``, ``registration``, ``metrics`` or ``export``.

    ``result`` is the task's result: the probe's ``hello`` (or a remote server's check), a
    :class:`~.compare_logic.RegisteredReal`, a :class:`~.compare_logic.MetricsOutcome`, the exported files.
    """
    if name == "probe":
        return server_text(result) if "health" in result else device_text(result)
    if name == "registration":
        figures = result.figures
        rotation = ", ".join(f"{v:.2f}" for v in figures["rigid_parameters"]["rotation_deg"])
        shift = ", ".join(f"{v:.1f}" for v in figures["rigid_parameters"]["translation_mm"])
        return (f"Registered ({figures['final_stage']}, {figures['seconds']:.0f} s): rotation {rotation} deg, "
                f"shift {shift} mm.")
    if name == "metrics":
        row = result.synthetic
        text = (f"Body MAE {row['body_mae_hu']:.1f} HU, PSNR {row['body_psnr_db']:.1f} dB, "
                f"SSIM {row['body_ssim']:.3f}.")
        if "lumen_mae_hu" in row:
            text += f" Lumen MAE {row['lumen_mae_hu']:.1f} HU, max diameter error {row['max_diameter_error_mm']:.1f} mm."
        return " ".join([text, *result.notes])
    if name == "export":
        return f"Wrote {len(result)} labelled SYNTHETIC images to {result[0].parent if result else ''}."
    return ""


def server_text(check: dict[str, Any]) -> str:
    """The 'Remote server' device's check: the server's device, workers, queue and models in one line."""
    health = check.get("health") or {}
    device = health.get("device") or {}
    models = [str(model.get("id")) for model in (check.get("models") or {}).get("models") or []]
    workers = len(health.get("workers") or [])
    return (f"Server {check.get('url')}: {device.get('name') or device.get('kind') or 'unknown device'}, "
            f"{workers} worker{'s' if workers != 1 else ''}, {health.get('queue_length', 0)} queued; "
            f"models: {', '.join(models) or 'none'}.")


def event_line(event: Any) -> str | None:
    """The log line of a worker event (``log``, ``warning``, ``stage``, ``hello``, ``error``), or None."""
    data = event.data
    if event.type == "log":
        return data["line"]
    if event.type == "warning":
        return f"Warning: {data['message']}"
    if event.type == "stage":
        return f"Stage: {data['stage']}"
    if event.type == "hello":
        return f"Worker ready ({data.get('mode')}, {(data.get('device') or {}).get('name', '?')})."
    if event.type == "error":
        return f"Error: {data['message']}"
    return None


def task_event_text(name: str, event: Any) -> str | None:
    """The status line of a background task's ``progress`` or ``error`` event (``done``: see :func:`describe_task_result`)."""
    if event.type == "progress":
        return f"{(event.stage or name).capitalize()}: {100 * event.fraction:.0f}%"
    if event.type == "error":
        return f"Failed: {getattr(event.error, 'message', None) or event.error}"
    return None


@dataclass(frozen=True)
class PanelState:
    """Which buttons the panel enables and what Apply and Register say."""

    apply_text: str
    apply_tooltip: str
    apply_enabled: bool
    inputs_enabled: bool
    remote_visible: bool
    overlap_enabled: bool
    review_enabled: bool
    register_text: str
    register_enabled: bool
    metrics_enabled: bool
    export_enabled: bool


def panel_state(node: Any, running: bool, tasks: set[str], installing: bool) -> PanelState:
    """The panel's state from the parameter node (None before there is one), a running synthesis,
    the background tasks running (``registration``, ``metrics``...) and an install in progress."""
    def has(name: str) -> bool:
        return bool(node is not None and getattr(node, name))

    synthetic = has("syntheticVolume")
    registering = "registration" in tasks
    return PanelState(
        apply_text="Cancel" if running else "Apply",
        apply_tooltip=("Stop the synthesis (the worker is killed; nothing is added)." if running
                       else "Synthesize the non-contrast volume in the background; Slicer stays usable."),
        apply_enabled=not installing and (running or has("inputVolume")),
        inputs_enabled=not running and not installing,
        remote_visible=getattr(getattr(node, "device", None), "value", None) == "remote",
        overlap_enabled=has("customOverlap"),
        review_enabled=synthetic and has("inputVolume"),
        register_text="Cancel registration" if registering else "Register real onto non-contrast",
        register_enabled=registering or (has("inputVolume") and has("realVolume")),
        metrics_enabled="metrics" not in tasks and synthetic and (has("registeredVolume") or has("realVolume")),
        export_enabled="export" not in tasks and synthetic and str(getattr(node, "exportFolder", "")) not in ("", "."),
    )
