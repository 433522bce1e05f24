"""The web reading station (``digital-contrast-reader serve``) in a real headless Chromium, on a real
store (SQLite, and PostgreSQL as the study's reader role), with real page processes.

First visit (4 items answered by clicking and typing), reload, kill -9 of the station with an
answer in flight, restart, sign in again and continue; the store then holds exactly the answers
given, once each, with their active times. Everything the browser received is searched for the
study's case ids, file names, folders, model id and the words real/synthetic. Two readers read at
once in two browser contexts, and a double submit (two tabs) is stored once.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from html_screenshot import require_chromium
from station_support import (
    ADMIN_TOKEN,
    Recorder,
    StationServer,
    answer_item,
    copy_screenshot,
    launch,
    make_station_study,
    sign_in,
    views_variance,
    wait_for_item,
    wait_gone,
)

pytestmark = [pytest.mark.web, pytest.mark.process, pytest.mark.slow, pytest.mark.mrml]
pytest.importorskip("trame_slicer", reason="the web extra is not installed (pip install -e .[web])")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")


def _submitted(study, reader_id: str) -> dict[str, dict]:
    """The reader's submitted items in the store: item id -> answers, and the submit events."""
    with study.admin_store() as store:
        answers: dict[str, dict] = {}
        for record in store.responses():
            if record.reader_id == reader_id:
                answers.setdefault(record.item_id, {})[record.question_key] = record.value
        items = {i.item_id: i for i in store.items(reader_id) if i.submitted_at}
        submits = [e for e in store.events() if e["kind"] == "submit" and e["reader_id"] == reader_id]
    return {"answers": answers, "items": items, "submits": submits}


def _same(stored: dict, given: dict) -> bool:
    return all(stored.get(k) == v or (isinstance(v, float) and abs(stored.get(k, 1e9) - v) < 1e-9)
               for k, v in given.items()) and set(stored) <= set(given)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def study(request, tmp_path):
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        return make_station_study(tmp_path, postgres_url=url)
    return make_station_study(tmp_path)


def test_a_reader_reads_reloads_survives_a_kill_and_the_store_holds_each_answer_once(study, tmp_path):
    chromium = require_chromium()
    station = StationServer(study, tmp_path).start()
    rng = random.Random(7)
    given: dict[str, dict] = {}
    recorder = Recorder()
    try:
        with playwright.sync_playwright() as p:
            browser = launch(p, chromium)
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            recorder.attach(page)

            # a wrong token, then an unknown reader: one sentence each, nothing stored
            with study.admin_store() as store:
                events_before = len(store.events())
            for reader_id, token in (("r01", "not-the-token"), ("r99", study.tokens["r01"])):
                sign_in(page, station.url, reader_id, token)
                error = page.get_by_test_id("sign-in-error").inner_text()
                assert error.count(".") == 1 and "token" in error, error
            with study.admin_store() as store:
                assert len(store.events()) == events_before

            # first visit: 4 items, by clicking and typing
            sign_in(page, station.url, "r01", study.tokens["r01"])
            item_id = wait_for_item(page)
            assert page.get_by_test_id("item-progress").inner_text().startswith("Training item 1 of")
            for k in range(4):
                given[item_id] = answer_item(page, rng)
                if k == 1:  # an item with its images on screen: the screenshot of the README
                    time.sleep(1.0)
                    assert views_variance(page) > 50, "the views are blank"
                    page.screenshot(path=str(tmp_path / "reading_station.png"))
                page.get_by_test_id("submit").click()
                item_id = wait_for_item(page, item_id)

            # resume: a reload shows the same next item
            progress = page.get_by_test_id("item-progress").inner_text()
            page.reload()
            assert wait_for_item(page) == item_id
            assert page.get_by_test_id("item-progress").inner_text() == progress

            # an answer in flight when the station is killed: a banner, the answer kept in the page
            in_flight = answer_item(page, rng)
            pages_before = station.kill9()
            assert pages_before and wait_gone(pages_before) == [], "page processes outlived the front"
            page.get_by_test_id("submit").click()
            page.get_by_test_id("connection-lost").wait_for(timeout=15_000)
            assert "not saved yet" in page.get_by_test_id("connection-lost").inner_text()
            station.start()
            page.get_by_test_id("sign-in-note").wait_for(timeout=30_000)  # the session ended with the station
            sign_in(page, station.url, "r01", study.tokens["r01"])
            next_id = wait_for_item(page, item_id)  # the kept answer was sent again, the next item is on screen
            given[item_id] = in_flight
            item_id = next_id
            given[item_id] = answer_item(page, rng)
            page.get_by_test_id("submit").click()
            item_id = wait_for_item(page, item_id)
            time.sleep(0.5)
            browser.close()
    finally:
        station.stop()

    stored = _submitted(study, "r01")
    assert set(stored["items"]) == set(given), (sorted(stored["items"]), sorted(given))
    assert len(stored["submits"]) == len(given) == 6  # once each, the re-sent one included
    for item, answers in given.items():
        assert _same(stored["answers"][item], answers), (item, stored["answers"][item], answers)
        assert stored["items"][item].active_seconds > 0
    assert recorder.images > 0 and recorder.texts
    leaks = recorder.leaks(study.forbidden, study.forbidden_words)
    assert leaks == [], "\n".join(leaks[:10])
    assert recorder.outside_loopback() == []
    copy_screenshot(tmp_path / "reading_station.png", "reading_station.png")


