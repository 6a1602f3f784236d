"""Studies: a grid of conditions x seeds over a task and a model, trained, evaluated and aggregated
(src/study/spec.py reads the YAML and expands the grid; src/study/runner.py runs it)."""
