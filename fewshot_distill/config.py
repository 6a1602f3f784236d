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
INVALID_ROWS_MODES = ("error", "skip")
LORA_BIAS_MODES = ("none", "all", "lora_only")
TEACHER_CACHE_MODES = ("none", "memory", "disk")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def option(default: Any = dataclasses.MISSING, *, help: str, choices: Any = None,
           default_factory: Any = dataclasses.MISSING):
    """A config key with its help: the one place a key is explained. `choices` names the registry of its valid
    values (a tuple, or a function returning one where the registry imports torch). scripts/write_config_docs.py
    writes configs/base.yaml's comments and docs/method.md's key table from these (fewshot_distill/config_docs.py)."""
    metadata = {"help": help, "choices": choices}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def option_choices(spec: dataclasses.Field) -> tuple[str, ...] | None:
    """The valid values of a config field (from its registry), or None when any value of its type goes."""
    choices = spec.metadata.get("choices")
    return tuple(choices()) if callable(choices) else (tuple(choices) if choices is not None else None)


# Registries that import torch, read only when the docs are written (config itself stays torch-free).
def _loss_names() -> tuple[str, ...]:
    from fewshot_distill.losses.divergences import DIVERGENCES
    return tuple(DIVERGENCES)


def _tail_modes() -> tuple[str, ...]:
    from fewshot_distill.losses.divergences import TAIL_MODES
    return TAIL_MODES


def _alignments() -> tuple[str, ...]:
    from fewshot_distill.losses.alignment import ALIGNMENTS
    return ALIGNMENTS


def _answer_types() -> tuple[str, ...]:
    from fewshot_distill.tasks.jsonl import ANSWER_TYPES
    return ANSWER_TYPES


@dataclass
class ModelConfig:
    """The model: teacher and student are the same weights."""

    name: str = option("Qwen/Qwen3-1.7B", help="hub id or local folder, loaded with `from_pretrained` for both "
                       "teacher and student")
    attn_implementation: str = option("sdpa", help="`sdpa` works everywhere; `flash_attention_2` needs flash-attn; "
                                      "`eager` is for debugging")
    cudnn_sdpa: bool = option(False, help="on CUDA, allow cuDNN's SDPA kernel (torch's default on Hopper from 2.11). "
                              "Off because it is reported to return NaN for query rows that see no key and NaN "
                              "gradients on H100/H200 (pytorch #196678); the choice is logged and recorded in "
                              "run_info (fewshot_distill/utils/attention_kernels.py)")
    finetune: str = option("lora", choices=FINETUNE_MODES, help="what trains: `lora`, an adapter on frozen weights "
                           "(the lora: section); `full`, every weight (float32 master weights under bf16 autocast, "
                           "lora: ignored, checkpoints are whole models, conditions `baseline_full` etc.; the "
                           "distillation teacher is a frozen copy of the starting weights)")

    def __post_init__(self) -> None:
        _require(self.finetune in FINETUNE_MODES,
                 f"model.finetune must be one of {FINETUNE_MODES}, got {self.finetune!r}")


