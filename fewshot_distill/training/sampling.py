"""The student's samples for on-policy methods: which rows are sampled, their seeds, the sampling call.

Each row's sample is seeded by (training.seed, optimizer step, example index): it does not depend on
the rank, the batch it shares or the number of processes, and a resumed run draws the same samples.
So the loop (fewshot_distill/training/loop.py) lets each rank draw its whole optimizer-step share, every
accumulation micro-batch, in one sampling call before the step's first forward
(`begin_optimizer_step`): the same samples as one call per micro-batch, in fewer, larger batches.
`generation.backend` picks who samples: `hf` (generate_tokens on the trained model) or `vllm` (an
in-process engine whose weights follow the trainer's once per optimizer step: vllm_sampler.py).
Every logging_steps optimizer steps (and at step 1) every rank's samples of that step go to
{output_dir}/samples.jsonl: step, example index, text, length, EOS.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from fewshot_distill.constants import IGNORE_INDEX
from fewshot_distill.data.examples import batch_prompts
from fewshot_distill.models.generation import GeneratedTokens, eos_token_ids, generate_tokens
from fewshot_distill.utils.io import keep_logged_steps

SAMPLES_FILE = "samples.jsonl"


@dataclass(frozen=True)
class SampleSettings:
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 42


def row_seed(seed: int, step: int, example_index: int) -> int:
    """The sampling seed of one example at one optimizer step (63 bits of a hash of the three)."""
    digest = hashlib.blake2b(f"{seed}:{step}:{example_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def sampled_rows(n_rows: int, answer_source: str, student_fraction: float, seed: int, step: int,
                 example_index: Sequence[int]) -> list[bool]:
    """Which rows of a micro-batch get a student sample: all (student), round(fraction x n_rows) of them
    chosen by a permutation seeded on the step and the batch's first example (mixed), none (gold)."""
    if answer_source == "gold":
        return [False] * n_rows
    if answer_source == "student":
        return [True] * n_rows
    if answer_source != "mixed":
        raise ValueError(f"answer_source must be gold, student or mixed, got {answer_source!r}")
    n_sampled = int(student_fraction * n_rows + 0.5)
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(
        row_seed(seed, step, int(example_index[0]) if len(example_index) else 0)))
    chosen = set(order[:n_sampled].tolist())
    return [row in chosen for row in range(n_rows)]


def answers_from_samples(samples: GeneratedTokens, eos_ids: set[int]) -> tuple[list[list[int]], list[bool]]:
    """The answer ids each sampled row reads, and whether it is empty (no token before its EOS).

    An empty sample keeps its EOS (or, with no token at all, one EOS id) so the batch stays rectangular;
    the caller masks it."""
    answers, empty = [], []
    for ids in samples.token_ids:
        content = [t for t in ids if t not in eos_ids]
        empty.append(not content)
        answers.append(list(ids) if ids else [min(eos_ids)])
    return answers, empty


def gold_answers(batch: dict) -> list[list[int]]:
    """Each row's gold answer ids, read back from its labels."""
    labels = batch["student_labels"]
    return [row[row != IGNORE_INDEX].tolist() for row in labels]


