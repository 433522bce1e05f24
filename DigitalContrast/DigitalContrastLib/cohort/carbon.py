"""Energy and carbon ledger of synthesis jobs: joules measured where a counter exists, estimated
(with the assumption written down) where none does, and grams of CO2-equivalent from the grid.

Every figure carries the method that produced it (``energy_method``), never implied:

==========================  ===================================================================
``energy_method``           how the joules were obtained
==========================  ===================================================================
``nvml``                    the GPU's cumulative energy counter (NVML
                            ``nvmlDeviceGetTotalEnergyConsumption``, Volta and later), read before
                            and after the job: the whole board, every process on it
``rapl``                    the CPU packages' RAPL counters
                            (``/sys/class/powercap/intel-rapl:N/energy_uj``; root only on most
                            Linux systems): the whole packages, every process on them
``estimate_cpu_tdp``        ``cpu_watts_per_core × cores used × seconds`` (no counter readable)
``estimate_gpu_board``      ``gpu_watts × seconds`` (a GPU job without a readable NVML counter)
==========================  ===================================================================

**Measurement window.** The worker's own timing of the job (``timings.job_s`` of its result:
from receiving the job to its result, the model load included when it happened) is the window
every figure covers. A counter is read by the calling process just before the job is sent and
just after its result arrived (a slightly longer window: start-up and messages); its delta is
turned into the mean power over that window and multiplied by the worker's window, so that
measured and estimated figures cover the same seconds.

**Defaults of the estimate** (override them; they are recorded with each figure):

* :data:`DEFAULT_CPU_WATTS_PER_CORE` = 10 W per core: a round, deliberately generous share of a
  CPU's thermal design power (TDP) per core. Desktop parts are near it (e.g. AMD Ryzen 9 7950X:
  170 W TDP / 16 cores = 10.6 W); server parts are lower (AMD EPYC 9654: 360 W / 96 cores =
  3.75 W; Intel Xeon Platinum 8380: 270 W / 40 cores = 6.75 W). Memory, disks, fans and power
  supply losses are not counted.
* :data:`DEFAULT_GPU_WATTS` = 300 W: the board power of a data-centre GPU under load (an NVIDIA
  A100 PCIe is rated 300 W, an H100 PCIe 350 W), used only when NVML cannot be read.

**Grid intensity.** :data:`GRID_G_PER_KWH` holds the carbon intensity of electricity generation
of a few countries for 2023, from Ember's yearly electricity data with the Energy Institute's
Statistical Review of World Energy, as published by Our World in Data ("Carbon intensity of
electricity generation", https://ourworldindata.org/grapher/carbon-intensity-electricity),
rounded to whole g CO2e/kWh. These are life-cycle emissions of generation averaged over the
year, not the marginal or hourly intensity of a given site. The default country is
:data:`DEFAULT_GRID_COUNTRY` (GB). Any other figure can be given in g/kWh.

**What a synthesis could avoid.** McAlister et al. (Lancet Reg Health West Pac 2022;24:100459,
doi:10.1016/j.lanwpc.2022.100459) measured a life-cycle footprint of 9.2 kg CO2e per hospital
CT scan in Australia (scanner electricity, consumables, contrast and linen included). A
successful synthesis *could avoid* the contrast-enhanced acquisition, not the non-contrast scan
it starts from: the figure is context, not a measured saving.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from DigitalContrastLib.common.errors import JobError

#: Energy per CPU core while computing, W (see the module docstring).
DEFAULT_CPU_WATTS_PER_CORE = 10.0
#: Board power of a GPU while computing, W, when NVML cannot be read.
DEFAULT_GPU_WATTS = 300.0

#: Carbon intensity of electricity generation, g CO2e per kWh, 2023 (Ember / Energy Institute via
#: Our World in Data; see the module docstring). Keys are ISO 3166-1 alpha-2 codes.
GRID_G_PER_KWH: dict[str, float] = {
    "AT": 112.0, "AU": 556.0, "BE": 135.0, "BR": 96.0, "CA": 165.0, "CH": 38.0, "CN": 584.0,
    "DE": 371.0, "DK": 150.0, "ES": 169.0, "FR": 55.0, "GB": 228.0, "IE": 284.0, "IN": 713.0,
    "IT": 323.0, "JP": 494.0, "KR": 432.0, "NL": 269.0, "NO": 30.0, "NZ": 104.0, "PL": 655.0,
    "SE": 38.0, "SG": 501.0, "US": 393.0, "WORLD": 484.0,
}
GRID_SOURCE = ("Ember (yearly electricity data) and Energy Institute (Statistical Review of World Energy), "
               "carbon intensity of electricity generation 2023, via Our World in Data "
               "(ourworldindata.org/grapher/carbon-intensity-electricity)")
GRID_YEAR = 2023
DEFAULT_GRID_COUNTRY = "GB"
#: Other names people type for the same grid.
GRID_ALIASES: dict[str, str] = {"UK": "GB", "USA": "US", "WORLDWIDE": "WORLD", "GLOBAL": "WORLD"}

#: Life-cycle footprint of one hospital CT scan, kg CO2e (McAlister et al. 2022).
CONTRAST_CT_KG_CO2E = 9.2
CONTRAST_CT_SOURCE = ("McAlister S, et al. The carbon footprint of hospital diagnostic imaging in Australia. "
                      "Lancet Reg Health West Pac 2022;24:100459, doi:10.1016/j.lanwpc.2022.100459 "
                      "(9.2 kg CO2e per CT scan, life cycle)")

JOULES_PER_KWH = 3.6e6
_RAPL_GLOB = "/sys/class/powercap/intel-rapl:*"


# ---------------------------------------------------------------------------- grid
@dataclass(frozen=True)
class GridIntensity:
    """The carbon intensity used to turn energy into CO2e.

    Attributes:
        g_per_kwh: grams of CO2e per kWh of electricity.
        country: ISO code of the table entry, or None for a figure the user gave.
        source: where the figure comes from (with its year).
    """

    g_per_kwh: float
    country: str | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def grid_intensity(country: str | None = None, g_per_kwh: float | None = None) -> GridIntensity:
    """The grid intensity from a figure (``g_per_kwh`` wins) or a country code (default GB).

    Raises:
        JobError: an unknown country or a negative figure (the message lists the known codes).
    """
    if g_per_kwh is not None:
        value = float(g_per_kwh)
        if not value >= 0:
            raise JobError(f"The grid intensity {g_per_kwh} g/kWh must be zero or positive: give grams of CO2e per kWh.")
        return GridIntensity(value, None, "given by the user (--grid-g-per-kwh)")
    code = (country or DEFAULT_GRID_COUNTRY).strip().upper()
    code = GRID_ALIASES.get(code, code)
    if code not in GRID_G_PER_KWH:
        known = ", ".join(sorted(GRID_G_PER_KWH))
        raise JobError(f"The grid country {country!r} is not in the table ({known}): "
                       "give one of these codes or the figure itself with --grid-g-per-kwh.")
    return GridIntensity(GRID_G_PER_KWH[code], code, f"{GRID_SOURCE}; {code} {GRID_YEAR}")


def co2e_g(energy_j: float, grid: GridIntensity) -> float:
    """Grams of CO2e of ``energy_j`` joules at ``grid``'s intensity."""
    return float(energy_j) / JOULES_PER_KWH * grid.g_per_kwh


