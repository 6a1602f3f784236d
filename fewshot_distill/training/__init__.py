"""Training: the loop every method shares, the student's on-policy samples, checkpoints and resume."""
