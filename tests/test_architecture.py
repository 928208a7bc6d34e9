"""The architecture contract in pyproject.toml ([tool.importlinter]) holds, and it can fail:
lint-imports on a copy of the packages with one back-edge injected reports the contract broken.
Beside it, the issue's plain rules, read from the import statements themselves."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
PACKAGES: list[str] = CONFIG["root_packages"]
LAYERS, MODEL, DOMAIN = (contract["name"] for contract in CONFIG["contracts"])


def lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the packages under `root` (it puts its working directory first on sys.path)."""
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=root, capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


def copy_tree(dest: Path) -> Path:
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    for name in PACKAGES:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def imported(package: str) -> dict[str, set[str]]:
    """file -> top-level names it imports (anywhere in it, function bodies included; absolute imports)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


def test_the_tree_keeps_the_contracts() -> None:
    proc = lint(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = " ".join(proc.stdout.split())
    assert all(f"{name} KEPT" in report for name in (LAYERS, MODEL, DOMAIN)), report
    assert "3 kept, 0 broken" in report, report


@pytest.mark.parametrize("where, statement, broken", [
    ("trainer/train.py", "import inference.pipeline", LAYERS),  # siblings stay apart
    ("storage/db.py", "import jobqueue.store", LAYERS),  # storage serves the queue, not back
    ("measures/evaluation.py", "from segbot import cli", LAYERS),  # the CLI sits on top
    ("core/settings.py", "def late():\n    import storage.db", LAYERS),  # also inside a function
    ("segmodel/config.py", "import storage.models", MODEL),  # the forbidden contracts
    ("segmodel/config.py", "import imaging.images", MODEL),
    ("outputs/files.py", "import storage.files", DOMAIN),
])
def test_a_back_edge_breaks_the_contract(tmp_path: Path, where: str, statement: str, broken: str) -> None:
    root = copy_tree(tmp_path)
    assert lint(root).returncode == 0  # the copy alone is fine: what follows is the injected edge
    with open(root / where, "a", encoding="utf-8") as handle:
        handle.write(f"\n\n{statement}  # injected back-edge\n")
    proc = lint(root)
    assert proc.returncode != 0, proc.stdout
    report = " ".join(proc.stdout.split())  # contract names wrap over lines
    assert f"{broken} BROKEN" in report and "2 kept, 1 broken" in report, report


@pytest.mark.parametrize("package, forbidden", [
    ("trainer", {"inference"}),
    ("inference", {"trainer"}),
    ("storage", {"jobqueue", "jobs", "trainer", "inference", "bot"}),
    *[(name, {"segbot"}) for name in PACKAGES if name != "segbot"],
])
def test_the_issues_rules_hold(package: str, forbidden: set[str]) -> None:
    files = imported(package)
    assert files, f"no Python files under {package}/"
    offenders = {path: sorted(names & forbidden) for path, names in files.items() if names & forbidden}
    assert not offenders, offenders


def test_imported_sees_imports_in_function_bodies() -> None:
    """The rule check above reads late imports too (this repo imports heavy modules lazily)."""
    assert "trainer" in imported("jobs")["jobs/train.py"]  # `from trainer.train import ...` in a function


def test_tests_never_skip_on_a_missing_module_of_ours() -> None:
    """importorskip of our own package would turn a broken import into a silent skip (bot tests aside,
    which another change covers)."""
    ours = tuple(f'importorskip("{name}' for name in PACKAGES)
    offenders = [path.name for path in (REPO / "tests").rglob("*.py")
                 if not path.name.startswith("test_bot_") and any(o in path.read_text() for o in ours)]
    assert not offenders, offenders


def import_cycles(root: Path) -> list[list[str]]:
    """Groups of our modules that import each other, directly or round a loop (Tarjan's strongly
    connected components over grimp's module graph; imports inside functions count)."""
    proc = subprocess.run(
        [sys.executable, "-c", CYCLES_SCRIPT, *PACKAGES], cwd=root, capture_output=True, text=True,
        timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr
    return [line.split() for line in proc.stdout.splitlines() if line.strip()]


CYCLES_SCRIPT = """
import sys
import grimp

graph = grimp.build_graph(*sys.argv[1:], include_external_packages=False)
edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
index, low, stack, on_stack, counter = {}, {}, [], set(), [0]
sys.setrecursionlimit(10000)

def visit(node):
    index[node] = low[node] = counter[0]
    counter[0] += 1
    stack.append(node)
    on_stack.add(node)
    for nxt in edges.get(node, ()):
        if nxt not in index:
            visit(nxt)
            low[node] = min(low[node], low[nxt])
        elif nxt in on_stack:
            low[node] = min(low[node], index[nxt])
    if low[node] == index[node]:
        group = []
        while True:
            top = stack.pop()
            on_stack.discard(top)
            group.append(top)
            if top == node:
                break
        if len(group) > 1:
            print(" ".join(sorted(group)))

for module in edges:
    if module not in index:
        visit(module)
"""


def test_no_module_imports_itself_round_a_loop() -> None:
    cycles = import_cycles(REPO)
    print(f"import cycles: {len(cycles)}")
    assert cycles == [], cycles


def test_the_cycle_check_finds_a_loop_hidden_in_a_function(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    with open(root / "outputs/tables.py", "a", encoding="utf-8") as handle:
        handle.write("\n\ndef late():\n    import outputs.files  # injected loop\n")
    cycles = import_cycles(root)
    assert len(cycles) == 1 and {"outputs.files", "outputs.tables"} <= set(cycles[0]), cycles
