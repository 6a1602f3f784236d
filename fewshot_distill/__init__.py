"""Few-shot distillation: bake a model's 8-shot in-context behaviour into LoRA weights (or every weight)."""

import warnings as _warnings

from fewshot_distill.utils.checkout import other_checkout_warning as _other_checkout_warning

if (_message := _other_checkout_warning()) is not None:  # e.g. two clones sharing one venv
    _warnings.warn(_message, stacklevel=2)
