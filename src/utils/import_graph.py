"""The import graph of src/ (read with ast, nothing imported) and its layers: the check that imports
only point down and never go round in a circle (tests/utils/test_import_graph.py).

Layers, lowest first; a module may import its own layer or lower ones:
    0 foundations   src.constants, src.methods, src.run_identity, src.utils
    1 tasks         src.tasks
    2 data          src.data
    3 models        src.models
    4 losses        src.losses, src.distillation, src.config (it validates names the layers below define)
    5 training/eval src.training, src.eval
    6 results       src.results
    7 bench         src.bench
    8 study         src.study (runs training and evaluation scripts, aggregates with src.results)
Imports inside functions count too (a lazy import is still a dependency).

    python -m src.utils.import_graph     # prints cycles and upward imports
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]
LAYERS: tuple[tuple[str, ...], ...] = (
    ("src.constants", "src.methods", "src.run_identity", "src.utils"),
    ("src.tasks",),
    ("src.data",),
    ("src.models",),
    ("src.losses", "src.distillation", "src.config"),
    ("src.training", "src.eval"),
    ("src.results",),
    ("src.bench",),
    ("src.study",),
)


def module_name(path: Path, root: Path = SRC) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """module -> the src modules it imports (anywhere in the file)."""
    files = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from src.bench import step_bench` imports the submodule src.bench.step_bench
                names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in files else node.module
                         for alias in node.names]
            else:
                continue
            targets.update(name for name in names if name in files and name != module)
        graph[module] = targets
    return graph


def layer_of(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return len(LAYERS)  # src itself or an unlisted package: treated as the top


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where the imported module sits in a higher layer."""
    return sorted((a, b) for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (each is at least one import circle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's algorithm; src/ is small enough for recursion
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


if __name__ == "__main__":
    graph = import_graph()
    print("cycles:", cycles(graph) or "none")
    for importer, imported in upward_imports(graph):
        print(f"upward: {importer} -> {imported}")
