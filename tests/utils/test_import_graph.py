"""The import arrows of fewshot_distill/ point down the layers (fewshot_distill/utils/import_graph.py) and never form a circle."""

from __future__ import annotations

import textwrap

from fewshot_distill.utils import import_graph as G

def test_the_package_has_no_import_cycle():
    assert G.cycles(G.import_graph()) == []


def test_no_upward_import():
    upward = G.upward_imports(G.import_graph())
    assert upward == [], f"imports from a lower layer up: {upward}"


def test_every_subpackage_and_top_module_has_a_layer():
    """A new folder or top-level module must be placed in LAYERS, or it would count as the top layer."""
    root = G.SRC
    names = {f"fewshot_distill.{p.name}" for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    names |= {f"fewshot_distill.{p.stem}" for p in root.glob("*.py") if p.name != "__init__.py"}
    unplaced = sorted(n for n in names if G.layer_of(n) == len(G.LAYERS))
    assert unplaced == [], f"add these to fewshot_distill/utils/import_graph.py LAYERS: {unplaced}"


def test_the_checker_finds_a_cycle_and_an_upward_import(tmp_path):
    """On a hand-made package: a circle through a lazy import, and models importing training."""
    src = tmp_path / "fewshot_distill"
    (src / "models").mkdir(parents=True)
    (src / "training").mkdir()
    for folder in (src, src / "models", src / "training"):
        (folder / "__init__.py").write_text("")
    (src / "models" / "a.py").write_text("from fewshot_distill.training import b\n")
    (src / "training" / "b.py").write_text(textwrap.dedent("""
        def later():
            from fewshot_distill.models.a import something
    """))
    graph = G.import_graph(src)
    assert graph["fewshot_distill.models.a"] == {"fewshot_distill.training.b"} and graph["fewshot_distill.training.b"] == {"fewshot_distill.models.a"}
    assert G.cycles(graph) == [["fewshot_distill.models.a", "fewshot_distill.training.b"]]
    assert G.upward_imports(graph) == [("fewshot_distill.models.a", "fewshot_distill.training.b")]
