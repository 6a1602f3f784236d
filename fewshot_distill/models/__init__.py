"""Models: the LoRA (or full) student and its forwards, generation, the real CPU model, tiny test models."""
