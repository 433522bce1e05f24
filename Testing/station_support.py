"""Helpers for the web reading station's tests and benchmark (not tests themselves).

* :func:`make_station_study`: a reader study with real NRRD images, a model id in its image names,
  grading (with a typed number) and preference tasks, in a SQLite or PostgreSQL store with readers
  r01 and r02 enrolled; it lists every string the browser must never receive.
* :class:`StationServer`: ``digital-contrast-reader serve`` as a real subprocess (kill -9, restart).
* :class:`Recorder`: every HTTP response and WebSocket frame a page receives, decoded (wslink's
  chunked msgpack) so that strings are searched, not random bytes of JPEG frames.
* :func:`answer_item`: answers the item on screen by clicking and typing, as a reader does.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]
ADMIN_TOKEN = "station-admin-token-for-tests"
MODEL_ID = "dcnet-aorta-v3"
NUMBER_QUESTION = {"key": "lumen_diameter_mm", "type": "number", "text": "Largest lumen diameter", "required": True,
                   "min": 0, "max": 80, "step": 0.5, "unit": "mm"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class StationStudy:
    """A study store for the station, and what its browser must never see."""

    location: str  # SQLite path, or the reader role's URL
    admin_location: str  # what the admin opens (the same path, or the admin's URL)
    tokens: dict[str, str]
    env: dict[str, str]  # PGPASSWORD for the reader role
    images_dir: Path | None
    forbidden: list[str]  # case ids, file names, folders, model id, the store's location
    forbidden_words: list[str] = field(default_factory=lambda: ["real", "synthetic", "noncontrast", MODEL_ID])

    def admin_store(self) -> Any:
        from DigitalContrastReaderLib.store.location import open_store

        return open_store(self.admin_location)


def make_station_study(folder: Path, *, postgres_url: str | None = None, cases: int = 4, training_cases: int = 1,
                       readers: int = 2, tasks: tuple[str, ...] = ("grading", "preference"),
                       washout_days: float = 0, views: tuple[str, ...] = ("axial", "coronal")) -> StationStudy:
    """The study in ``folder`` and its store (SQLite beside it, or the PostgreSQL database at
    ``postgres_url``, read by the station as the study's reader role with the blinded images)."""
    from DigitalContrastReaderLib.cli import main as reader_cli
    from DigitalContrastReaderLib.store.location import create_store
    from DigitalContrastReaderLib.study.config import load_study
    from DigitalContrastReaderLib.study.example import study_config_from_folder, write_example_study, write_study_file
    from DigitalContrastReaderLib.study.templates import grading_questions

    example = folder / "example"
    write_example_study(example, cases=cases, training_cases=training_cases, readers=readers)
    for synthetic in sorted((example / "cases").glob("*/synthetic.nrrd")):
        synthetic.rename(synthetic.with_name(f"synthetic-{MODEL_ID}.nrrd"))
    reader_ids = [f"r{k + 1:02d}" for k in range(readers)]
    config = study_config_from_folder(example / "cases", example, study_id="station-study", readers=reader_ids,
                                      tasks=tasks, training_cases=training_cases, washout_days=washout_days)
    config["layout"]["views"] = list(views)
    config["demo"] = False
    for task in config["tasks"]:
        if task["type"] == "grading":
            task.pop("template")
            task["questions"] = grading_questions("aorta") + [dict(NUMBER_QUESTION)]
    study = load_study(write_study_file(config, example / "study.yaml"))
    admin_location = postgres_url or str(folder / "study.sqlite")
    store = create_store(admin_location, study)
    tokens = {r: store.enrol(r, seed=k).token for k, r in enumerate(reader_ids)}
    images_dir, env, location = None, {}, admin_location
    blind_names = [image.blind_name for image in store.images()]
    if postgres_url:
        images_dir = folder / "blinded"
        assert reader_cli(["images", postgres_url, "--out", str(images_dir)]) == 0
        location, env = store.reader_url(), {"PGPASSWORD": store.reader_password}
    store.close()
    forbidden = [c["id"] for c in config["cases"]] + [str(folder), str(example), folder.name]
    forbidden += [name for name in blind_names if name] + [name.split(".")[0] for name in blind_names if name]
    forbidden += [MODEL_ID, config["study_id"], config["title"]]
    for case_dir in (example / "cases").iterdir():
        forbidden += [p.name for p in case_dir.iterdir()] + [case_dir.name]
    forbidden += [location, admin_location] + ([str(images_dir)] if images_dir else [])
    return StationStudy(location, admin_location, tokens, env, images_dir, sorted(set(forbidden)))


class StationServer:
    """``digital-contrast-reader serve`` in a subprocess on a free loopback port."""

    def __init__(self, study: StationStudy, log_dir: Path, *, extra: tuple[str, ...] = ()) -> None:
        self.study = study
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_dir = log_dir
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout_s: float = 120.0) -> StationServer:
        self.starts += 1
        args = [sys.executable, "-m", "DigitalContrastReaderLib.cli", "serve", self.study.location,
                "--port", str(self.port), *self.extra]
        if self.study.images_dir is not None:
            args += ["--images", str(self.study.images_dir)]
        env = {**os.environ, **self.study.env, "DIGITAL_CONTRAST_STATION_ADMIN_TOKEN": ADMIN_TOKEN}
        log = open(self.log_dir / f"station-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the station exited ({self.proc.returncode}): {self.log()[-3000:]}"
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"the station did not answer within {timeout_s} s: {self.log()[-3000:]}")

    def log(self) -> str:
        return (self.log_dir / f"station-{self.starts}.log").read_text(errors="replace")

    def page_pids(self) -> list[int]:
        """The page processes the front started (its children)."""
        import psutil

        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children() if "reader_process" in " ".join(c.cmdline())]
        except psutil.Error:
            return []

    def kill9(self) -> list[int]:
        """SIGKILL the front (only it); returns the page processes it had."""
        pids = self.page_pids()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return pids

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def wait_gone(pids: list[int], timeout_s: float = 20.0) -> list[int]:
    """The processes of ``pids`` still alive after ``timeout_s``."""
    import psutil

    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    return alive