# ---------------------------------------------------------------------------- assumptions
@dataclass(frozen=True)
class EnergyAssumptions:
    """The power figures of the estimate (used only where no counter can be read)."""

    cpu_watts_per_core: float = DEFAULT_CPU_WATTS_PER_CORE
    gpu_watts: float = DEFAULT_GPU_WATTS

    def __post_init__(self) -> None:
        for name in ("cpu_watts_per_core", "gpu_watts"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0):
                raise JobError(f"The power assumption {name} = {value!r} must be zero or a positive number of watts.")


# ---------------------------------------------------------------------------- counters
class _NvmlCounter:
    """NVML's total energy counter of one GPU (mJ since the driver loaded), if readable."""

    method = "nvml"

    def __init__(self, index: int) -> None:
        import pynvml  # optional: nvidia-ml-py; absent is normal

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(int(index))
        name = pynvml.nvmlDeviceGetName(self._handle)
        self.name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)  # bytes before 11.5
        self.read_j()  # raises when the GPU has no energy counter (before Volta)

    def read_j(self) -> float:
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)) / 1000.0

    def describe(self) -> str:
        return f"NVML total energy counter of GPU '{self.name}' (whole board, all processes on it)"


class _RaplCounter:
    """The sum of the package-level RAPL counters (µJ, wrapping at ``max_energy_range_uj``)."""

    method = "rapl"

    def __init__(self, root: str = _RAPL_GLOB) -> None:
        self.zones = []
        for zone in sorted(glob.glob(root)):
            if zone.count(":") != 1:  # sub-zones (core, uncore, dram) are inside the package figure
                continue
            with open(os.path.join(zone, "energy_uj")) as handle:  # raises when unreadable
                int(handle.read())
            with open(os.path.join(zone, "max_energy_range_uj")) as handle:
                self.zones.append((zone, int(handle.read())))
        if not self.zones:
            raise OSError("no RAPL package zone")
        self._last = [self._read_zone(zone) for zone, _ in self.zones]
        self._total_uj = 0

    @staticmethod
    def _read_zone(zone: str) -> int:
        with open(os.path.join(zone, "energy_uj")) as handle:
            return int(handle.read())

    def read_j(self) -> float:
        # accumulate with wrap-around (a counter may wrap once between two reads)
        for k, (zone, max_range) in enumerate(self.zones):
            now = self._read_zone(zone)
            delta = now - self._last[k]
            self._total_uj += delta if delta >= 0 else delta + max_range
            self._last[k] = now
        return self._total_uj / 1e6

    def describe(self) -> str:
        return f"RAPL package counters ({len(self.zones)} package(s), whole CPU packages, all processes)"


