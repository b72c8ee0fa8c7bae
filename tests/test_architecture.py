"""The package's shape: no import cycles (function-level imports included), block streaming in
one home, the estimator protocol alone in models/base.py."""

import ast
from pathlib import Path

import brainzarr

PACKAGE = Path(brainzarr.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the brainzarr modules it imports anywhere in its body (top level or in functions)."""
    modules = _modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                while target and target not in modules:  # `import a.b.c` names a module or a package
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycles():
    graph = import_graph()
    assert len(graph) > 50 and "brainzarr.streaming.passes" in graph["brainzarr.models.pca"]
    assert "brainzarr.plots" in graph["brainzarr.brain_array"]  # a function-level import counts
    assert cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_data_flows_one_way():
    """Lower layers never import higher ones: store and streaming know nothing of models,
    evaluation, the CLI; models know nothing of evaluation or the CLI."""
    graph = import_graph()
    layers = {
        "brainzarr.store": ("brainzarr.models", "brainzarr.evaluate", "brainzarr.commands", "brainzarr.inr"),
        "brainzarr.streaming": ("brainzarr.models", "brainzarr.evaluate", "brainzarr.commands", "brainzarr.inr"),
        "brainzarr.models": ("brainzarr.evaluate", "brainzarr.commands", "brainzarr.cli"),
    }
    for low, forbidden in layers.items():
        for module, targets in graph.items():
            if module == low or module.startswith(low + "."):
                bad = [t for t in targets if t.startswith(forbidden)]
                assert not bad, (module, bad)


def test_block_streaming_has_one_home():
    names = {"prefetch", "prefetch_spans", "iter_row_blocks", "stream_blocks", "block_reduce", "compute_tasks",
             "row_spans", "make_spans", "compute_rows", "expression_rows"}  # fmt: skip
    for path in PACKAGE.rglob("*.py"):
        if "streaming" in path.parts:
            continue
        defined = {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}
        assert not defined & names, (path, defined & names)


def test_models_base_holds_the_protocol_only():
    tree = ast.parse((PACKAGE / "models" / "base.py").read_text())
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert classes == ["Representation"]
    assert set(functions) <= {"rmse", "row_sse", "_feature_labels", "_jsonable"}
