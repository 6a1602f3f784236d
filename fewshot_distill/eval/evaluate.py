"""Wiring for scripts/eval_checkpoints.py: arguments -> data, prompts, targets -> resumable run.

    exit_code = main(["--config", "configs/base.yaml", "--conditions", "base_0shot", "baseline",
                      "--output", "experiments/eval.json", "model.name=/tmp/tiny"])
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from typing import Sequence

from fewshot_distill.config import ConfigError, config_to_dict, load_config
from fewshot_distill.data.dev_split import DEV_SPLIT
from fewshot_distill.data.prompts import has_chat_template
from fewshot_distill.eval.backends import (DTYPES, EngineSettings, cuda_available, default_backend, make_backend,
                               resolve_dtype)
from fewshot_distill.eval.conditions import adapter_rank, discover_targets, log_problems, parse_checkpoint_selector
from fewshot_distill.data.subset import select_subset
from fewshot_distill.eval.prompts import build_prompts, max_model_len, rows_fingerprint, tokenize_prompts
from fewshot_distill.eval.runner import IncompatibleResultsError, ResultsStore, report, run_targets
from fewshot_distill.eval.shot_source import load_shot_rows
from fewshot_distill.tasks import TASK_NAMES, task_of
from fewshot_distill.utils.attention_kernels import apply_attention_kernel_policy
from fewshot_distill.utils.gpu_env import check_gpu_setup
from fewshot_distill.utils.run_info import collect_run_info

logger = logging.getLogger("fewshot_distill.eval")

TEST_SPLIT = "test"


def build_parser(description: str | None = None, generation: bool = True) -> argparse.ArgumentParser:
    """The evaluation flags; generation=False leaves out the generation-only ones (scripts/eval_diagnostics.py)."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config (model, data, seed), e.g. configs/base.yaml")
    parser.add_argument("--conditions", nargs="+", required=True,
                        help="base_0shot, icl_{k}shot (k = data.num_fewshot_examples, icl_8shot by default), and/or run folders (NAME under --base_dir or "
                             "--base_dir/poc, or a path)")
    parser.add_argument("--base_dir", default="experiments", help="folder holding the run folders")
    parser.add_argument("--checkpoint_steps", nargs="+", default=None, metavar="STEP",
                        help="steps to evaluate (checkpoint-STEP), and/or 'final'; default: every checkpoint-*")
    parser.add_argument("--n_samples", type=int, default=None,
                        help="seeded random test subset (same for every condition); default: the whole split")
    parser.add_argument("--subset_seed", type=int, default=None,
                        help="seed of the --n_samples subset (default: training.seed, which also draws the shots): "
                             "one subset seed scores runs of different seeds on the same test rows")
    parser.add_argument("--output", required=True, help="results JSON; predictions go to {stem}.predictions.jsonl")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard an existing results file instead of resuming it")
    parser.add_argument("--task", default=None, choices=TASK_NAMES,
                        help="evaluate on this task (= data.task=NAME; point data.path= at its folder): e.g. "
                             "GSM8K-trained checkpoints on svamp, gsm_hard or math500")
    parser.add_argument("--split", choices=(TEST_SPLIT, DEV_SPLIT), default=TEST_SPLIT,
                        help="test: data.test_split; dev: the data.dev_examples rows held back from training")
    parser.add_argument("--shot_path", default=None, metavar="FOLDER",
                        help="GSM8K folder (train.jsonl) for the few-shot rows of a task without a train split "
                             "(svamp, gsm_hard, math500); default: GSM8K from the hub. Not needed when no row has "
                             "shots (base_0shot, checkpoints)")
    if generation:
        parser.add_argument("--backend", choices=("vllm", "hf"), default=None,
                            help="default: vllm when installed, else hf (batched transformers generate)")
        parser.add_argument("--max_new_tokens", type=int, default=512)
        parser.add_argument("--tensor_parallel_size", type=int, default=1, help="vLLM: GPUs per engine")
        parser.add_argument("--batch_size", type=int, default=16, help="hf backend: prompts per generate call")
        parser.add_argument("--dtype", choices=DTYPES, default="auto",
                            help="auto = bfloat16 on GPU, float32 on CPU")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. model.name=/tmp/tiny data.path=data/smoke")
    return parser


def parse_args(argv: Sequence[str] | None, description: str | None = None,
               parser: argparse.ArgumentParser | None = None):
    parser = parser or build_parser(description)
    args = parser.parse_args(argv)
    if getattr(args, "max_new_tokens", 1) <= 0:
        parser.error("--max_new_tokens must be positive")
    if args.n_samples is not None and args.n_samples <= 0:
        parser.error("--n_samples must be positive")
    try:
        args.checkpoint_labels = (None if args.checkpoint_steps is None
                                  else [parse_checkpoint_selector(s) for s in args.checkpoint_steps])
        task_override = [f"data.task={args.task}"] if args.task else []
        cfg = load_config(args.config, [*args.overrides, *task_override])
    except (ValueError, ConfigError) as error:
        parser.error(str(error))
    if hasattr(args, "backend"):
        args.backend = args.backend or default_backend()
    return args, cfg


