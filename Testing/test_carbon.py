"""The energy and carbon ledger: figures from counters where they exist, stated estimates
otherwise, the method next to every figure, CO2e from a documented grid intensity."""

from __future__ import annotations

import pytest

from DigitalContrastLib.cohort import carbon
from DigitalContrastLib.common.errors import JobError


def test_grid_intensity_comes_from_the_table_with_its_source_or_from_the_user():
    uk = carbon.grid_intensity("uk")
    assert uk.country == "GB" and uk.g_per_kwh == carbon.GRID_G_PER_KWH["GB"]
    assert "2023" in uk.source and "Ember" in uk.source
    assert carbon.grid_intensity().country == carbon.DEFAULT_GRID_COUNTRY
    mine = carbon.grid_intensity("FR", g_per_kwh=238)
    assert mine.g_per_kwh == 238 and mine.country is None and "user" in mine.source
    with pytest.raises(JobError, match="--grid-g-per-kwh"):
        carbon.grid_intensity("Atlantis")
    with pytest.raises(JobError):
        carbon.grid_intensity(g_per_kwh=-1)


def test_one_kwh_at_the_grid_intensity_is_that_many_grams():
    grid = carbon.grid_intensity(g_per_kwh=238)
    assert carbon.co2e_g(3.6e6, grid) == pytest.approx(238)
    # the notes' figure: CPU 30 W x 120 s at 238 g/kWh is about 0.24 g
    assert carbon.co2e_g(30 * 120, grid) == pytest.approx(0.238)


def test_the_cpu_estimate_states_its_assumption():
    record = carbon.estimate_energy(12.0, "cpu", cores=2, assumptions=carbon.EnergyAssumptions(cpu_watts_per_core=10))
    assert record.energy_j == pytest.approx(240.0)
    assert record.energy_method == "estimate_cpu_tdp" and record.energy_window_s == 12.0
    assert "10 W per core x 2 core(s)" in record.energy_detail
    gpu = carbon.estimate_energy(3.0, "cuda:0", cores=8, assumptions=carbon.EnergyAssumptions(gpu_watts=300))
    assert gpu.energy_j == pytest.approx(900.0) and gpu.energy_method == "estimate_gpu_board"


def _rapl_zone(root, name: str, energy_uj: int, max_uj: int) -> None:
    zone = root / name
    zone.mkdir()
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")


def test_rapl_counters_sum_packages_skip_subzones_and_survive_a_wrap(tmp_path):
    """Real files laid out as /sys/class/powercap (absent on these machines)."""
    _rapl_zone(tmp_path, "intel-rapl:0", 999_000_000, 1_000_000_000)
    _rapl_zone(tmp_path, "intel-rapl:1", 5_000_000, 1_000_000_000)
    _rapl_zone(tmp_path, "intel-rapl:0:0", 1, 1_000_000_000)  # a core sub-zone: inside package 0
    counter = carbon._RaplCounter(str(tmp_path / "intel-rapl:*"))
    assert len(counter.zones) == 2
    start = counter.read_j()
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("2000000\n")  # wrapped: +3 J
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("9000000\n")  # +4 J
    assert counter.read_j() - start == pytest.approx(7.0)


def test_no_rapl_here_means_none_and_the_meter_estimates(tmp_path):
    assert carbon.open_counter("cpu") is None or carbon.open_counter("cpu").method == "rapl"
    meter = carbon.EnergyMeter("cpu", cores=2, counter_factory=lambda device: None)
    meter.start()
    record = meter.stop(window_s=1.5, device="cpu")
    assert record.energy_method == "estimate_cpu_tdp"
    assert record.energy_j == pytest.approx(1.5 * 2 * carbon.DEFAULT_CPU_WATTS_PER_CORE)


class _SteadyCounter:
    """Stands in for NVML, which needs an NVIDIA GPU: a counter rising at a fixed power."""

    method = "nvml"

    def __init__(self, watts: float) -> None:
        import time

        self.watts, self.t0, self.clock = watts, time.perf_counter(), time.perf_counter

    def read_j(self) -> float:
        return self.watts * (self.clock() - self.t0)

    def describe(self) -> str:
        return "steady test counter"


def test_a_counter_is_scaled_to_the_workers_window_and_names_its_method():
    import time

    meter = carbon.EnergyMeter("cuda:0", cores=4, counter_factory=lambda device: _SteadyCounter(250.0))
    meter.start()
    time.sleep(0.2)
    record = meter.stop(window_s=0.1, device="cuda:0")
    assert record.energy_method == "nvml"
    assert record.energy_j == pytest.approx(25.0, rel=0.05)  # 250 W x the worker's 0.1 s
    # a GPU counter does not describe a job that ran on the CPU: then the estimate is used
    meter.start()
    assert meter.stop(window_s=1.0, device="cpu").energy_method == "estimate_cpu_tdp"


def test_the_ledger_sums_jobs_counts_methods_and_sets_them_against_a_ct():
    grid = carbon.grid_intensity(g_per_kwh=238)
    records = [{"energy_j": 3600.0, "energy_method": "estimate_cpu_tdp"},
               {"energy_j": 7200.0, "energy_method": "nvml"}]
    ledger = carbon.ledger_summary(records, grid)
    assert ledger["jobs"] == 2 and ledger["energy_j"] == 10800.0
    assert ledger["co2e_g"] == pytest.approx(0.714)
    assert ledger["methods"] == {"estimate_cpu_tdp": 1, "nvml": 1}
    assert ledger["contrast_ct_kg_co2e"] == 9.2 and "McAlister" in ledger["contrast_ct_source"]
    assert ledger["ratio_ct_to_synthesis"] == pytest.approx(9200 / 0.357, rel=1e-3)