@dataclass
class DataConfig:
    """Training rows, shots and sequence lengths."""

    task: str = option("gsm8k", choices=TASK_NAMES, help="the task (fewshot_distill/tasks/): row validation, "
                       "question text, gold parsing, answer extraction; `jsonl` is defined by the task: section "
                       "(docs/tasks.md)")
    dataset: str = option("openai/gsm8k", help="hub dataset, read when data.path is null")
    subset: str = option("main", help="hub dataset subset")
    train_split: str = option("train", help="train split name (the file name under data.path)")
    test_split: str = option("test", help="test split name (the file name under data.path)")
    path: Optional[str] = option(None, help="local folder with {train_split}.jsonl / {test_split}.jsonl (or the "
                                 "task's original file); when set, the hub is not contacted. null = the hub")
    num_fewshot_examples: int = option(8, help="shots in the teacher context, and in the `icl_{k}shot` evaluation "
                                       "row")
    max_seq_len_teacher: int = option(3072, help="a longer teacher sequence drops shots (counted in run_info.json), "
                                      "never answer tokens; GSM8K train's 8-shot maximum is 2,737 Qwen3 tokens")
    max_seq_len_student: int = option(768, help="a longer student sequence is an error, never truncated (GSM8K "
                                      "train's maximum is 573)")
    num_workers: int = option(2, help="DataLoader workers")
    invalid_rows: str = option("error", choices=INVALID_ROWS_MODES, help="rows without a question, an answer or a "
                               "`####` line: `error` lists them, `skip` drops and counts them")
    group_by_length: bool = option(False, help="sort each optimizer step's examples by teacher length: less "
                                   "padding, the same examples per step, but other micro-batches, hence per-token "
                                   "loss weights (docs/performance.md)")
    shot_sampling: str = option("per_example", choices=SHOT_SAMPLING_MODES, help="`per_example`: shots drawn with "
                                "seed + index (the paper's); `fixed`: one seeded shot set for every example")
    max_train_examples: Optional[int] = option(None, help="train on a seeded subset of N rows, picked before "
                                               "tokenization (shots still from the whole split); null = all")
    dev_examples: int = option(0, help="hold back N seeded train rows as a dev split: out of training and every "
                               "shot pool; scored with --split dev, used by --select dev (docs/tasks.md). 0 = off")

    def __post_init__(self) -> None:
        _require(self.task in TASK_NAMES, f"data.task must be one of {list(TASK_NAMES)}, got {self.task!r}")
        _require(self.dev_examples >= 0, "data.dev_examples must be >= 0 (0 = no dev split)")
        _require(self.max_train_examples is None or self.max_train_examples > 0,
                 "data.max_train_examples must be > 0, or null for the whole split")
        _require(self.num_fewshot_examples >= 0, "data.num_fewshot_examples must be >= 0")
        _require(self.max_seq_len_teacher > 0, "data.max_seq_len_teacher must be > 0")
        _require(self.max_seq_len_student > 0, "data.max_seq_len_student must be > 0")
        _require(self.num_workers >= 0, "data.num_workers must be >= 0")
        _require(self.invalid_rows in INVALID_ROWS_MODES,
                 f"data.invalid_rows must be one of {INVALID_ROWS_MODES}, got {self.invalid_rows!r}")
        _require(self.shot_sampling in SHOT_SAMPLING_MODES,
                 f"data.shot_sampling must be one of {SHOT_SAMPLING_MODES}, got {self.shot_sampling!r}")


@dataclass
class TrainingConfig:
    """The optimizer, the schedule and what a run writes when."""

    seed: int = option(42, help="LoRA init, data order, shots, the held-out subset, on-policy samples")
    output_dir: str = option("experiments/run", help="every output of a run: checkpoints, logs, resolved config "
                             "(--output_dir overrides)")
    logging_steps: int = option(10, help="log every N optimizer steps")
    eval_steps: int = option(200, help="held-out diagnostics (the eval: section) every N optimizer steps; accuracy "
                             "is evaluated offline (scripts/eval_checkpoints.py)")
    save_steps: int = option(200, help="checkpoint-{step}/ every N optimizer steps")
    max_steps: int = option(1000, help="optimizer steps; 1000 x 32 examples = ~4.3 passes over GSM8K train")
    warmup_steps: int = option(50, help="linear warmup, then cosine decay to 0 at max_steps")
    lr: float = option(2.0e-4, help="AdamW peak learning rate")
    weight_decay: float = option(0.01, help="AdamW weight decay")
    grad_clip: float = option(1.0, help="global gradient-norm clip")
    per_device_train_batch_size: int = option(4, help="micro-batch per process; effective batch = this x processes "
                                              "x accumulation (4 x 2 GPUs x 4 = 32)")
    gradient_accumulation_steps: int = option(4, help="micro-batches per optimizer step")
    bf16: bool = option(True, help="bf16 autocast (base weights stored in bf16, trained weights in float32); false "
                        "= float32")
    gradient_checkpointing: bool = option(False, help="recompute activations in backward: less memory, ~30% "
                                          "slower steps")

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
    """The LoRA adapter (model.finetune=lora)."""

    r: int = option(16, help="LoRA rank")
    alpha: int = option(32, help="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = option(0.05, help="dropout on the adapter's input (the on-policy presets set 0: sampling runs "
                            "without dropout)")
    target_modules: list[str] = option(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        help="the modules that get adapters")
    bias: str = option("none", choices=LORA_BIAS_MODES, help="peft's bias mode")

    def __post_init__(self) -> None:
        _require(self.r > 0, "lora.r must be > 0")
        _require(self.alpha > 0, "lora.alpha must be > 0")
        _require(0.0 <= self.dropout < 1.0, "lora.dropout must be in [0, 1)")
        _require(len(self.target_modules) > 0, "lora.target_modules must name at least one module")
        _require(self.bias in LORA_BIAS_MODES, f"lora.bias must be one of {LORA_BIAS_MODES}, got {self.bias!r}")


