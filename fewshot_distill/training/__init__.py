"""Training: the loop, one loss step per method, the teacher variants, checkpoints and resume."""
