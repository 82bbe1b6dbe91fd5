"""The architecture holds (docs/architecture.md): the layers import only downwards and in no circle, the
torch-free half (analysis, run file, reporters, `report` and `compare`) works where torch, transformers and
pynvml cannot be imported, and the typed stub of the compiled recorder matches the module."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from timelines import synthetic_run

from llmprof import _core
from llmprof.runfile import save_run

PACKAGE = Path(__file__).resolve().parent.parent / "llmprof"
# layer of each part, bottom up: a module imports only from lower layers or from its own part
LAYERS = {
    "llmprof.errors": 0,
    "llmprof.cache": 0,
    "llmprof.version": 0,
    "llmprof._core": 0,
    "llmprof.analysis": 1,
    "llmprof.imports": 1,  # the user's modules and shadowed packages
    "llmprof.runfile": 2,
    "llmprof.sweepfile": 3,  # a sweep holds runs
    "llmprof.report": 4,
    "llmprof.capture": 4,
    "llmprof.workloads": 5,
    "llmprof.cli": 6,
    "llmprof": 7,  # the package's own __init__: the public names
    "llmprof.__main__": 8,
}
BLOCKED = ("torch", "transformers", "pynvml")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part(module: str) -> str:
    """The layered part a module belongs to (its longest prefix in LAYERS)."""
    while module not in LAYERS:
        module = module.rpartition(".")[0]
    return module


def imports(path: Path, modules: set[str]) -> set[str]:
    """The llmprof modules that ``path`` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name.startswith("llmprof")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmprof"):
            for alias in node.names:  # `from llmprof.x import y`: module llmprof.x.y if there is one
                child = f"{node.module}.{alias.name}"
                out.add(child if child in modules else node.module)
    return out


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files) | {"llmprof._core"}
    return {name: imports(path, modules) - {name} for name, path in files.items()}


def test_every_module_belongs_to_a_layer():
    graph = import_graph()
    assert {part(m) for m in graph} <= set(LAYERS)
    for name in ("llmprof.analysis.registry", "llmprof.runfile", "llmprof.capture.tokens", "llmprof.cli.ab"):
        assert name in graph


def test_the_layers_import_only_downwards():
    upward = [
        f"{source} -> {target}"
        for source, targets in import_graph().items()
        for target in targets
        if part(target) != part(source) and LAYERS[part(target)] >= LAYERS[part(source)]
    ]
    assert upward == []


def test_analysis_and_capture_never_import_the_cli_and_analysis_never_capture():
    graph = import_graph()
    for source, targets in graph.items():
        if part(source) in ("llmprof.analysis", "llmprof.capture"):
            assert not [t for t in targets if part(t) == "llmprof.cli"], source
        if part(source) == "llmprof.analysis":
            assert not [t for t in targets if part(t) in ("llmprof.capture", "llmprof.workloads")], source


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, " -> ".join(path[path.index(node) :] + [node])
        if node in done:
            return
        for target in graph.get(node, ()):
            visit(target, path + [node])
        done.add(node)

    for module in graph:
        visit(module, [])


def test_only_capture_and_workloads_import_torch_transformers_or_nvml():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if part(name) in ("llmprof.capture", "llmprof.workloads", "llmprof.cli"):
            continue  # the CLI imports them lazily, inside the subcommands that profile
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{name}: {n}" for n in names if n.split(".")[0] in BLOCKED]
    assert offenders == []


