"""Benchmark of the web reading station (``make bench``; a command, not a test).

One reader answers ``--items`` items in a real headless Chromium through ``digital-contrast-reader
serve`` on a SQLite store of the example study's kind. For each item it measures, in the browser's
own clock, the time from the Submit click to the next item's images on screen: the page shows the
new item id and every slice view has loaded a new frame since the click. Baseline, in the same run:
the same store calls without the web (submit, resume, open the next item, read its images) for
another reader. Also the resident memory of the reader's page process (memory per connected
reader), of the front process and of a spare page process. Prints JSON.

    python Testing/station_bench.py --items 20 --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from station_support import StationServer, answer_item, launch, make_station_study, sign_in, wait_for_item  # noqa: E402

TARGET_MEDIAN_S = 0.5

#: Installed in the page: load times of the images in the views, and the click time of Submit.
PROBE = """
() => {
  if (window.__bench) return;
  window.__bench = {loads: new Map(), clicked: 0};
  document.addEventListener('load', e => {
    const views = document.querySelector('[data-testid=views]');
    if (e.target.tagName === 'IMG' && views && views.contains(e.target)) window.__bench.loads.set(e.target, performance.now());
  }, true);
  document.addEventListener('click', e => {
    if (e.target.closest('[data-testid=submit]')) window.__bench.clicked = performance.now();
  }, true);
}
"""
#: Seconds from the click until the item id changed and every view shows a frame loaded after the click.
DONE = """
([previous]) => {
  const b = window.__bench, views = document.querySelector('[data-testid=views]');
  if (!b.clicked || window.trame.state.get('item_id') === previous) return null;
  const images = [...views.querySelectorAll('img')].filter(i => i.offsetWidth > 0);
  if (!images.length) return null;
  const times = images.map(i => b.loads.get(i) || 0);
  if (Math.min(...times) <= b.clicked) return null;
  return (Math.max(...times) - b.clicked) / 1000;
}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "p95": round(percentile(values, 0.95), 4),
            "min": round(min(values), 4), "max": round(max(values), 4)}


def store_baseline(study, reader: str, count: int) -> list[float]:
    """Submit -> next item opened and its images read, by the store alone (no web)."""
    from DigitalContrastReaderLib.mrml.reader_display import read_image_blind
    from DigitalContrastReaderLib.reading.simulate import random_form_answers
    from DigitalContrastReaderLib.store.location import open_reading_store

    token = study.tokens[reader]
    rng = random.Random(5)
    times = []
    with open_reading_store(study.location, images_dir=study.images_dir) as store:
        item = store.open_item(reader, store.resume(reader, token=token).item_id, token=token)
        for _ in range(count):
            answers = random_form_answers([q for q in item.questions if q["type"] != "number"], rng)
            answers.update({q["key"]: 20.0 for q in item.questions if q["type"] == "number"})
            start = time.perf_counter()
            store.submit(reader, item.item_id, answers, token=token, active_seconds=1.0)
            item = store.resume(reader, token=token)
            item = store.open_item(reader, item.item_id, token=token)
            for image in item.images:
                read_image_blind(image["path"])
            times.append(time.perf_counter() - start)
    return times


def admin_progress(station: StationServer) -> dict[str, dict]:
    """The admin view's rows, by reader."""
    import urllib.request

    from station_support import ADMIN_TOKEN

    request = urllib.request.Request(station.url + "admin/progress", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return {row["reader_id"]: row for row in json.load(reply)["readers"]}


def rss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def run(items: int, workdir: Path) -> dict:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("station_bench: Debian's chromium is not installed (make chromium)")
    study = make_station_study(workdir, cases=max(8, items // 3 + 3), training_cases=1)
    station = StationServer(study, workdir).start()
    rng = random.Random(11)
    latencies: list[float] = []
    try:
        with sync_playwright() as p:
            browser = launch(p, chromium)
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            sign_in(page, station.url, "r01", study.tokens["r01"])
            item_id = wait_for_item(page)
            page.evaluate(PROBE)
            time.sleep(1.0)  # the first frames
            for _ in range(items):
                answer_item(page, rng)
                page.get_by_test_id("submit").click()
                handle = page.wait_for_function(DONE, arg=[item_id], timeout=30_000, polling="raf")
                latencies.append(handle.json_value())
                item_id = wait_for_item(page, item_id)
                page.evaluate("() => { window.__bench.clicked = 0; }")
            memory = {"front_mb": rss_mb(station.proc.pid),
                      "page_processes_mb": sorted(rss_mb(pid) for pid in station.page_pids()),
                      "reader_page_mb": float(admin_progress(station)["r01"]["memory_mb"])}
            browser.close()
    finally:
        station.stop()
    baseline = store_baseline(study, "r02", items)
    web = summary(latencies)
    base = summary(baseline)
    return {
        "bench": "reading_station",
        "items": items,
        "cpus": os.cpu_count(),
        "submit_to_next_images_s": web,
        "target_median_s": TARGET_MEDIAN_S,
        "meets_target": web["median"] <= TARGET_MEDIAN_S,
        "baseline_store_only_s": base,
        "ratio_median_web_over_store": round(web["median"] / base["median"], 2) if base["median"] else None,
        "memory": {**memory, "per_connected_reader_mb": memory["reader_page_mb"],
                   "note": "per connected reader: the resident memory of the reader's own page process (the admin "
                           "view's figure); page_processes_mb also lists the spare kept loaded for the next sign-in"},
        "latencies_s": [round(v, 4) for v in latencies],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20, help="items answered through the page (default 20)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dc-station-bench-") as folder:
        result = run(args.items, Path(folder))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        web = result["submit_to_next_images_s"]
        print(f"submit -> next item's images: median {web['median']:.3f} s, p95 {web['p95']:.3f} s over "
              f"{result['items']} items (target median <= {TARGET_MEDIAN_S} s); store alone median "
              f"{result['baseline_store_only_s']['median']:.3f} s; page process per reader "
              f"{result['memory']['per_connected_reader_mb']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
