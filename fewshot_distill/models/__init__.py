"""Models: the LoRA (or full) student and its teachers' forwards, generation, the real CPU model."""
