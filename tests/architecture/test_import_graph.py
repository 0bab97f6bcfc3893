"""The import graph, read from the source with ``ast`` (lazy imports inside functions too):
no cycles, and imports flow one way (design.md, docs/architecture.md):
contract <- data <- runtime <- parity, diagnose, serve <- converter <- check <- cli."""

from __future__ import annotations

import ast
from pathlib import Path

import edgeinfer

ROOT = Path(edgeinfer.__file__).parent

# Floor of each top-level room; a module may import only its own floor or lower ones.
LAYERS = {
    "_version": 0, "errors": 0, "resample": 0, "spec": 0, "spec_torch": 0, "artifact": 0,
    "probs": 0, "progress": 0, "spec_types": 0, "cv2_env": 0, "detect_spec": 0,
    "interval": 0,
    "data": 1, "runtime": 2, "parity": 3, "diagnose": 3, "serve": 3, "converter": 4,
    "check": 5, "cli": 6, "__init__": 6, "__main__": 7,
}
# Rooms on one floor that must not import each other: each is its own concept.
SIBLINGS = {"parity", "diagnose", "serve"}
# What a runtime-only install has: serve may use these rooms and nothing else.
LEAN = ("serve", "runtime", "data", "errors", "spec", "resample", "artifact", "_version",
        "probs", "progress", "cv2_env", "detect_spec", "interval")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """edgeinfer modules imported anywhere in the file, except under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for b in node.body for n in ast.walk(b)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("edgeinfer")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("edgeinfer"):
            subs = {f"{node.module}.{a.name}" for a in node.names}
            out |= subs
            if node.module != "edgeinfer" or not subs <= MODULES:
                out.add(node.module)  # names from the package facade itself
    return out


MODULES = {_module_name(p) for p in ROOT.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    g = {}
    for name, path in files.items():
        g[name] = {m for m in _imports(path) if m in files and m != name}
    return g


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_graph_is_read():
    g = graph()
    assert "edgeinfer.converter.api" in g["edgeinfer.cli.convert"]
    assert "edgeinfer.parity.stats" in g["edgeinfer.converter.gate"]


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for m in sorted(g[n]):
            if state.get(m) == 1:
                cycles.append([*stack[stack.index(m):], m] if m in stack else [n, m])
            elif m not in state:
                visit(m, [*stack, m])
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n, [n])
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_imports_flow_one_way():
    bad = []
    for mod, deps in graph().items():
        src = room(mod)
        for d in deps:
            if d == "edgeinfer":
                continue  # the lean facade (Predictor, errors, spec): any layer may use it
            dst = room(d)
            if (src == "serve" and dst not in LEAN) or LAYERS[dst] > LAYERS[src]:
                bad.append(f"{mod} -> {d}")
            elif src != dst and src in SIBLINGS and dst in SIBLINGS:
                bad.append(f"{mod} -> {d} (rooms of one floor)")
    assert not bad, "imports against the layering: " + ", ".join(sorted(bad))


def test_converter_never_imports_ladder_bench_or_reports():
    bad = [f"{m} -> {d}" for m, deps in graph().items() if room(m) == "converter"
           for d in deps if room(d) == "check"]
    assert not bad, bad


def test_command_packages_do_not_import_each_other():
    """check/{ladder,bench,doctor,verify} share only the report plumbing at check/ level; what
    two commands need both belongs one floor down (parity/, diagnose/, data/, runtime/)."""
    bad = []
    for mod, deps in graph().items():
        parts = mod.split(".")
        if len(parts) < 4 or parts[1] != "check":
            continue
        for d in deps:
            dp = d.split(".")
            if len(dp) >= 4 and dp[1] == "check" and dp[2] != parts[2]:
                bad.append(f"{mod} -> {d}")
    assert not bad, bad


def test_every_cli_command_has_its_own_module():
    from edgeinfer.cli import COMMANDS

    for name in COMMANDS:
        assert (ROOT / "cli" / f"{name}.py").is_file(), name


def test_no_module_over_the_line_budget():
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 420}
    assert not long, f"split these by concept (design.md: about 400 lines at most): {long}"
