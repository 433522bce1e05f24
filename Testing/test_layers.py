"""The layer rules of the two libraries (DESIGN.md "Layers: who may import what"), enforced.

Every ``.py`` file of ``DigitalContrastLib`` and ``DigitalContrastReaderLib`` is read with ``ast.walk``,
so an import inside a function counts as much as one at the top of the file. Each file belongs to a
room (its subpackage); :data:`ALLOWED` says which other rooms a room may import, and
:data:`THIRD_PARTY` which rooms may import torch, Slicer or a web framework. The tests at the end
feed the checker forbidden imports to prove that it catches them.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = {
    "DigitalContrastLib": ROOT / "DigitalContrast" / "DigitalContrastLib",
    "DigitalContrastReaderLib": ROOT / "DigitalContrastReader" / "DigitalContrastReaderLib",
}

L = "DigitalContrastLib"
R = "DigitalContrastReaderLib"
CORE = {f"{L}.common", f"{L}.ct", f"{L}.models", f"{L}.synthesis", f"{L}.phantoms", f"{L}.evaluation",
        f"{L}.worker", f"{L}.cohort", f"{L}.training", f"{L}.preparation"}

#: room -> the rooms it may import (besides itself and its library's ``__init__`` for ``__version__``).
#: A room is a subpackage; a module directly in a library folder is a front door of its own
#: (``R.cli``, ``R.admin``), listed by name.
ALLOWED: dict[str, set[str]] = {
    # core of the synthesis library, bottom up
    f"{L}.common": set(),
    f"{L}.ct": {f"{L}.common"},
    f"{L}.models": {f"{L}.common"},
    f"{L}.synthesis": {f"{L}.common", f"{L}.ct", f"{L}.models"},
    f"{L}.phantoms": {f"{L}.common", f"{L}.ct"},
    f"{L}.evaluation": {f"{L}.common", f"{L}.ct"},
    # the worker process runs synthesis and the module's heavy tasks (registration, metrics: worker.tasks)
    f"{L}.worker": {f"{L}.common", f"{L}.ct", f"{L}.models", f"{L}.synthesis", f"{L}.evaluation"},
    f"{L}.cohort": {f"{L}.common", f"{L}.ct", f"{L}.models", f"{L}.synthesis", f"{L}.evaluation", f"{L}.phantoms",
                    f"{L}.worker"},
    f"{L}.training": {f"{L}.common", f"{L}.ct", f"{L}.models", f"{L}.synthesis", f"{L}.phantoms", f"{L}.evaluation"},
    # a site's pairs made into training cases: the gate, registration, the cohort CSV and its executors
    f"{L}.preparation": {f"{L}.common", f"{L}.ct", f"{L}.synthesis", f"{L}.evaluation", f"{L}.cohort"},
    # MRML logic: core in, never a front end
    f"{L}.mrml": {f"{L}.common", f"{L}.ct", f"{L}.models", f"{L}.synthesis", f"{L}.evaluation", f"{L}.phantoms",
                  f"{L}.worker"},
    # front ends and tools
    # the HTTP service: the worker's jobs behind tokens; it reads and checks uploads (ct, synthesis's gate
    # and options) and lists models, nothing more
    f"{L}.service": {f"{L}.common", f"{L}.ct", f"{L}.models", f"{L}.synthesis", f"{L}.worker"},
    # the browser review page: the same MRML logic as the Slicer module, jobs through the remote client
    f"{L}.web": {f"{L}.common", f"{L}.ct", f"{L}.mrml", f"{L}.worker", f"{L}.synthesis"},
    f"{L}.benchmarks": CORE | {f"{L}.mrml", f"{L}.service"},
    f"{L}.commands": CORE | {f"{L}.mrml", f"{L}.benchmarks", f"{L}.service", f"{L}.web"},
    # reader-study library: study < store < reading; analysis takes a long table only
    f"{R}.study": {f"{L}.common", f"{L}.ct"},  # ct: images are opened and their grids checked at init
    f"{R}.store": {f"{L}.common", f"{R}.study"},
    f"{R}.reading": {f"{L}.common", f"{R}.study", f"{R}.store"},
    f"{R}.analysis": {f"{L}.common"},
    f"{R}.exports": {f"{L}.common", f"{R}.study", f"{R}.store", f"{R}.analysis"},
    f"{R}.mrml": {f"{L}.common", f"{L}.ct", f"{L}.mrml", f"{R}.study", f"{R}.store", f"{R}.reading"},
    f"{R}.admin": {f"{L}.common", f"{R}.study", f"{R}.store", f"{R}.exports", f"{R}.analysis"},
    f"{R}.cli_analysis": {f"{L}.common", f"{R}.admin", f"{R}.study", f"{R}.store", f"{R}.analysis", f"{R}.exports"},
    f"{R}.cli_common": {f"{L}.common", f"{R}.study", f"{R}.store"},
    f"{R}.cli_sites": {f"{L}.common", f"{R}.study", f"{R}.store", f"{R}.cli_common"},
    # the web reading station: the reading flow and the MRML display of the Slicer module, served by
    # trame-slicer (one page process per reader) behind an aiohttp front; nothing computed there
    f"{R}.station": {f"{L}.common", f"{R}.study", f"{R}.store", f"{R}.reading", f"{R}.mrml"},
    f"{R}.cli": {f"{L}.common", f"{R}.study", f"{R}.store", f"{R}.reading", f"{R}.exports", f"{R}.cli_analysis",
                 f"{R}.admin", f"{R}.cli_common", f"{R}.cli_sites", f"{R}.station"},
}

#: third-party top-level package -> the rooms (or single files, as dotted module names) that may import it.
#: torch is imported only where a model runs, never by code that a GUI process loads (in synthesis/:
#: the engine's modules and the API that builds it; settings, gate, dummy and contrast_evidence stay torch-free).
TORCH_ROOMS = {f"{L}.synthesis.engine", f"{L}.synthesis.device", f"{L}.synthesis.grid", f"{L}.synthesis.windows",
               f"{L}.synthesis.sliding_window", f"{L}.synthesis.flip_passes", f"{L}.synthesis.slab_threads",
               f"{L}.synthesis.api", f"{L}.synthesis.openvino_runner",
               f"{L}.models.network", f"{L}.models.weights",
               f"{L}.training", f"{L}.worker.server", f"{L}.benchmarks", f"{L}.commands.train"}
#: pandas is in the ``reader`` extra: the rooms a reading-only install loads (a stock Slicer reading
#: session: the study, the store, the state machine and its MRML display) never import it.
PANDAS_FREE_ROOMS = {f"{R}.study", f"{R}.store", f"{R}.reading", f"{R}.mrml"}
THIRD_PARTY: dict[str, set[str]] = {
    "torch": TORCH_ROOMS,
    "monai": TORCH_ROOMS,
    "safetensors": TORCH_ROOMS,
    # the optional OpenVINO backend (the ``cpu-fast`` extra): one module of the engine, nothing else
    "openvino": {f"{L}.synthesis.openvino_runner"},
    "slicer": {f"{L}.mrml", f"{R}.mrml"},
    "vtk": {f"{L}.mrml", f"{R}.mrml"},
    "qt": set(),
    "ctk": set(),
    "PythonQt": set(),
    "pandas": set(ALLOWED) - PANDAS_FREE_ROOMS,
    # web frameworks: only the front ends that serve HTTP (service/) or the browser page (web/)
    **{name: {f"{L}.service"} for name in ("fastapi", "uvicorn", "starlette", "pydantic")},
    **{name: {f"{L}.web", f"{R}.station"} for name in ("trame", "trame_slicer", "trame_server", "trame_client",
                                                        "trame_vuetify", "trame_rca", "wslink", "aiohttp")},
    "yarl": {f"{R}.station"},  # aiohttp's URL type: the station's forwarding keeps the browser's query as sent
    "psycopg": {f"{R}.store"},  # the PostgreSQL driver: the store alone talks SQL
}


@dataclass(frozen=True)
class Import:
    file: str  # path from the repository root
    line: int
    source: str  # the importing module, dotted
    target: str  # the imported module (or name), dotted


def module_name(path: Path, libraries: dict[str, Path]) -> str:
    for top, folder in libraries.items():
        if path.is_relative_to(folder):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([top, *parts])
    raise ValueError(f"{path} is not in a library")


def imports_of(path: Path, libraries: dict[str, Path] = LIBRARIES, root: Path = ROOT) -> list[Import]:
    """Every import of ``path`` (module level or inside functions), relative ones made absolute."""
    source = module_name(path, libraries)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        found += [Import(rel, node.lineno, source, t) for t in targets]
    return found


def room_of(module: str, rooms: dict[str, set[str]] = ALLOWED) -> str | None:
    """The longest room that ``module`` belongs to (``a.b.c`` is in room ``a.b``)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in rooms:
            return ".".join(parts[:n])
    return None