def test_analysis_runfile_reports_report_and_compare_work_without_torch(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    save_run(synthetic_run(10.0), a)
    save_run(synthetic_run(12.0), b)
    outputs = {fmt: tmp_path / f"out.{fmt}" for fmt in ("table", "md", "csv", "json", "trace", "plot")}
    code = f"""
import importlib, pkgutil, sys
for name in {BLOCKED!r}:
    sys.modules[name] = None  # absent: importing it fails
import llmprof.analysis, llmprof.report, llmprof.runfile, llmprof.cli.report, llmprof.cli.compare
for package in (llmprof.analysis, llmprof.report):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
from llmprof.cli import main
for fmt, out in { ({f: str(p) for f, p in outputs.items()})!r}.items():
    assert main(["report", {str(a)!r}, "--format", fmt, "-o", out]) == 0, fmt
assert main(["report", {str(a)!r}, "--format", "csv", "--per-step", "-o", {str(tmp_path / "steps.csv")!r}]) == 0
assert main(["compare", {str(a)!r}, {str(b)!r}, "--format", "md", "-o", {str(tmp_path / "ab.md")!r}]) == 0
loaded = [m for m in {BLOCKED!r} if sys.modules.get(m) is not None]
assert not loaded, loaded
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert all(path.stat().st_size > 100 for path in outputs.values())
    assert "Roofline (per request" in outputs["md"].read_text()
    assert (tmp_path / "steps.csv").read_text().splitlines()[0].endswith(",floor_s,mbu_ratio")
    comparison = (tmp_path / "ab.md").read_text()
    assert "| TPOT (ms) | 10.00 | 12.00 | 1.200 | - | too few repeats (< 4) |" in comparison


def stub_names(tree: ast.Module | ast.ClassDef) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_the_core_stub_names_every_function_class_and_member_of_the_extension():
    tree = ast.parse((PACKAGE / "_core.pyi").read_text())
    public = {n for n in dir(_core) if not n.startswith("_")}
    assert stub_names(tree) - {"Resolved"} == public
    timeline = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Timeline")
    members = {n for n in dir(_core.Timeline) if not n.startswith("_")} | {"__init__", "__len__"}
    assert stub_names(timeline) == members
    resolved = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Resolved")
    assert stub_names(resolved) == set(_core.Timeline(4).resolve())


MAX_MODULE_LINES = 450
MAX_NAMESPACE_FUNCTIONS = 10  # each subcommand's entry, and the parsers of shared options


def test_only_the_cli_sees_the_command_line():
    """No module outside cli/ imports argparse; inside, only the subcommands' entries and the parsers of the
    shared options take the parsed Namespace: everything below them takes typed values (a WorkloadSpec, ...)."""
    importing, taking = [], []
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
                importing.append(name)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                annotations = [ast.unparse(a.annotation) for a in node.args.args if a.annotation is not None]
                if any(a.endswith("Namespace") for a in annotations):
                    taking.append(f"{name}.{node.name}")
    assert [m for m in importing if part(m) != "llmprof.cli"] == []
    assert all(part(f.rpartition(".")[0]) == "llmprof.cli" for f in taking), taking
    assert len(taking) <= MAX_NAMESPACE_FUNCTIONS, taking


def test_no_module_is_over_450_lines():
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}


def test_the_measuring_loop_is_written_once():
    """Warm-ups and repeats are made in one place (cli/measure.py), which run, ab and sweep all call."""
    callers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] == "warm_up":
                callers.add(module_name(path))
    assert callers == {"llmprof.cli.measure"}
    for command in ("run", "ab", "sweep"):
        source = (PACKAGE / "cli" / f"{command}.py").read_text()
        assert "from llmprof.cli.measure import" in source, command


def test_every_config_key_a_spec_writes_is_declared_once():
    from dataclasses import fields

    from llmprof.analysis.config_keys import BY_NAME, KEYS, config_of
    from llmprof.workloads.spec import Loaded, WorkloadSpec

    assert len(BY_NAME) == len(KEYS)
    loaded = Loaded("cpu", "float32", "sdpa", 16, None)
    spec = WorkloadSpec(device_map="auto", tp=True, compile=True, patch="m:f", loop="m:g")
    every = [
        spec.to_config(loaded, ranks=(2, "gloo"), warmup_calls=1),
        spec.to_config(loaded, variant={"name": "A"}, warmup_calls=0),
        spec.to_config(loaded, variant={"name": "sweep"}, sweep_point={"batch_size": 1}),
        WorkloadSpec(engine="vllm", engine_args=(("max_num_seqs", 8),), request_rate=4.0).to_config(
            loaded, repeats_made=2
        ),
    ]
    assert set().union(*every) <= set(BY_NAME)
    assert set().union(*every) == set(BY_NAME)  # and every declared key has a writer
    # what every sweep point shares is a field of the spec, by the same name
    assert set(spec.shared()) <= {f.name for f in fields(WorkloadSpec)}
    with pytest.raises(KeyError):
        config_of([("modle", "m")])
    with pytest.raises(TypeError):
        config_of([("batch_size", "1")])
