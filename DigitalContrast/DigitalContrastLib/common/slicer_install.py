"""Carry out a dependency plan inside 3D Slicer: the one install path both modules use.

The plan (:mod:`.dependencies`) says what is missing; this module installs it the way Slicer wants,
after asking once:

* torch through the PyTorch extension (``PyTorchUtils.PyTorchUtilsLogic().installTorch``), which picks
  the build for the computer's GPU;
* everything else with ``slicer.packaging.pip_ensure`` (Slicer 5.12 and later: it asks, shows
  progress, says when a restart would be needed) or, on Slicer 5.10, a confirmation dialog and
  ``slicer.util.pip_install``; in both cases pip gets a constraints file pinning every package
  Slicer ships, so nothing Slicer depends on changes version;
* then ``importlib.invalidate_caches()``: the new packages import in the running Slicer, no restart.

The ``slicer`` module is passed in (this library never imports it), so the same code is exercised by
the stock-Slicer stand-in in the tests.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .dependencies import TORCH_REQUIREMENT, DependencyPlan, after_install, write_bundled_constraints


class InstallDeclined(RuntimeError):
    """The user said no to an install (nothing was installed)."""


def install_packages(plan: DependencyPlan, slicer: Any, ask: bool = True) -> None:
    """Install ``plan.to_install`` into Slicer's Python, asking first when ``ask``.

    Raises:
        InstallDeclined: the user declined.
        Exception: what pip or Slicer's installer raised (the install failed).
    """
    if not plan.to_install:
        return
    constraints = write_bundled_constraints(Path(slicer.app.temporaryPath))
    packaging = getattr(slicer, "packaging", None)
    if packaging is not None and hasattr(packaging, "pip_ensure"):  # Slicer 5.12 and later
        try:
            packaging.pip_ensure(plan.to_install, constraints=str(constraints), prompt_install=ask,
                                 requester=plan.requester, skip_in_testing=False)
        except RuntimeError as error:  # pip_ensure raises RuntimeError when the user declines
            raise InstallDeclined(str(error)) from None
    else:  # Slicer 5.10
        if ask and not slicer.util.confirmOkCancelDisplay(plan.message() + "\n\nInstall now?",
                                                          windowTitle=plan.requester):
            raise InstallDeclined("installation declined")
        slicer.util.pip_install(plan.pip_arguments(constraints))
    after_install()


def install_torch(slicer: Any, ask: bool = True) -> str | None:
    """Install torch through the PyTorch extension; None when done, else one sentence saying why not."""
    try:
        torch_utils = importlib.import_module("PyTorchUtils")
    except ImportError:
        return ("Digital Contrast needs the PyTorch extension: install it with the Extensions Manager, restart "
                "Slicer and press Apply again.")
    torch = torch_utils.PyTorchUtilsLogic().installTorch(askConfirmation=ask, torchVersionRequirement=TORCH_REQUIREMENT)
    after_install()
    return None if torch is not None else "PyTorch was not installed."


def ensure_dependencies(plan_of: Callable[[], DependencyPlan], slicer: Any, ask: bool = True) -> str | None:
    """Install what ``plan_of()`` says is missing: torch first, then the packages (MONAI waits for torch).

    Returns None when everything the plan asks for is importable afterwards, else one sentence for
    the user (a declined install, a failed one, a package Slicer ships that is too old).
    """
    plan = plan_of()
    if plan.satisfied:
        return None
    if plan.bundled_problems:
        return plan.message()
    try:
        if plan.torch_missing:
            why = install_torch(slicer, ask)
            if why:
                return why
            plan = plan_of()
        install_packages(plan, slicer, ask)
    except InstallDeclined:
        return f"{plan.requester} cannot run without these packages: {plan.message()}"
    except Exception as error:  # noqa: BLE001 - pip failed: say so in one sentence, the log has the rest
        return f"The Python packages were not installed ({error}); see the Python console for pip's output."
    left = plan_of()
    return None if left.satisfied else left.message()