def in_any(module: str, places: set[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in places)


def violations(files: list[Path], libraries: dict[str, Path] = LIBRARIES, root: Path = ROOT,
               allowed: dict[str, set[str]] = ALLOWED, third_party: dict[str, set[str]] = THIRD_PARTY) -> list[str]:
    """One line per broken rule: ``file:line: source imports target (why)``."""
    problems = []
    for path in files:
        for imp in imports_of(path, libraries, root):
            top = imp.target.split(".")[0]
            where = f"{imp.file}:{imp.line}: {imp.source} imports {imp.target}"
            own = room_of(imp.source, allowed)
            if top in libraries:
                if imp.target in libraries or imp.target.rpartition(".")[0] in libraries and imp.target.endswith(
                        ".__version__"):
                    continue  # the library's face: only __version__ lives there
                target_room = room_of(imp.target, allowed)
                if own is None:
                    problems.append(f"{where} ({imp.source} belongs to no room of the ALLOWED table)")
                elif target_room is None:
                    problems.append(f"{where} (no room of the ALLOWED table holds {imp.target})")
                elif target_room != own and target_room not in allowed[own]:
                    problems.append(f"{where} (room {own} may not import {target_room})")
            elif top in third_party and not in_any(imp.source, third_party[top]):
                problems.append(f"{where} ({top} is allowed only in {', '.join(sorted(third_party[top])) or 'no room'})")
    return problems


def library_files() -> list[Path]:
    return sorted(p for folder in LIBRARIES.values() for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_file_keeps_the_layer_rules():
    assert violations(library_files()) == []


def test_every_library_file_is_in_a_room():
    homeless = [module_name(p, LIBRARIES) for p in library_files()
                if room_of(module_name(p, LIBRARIES)) is None and module_name(p, LIBRARIES) not in LIBRARIES]
    assert homeless == []


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (a ``from pkg import name`` of a submodule counts as that module)."""
    modules = {module_name(p, LIBRARIES): p for p in library_files()}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for imp in imports_of(path):
            target = imp.target if imp.target in modules else imp.target.rpartition(".")[0]
            if target in modules and target != module and target not in LIBRARIES:
                graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_among_the_project_files():
    assert cycles(import_graph()) == []


def test_no_source_file_is_over_700_lines():
    sources = [*library_files(), ROOT / "DigitalContrast" / "DigitalContrast.py",
               ROOT / "DigitalContrastReader" / "DigitalContrastReader.py"]
    long = {p.relative_to(ROOT).as_posix(): n for p in sources if (n := len(p.read_text().splitlines())) > 700}
    assert long == {}


def test_few_files_sit_directly_in_a_library_folder():
    assert len(list(LIBRARIES[L].glob("*.py"))) <= 15
    assert len(list(LIBRARIES[R].glob("*.py"))) <= 12


# ----------------------------------------------------------------------------------- the checker fails
def _fake_libraries(tmp_path: Path, files: dict[str, str]) -> tuple[dict[str, Path], list[Path]]:
    libraries = {top: tmp_path / top for top in LIBRARIES}
    written = []
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return libraries, written


@pytest.mark.parametrize(("rel", "text", "why"), [
    # a core room importing a room above it
    (f"{L}/ct/render.py", "from DigitalContrastLib.phantoms.generator import LABELS\n", "may not import"),
    # the same import hidden inside a function, written relatively
    (f"{L}/ct/render.py", "def f():\n    from ..phantoms import generator\n", "may not import"),
    # the synthesis library reaching into the reader library
    (f"{L}/common/x.py", "import DigitalContrastReaderLib.store.sqlite\n", "may not import"),
    # torch in a file that a GUI process loads
    (f"{L}/mrml/synthesis_logic.py", "def f():\n    import torch\n", "torch is allowed only"),
    (f"{L}/synthesis/gate.py", "import monai.networks\n", "monai is allowed only"),
    # Slicer outside the MRML rooms, Qt anywhere in a library
    (f"{L}/cohort/run.py", "import slicer\n", "slicer is allowed only"),
    (f"{R}/mrml/reader_display.py", "import qt\n", "qt is allowed only in no room"),
    # pandas where a reading-only install would need it, even imported late
    (f"{R}/store/sqlite.py", "def f():\n    import pandas as pd\n", "pandas is allowed only"),
    # analysis reads a long table, never the store
    (f"{R}/analysis/mrmc.py", "from ..store.sqlite import open_store\n", "may not import"),
    # a file outside every room
    (f"{L}/newroom/x.py", "from DigitalContrastLib.common import errors\n", "belongs to no room"),
    # a web framework in a core room, or the service reaching into the MRML logic
    (f"{L}/worker/remote_client.py", "import fastapi\n", "fastapi is allowed only"),
    (f"{L}/cohort/run.py", "def f():\n    from trame.app import TrameApp\n", "trame is allowed only"),
    (f"{L}/service/app.py", "from DigitalContrastLib.mrml import views\n", "may not import"),
])
def test_the_checker_catches_a_forbidden_import(tmp_path, rel, text, why):
    libraries, files = _fake_libraries(tmp_path, {rel: text})
    found = violations(files, libraries, tmp_path)
    assert len(found) == 1 and why in found[0], found


def test_the_checker_accepts_allowed_imports(tmp_path):
    libraries, files = _fake_libraries(tmp_path, {
        f"{L}/ct/render.py": "from ..common.atomic import atomic_path\nfrom .labels import LABELS\n",
        f"{L}/synthesis/engine.py": "import torch\nfrom DigitalContrastLib.models.network import build\n",
        f"{L}/mrml/volume_nodes.py": "import slicer, vtk\nfrom DigitalContrastLib import __version__\n",
    })
    assert violations(files, libraries, tmp_path) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