# ---------------------------------------------------------------------------------------------- browser


def launch(playwright: Any, chromium: str) -> Any:
    return playwright.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)


def sign_in(page: Any, base_url: str, reader_id: str, token: str) -> None:
    """Type the reader id and token into the sign-in page and press Sign in."""
    if not page.url.startswith(base_url) or page.get_by_test_id("sign-in").count() == 0:
        page.goto(base_url)
    page.get_by_test_id("reader-id").fill(reader_id)
    page.get_by_test_id("reader-token").fill(token)
    page.get_by_test_id("sign-in").click()


def wait_for_item(page: Any, previous: str | None = None, timeout_s: float = 60.0) -> str:
    """Wait until an item other than ``previous`` is on the page with its form; returns its id."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            item_id = page.evaluate("window.trame && window.trame.state ? window.trame.state.get('item_id') : ''")
            if item_id and item_id != previous and page.get_by_test_id("form-status").is_visible():
                return item_id
        except Exception:  # the page is navigating (sign-in, reload)
            pass
        time.sleep(0.1)
    raise AssertionError(f"no new item on the page after {previous!r} ({page.url})")


def answer_item(page: Any, rng: random.Random) -> dict[str, Any]:
    """Answer every question of the item on screen by clicking its choices and typing into its
    fields; returns the answers as the store should hold them."""
    fields = page.evaluate("window.trame.state.get('fields')")  # what the page shows: read, not called
    given: dict[str, Any] = {}
    for spec in fields:
        key = spec["key"]
        if spec["widget"] in ("radio", "yes_no"):
            choice = rng.choice(spec["choices"])
            page.get_by_test_id(f"q-{key}-{choice['tag']}").click()
            given[key] = choice["value"]
        elif spec["widget"] == "checkboxes":
            choice = rng.choice(spec["choices"])
            page.get_by_test_id(f"q-{key}-{choice['tag']}").click()
            given[key] = [choice["value"]]
        elif spec["widget"] == "number":
            value = rng.randrange(10, 60) + rng.choice((0, 0.5))
            page.get_by_test_id(f"q-{key}").locator("input").fill(f"{value:g}")
            given[key] = value
        elif spec["widget"] == "text":
            text = f"note {rng.randrange(1000)}"
            page.get_by_test_id(f"q-{key}").locator("textarea").first.fill(text)
            given[key] = text
    submit = page.get_by_test_id("submit")
    deadline = time.monotonic() + 20
    while not submit.is_enabled():
        assert time.monotonic() < deadline, page.get_by_test_id("form-status").inner_text()
        time.sleep(0.05)
    return given


def views_variance(page: Any) -> float:
    """Pixel variance (grey levels) of a screenshot of the views (0 for blank views)."""
    import io

    import numpy as np
    from PIL import Image

    png = page.get_by_test_id("views").screenshot()
    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float).var())


# ---------------------------------------------------------------------------------------------- blinding


def _package_file_hashes() -> set[str]:
    """sha256 of every file of the installed front-end packages (static assets the pages load)."""
    import importlib.util

    hashes = set()
    for name in ("trame_client", "trame_vuetify", "trame_rca", "trame_slicer", "trame", "trame_server"):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            for path in Path(root).rglob("*"):
                if path.is_file() and path.suffix in (".js", ".css", ".html", ".tpl", ".png", ".svg", ".woff",
                                                      ".woff2", ".ttf", ".eot", ".mjs", ".map", ".json", ".ico"):
                    hashes.add(hashlib.sha256(path.read_bytes()).hexdigest())
    static = REPO / "DigitalContrastReader" / "DigitalContrastReaderLib" / "station" / "static"
    hashes |= {hashlib.sha256(p.read_bytes()).hexdigest() for p in static.iterdir() if p.is_file()}
    return hashes


@dataclass
class Recorder:
    """Everything a page received: HTTP bodies (static package files set apart) and WebSocket
    messages (text frames, and binary frames decoded from wslink's chunks and msgpack)."""

    texts: list[tuple[str, str]] = field(default_factory=list)  # (where, text) to search
    images: int = 0  # image frames (JPEG/PNG pixels) received
    static_files: int = 0
    requests: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        from wslink.chunking import UnChunker

        unchunker = UnChunker()
        unchunker.set_max_message_size(1 << 30)
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("response", self._response)

        def frame(payload: Any) -> None:
            if isinstance(payload, str):
                self.texts.append(("ws text", payload))
                return
            try:
                message = unchunker.process_chunk(bytes(payload))
            except Exception:  # not wslink's framing: search it as it is
                self.texts.append(("ws bytes", bytes(payload).decode("utf-8", "replace")))
                return
            if message is not None:
                self._walk(message)

        page.on("websocket", lambda ws: ws.on("framereceived", frame))

    def _walk(self, value: Any, path: str = "ws") -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                self._walk(key, path)
                self._walk(item, path)
        elif isinstance(value, (list, tuple)):
            for item in value:
                self._walk(item, path)
        elif isinstance(value, str):
            self.texts.append((path, value))
        elif isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            if data[:3] == b"\xff\xd8\xff" or data[:8] == b"\x89PNG\r\n\x1a\n":
                self.images += 1  # pixels only: the views are rendered on the server
            else:
                try:
                    self._walk(__import__("msgpack").unpackb(data), path)
                except Exception:
                    self.texts.append((path + " bytes", data.decode("utf-8", "replace")))

    def _response(self, response: Any) -> None:
        if getattr(self, "_hashes", None) is None:
            self._hashes = _package_file_hashes()
        try:
            body = response.body()
        except Exception:  # redirects and aborted requests have no body
            body = b""
        if body and hashlib.sha256(body).hexdigest() in self._hashes:
            self.static_files += 1
            return
        headers = json.dumps(response.headers)
        self.texts.append((f"http {response.url}", headers + "\n" + body.decode("utf-8", "replace")))

    def leaks(self, forbidden: list[str], words: list[str]) -> list[str]:
        """Every forbidden string (case-insensitive) and word (whole word) found, with where."""
        found = []
        patterns = [re.compile(re.escape(s), re.IGNORECASE) for s in forbidden if s]
        patterns += [re.compile(rf"(?<![A-Za-z0-9]){re.escape(w)}(?![A-Za-z0-9])", re.IGNORECASE) for w in words]
        for where, text in self.texts:
            for pattern in patterns:
                match = pattern.search(text)
                if match:
                    found.append(f"{pattern.pattern!r} in {where}: ...{text[max(0, match.start() - 60):match.end() + 60]}...")
        return found

    def outside_loopback(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))]


def copy_screenshot(source: Path, target_name: str) -> None:
    """Keep a screenshot in Resources/Screenshots when DC_UPDATE_SCREENSHOTS is set (as the other
    screenshot tests do)."""
    if os.environ.get("DC_UPDATE_SCREENSHOTS"):
        shutil.copyfile(source, REPO / "Resources" / "Screenshots" / target_name)
