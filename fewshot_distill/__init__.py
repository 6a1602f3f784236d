"""Few-shot distillation: bake a model's 8-shot in-context behaviour into LoRA weights (or every weight)."""
