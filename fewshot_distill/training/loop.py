"""The training loop every method shares: setup, loop, save. It knows no teacher and no method.

fewshot_distill/train.py parses the config, calls `setup_run`, asks the method for its loss step and calls
`train`. Everything else (DDP / FSDP, bf16 autocast, gradient accumulation, AdamW, cosine schedule with
warmup, clipping, logging, checkpoints, resume, signals) lives here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from torch.utils.data import DataLoader

from fewshot_distill.config import Config, ConfigError, config_to_dict, config_to_yaml, load_config
from fewshot_distill.run_identity import checkpoint_dir, checkpoint_dir_name, CHECKPOINT_PREFIX, checkpoint_step, FINAL_DIR, RUN_INFO_FILE
from fewshot_distill.training.checkpoint import (CheckpointError, find_resume_checkpoint, full_state_dict, list_checkpoints,
                                     load_checkpoint, save_checkpoint, save_final)
from fewshot_distill.training.heldout_eval import build_heldout_evaluator
from fewshot_distill.training.precision import keep_low_precision_outputs
from fewshot_distill.utils.gpu_env import check_gpu_setup
from fewshot_distill.utils.io import keep_logged_steps

logger = logging.getLogger("fewshot_distill")

# A method's loss step (fewshot_distill/methods/): (model, batch) -> {"loss": total with a graph, <term>: detached
# scalars to log}. A step may also have `begin_optimizer_step(micro_batches)`, called before each optimizer
# step's first forward with all its micro-batches (on-policy sampling draws the whole step at once).
LossStep = Callable[[torch.nn.Module, dict], dict]

# A loss step that trains on other tokens than its batch's (on-policy: the sampled answers) returns their
# count under this key; the loop counts it into train/tokens_per_s instead of logging it as a term.
TRAINED_TOKENS = "trained_tokens"


def trained_tokens(terms: dict, batch: dict) -> int:
    """The tokens a loss step trained on: the count it reported (TRAINED_TOKENS), else its batch's student
    tokens (prompt and answer, no padding)."""
    reported = terms.get(TRAINED_TOKENS)
    return int(reported) if reported is not None else int(batch["student_attention_mask"].sum())


def parse_training_args(argv: list[str] | None, description: str) -> tuple[argparse.Namespace, Config]:
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/online_v1.yaml")
    parser.add_argument("--output_dir", help="overrides training.output_dir")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in the output dir")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete a previous run's checkpoints and logs in the output dir first")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. training.max_steps=4 model.name=/tmp/tiny")
    args = parser.parse_args(argv)
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other")
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"training.output_dir={args.output_dir}")
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as error:
        parser.error(str(error))
    check_gpu_setup(fork_safe=False)  # GPUs this torch build cannot use: one line, before any setup
    return args, cfg


def exit_on_user_error(main: Callable[[], None]) -> None:
    """Run a script's main; bad config, data or alignment end with a one-line message, not a traceback."""
    from fewshot_distill.data.prompts import AlignmentError
    from fewshot_distill.tasks import InvalidRowsError

    try:
        main()
    # FileNotFoundError: a missing model or data file (ResourceError), a damaged one (DataFileError).
    except (ConfigError, AlignmentError, FileNotFoundError, CheckpointError, InvalidRowsError) as error:
        raise SystemExit(f"error: {error}") from None


@dataclass
class Run:
    cfg: Config
    accelerator: object
    tokenizer: object
    model: torch.nn.Module            # prepared (DDP-wrapped) AnswerWindowLM
    trained_model: object             # unwrapped: the peft model (LoRA) or the causal LM (full); saving, resume
    optimizer: torch.optim.Optimizer
    scheduler: object
    dataloader: DataLoader
    output_dir: Path
    resume_from: Path | None
    method: str
    data_stats: dict = field(default_factory=dict)
    examples: list = field(default_factory=list)   # the TrainingExamples the dataloader serves
    n_train_rows: int = 0                           # rows of the training split (shots are drawn from them)
    step: int = 0                   # optimizer steps done, kept current by `train` (on-policy sampling seeds)

    @property
    def config_yaml(self) -> str:
        return config_to_yaml(self.cfg)


