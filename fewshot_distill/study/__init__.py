"""Studies: a grid of conditions x seeds over a task and a model, trained, evaluated and aggregated
(fewshot_distill/study/spec.py reads the YAML and expands the grid; fewshot_distill/study/runner.py runs it)."""
