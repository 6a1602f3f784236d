"""The import graph of fewshot_distill/ (read with ast, nothing imported) and its layers: the check that imports
only point down and never go round in a circle (tests/utils/test_import_graph.py).

Layers, lowest first; a module may import its own layer or lower ones:
    0 foundations   fewshot_distill.constants, fewshot_distill.run_identity, fewshot_distill.utils
    1 tasks         fewshot_distill.tasks
    2 data          fewshot_distill.data
    3 models        fewshot_distill.models
    4 losses        fewshot_distill.losses, fewshot_distill.config (it validates names the layers below define)
    5 teachers      fewshot_distill.teachers
    6 training/eval fewshot_distill.training (the loop, no method), fewshot_distill.eval
    7 methods       fewshot_distill.methods, fewshot_distill.train (the entry point), fewshot_distill.config_docs
    8 results       fewshot_distill.results (labels read the method registry's names)
    9 bench         fewshot_distill.bench
   10 study         fewshot_distill.study (runs training and evaluation, aggregates with fewshot_distill.results)
Imports inside functions count too (a lazy import is still a dependency).

    python -m fewshot_distill.utils.import_graph     # prints cycles and upward imports
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]
LAYERS: tuple[tuple[str, ...], ...] = (
    ("fewshot_distill.constants", "fewshot_distill.run_identity", "fewshot_distill.utils"),
    ("fewshot_distill.tasks",),
    ("fewshot_distill.data",),
    ("fewshot_distill.models",),
    ("fewshot_distill.losses", "fewshot_distill.config"),
    ("fewshot_distill.teachers",),
    ("fewshot_distill.training", "fewshot_distill.eval"),
    ("fewshot_distill.methods", "fewshot_distill.train", "fewshot_distill.config_docs"),
    ("fewshot_distill.results",),
    ("fewshot_distill.bench",),
    ("fewshot_distill.study",),
)


def module_name(path: Path, root: Path = SRC) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere in the file)."""
    files = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from fewshot_distill.bench import step_bench` imports the submodule fewshot_distill.bench.step_bench
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
    return len(LAYERS)  # the package itself or an unlisted package: treated as the top


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

    def visit(node: str) -> None:  # Tarjan's algorithm; fewshot_distill/ is small enough for recursion
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