def _configure_logging(is_main: bool) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO if is_main else logging.WARNING, force=True)


def check_output_dir(output_dir: Path, resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint to resume from, or None for a fresh run; refuses to mix two runs' outputs."""
    checkpoints = list_checkpoints(output_dir)
    if resume:
        folder, notes = find_resume_checkpoint(output_dir)
        for note in notes:
            logger.warning("%s", note)
        if folder is None and notes:
            raise SystemExit(f"--resume: no intact checkpoint in {output_dir} (newest: "
                             f"{notes[0].removesuffix('; skipped')}). Start "
                             "again with --overwrite, or restore a checkpoint from a backup.")
        if folder is None:
            raise SystemExit(f"--resume: no complete checkpoint-* folder in {output_dir}. Start a fresh "
                             "run without --resume.")
        if any(note.endswith("; skipped") for note in notes):
            logger.warning("going back to %s (step %s), the newest intact checkpoint", folder,
                           checkpoint_step(folder.name))
        return folder
    leftovers = [c.name for _, c in checkpoints] + [n for n in (FINAL_DIR, "metrics.jsonl")
                                                     if (output_dir / n).exists()]
    if leftovers and not overwrite:
        raise SystemExit(f"{output_dir} already holds another run's outputs ({', '.join(leftovers[:4])}). "
                         "Pass --resume to continue that run, --overwrite to replace it, or choose "
                         "another --output_dir.")
    return None


def _decide_on_main(accelerator, decide: Callable[[], object]):
    """`decide()` on the main process only; every rank gets its result (or stops with it).

    Used for the resume checkpoint: every rank must load the same one, and reading (hashing) the
    files once is cheaper than on every rank.
    """
    outcome = [None]
    if accelerator.is_main_process:
        try:
            outcome = [("ok", decide())]
        except SystemExit as stop:
            outcome = [("exit", stop.code)]
        except Exception as error:
            outcome = [("error", error)]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(outcome)
    kind, value = outcome[0]
    if kind == "ok":
        return value
    if not accelerator.is_main_process:
        raise SystemExit(1)  # the main process prints the reason
    if kind == "exit":
        raise SystemExit(value)
    raise value


def _clear_previous_run(output_dir: Path) -> None:
    for child in output_dir.glob(f"{CHECKPOINT_PREFIX}*"):
        shutil.rmtree(child, ignore_errors=True)
    for name in (FINAL_DIR, f"{FINAL_DIR}.tmp", "tb"):
        shutil.rmtree(output_dir / name, ignore_errors=True)
    for name in ("metrics.jsonl", "run_config.yaml", RUN_INFO_FILE):
        (output_dir / name).unlink(missing_ok=True)


def _warn_on_config_change(cfg: Config, checkpoint: Path) -> None:
    from omegaconf import OmegaConf

    saved_file = checkpoint / "run_config.yaml"
    if not saved_file.is_file():
        return
    saved = OmegaConf.to_container(OmegaConf.load(saved_file))
    current = config_to_dict(cfg)
    changed = [f"{section}.{key}" for section, values in current.items() if isinstance(values, dict)
               for key, value in values.items() if saved.get(section, {}).get(key, value) != value
               and key != "output_dir"]
    changed += [key for key, value in current.items() if not isinstance(value, dict)
                and saved.get(key, value) != value]
    if changed:
        logger.warning("Resuming %s with a config that differs from the run's in: %s", checkpoint,
                       ", ".join(changed))


def check_sharding(cfg: Config, distributed_type) -> None:
    """FSDP (configs/accelerate/fsdp.yaml) serves full fine-tuning; what it cannot do yet is a one-line error
    (what a method or a teacher cannot do under FSDP, they check themselves: methods/, teachers/)."""
    if distributed_type != "FSDP":  # accelerate's DistributedType is a str enum
        return
    if cfg.model.finetune != "full":
        raise ConfigError("FSDP (configs/accelerate/fsdp.yaml) shards full fine-tuning: set model.finetune=full, "
                          "or launch a LoRA run without the FSDP config (DDP)")
    if cfg.eval.held_out_examples > 0:
        # Its rows are split unevenly over ranks, and every sharded forward is a collective.
        raise ConfigError("eval.held_out_examples > 0 is not supported under FSDP: set eval.held_out_examples=0 "
                          "and score the checkpoints with scripts/eval_diagnostics.py")


def launched_with_fsdp() -> bool:
    """True under `accelerate launch --config_file configs/accelerate/fsdp.yaml` (accelerate's own variable)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def sharding_kwargs(train_cfg, fsdp: bool) -> dict:
    """The Accelerator's gradient accumulation and (under FSDP) FSDP plugin arguments.

    Under FSDP, gradients are reduce-scattered in float32 after every micro-batch:
    - accelerate's plugin would set the policy's `reduce_dtype` to bf16 along with `param_dtype`, so the
      gradients of all ranks would be summed in bf16 before they reach the float32 master weights. The
      plugin is built here from the same FSDP_* variables `accelerate launch` sets (accelerate then keeps
      a policy it was given), with only `reduce_dtype` changed.
    - accelerate skips the sync of accumulation micro-batches with FSDP2's
      `set_requires_gradient_sync(False)`, and torch then keeps every unit's whole unsharded gradient on
      each rank until the last micro-batch (in `reduce_dtype`). `sync_each_batch` reduce-scatters each
      micro-batch instead, and each rank accumulates only its float32 shard.
    """
    from accelerate.utils import GradientAccumulationPlugin

    # Every optimizer step is exactly `accumulation` micro-batches (StepStreamSampler), so the sync point is
    # counted, not taken from the dataloader's end: the on-policy loop reads a whole step's micro-batches
    # ahead (with_step_lookahead) and reaches that end one step early.
    accumulation = GradientAccumulationPlugin(num_steps=train_cfg.gradient_accumulation_steps, sync_each_batch=fsdp,
                                              sync_with_dataloader=False)
    if not fsdp:
        return {"gradient_accumulation_plugin": accumulation}
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import MixedPrecisionPolicy

    plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* variables, as Accelerator() would build it
    if plugin.fsdp_version != 2:
        raise ConfigError("FSDP runs use FSDP2: set fsdp_version: 2 in the accelerate config "
                          "(configs/accelerate/fsdp.yaml)")
    plugin.mixed_precision_policy = MixedPrecisionPolicy(
        param_dtype=torch.bfloat16 if train_cfg.bf16 else None, reduce_dtype=torch.float32)
    return {"gradient_accumulation_plugin": accumulation, "fsdp_plugin": plugin}


def setup_run(cfg: Config, args: argparse.Namespace, identity: dict, with_teacher: bool) -> Run:
    """Accelerator, data, student, optimizer and output folder of a run. `identity`: the run's method and condition
    as run_info.json records them (fewshot_distill/methods `run_identity_fields`); `with_teacher`: the examples
    carry a teacher prompt."""
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.utils import set_seed
    from transformers import get_cosine_schedule_with_warmup

    from fewshot_distill.data.examples import build_examples, collate_examples, load_task_rows
    from fewshot_distill.data.sampling import StepStreamSampler
    from fewshot_distill.data.subset import select_subset
    from fewshot_distill.models.student import AnswerWindowLM, build_student, load_tokenizer, vocab_size
    from fewshot_distill.utils.attention_kernels import apply_attention_kernel_policy
    from fewshot_distill.utils.io import atomic_write_json, atomic_write_text
    from fewshot_distill.utils.run_info import collect_run_info

    train_cfg = cfg.training
    accelerator = Accelerator(
        mixed_precision="bf16" if train_cfg.bf16 else "no",
        # Seeded sampler: the same example order on every rank count and after a resume.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        **sharding_kwargs(train_cfg, launched_with_fsdp()))
    _configure_logging(accelerator.is_main_process)
    check_sharding(cfg, accelerator.distributed_type)
    attention_kernels = apply_attention_kernel_policy(accelerator.device.type, cfg.model.cudnn_sdpa)
    output_dir = Path(train_cfg.output_dir)
    resume_from = _decide_on_main(accelerator, lambda: check_output_dir(output_dir, args.resume, args.overwrite))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if args.overwrite:
            _clear_previous_run(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(train_cfg.seed)
    method = identity["method"]
    logger.info("%s run -> %s (%d processes, %s)", method, output_dir, accelerator.num_processes,
                accelerator.mixed_precision)

    tokenizer = load_tokenizer(cfg.model.name)
    rows = load_task_rows(cfg.data, cfg.data.train_split)
    # data.max_train_examples: a seeded subset of row indices, chosen before tokenizing; shots still
    # come from the whole split.
    indices = select_subset(len(rows), cfg.data.max_train_examples, train_cfg.seed)
    examples, stats = build_examples(rows, tokenizer, cfg.data, seed=train_cfg.seed, with_teacher=with_teacher,
                                     indices=indices, progress=accelerator.is_main_process,
                                     teacher_context=cfg.distillation.teacher_context)
    data_stats = {"train_examples": stats.examples, "max_student_len": stats.max_student_len,
                  "max_teacher_len": stats.max_teacher_len,
                  "teacher_shots_dropped": stats.teacher_shots_dropped,
                  "teacher_shot_counts": {str(k): v for k, v in sorted(stats.shot_counts.items())}}
    logger.info("data: %s", data_stats)
    if stats.teacher_shots_dropped:
        logger.warning("%d of %d teacher sequences dropped shots to fit data.max_seq_len_teacher=%d",
                       stats.teacher_shots_dropped, stats.examples, cfg.data.max_seq_len_teacher)

    trained_model = build_student(cfg.model, cfg.lora, train_cfg.bf16, train_cfg.gradient_checkpointing)
    model = AnswerWindowLM(trained_model)
    if cfg.distillation.n_top_logits > vocab_size(model):
        raise ConfigError(f"distillation.n_top_logits={cfg.distillation.n_top_logits} exceeds the model's "
                          f"vocabulary ({vocab_size(model)})")
    trainable = [p for p in model.parameters() if p.requires_grad]
    logger.info("trainable parameters: %d (%s)", sum(p.numel() for p in trainable),
                f"LoRA r={cfg.lora.r}" if cfg.model.finetune == "lora" else "full fine-tuning, float32 weights")

    optimizer = torch.optim.AdamW(trainable, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    # Stepped once per optimizer step by the loop (not prepared: accelerate would step it once per
    # process and finish the cosine early on several GPUs).
    scheduler = get_cosine_schedule_with_warmup(optimizer, train_cfg.warmup_steps, train_cfg.max_steps)
    # One pass over a seeded stream of epoch permutations covers all max_steps optimizer steps
    # (fewshot_distill/data/sampling.py): no epoch end cuts a step short, whatever the process count.
    step_examples = (train_cfg.per_device_train_batch_size * train_cfg.gradient_accumulation_steps
                     * accelerator.num_processes)
    lengths = ([len(e.teacher_input_ids or e.student_input_ids) for e in examples]
               if cfg.data.group_by_length else None)
    if len(examples) < train_cfg.per_device_train_batch_size * accelerator.num_processes:
        raise ConfigError(f"{len(examples)} training examples cannot fill one batch of "
                          f"{train_cfg.per_device_train_batch_size} x {accelerator.num_processes} processes")
    sampler = StepStreamSampler(len(examples), step_examples, train_cfg.max_steps, seed=train_cfg.seed,
                                lengths=lengths)
    # A dedicated generator: creating a batch iterator must not consume the global RNG, or a resumed
    # run would draw different LoRA dropout masks than an uninterrupted one.
    dataloader = DataLoader(examples, batch_size=train_cfg.per_device_train_batch_size, sampler=sampler,
                            drop_last=True, num_workers=cfg.data.num_workers,
                            generator=torch.Generator().manual_seed(train_cfg.seed),
                            collate_fn=partial(collate_examples, pad_token_id=tokenizer.pad_token_id))
    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    keep_low_precision_outputs(accelerator, model)  # bf16 window logits reach the loss as bf16

    run = Run(cfg=cfg, accelerator=accelerator, tokenizer=tokenizer, model=model, trained_model=trained_model,
              optimizer=optimizer, scheduler=scheduler, dataloader=dataloader, output_dir=output_dir,
              resume_from=resume_from, method=method, data_stats=data_stats, examples=examples,
              n_train_rows=len(rows))
    if accelerator.is_main_process:
        atomic_write_text(output_dir / "run_config.yaml", run.config_yaml)
        atomic_write_json(output_dir / RUN_INFO_FILE, collect_run_info(
            **identity,
            world_size=accelerator.num_processes, mixed_precision=accelerator.mixed_precision,
            attention_kernels=attention_kernels, resumed_from=str(resume_from) if resume_from else None,
            data=data_stats))
    return run


class _StopRequest:
    """SIGTERM/SIGINT set a flag; the loop checkpoints at the next optimizer step and exits."""

    def __init__(self):
        self.signal_name: str | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name


class _MetricsWindow:
    """Sums of the loss terms, token and example counts over the micro-batches since the last log line."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.micro_batches = 0
        self.tokens = 0
        self.examples = 0
        self.optimizer_steps = 0
        self.started = time.perf_counter()

    def add(self, terms: dict[str, torch.Tensor], tokens: int, examples: int) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value)
        self.micro_batches += 1
        self.tokens += tokens
        self.examples += examples


