"""Foundations every layer may use: atomic writes, manifests, run info, GPU environment, the import layers."""