def test_two_readers_read_at_once_and_a_double_submit_is_stored_once(tmp_path):
    chromium = require_chromium()
    study = make_station_study(tmp_path)
    station = StationServer(study, tmp_path).start()
    rng = random.Random(3)
    try:
        with playwright.sync_playwright() as p:
            browser = launch(p, chromium)
            contexts = {r: browser.new_context(viewport={"width": 1300, "height": 800}) for r in ("r01", "r02")}
            pages = {r: contexts[r].new_page() for r in contexts}
            recorders = {r: Recorder() for r in pages}
            for reader, page in pages.items():
                recorders[reader].attach(page)
                sign_in(page, station.url, reader, study.tokens[reader])
            current = {reader: wait_for_item(page) for reader, page in pages.items()}
            for _ in range(2):  # both answer, then both submit at once
                for reader, page in pages.items():
                    assert current[reader].startswith(reader + "-")  # own items only (neutral ids)
                    answer_item(page, rng)
                for page in pages.values():
                    page.get_by_test_id("submit").click()
                current = {reader: wait_for_item(page, current[reader]) for reader, page in pages.items()}
            assert len(station.page_pids()) >= 2  # one page process per reader (and a spare)

            # the same reader in a second tab: the same page; both tabs submit the same item at once
            second = contexts["r01"].new_page()
            second.goto(station.url)  # the session cookie leads to the reader's page
            assert wait_for_item(second) == current["r01"]
            answer_item(pages["r01"], rng)
            answers = pages["r01"].evaluate("window.trame.state.get('answers')")
            for tab in (pages["r01"], second):
                tab.evaluate("([item, answers]) => { window.dcStation.submit(item, answers); }",
                             [current["r01"], answers])
            wait_for_item(second, current["r01"])

            # the admin view: both readers, live, with their page process's memory; no answers
            admin = browser.new_page()
            admin.goto(station.url + "admin")
            admin.get_by_test_id("admin-token").fill(ADMIN_TOKEN)
            admin.get_by_test_id("admin-sign-in").click()
            admin.get_by_test_id("admin-reader-r02").wait_for(timeout=10_000)
            rows = {r: admin.get_by_test_id(f"admin-reader-{r}").inner_text() for r in ("r01", "r02")}
            assert all("yes" in row for row in rows.values()), rows
            browser.close()
    finally:
        station.stop()
    assert recorders["r02"].leaks(["r01-0"], []) == [] and recorders["r01"].leaks(["r02-0"], []) == []
    assert recorders["r02"].leaks(["r02-0"], [])  # the check sees item ids where they are
    for reader in ("r01", "r02"):
        stored = _submitted(study, reader)
        assert all(item.startswith(reader + "-") for item in stored["items"])
        assert len(stored["submits"]) == len(stored["items"]) == (3 if reader == "r01" else 2)


def test_a_washout_page_says_when_the_next_session_opens(tmp_path):
    chromium = require_chromium()
    study = make_station_study(tmp_path, cases=1, training_cases=0, tasks=("grading",), washout_days=28,
                               views=("axial",))
    station = StationServer(study, tmp_path).start()
    try:
        with playwright.sync_playwright() as p:
            browser = launch(p, chromium)
            page = browser.new_page()
            sign_in(page, station.url, "r01", study.tokens["r01"])
            item_id = wait_for_item(page)
            answer_item(page, random.Random(1))
            page.get_by_test_id("submit").click()
            washout = page.get_by_test_id("washout")
            washout.wait_for(timeout=20_000)
            text = washout.inner_text()
            browser.close()
    finally:
        station.stop()
    assert "opens on 20" in text and "washout" in text and "saved" in text, text
    assert set(_submitted(study, "r01")["items"]) == {item_id}


def test_serve_refuses_a_store_that_cannot_be_opened_in_one_sentence(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "DigitalContrastReaderLib.cli", "serve", str(tmp_path / "none.sqlite"),
                           "--port", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and "none.sqlite" in done.stderr
    assert not Path(tmp_path / "none.sqlite").exists()