class MetricsLogger:
    """TensorBoard scalars + metrics.jsonl, main process only. Resume truncates later entries."""

    def __init__(self, output_dir: Path, start_step: int, enabled: bool):
        self.enabled = enabled
        self.path = output_dir / "metrics.jsonl"
        self.writer = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        if self.path.exists():
            dropped = keep_logged_steps(self.path, start_step)
            if dropped:  # e.g. the line a hard kill cut short; the checkpoint's state is unaffected
                logger.warning("%s: dropped %d unreadable line(s)", self.path, dropped)
        self.writer = SummaryWriter(str(output_dir / "tb"), purge_step=start_step + 1 if start_step else None)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in scalars.items():
            if name.startswith(("train/", "eval/")):
                self.writer.add_scalar(name, value, step)
        with self.path.open("a") as handle:
            handle.write(json.dumps({"step": step, **scalars}) + "\n")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def train(run: Run, loss_step: LossStep) -> Path:
    """Run the optimisation loop to `training.max_steps`; returns the `final/` adapter folder."""
    from accelerate.utils import DistributedType
    from tqdm.auto import tqdm

    cfg, accelerator, model = run.cfg, run.accelerator, run.model
    train_cfg = cfg.training
    step = 0
    # eval.held_out_examples test rows scored every eval_steps (fewshot_distill/training/heldout_eval.py). Built before
    # a resume loads trained weights: its teacher and 0-shot reference are the starting model's (a full
    # fine-tuning run has no adapter to disable). Its set-up consumes no RNG that resume does not restore.
    evaluator = build_heldout_evaluator(run)
    if run.resume_from is not None:
        _warn_on_config_change(cfg, run.resume_from)
        state = load_checkpoint(run.resume_from, run.trained_model, run.optimizer, run.scheduler,
                                accelerator.process_index)
        step = state["step"]
        run.step = step
        logger.info("resumed from %s at step %d", run.resume_from, step)
    # The dataloader is one pass over the whole run and every optimizer step takes exactly
    # `accumulation` micro-batches on every rank, so the data position is the step count.
    accumulation = train_cfg.gradient_accumulation_steps
    step_examples = train_cfg.per_device_train_batch_size * accumulation * accelerator.num_processes

    # FSDP shards the AdamW states: every rank saves its own (a gathered optimizer state would not fit).
    sharded = accelerator.distributed_type == DistributedType.FSDP

    def checkpoint_state() -> dict:
        optimizer = {} if sharded else {"optimizer": run.optimizer.state_dict()}
        return {"step": step, "examples_seen": step * step_examples, **optimizer,
                "scheduler": run.scheduler.state_dict()}

    def gathered_weights() -> dict | None:
        # Full fine-tuning: every rank takes part (FSDP gathers the shards); LoRA saves its adapter as is.
        return full_state_dict(accelerator, model) if cfg.model.finetune == "full" else None

    def save(at_step: int) -> Path:
        return save_checkpoint(accelerator, checkpoint_dir(run.output_dir, at_step), run.trained_model,
                               run.tokenizer, run.config_yaml, checkpoint_state(), state_dict=gathered_weights(),
                               rank_optimizer_state=run.optimizer.state_dict() if sharded else None)

    metrics = MetricsLogger(run.output_dir, step, accelerator.is_main_process)
    # step 0 = the starting model
    if evaluator is not None and step == 0:
        metrics.log(0, evaluator())
    stop = _StopRequest()
    trainable = [p for p in model.parameters() if p.requires_grad]
    window = _MetricsWindow()
    last_saved = run.resume_from
    progress = tqdm(total=train_cfg.max_steps, initial=step, desc=run.method,
                    disable=not accelerator.is_main_process, dynamic_ncols=True)
    model.train()
    run_start = time.perf_counter()
    grad_norm = torch.zeros(())
    if step < train_cfg.max_steps:
        batches = (accelerator.skip_first_batches(run.dataloader, step * accumulation)
                   if step else run.dataloader)
        begin_step = getattr(loss_step, "begin_optimizer_step", None)
        if begin_step is not None:
            batches = with_step_lookahead(batches, accumulation, begin_step)
        for batch in batches:
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    terms = loss_step(model, batch)
                _stop_on_non_finite(accelerator, terms["loss"], batch, step, last_saved)
                accelerator.backward(terms["loss"])
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(trainable, train_cfg.grad_clip)
                run.optimizer.step()
                run.optimizer.zero_grad(set_to_none=True)
            logged_terms = {name: value for name, value in terms.items() if name not in ("loss", TRAINED_TOKENS)}
            window.add(logged_terms | {"total_loss": terms["loss"].detach()}, tokens=trained_tokens(terms, batch),
                       examples=batch["student_input_ids"].size(0))
            if not accelerator.sync_gradients:
                continue

            run.scheduler.step()
            step += 1
            window.optimizer_steps += 1
            run.step = step
            progress.update(1)
            eval_scalars = {}
            if evaluator is not None and step % train_cfg.eval_steps == 0:
                eval_scalars = evaluator()
                window.started += eval_scalars["eval/seconds"]  # keep train/tokens_per_s a training rate
            if step % train_cfg.logging_steps == 0 or step == train_cfg.max_steps:
                scalars = _reduce_window(accelerator, window, run.scheduler.get_last_lr()[0], float(grad_norm),
                                         step * step_examples / len(run.examples),
                                         time.perf_counter() - run_start)
                metrics.log(step, scalars | eval_scalars)
                progress.set_postfix({k.split("/")[-1]: f"{v:.4f}" for k, v in scalars.items()
                                      if k.endswith("_loss")})
                window = _MetricsWindow()
            elif eval_scalars:
                metrics.log(step, eval_scalars)
            if step % train_cfg.save_steps == 0:
                last_saved = save(step)
            if _stop_requested(accelerator, stop):
                if last_saved is None or last_saved.name != checkpoint_dir_name(step):
                    last_saved = save(step)
                progress.close()
                metrics.close()
                _shut_down_distributed(accelerator)
                raise SystemExit(
                    f"Stopped by {stop.signal_name or 'a signal on another rank'} at step {step}; state saved "
                    f"in {last_saved}. Resume with the same command plus --resume.")
            if step >= train_cfg.max_steps:
                break
    progress.close()
    metrics.close()

    final_dir = run.output_dir / FINAL_DIR
    final_weights = gathered_weights()
    if accelerator.is_main_process:
        save_final(final_dir, run.trained_model, run.tokenizer, run.config_yaml, state_dict=final_weights)
        logger.info("done: %d steps in %.1f s; %s in %s", step, time.perf_counter() - run_start,
                    "adapter" if cfg.model.finetune == "lora" else "model", final_dir)
    _shut_down_distributed(accelerator)
    return final_dir


