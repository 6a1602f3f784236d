"""Benchmarks and computed budgets: step time and memory vs a paper-style reference, shared-prefix tolerance."""
