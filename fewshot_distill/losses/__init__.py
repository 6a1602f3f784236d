"""The losses of one training step, bottom-up:

    divergences.py     the distillation divergences on the teacher's top-K ids (math only; the registry)
    window_kernel.py   CE + a divergence over the answer window in one fused, memory-lean pass
    alignment.py       where the answer tokens sit in the student's window and the teacher's sequence
    reference.py       the unfused losses written the obvious way (the kernel is tested against them)
"""
