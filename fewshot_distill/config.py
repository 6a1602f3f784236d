"""Typed experiment configuration: YAML files + `key=value` overrides, validated.

A config file may name a parent with `base_config: other.yaml` (resolved relative to the file), so
`configs/online_v1.yaml` holds only the distillation overrides on top of `configs/base.yaml`.
Merge order: dataclass defaults < parent YAML < child YAML < command-line overrides.

Unknown keys, wrong types and out-of-range values raise `ConfigError` with a message naming the key
and, for misspellings, the closest valid name.

    cfg = load_config("configs/online_v1.yaml", ["training.max_steps=4", "model.name=/tmp/tiny"])
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from fewshot_distill.data.shots import SHOT_SAMPLING_MODES
from fewshot_distill.data.teacher_context import TEACHER_CONTEXTS
from fewshot_distill.tasks import TASK_NAMES, get_task

PARENT_KEY = "base_config"
TEACHER_WEIGHTS = ("base", "live")
GENERATION_BACKENDS = ("hf", "vllm")
VLLM_WEIGHT_SYNCS = ("merged", "adapter")


class ConfigError(ValueError):
    """A config file or override is invalid; the message says which key and how to fix it."""


FINETUNE_MODES = ("lora", "full")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass
class ModelConfig:
    # Hub id or local folder, loaded with `from_pretrained` for both teacher and student.
    name: str = "Qwen/Qwen3-1.7B"
    # sdpa works everywhere; "flash_attention_2" when flash-attn is installed; "eager" for debugging.
    attn_implementation: str = "sdpa"
    # Allow cuDNN's SDPA kernel on CUDA (torch's default on Hopper from 2.11). Off: it is reported to
    # return NaN for keyless query rows and NaN gradients on H100/H200 (fewshot_distill/utils/attention_kernels.py).
    cudnn_sdpa: bool = False
    # What trains: "lora" (an adapter on frozen base weights; the lora: section) or "full" (every weight,
    # float32 master copies under bf16 autocast; the lora: section is ignored).
    finetune: str = "lora"

    def __post_init__(self) -> None:
        _require(self.finetune in FINETUNE_MODES,
                 f"model.finetune must be one of {FINETUNE_MODES}, got {self.finetune!r}")


@dataclass
class DataConfig:
    # Task (fewshot_distill/tasks/): row validation, question text, gold parsing and answer extraction.
    task: str = "gsm8k"
    dataset: str = "openai/gsm8k"
    subset: str = "main"
    train_split: str = "train"
    test_split: str = "test"
    # Local folder with {train_split}.jsonl / {test_split}.jsonl; when set, the hub is not contacted.
    path: Optional[str] = None
    num_fewshot_examples: int = 8
    # The teacher sequence drops shots (never answer tokens) until it fits.
    max_seq_len_teacher: int = 3072
    # A student sequence longer than this is an error (the answer would be cut).
    max_seq_len_student: int = 768
    num_workers: int = 2
    # What to do with rows lacking a question, an answer or a `####` line: "error" or "skip" (counted).
    invalid_rows: str = "error"
    # Sort the examples of each optimizer step by teacher length (less padding; same examples per step,
    # but micro-batch composition, hence per-token loss weights, change). See docs/performance.md.
    group_by_length: bool = False
    # Shots per example ("per_example": seed + index, the paper's) or one seeded set for all ("fixed").
    shot_sampling: str = "per_example"
    # Train on a seeded subset of this many rows (picked before tokenization); null = the whole split.
    max_train_examples: Optional[int] = None
    # Hold back this many seeded rows of the train split as a dev split (fewshot_distill/data/dev_split.py): out of
    # training and of every shot pool; scored with --split dev, used by --select dev. 0 = off (the paper's data).
    dev_examples: int = 0

    def __post_init__(self) -> None:
        _require(self.task in TASK_NAMES, f"data.task must be one of {list(TASK_NAMES)}, got {self.task!r}")
        _require(self.dev_examples >= 0, "data.dev_examples must be >= 0 (0 = no dev split)")
        _require(self.max_train_examples is None or self.max_train_examples > 0,
                 "data.max_train_examples must be > 0, or null for the whole split")
        _require(self.num_fewshot_examples >= 0, "data.num_fewshot_examples must be >= 0")
        _require(self.max_seq_len_teacher > 0, "data.max_seq_len_teacher must be > 0")
        _require(self.max_seq_len_student > 0, "data.max_seq_len_student must be > 0")
        _require(self.num_workers >= 0, "data.num_workers must be >= 0")
        _require(self.invalid_rows in ("error", "skip"),
                 f"data.invalid_rows must be 'error' or 'skip', got {self.invalid_rows!r}")
        _require(self.shot_sampling in SHOT_SAMPLING_MODES,
                 f"data.shot_sampling must be one of {SHOT_SAMPLING_MODES}, got {self.shot_sampling!r}")


@dataclass
class TrainingConfig:
    seed: int = 42
    # Every output of a run (checkpoints, logs, resolved config) lives under this folder.
    output_dir: str = "experiments/run"
    logging_steps: int = 10
    # Held-out diagnostics (see EvalConfig) every eval_steps optimizer steps; accuracy is evaluated
    # offline with scripts/eval_checkpoints.py.
    eval_steps: int = 200
    save_steps: int = 200
    max_steps: int = 1000
    warmup_steps: int = 50
    lr: float = 2.0e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 4
    bf16: bool = True
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        _require(self.max_steps > 0, "training.max_steps must be > 0")
        _require(self.per_device_train_batch_size > 0,
                 "training.per_device_train_batch_size must be > 0 (effective batch of 0)")
        _require(self.gradient_accumulation_steps > 0,
                 "training.gradient_accumulation_steps must be > 0 (effective batch of 0)")
        _require(self.lr > 0, "training.lr must be > 0")
        # warmup_steps > max_steps is allowed (short debug runs): the lr then never reaches its peak.
        _require(self.warmup_steps >= 0, "training.warmup_steps must be >= 0")
        _require(self.weight_decay >= 0, "training.weight_decay must be >= 0")
        _require(self.grad_clip > 0, "training.grad_clip must be > 0")
        _require(self.logging_steps > 0, "training.logging_steps must be > 0")
        _require(self.save_steps > 0, "training.save_steps must be > 0")
        _require(self.eval_steps > 0, "training.eval_steps must be > 0")


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    bias: str = "none"

    def __post_init__(self) -> None:
        _require(self.r > 0, "lora.r must be > 0")
        _require(self.alpha > 0, "lora.alpha must be > 0")
        _require(0.0 <= self.dropout < 1.0, "lora.dropout must be in [0, 1)")
        _require(len(self.target_modules) > 0, "lora.target_modules must name at least one module")
        _require(self.bias in ("none", "all", "lora_only"),
                 f"lora.bias must be 'none', 'all' or 'lora_only', got {self.bias!r}")


@dataclass
class DistillationConfig:
    # Teacher top-K vocabulary entries matched by the MSE term (0 = no distillation, plain SFT).
    n_top_logits: int = 0
    # Weight of the MSE term: loss = CE + lambda_distill * MSE.
    lambda_distill: float = 0.0
    # "seed": logits at the positions holding the answer tokens (the paper's choice);
    # "predict": logits that predict each answer token (the positions the CE loss uses).
    alignment: str = "seed"
    # Teacher top-K memoisation across epochs: "none" (online every step), "memory" or "disk".
    teacher_cache: str = "none"
    # What the teacher reads before the answer (fewshot_distill/data/teacher_context.py): "fewshot" (the paper's),
    # "zeroshot" ([question][answer]) or "shuffled_answers" (shots' answers deranged among the shots).
    teacher_context: str = "fewshot"
    # Distillation term on the teacher's top-K ids (registry in fewshot_distill/losses/divergences.py): "mse" (the paper's, raw
    # logits), "forward_kl", "reverse_kl" or "jsd".
    loss: str = "mse"
    # KL family: both sides' logits / T, the divergence scaled by T^2. mse compares raw logits: must be 1.
    temperature: float = 1.0
    # jsd: beta KL(teacher||M) + (1-beta) KL(student||M), M = beta teacher + (1-beta) student (TRL's GKD);
    # 0 = forward KL, 1 = reverse KL.
    jsd_beta: float = 0.5
    # KL family support: "renormalize" (softmax over the K ids) or "bucket" (K + 1: the rest of the vocab
    # as one entry; keeps the teacher's tail log-sum-exp, also in the teacher cache).
    topk_tail: str = "renormalize"
    # Fixed shots only: compute the shot prefix's keys/values once and run each teacher sequence's
    # [question][answer] suffix on them (fewshot_distill/teachers/shot_prefix.py).
    reuse_shot_prefix: bool = False
    # Deprecated (the method says where its answers come from: `method:`): gold | student | mixed picks
    # online_v1 | onpolicy | onpolicy_mixed in configs written before `method:` existed. null = unset.
    answer_source: Optional[str] = None
    # onpolicy_mixed only: the fraction of each micro-batch's rows that are sampled (rounded to whole rows).
    student_fraction: float = 0.5
    # The teacher's weights: "base" (the adapter disabled: the frozen start, the paper's) or "live" (the
    # current student, adapter on, reading the teacher context: SDFT / OPSD's live teacher).
    teacher_weights: str = "base"

    def __post_init__(self) -> None:
        _require(self.n_top_logits >= 0, "distillation.n_top_logits must be >= 0")
        _require(self.lambda_distill >= 0, "distillation.lambda_distill must be >= 0")
        _require(self.alignment in ("seed", "predict"),
                 f"distillation.alignment must be 'seed' or 'predict', got {self.alignment!r}")
        _require(self.teacher_cache in ("none", "memory", "disk"),
                 f"distillation.teacher_cache must be 'none', 'memory' or 'disk', got {self.teacher_cache!r}")
        # The registry is the list of valid names: a new context needs no change here.
        _require(self.teacher_context in TEACHER_CONTEXTS,
                 f"distillation.teacher_context must be one of {sorted(TEACHER_CONTEXTS)}, "
                 f"got {self.teacher_context!r}")
        from fewshot_distill.losses.divergences import loss_settings_problem  # the loss registry is the list of valid names

        problem = loss_settings_problem(self.loss, self.temperature, self.jsd_beta, self.topk_tail,
                                        self.n_top_logits)
        _require(problem is None, str(problem))
        _require(0.0 < self.student_fraction < 1.0,
                 f"distillation.student_fraction must be in (0, 1) (the sampled share of a mixed batch), got "
                 f"{self.student_fraction}")
        _require(self.teacher_weights in TEACHER_WEIGHTS,
                 f"distillation.teacher_weights must be one of {TEACHER_WEIGHTS}, got {self.teacher_weights!r}")
        _require(self.teacher_weights == "base" or self.teacher_cache == "none",
                 f"distillation.teacher_weights=live changes every step and cannot be cached; set "
                 f"distillation.teacher_cache=none")
        _require(self.teacher_weights == "base" or not self.reuse_shot_prefix,
                 "distillation.teacher_weights=live cannot reuse the base model's shot prefix keys/values; set "
                 "distillation.reuse_shot_prefix=false")


@dataclass
class GenerationConfig:
    # Answers generated during training: the student's own samples (methods onpolicy / onpolicy_mixed), seeded
    # per (training.seed, step, example), and the teacher's greedy answers (method seq_kd; greedy whatever
    # temperature says).
    # Longest sample; one that reaches it without EOS is kept (and counted in train/sample_eos_frac).
    max_new_tokens: int = 512
    # 0 = greedy; 1.0 = the student's own distribution (on-policy).
    temperature: float = 1.0
    # Nucleus sampling: keep the smallest set of ids holding this much mass (1.0 = off).
    top_p: float = 1.0
    # Who samples: "hf" (generate_tokens on the trained model) or "vllm" (an in-process vLLM engine synced
    # to the trainer's weights once per optimizer step; fewshot_distill/training/vllm_sampler.py).
    backend: str = "hf"
    # vllm + LoRA: how the engine gets the adapter each step: "merged" (W + s*BA loaded as base weights) or
    # "adapter" (a new LoRARequest from a RAM folder). Full fine-tuning always loads the weights.
    vllm_weight_sync: str = "merged"
    # vllm on GPU: the share of GPU memory the engine may take (weights + KV cache); the trainer needs the rest.
    vllm_gpu_memory_utilization: float = 0.3

    def __post_init__(self) -> None:
        _require(self.max_new_tokens >= 1, "generation.max_new_tokens must be >= 1")
        _require(self.temperature >= 0, "generation.temperature must be >= 0 (0 = greedy)")
        _require(0.0 < self.top_p <= 1.0, "generation.top_p must be in (0, 1]")
        _require(self.backend in GENERATION_BACKENDS,
                 f"generation.backend must be one of {GENERATION_BACKENDS}, got {self.backend!r}")
        _require(self.vllm_weight_sync in VLLM_WEIGHT_SYNCS,
                 f"generation.vllm_weight_sync must be one of {VLLM_WEIGHT_SYNCS}, got {self.vllm_weight_sync!r}")
        _require(0.0 < self.vllm_gpu_memory_utilization <= 1.0,
                 "generation.vllm_gpu_memory_utilization must be in (0, 1]")


@dataclass
class EvalConfig:
    # Test rows the loop scores every training.eval_steps steps (teacher-forced NLL, KL to the k-shot
    # teacher, top-K MSE, ICL gap closed; fewshot_distill/eval/diagnostics.py). 0 turns the in-training eval off.
    held_out_examples: int = 64
    # K of the top-K MSE diagnostic (the training objective's term; the paper uses 256).
    mse_top_k: int = 256

    def __post_init__(self) -> None:
        _require(self.held_out_examples >= 0, "eval.held_out_examples must be >= 0 (0 turns it off)")
        _require(self.mse_top_k > 0, "eval.mse_top_k must be > 0")


@dataclass
class TaskConfig:
    # data.task=jsonl only (fewshot_distill/tasks/jsonl.py): a task defined by these fields, no Python.
    # Record field holding the question text.
    question_field: str = "question"
    # Record field holding the final answer alone (a number, or LaTeX) ...
    answer_field: Optional[str] = None
    # ... or worked text ending in '#### N' (number) or a \boxed{} answer (latex). Set exactly one.
    solution_field: Optional[str] = None
    # "number": GSM8K's prompt, extraction and exact numeric match; "latex": MATH-500's (\boxed{}, math-verify);
    # "text": the question as is, exact match of the first output line, case-folded (fewshot_distill/tasks/text.py).
    answer_type: str = "number"
    # answer_type text only: the user turn as a format string with {question}, e.g. "Word: {question}"
    # (default: the question alone, so that the shots alone say what the task is).
    template: Optional[str] = None

    def __post_init__(self) -> None:
        from fewshot_distill.tasks.jsonl import ANSWER_TYPES

        _require(self.answer_type in ANSWER_TYPES,
                 f"task.answer_type must be one of {ANSWER_TYPES}, got {self.answer_type!r}")
        _require(bool(self.question_field), "task.question_field must name a record field")


@dataclass
class Config:
    # The training method (fewshot_distill/methods/, the registry METHODS): baseline (SFT), online_v1 (the
    # paper's), onpolicy, onpolicy_mixed, seq_kd. Validated against the registry when training starts.
    method: str = "baseline"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    distillation: DistillationConfig = field(default_factory=DistillationConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    task: TaskConfig = field(default_factory=TaskConfig)

    def __post_init__(self) -> None:
        # The task: section travels with data: (a plain attribute, not a config key), so every function
        # that takes only the data config builds the same task (fewshot_distill/tasks `task_of`).
        self.data.task_settings = self.task
        try:
            get_task(self.data.task, self.task)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if self.distillation.reuse_shot_prefix:
            shot_sampling, teacher_context = self.data.shot_sampling, self.distillation.teacher_context
            _require(shot_sampling == "fixed" and teacher_context == "fewshot",
                     "distillation.reuse_shot_prefix=true needs data.shot_sampling=fixed and "
                     f"distillation.teacher_context=fewshot (got {shot_sampling} and {teacher_context}); "
                     "set them or distillation.reuse_shot_prefix=false")


def _valid_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            keys.extend(_valid_keys(value, f"{prefix}{f.name}."))
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _unknown_key_message(error: OmegaConfBaseException, source: str) -> str:
    full_key = getattr(error, "full_key", None) or str(error)
    valid = _valid_keys(Config())
    close = difflib.get_close_matches(str(full_key), valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"Unknown config key '{full_key}' in {source}.{hint} Valid keys: {', '.join(valid)}"


def _read_yaml_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[DictConfig]:
    """The YAML file and its `base_config` ancestors, root first."""
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}")
    if path in seen:
        raise ConfigError(f"Config inheritance cycle through {path}")
    node = OmegaConf.load(path)
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path} must hold a mapping of config sections")
    parent = node.pop(PARENT_KEY, None)
    chain = _read_yaml_chain(path.parent / str(parent), seen + (path,)) if parent else []
    return chain + [node]


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load `path` (with its `base_config` parents) and apply `key=value` overrides."""
    merged = OmegaConf.structured(Config)
    sources = [(node, f"config file {path}") for node in (_read_yaml_chain(Path(path)) if path else [])]
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"Override {override!r} is not of the form key=value (e.g. training.max_steps=4)")
    if overrides:
        sources.append((OmegaConf.from_dotlist(list(overrides)), "command-line overrides"))
    for node, source in sources:
        try:
            merged = OmegaConf.merge(merged, node)
        except (ConfigKeyError, ConfigAttributeError) as error:
            raise ConfigError(_unknown_key_message(error, source)) from None
        except OmegaConfBaseException as error:
            key = getattr(error, "full_key", None) or "?"
            reason = str(error.msg).splitlines()[0]
            raise ConfigError(f"Invalid value for config key '{key}' in {source}: {reason}") from None
    try:
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        cause = error.__cause__ if isinstance(error.__cause__, ConfigError) else error
        raise ConfigError(str(cause)) from None


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def config_to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
