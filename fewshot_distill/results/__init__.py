"""Results: load results files, pick checkpoints, and render tables, statistics and figures."""