class StudentSampler:
    """Samples the student's answers (adapter on, eval mode, no grad) and writes samples.jsonl.

    `engine` None samples with generate_tokens on `model`; otherwise it is a vllm_sampler.VLLMSampleEngine
    that is synced to `model` before each optimizer step's sampling call."""

    def __init__(self, model, tokenizer, settings: SampleSettings, run=None, logging_steps: int = 1,
                 output_dir: Path | None = None, engine=None):
        self.model = model                   # the unwrapped peft model (generation needs no DDP)
        self.tokenizer = tokenizer
        self.settings = settings
        self.run = run                       # its `step` is the optimizer steps done (None: step 0)
        self.logging_steps = logging_steps
        self.samples_path = None if output_dir is None else Path(output_dir) / SAMPLES_FILE
        self.eos_ids = eos_token_ids(tokenizer, getattr(model, "generation_config", None))
        self.engine = engine
        self._written_from: int | None = None
        self._synced_step: int | None = None
        # Samples drawn ahead by sample_step: example index -> (ids, ended with EOS), for step _drawn_step.
        self._drawn: dict[int, tuple[list[int], bool]] = {}
        self._drawn_step: int | None = None
        self._drawn_seconds = 0.0

    @property
    def step(self) -> int:
        """The optimizer step (1-based) the current micro-batch belongs to."""
        return (self.run.step if self.run is not None else 0) + 1

    def sample_step(self, batches: Sequence[dict], answer_source: str, student_fraction: float) -> None:
        """Draw every sampled row of this optimizer step's micro-batches in one call; `sample` then serves
        them. The rows are those `onpolicy_loss_step` picks, and each row's seed is the one it would use."""
        prompts, indices = [], []
        for batch in batches:
            example_index = batch["example_index"].tolist()
            student_prompts, _ = batch_prompts(batch)
            chosen = sampled_rows(len(example_index), answer_source, student_fraction, self.settings.seed,
                                  self.step, example_index)
            prompts += [p for p, c in zip(student_prompts, chosen) if c]
            indices += [i for i, c in zip(example_index, chosen) if c]
        started = time.perf_counter()
        samples = self.draw(prompts, indices) if prompts else GeneratedTokens([], [])
        self._drawn = {int(i): (ids, eos) for i, ids, eos in zip(indices, samples.token_ids,
                                                                   samples.ended_with_eos)}
        self._drawn_step = self.step
        self._drawn_seconds = time.perf_counter() - started

    def take_drawn_seconds(self) -> float:
        """The time of the step's sampling call, once (the first micro-batch counts it)."""
        seconds, self._drawn_seconds = self._drawn_seconds, 0.0
        return seconds

    def sample(self, prompts: Sequence[Sequence[int]], example_index: Sequence[int]) -> GeneratedTokens:
        """The rows' samples: those sample_step drew for this step, or drawn now."""
        if self._drawn_step == self.step and all(int(i) in self._drawn for i in example_index):
            drawn = [self._drawn[int(i)] for i in example_index]
            return GeneratedTokens([list(ids) for ids, _ in drawn], [eos for _, eos in drawn])
        return self.draw(prompts, example_index)

    def draw(self, prompts: Sequence[Sequence[int]], example_index: Sequence[int]) -> GeneratedTokens:
        """One sampling call: each row seeded by (seed, step, example index)."""
        if self.engine is not None:
            if self._synced_step != self.step:  # the trainer's weights move once per optimizer step
                self.engine.sync(self.model)
                self._synced_step = self.step
            seeds = [row_seed(self.settings.seed, self.step, int(i)) for i in example_index]
            return self.engine.generate(prompts, seeds, self.settings)
        settings, device = self.settings, next(self.model.parameters()).device
        generators = None
        if settings.temperature > 0:
            generators = [torch.Generator(device=device).manual_seed(row_seed(settings.seed, self.step, int(i)))
                          for i in example_index]
        was_training = self.model.training
        self.model.eval()  # no LoRA dropout: the sample is the student's own distribution
        try:
            return generate_tokens(self.model, prompts, max_new_tokens=settings.max_new_tokens,
                                   eos_ids=self.eos_ids, pad_token_id=self.tokenizer.pad_token_id,
                                   temperature=settings.temperature, top_p=settings.top_p,
                                   generator=generators, device=device)
        finally:
            self.model.train(was_training)

    def record(self, samples: GeneratedTokens, example_index: Sequence[int], empty: Sequence[bool]) -> None:
        """Append this micro-batch's samples (every rank's) to samples.jsonl on a logged step."""
        step = self.step
        if self.samples_path is None or not (step == 1 or step % self.logging_steps == 0):
            return
        records = [{"step": step, "example_index": int(i), "length": len(ids), "eos": bool(eos),
                    "empty": bool(e), "text": self.tokenizer.decode(ids, skip_special_tokens=True)}
                   for i, ids, eos, e in zip(example_index, samples.token_ids, samples.ended_with_eos, empty)]
        import torch.distributed as dist

        main = True
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, records)
            records = [r for rank_records in gathered for r in rank_records]
            main = dist.get_rank() == 0
        if not main:
            return
        if self._written_from is None:  # a resumed run drops the lines of the steps it redoes
            self._written_from = step
            if self.samples_path.exists():
                keep_logged_steps(self.samples_path, step - 1)
        with self.samples_path.open("a") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")