@dataclass
class DistillationConfig:
    """The teacher and the distillation term (methods with a teacher)."""

    n_top_logits: int = option(0, help="K: the teacher's top-K vocabulary ids per answer position (0 = no "
                               "distillation term; online_v1.yaml: 256)")
    lambda_distill: float = option(0.0, help="weight of the distillation term: loss = CE + lambda_distill x term "
                                   "(online_v1.yaml: 0.5)")
    alignment: str = option("seed", choices=_alignments, help="`seed`: the logits at the positions holding the "
                            "answer tokens (the paper's); `predict`: the logits predicting them (the CE positions)")
    teacher_cache: str = option("none", choices=TEACHER_CACHE_MODES, help="reuse each example's teacher top-K "
                                "after its first epoch: `none` (online every step), `memory` or `disk`")
    teacher_context: str = option("fewshot", choices=lambda: tuple(TEACHER_CONTEXTS), help="what the teacher reads "
                                  "before the answer (fewshot_distill/data/teacher_context.py): `fewshot` (the "
                                  "paper's), `zeroshot` ([question][answer]), `shuffled_answers` (the shots' "
                                  "answers deranged among the shots)")
    loss: str = option("mse", choices=_loss_names, help="the distillation term on the teacher's top-K ids "
                       "(fewshot_distill/losses/divergences.py): `mse` is the paper's, on raw logits; the KL family "
                       "compares distributions; logged as dist_loss whatever it is")
    temperature: float = option(1.0, help="KL family: both sides' logits / T, the divergence x T^2; must stay 1 "
                                "with mse (raw logits)")
    jsd_beta: float = option(0.5, help="jsd: beta KL(T||M) + (1-beta) KL(S||M), M = beta T + (1-beta) S (TRL's "
                             "GKD); in [0, 1], 0 = forward KL, 1 = reverse KL")
    topk_tail: str = option("renormalize", choices=_tail_modes, help="KL family: `renormalize` (softmax over the "
                            "K ids) or `bucket` (K + 1 entries, the rest of the vocabulary in one; the teacher's "
                            "tail log-sum-exp is kept, also in the teacher cache; needs K > 0)")
    reuse_shot_prefix: bool = option(False, help="with data.shot_sampling=fixed and teacher_context=fewshot only: "
                                     "the shots' keys/values are computed once per process and the teacher runs "
                                     "each [question][answer] suffix on them (docs/performance.md)")
    answer_source: Optional[str] = option(None, help="deprecated (set `method:`): in configs written before "
                                          "`method:` existed, gold | student | mixed picked online_v1 | onpolicy | "
                                          "onpolicy_mixed. null = unset")
    student_fraction: float = option(0.5, help="onpolicy_mixed: the sampled share of each micro-batch (GKD's "
                                     "lambda), in (0, 1); CE on the gold rows only")
    teacher_weights: str = option("base", choices=TEACHER_WEIGHTS, help="`base`: the adapter disabled, the frozen "
                                  "start (the paper's); `live`: the current student, adapter on, reading the "
                                  "teacher context (SDFT / OPSD's live teacher; neither cache nor shared prefix)")

    def __post_init__(self) -> None:
        _require(self.n_top_logits >= 0, "distillation.n_top_logits must be >= 0")
        _require(self.lambda_distill >= 0, "distillation.lambda_distill must be >= 0")
        _require(self.alignment in _alignments(),
                 f"distillation.alignment must be one of {_alignments()}, got {self.alignment!r}")
        _require(self.teacher_cache in TEACHER_CACHE_MODES,
                 f"distillation.teacher_cache must be one of {TEACHER_CACHE_MODES}, got {self.teacher_cache!r}")
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
                 "distillation.teacher_weights=live changes every step and cannot be cached; set "
                 "distillation.teacher_cache=none")
        _require(self.teacher_weights == "base" or not self.reuse_shot_prefix,
                 "distillation.teacher_weights=live cannot reuse the base model's shot prefix keys/values; set "
                 "distillation.reuse_shot_prefix=false")


