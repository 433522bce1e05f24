"""What the module panel says about a finished background task, in one line (no Qt, so it is tested)."""

from __future__ import annotations

from typing import Any

from DigitalContrastLib.models.choices import device_text


def describe_task_result(name: str, result: Any) -> str:
    """One line for the panel about a finished task: ``probe``, ``registration``, ``metrics`` or ``export``.

    ``result`` is the task's result: the probe's ``hello``, a
    :class:`~.compare_logic.RegisteredReal`, a :class:`~.compare_logic.MetricsOutcome`, the exported files.
    """
    if name == "probe":
        return device_text(result)
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