def with_step_lookahead(batches: Iterable[dict], accumulation: int,
                        begin_step: Callable[[list[dict]], None]) -> Iterator[dict]:
    """The micro-batches unchanged, but before the first of each optimizer step `begin_step` gets all
    `accumulation` of them (on-policy: one sampling call per step). A short last group is passed as is."""
    group: list[dict] = []
    for batch in batches:
        group.append(batch)
        if len(group) == accumulation:
            begin_step(group)
            yield from group
            group = []
    if group:
        begin_step(group)
        yield from group


def _shut_down_distributed(accelerator) -> None:
    """Barrier, then tear the process group down without deadlocking.

    A gloo worker thread releases the tensors of the last collective only once it gets the GIL. If
    the main thread destroys the process group (or the DDP reducer holding it) first, it waits for
    that thread while holding the GIL: a deadlock at exit, seen with torch 2.13 on CPU. Sleeping
    releases the GIL long enough for the worker to finish.
    """
    accelerator.wait_for_everyone()
    time.sleep(0.2)
    accelerator.end_training()


def _reduce_window(accelerator, window: _MetricsWindow, lr: float, grad_norm: float, epoch: float,
                   elapsed: float) -> dict[str, float]:
    """Mean of each loss term over every micro-batch of every rank since the last log, and the
    examples per optimizer step (all ranks: the global batch)."""
    names = sorted(window.sums)
    local = torch.tensor([window.sums[n] for n in names] + [window.micro_batches, window.tokens, window.examples],
                         dtype=torch.float64, device=accelerator.device)
    total = accelerator.reduce(local, reduction="sum")
    micro_batches, tokens, examples = float(total[-3]), float(total[-2]), float(total[-1])
    seconds = max(time.perf_counter() - window.started, 1e-9)
    scalars = {f"train/{name}": float(total[i]) / micro_batches for i, name in enumerate(names)}
    scalars.update({"train/lr": lr, "train/grad_norm": grad_norm, "train/tokens_per_s": tokens / seconds,
                    "train/examples_per_step": examples / max(window.optimizer_steps, 1),
                    "epoch": epoch, "elapsed_s": elapsed})
    if accelerator.device.type == "cuda":  # this rank's peak so far (scripts/gpu_check.py reports it)
        scalars["train/max_memory_allocated_gib"] = torch.cuda.max_memory_allocated(accelerator.device) / 2**30
    return scalars


def _stop_requested(accelerator, stop: _StopRequest) -> bool:
    flag = torch.tensor([1.0 if stop.signal_name else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def _stop_on_non_finite(accelerator, loss: torch.Tensor, batch: dict, step: int, last_saved: Path | None):
    finite = torch.isfinite(loss.detach()).float().reshape(1)
    if float(accelerator.reduce(finite, reduction="sum")) == accelerator.num_processes:
        return
    examples = batch["example_index"].tolist()
    _shut_down_distributed(accelerator)
    raise FloatingPointError(
        f"Non-finite loss at step {step + 1} (rank {accelerator.process_index}, loss {loss.item():.4g}, "
        f"example ids on this rank {examples}). Last good checkpoint: {last_saved or 'none'}. "
        "Lower training.lr or check these examples, then resume with --resume.")
