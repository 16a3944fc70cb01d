"""The package's layering, read from the source: inference code (pipeline, model, audio,
face, text) never imports training, data preparation, metrics or benchmarks, and no
modules import each other in a cycle. Imports inside functions count too: they run."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "avgen"
INFERENCE = ("avgen.pipeline", "avgen.model", "avgen.audio", "avgen.face", "avgen.text")
TRAINING = ("avgen.train", "avgen.prepare", "avgen.metrics", "benchmarks")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The avgen modules `path` imports (a `from package import name` counts as the
    submodule `package.name` where that is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return {m for m in found if m in modules and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def test_the_walk_sees_the_package(graph):
    assert "avgen.pipeline" in graph and "avgen.model.av_flow" in graph
    assert "avgen.formats" in graph["avgen.pipeline"]  # a plain module-level import


def test_inference_imports_no_training_code(graph):
    offending = sorted(f"{module} imports {target}" for module, targets in graph.items()
                       if within(module, INFERENCE)
                       for target in targets if within(target, TRAINING))
    assert not offending, "\n".join(offending)


def test_only_the_training_commands_import_the_trainers(graph):
    offending = sorted(f"{module} imports {target}" for module, targets in graph.items()
                       if not within(module, ("avgen.train", "avgen.cli.training"))
                       for target in targets if within(target, ("avgen.train",)))
    assert not offending, "\n".join(offending)


def test_no_import_cycles(graph):
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    def edges(module):
        return {t for t in graph[module] if not module.startswith(t + ".")}

    cycles, state = [], {}

    def visit(module, stack):
        state[module] = "open"
        stack.append(module)
        for target in sorted(edges(module)):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not cycles, "\n".join(cycles)
