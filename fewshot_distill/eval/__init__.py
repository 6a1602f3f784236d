"""Evaluation: accuracy by generation (vLLM or transformers) and teacher-forced held-out diagnostics.

Importing this package makes CUDA availability checks fork-safe before anything here
imports torch (vLLM forks its engine process; see fewshot_distill/utils/gpu_env.py)."""

from fewshot_distill.utils.gpu_env import make_cuda_check_fork_safe

make_cuda_check_fork_safe()