@dataclass
class GenerationConfig:
    """Answers generated in training: the student's samples (onpolicy, onpolicy_mixed), seeded per (seed, step,
    example), and the teacher's greedy answers (seq_kd)."""

    max_new_tokens: int = option(512, help="longest answer; one that reaches it without EOS is kept and counted "
                                 "(train/sample_eos_frac)")
    temperature: float = option(1.0, help="1.0 = the student's own distribution (on-policy); 0 = greedy (seq_kd's "
                                "teacher is greedy whatever this says)")
    top_p: float = option(1.0, help="nucleus sampling: the smallest set of ids holding this much mass (1.0 = off)")
    backend: str = option("hf", choices=GENERATION_BACKENDS, help="who samples, once per optimizer step on each "
                          "rank: `hf` (generate_tokens on the trained model) or `vllm` (an in-process vLLM engine "
                          "whose weights follow the trainer's each step; needs vLLM; not under FSDP)")
    vllm_weight_sync: str = option("merged", choices=VLLM_WEIGHT_SYNCS, help="vllm with LoRA: `merged` (W + s*BA "
                                   "computed out of place in float32, loaded as the engine's weights) or `adapter` "
                                   "(written to /dev/shm, served as a new LoRARequest); full fine-tuning always "
                                   "loads the weights (docs/performance.md compares them)")
    vllm_gpu_memory_utilization: float = option(0.3, help="vllm on a GPU: the engine's share of GPU memory "
                                                "(weights + KV cache); the trainer keeps the rest")

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
    """Held-out diagnostics during training (docs/diagnostics.md)."""

    held_out_examples: int = option(64, help="test rows scored every training.eval_steps (teacher-forced NLL, KL "
                                    "to the k-shot teacher, top-K MSE, ICL gap closed); 0 = off")
    mse_top_k: int = option(256, help="K of the top-K MSE diagnostic (the paper's training term uses 256)")

    def __post_init__(self) -> None:
        _require(self.held_out_examples >= 0, "eval.held_out_examples must be >= 0 (0 turns it off)")
        _require(self.mse_top_k > 0, "eval.mse_top_k must be > 0")


@dataclass
class TaskConfig:
    """data.task=jsonl only: a task defined by these fields, no Python (fewshot_distill/tasks/jsonl.py)."""

    question_field: str = option("question", help="the record field holding the question text")
    answer_field: Optional[str] = option(None, help="the record field holding the final answer alone (a number, "
                                         "LaTeX or text) ...")
    solution_field: Optional[str] = option(None, help="... or worked text ending in '#### N' (number) or a \\boxed{} "
                                           "answer (latex). Set exactly one")
    answer_type: str = option("number", choices=_answer_types, help="`number`: GSM8K's prompt, extraction and exact "
                              "numeric match; `latex`: MATH-500's (\\boxed{}, math-verify); `text`: the question as "
                              "is, exact match of the first output line, case-folded (fewshot_distill/tasks/text.py)")
    template: Optional[str] = option(None, help="text only: the user turn as a format string with {question}, e.g. "
                                     "\"Word: {question}\"; null = the question alone, so that the shots alone say "
                                     "what the task is")

    def __post_init__(self) -> None:
        ANSWER_TYPES = _answer_types()
        _require(self.answer_type in ANSWER_TYPES,
                 f"task.answer_type must be one of {ANSWER_TYPES}, got {self.answer_type!r}")
        _require(bool(self.question_field), "task.question_field must name a record field")


@dataclass
class Config:
    """A run: its method and every section."""

    # Valid names are the registry's (fewshot_distill/methods/, above this layer): checked when training starts.
    method: str = option("baseline", help="the training method, an entry of the registry (fewshot_distill/methods/"
                         "; the method table in docs/method.md)")
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