def evaluated_split(cfg, split: str) -> str:
    """The row-loader split `--split` names: data.test_split, or the dev split."""
    return DEV_SPLIT if split == DEV_SPLIT else cfg.data.test_split


def find_targets(args: argparse.Namespace, cfg) -> tuple[list, list]:
    """The entries `--conditions` names and the problems found on the way (logged; `report` counts them);
    no targets is logged as an error. Shared by the accuracy and the diagnostics entry points."""
    targets, problems = discover_targets(args.conditions, args.base_dir, args.checkpoint_labels,
                                         base_model=cfg.model.name, icl_shots=cfg.data.num_fewshot_examples)
    log_problems(problems, logger)
    if not targets:
        logger.error("Nothing to evaluate.")
    return targets, problems


def main(argv: Sequence[str] | None = None, description: str | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO, force=True)
    args, cfg = parse_args(argv, description)
    check_gpu_setup(fork_safe=True)  # GPUs torch cannot use: one line now, not an engine traceback
    started = time.time()

    from fewshot_distill.data.examples import load_task_rows
    from fewshot_distill.models.student import load_model_config, load_tokenizer

    icl_shots = cfg.data.num_fewshot_examples
    targets, problems = find_targets(args, cfg)
    if not targets:
        return 1
    try:
        tokenizer = load_tokenizer(cfg.model.name)
        load_model_config(cfg.model.name)  # before any engine starts: vLLM's own error is a long traceback
        test_rows = load_task_rows(cfg.data, evaluated_split(cfg, args.split))
        # Rows without shots need no shot source (no hub access for a test-only task's 0-shot rows).
        train_rows, shot_source = load_shot_rows(cfg.data, args.shot_path,
                                                 needed=any(t.n_shots for t in targets))
    except (FileNotFoundError, ValueError) as error:  # ResourceError, DataFileError, InvalidRowsError among them
        print(f"error: {error}", file=sys.stderr)
        return 2
    seed = cfg.training.seed
    indices = select_subset(len(test_rows), args.n_samples, seed if args.subset_seed is None else args.subset_seed)
    task = task_of(cfg.data)
    golds = [task.row_gold(test_rows[i]) for i in indices]

    prompt_cache: dict[int, list[list[int]]] = {}

    def prompts_for(n_shots: int) -> list[list[int]]:
        if n_shots not in prompt_cache:
            texts = build_prompts(tokenizer, test_rows, indices, train_rows, n_shots, seed,
                                  cfg.data.shot_sampling, task)
            prompt_cache[n_shots] = tokenize_prompts(tokenizer, texts)
        return prompt_cache[n_shots]

    needed = sorted({t.n_shots for t in targets})
    context = max_model_len([ids for n in needed for ids in prompts_for(n)], args.max_new_tokens)
    lengths = {n: max(len(ids) for ids in prompts_for(n)) for n in needed}
    logger.info("%d test examples; longest prompt (tokens) by shot count: %s; max_model_len %d",
                len(indices), lengths, context)

    on_gpu = cuda_available()
    dtype = resolve_dtype(args.dtype, on_gpu)
    # The transformers backend's attention (vLLM's engine picks its own kernels in its own process).
    attention_kernels = apply_attention_kernel_policy("cuda" if on_gpu else "cpu", cfg.model.cudnn_sdpa)
    ranks = [adapter_rank(t.adapter_path) for t in targets if t.adapter_path]
    settings = EngineSettings(max_new_tokens=args.max_new_tokens, dtype=dtype, max_model_len=context,
                              tensor_parallel_size=args.tensor_parallel_size, batch_size=args.batch_size,
                              seed=seed)
    header = {
        "config": config_to_dict(cfg),
        "model": cfg.model.name,
        "task": cfg.data.task,
        "split": args.split,
        "subset_indices": indices,
        "sampling": {"temperature": 0.0, "max_new_tokens": args.max_new_tokens},
        "prompting": {"icl_shots": icl_shots, "shot_seed": seed, "shots_from": shot_source,
                      "shot_sampling": cfg.data.shot_sampling, "task": cfg.data.task,
                      "chat_template": has_chat_template(tokenizer), "enable_thinking": False},
        "data_fingerprint": rows_fingerprint([test_rows[i] for i in indices]) + ":" + rows_fingerprint(train_rows),
        "engine": {"backend": args.backend, "dtype": dtype},
        "run_info": collect_run_info(attention_kernels=attention_kernels),
    }
    try:
        store = ResultsStore(args.output, header, overwrite=args.overwrite)
    except IncompatibleResultsError as error:
        logger.error("%s", error)
        return 2

    def open_backend(model_path: str):
        # The base model's engine serves every adapter; a full-weight checkpoint gets its own, LoRA-free.
        rank = max(ranks, default=0) if model_path == cfg.model.name else 0
        return make_backend(args.backend, model_path, tokenizer, replace(settings, max_lora_rank=rank))

    failures = run_targets(targets, store, open_backend, prompts_for, golds, indices, task)

    exit_code = report(store, problems, failures, rows_name="predictions")
    logger.info("done in %.1f s", time.time() - started)
    return exit_code
