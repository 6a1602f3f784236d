"""Foundations every layer may use: atomic writes, manifests, run info, GPU environment, tiny test models."""