def _gpu_index(device: str) -> int | None:
    """The NVML index of a ``cuda`` / ``cuda:N`` device (mapped through CUDA_VISIBLE_DEVICES)."""
    if not device.startswith("cuda"):
        return None
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible:
        items = [v.strip() for v in visible.split(",")]
        if all(v.isdigit() for v in items) and index < len(items):
            return int(items[index])
    return index


def open_counter(device: str) -> Any | None:
    """A readable energy counter for ``device`` (NVML for a GPU, RAPL for the CPU), or None."""
    index = _gpu_index(device)
    try:
        return _NvmlCounter(index) if index is not None else _RaplCounter()
    except Exception:  # noqa: BLE001 - no library, no permission, no counter: all mean "estimate"
        return None


def gpu_count() -> int:
    """GPUs NVML sees (after CUDA_VISIBLE_DEVICES), 0 without pynvml or a driver."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    try:
        import pynvml

        pynvml.nvmlInit()
        count = int(pynvml.nvmlDeviceGetCount())
    except Exception:  # noqa: BLE001
        return 0
    if visible:
        return min(count, len([v for v in visible.split(",") if v.strip()]))
    return count


# ---------------------------------------------------------------------------- one job
@dataclass
class EnergyRecord:
    """The energy of one job and how it was obtained.

    Attributes:
        energy_j: joules attributed to the job's window.
        energy_method: ``nvml``, ``rapl``, ``estimate_cpu_tdp`` or ``estimate_gpu_board``.
        energy_window_s: the seconds the figure covers (the worker's ``timings.job_s``).
        energy_detail: the counter used, or the estimate's formula with its numbers.
    """

    energy_j: float
    energy_method: str
    energy_window_s: float
    energy_detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EnergyMeter:
    """Reads a counter around one job, then attributes energy to the worker's window.

    Usage::

        meter = EnergyMeter(device="cpu", cores=2)
        meter.start()
        result = run_synthesis_job(...)
        record = meter.stop(window_s=result["timings"]["job_s"], device=result["device"])
    """

    def __init__(self, device: str, cores: int, assumptions: EnergyAssumptions | None = None,
                 counter_factory: Callable[[str], Any | None] = open_counter) -> None:
        self.device = str(device)
        self.cores = max(int(cores), 1)
        self.assumptions = assumptions or EnergyAssumptions()
        self._factory = counter_factory
        self._counter: Any | None = None
        self._start_j = 0.0
        self._start_s = 0.0

    def start(self) -> None:
        if self.device == "auto":  # the worker decides: the GPU's counter if there is one, else RAPL
            self._counter = self._factory("cuda:0") or self._factory("cpu")
        else:
            self._counter = self._factory(self.device)
        self._start_j = self._counter.read_j() if self._counter else 0.0
        self._start_s = time.perf_counter()

    def stop(self, window_s: float, device: str) -> EnergyRecord:
        """The record for a job that ran ``window_s`` seconds (worker's timing) on ``device``."""
        outer_s = time.perf_counter() - self._start_s
        window_s = max(float(window_s), 0.0)
        counter = self._counter
        on_gpu = str(device).startswith("cuda")
        counter_fits = counter is not None and (counter.method == "nvml") == on_gpu
        if counter_fits and outer_s > 0:
            delta_j = max(counter.read_j() - self._start_j, 0.0)
            mean_w = delta_j / outer_s
            return EnergyRecord(mean_w * window_s, counter.method, window_s,
                                f"{counter.describe()}: {delta_j:.1f} J over {outer_s:.2f} s read around the job "
                                f"(mean {mean_w:.1f} W) x the worker's {window_s:.2f} s")
        return estimate_energy(window_s, device, self.cores, self.assumptions)


def estimate_energy(window_s: float, device: str, cores: int, assumptions: EnergyAssumptions) -> EnergyRecord:
    """The stated estimate: GPU board power, or CPU watts per core × cores, times the window."""
    if str(device).startswith("cuda"):
        watts = assumptions.gpu_watts
        return EnergyRecord(watts * window_s, "estimate_gpu_board", window_s,
                            f"assumed GPU board power {watts:g} W x {window_s:.2f} s (no NVML energy counter readable)")
    watts = assumptions.cpu_watts_per_core * cores
    return EnergyRecord(watts * window_s, "estimate_cpu_tdp", window_s,
                        f"assumed {assumptions.cpu_watts_per_core:g} W per core x {cores} core(s) = {watts:g} W "
                        f"x {window_s:.2f} s (no RAPL counter readable)")


def ledger_summary(records: list[Mapping[str, Any]], grid: GridIntensity) -> dict[str, Any]:
    """Totals of per-job records (``energy_j``, ``energy_method``) with the grid and the context.

    Returns ``jobs``, ``energy_j``, ``energy_kwh``, ``co2e_g`` (total), ``co2e_g_per_job`` (mean),
    ``methods`` (jobs per method), ``grid``, ``contrast_ct_kg_co2e`` with its source, and
    ``ratio_ct_to_synthesis`` (how many mean syntheses one CT's footprint equals).
    """
    energies = [float(r["energy_j"]) for r in records if r.get("energy_j") is not None]
    total_j = float(sum(energies))
    methods: dict[str, int] = {}
    for r in records:
        if r.get("energy_method"):
            methods[str(r["energy_method"])] = methods.get(str(r["energy_method"]), 0) + 1
    per_job_g = co2e_g(total_j / len(energies), grid) if energies else float("nan")
    return {
        "jobs": len(energies),
        "energy_j": total_j,
        "energy_kwh": total_j / JOULES_PER_KWH,
        "co2e_g": co2e_g(total_j, grid),
        "co2e_g_per_job": per_job_g,
        "methods": methods,
        "grid": grid.to_dict(),
        "contrast_ct_kg_co2e": CONTRAST_CT_KG_CO2E,
        "contrast_ct_source": CONTRAST_CT_SOURCE,
        "ratio_ct_to_synthesis": (CONTRAST_CT_KG_CO2E * 1000.0 / per_job_g) if energies and per_job_g > 0 else float("nan"),
    }
