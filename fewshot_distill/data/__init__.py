"""Data: task rows -> prompts -> tokenized teacher and student sequences, shots, subsets, batches."""
