"""GSM8K rows -> tokenized teacher/student training examples -> padded batches.

Rows come from the hub (`openai/gsm8k`, `main`) or, when `data.path` is set, from a local folder with
`{split}.jsonl` files of `{"question", "answer"}` rows. Each training example i gets its own shots,
drawn with `random.Random(seed + i)` from the other rows of the same split (never row i itself), so
the teacher input of an example is the same in every epoch and on every rank.

    rows = load_gsm8k_rows(cfg.data, cfg.data.train_split)
    examples, stats = build_examples(rows, tokenizer, cfg.data, seed=cfg.training.seed, with_teacher=True)
    batch = collate_examples(examples[:4], pad_token_id=tokenizer.pad_token_id)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from src.data.prompts import AlignmentError, Shot, render_answer, render_prompt, tokenize_prompt_and_answer
from src.utils.resources import DATA_FIX, ResourceError, loading

IGNORE_INDEX = -100
ANSWER_MARKER = "####"


@dataclass
class TrainingExample:
    index: int                      # row index in the split: the key of everything derived from it
    student_input_ids: list[int]
    student_prompt_len: int
    answer_ids: list[int]           # the supervised tokens, identical at the end of both sequences
    teacher_input_ids: list[int] | None = None
    n_shots: int = 0


@dataclass
class BuildStats:
    examples: int = 0
    teacher_shots_dropped: int = 0      # examples whose teacher context lost shots to fit
    max_student_len: int = 0
    max_teacher_len: int = 0
    skipped_rows: int = 0
    shot_counts: dict = field(default_factory=dict)


def load_gsm8k_rows(data_cfg, split: str) -> list[dict]:
    """Rows `{"question", "answer"}` of one split, validated (see `validate_rows`)."""
    import datasets  # imported here: the pure helpers of this module do not need it

    if data_cfg.path:
        folder = Path(data_cfg.path)
        file = folder / f"{split}.jsonl"
        if not file.is_file():
            raise ResourceError(
                f"data.path={data_cfg.path!r} has no {split}.jsonl ({file.resolve()}). Point data.path "
                "at a folder with train.jsonl/test.jsonl, or set data.path=null to load "
                f"{data_cfg.dataset} from the hub.")
        dataset = datasets.load_dataset("json", data_files={split: str(file)}, split=split)
    else:
        with loading("dataset", data_cfg.dataset, fix=DATA_FIX):
            dataset = datasets.load_dataset(data_cfg.dataset, data_cfg.subset, split=split)
    rows = [{"question": r.get("question"), "answer": r.get("answer")} for r in dataset]
    rows, _ = validate_rows(rows, policy=data_cfg.invalid_rows, source=f"{split} split")
    return rows


def row_problem(row: dict) -> str | None:
    """Why a row cannot be used, or None if it is fine."""
    question, answer = row.get("question"), row.get("answer")
    if not isinstance(question, str) or not question.strip():
        return "no question"
    if not isinstance(answer, str) or not answer.strip():
        return "no answer"
    if ANSWER_MARKER not in answer:
        return f"answer has no '{ANSWER_MARKER}' line"
    return None


def validate_rows(rows: Sequence[dict], policy: str = "error", source: str = "dataset",
                  max_listed: int = 5) -> tuple[list[dict], int]:
    """Keep valid rows. policy "error": raise listing the first bad rows; "skip": drop and count them."""
    problems = [(i, p) for i, p in ((i, row_problem(r)) for i, r in enumerate(rows)) if p]
    if problems and policy == "error":
        listed = "; ".join(f"row {i}: {p}" for i, p in problems[:max_listed])
        raise ValueError(f"{len(problems)} invalid rows in {source} ({listed}). Fix the data or set "
                         "data.invalid_rows=skip to drop them.")
    bad = {i for i, _ in problems}
    return [r for i, r in enumerate(rows) if i not in bad], len(problems)


def sample_shot_indices(n_rows: int, index: int, n_shots: int, seed: int) -> list[int]:
    """Shots for example `index`: deterministic in (seed, index), never `index` itself."""
    if n_shots > n_rows - 1:
        raise ValueError(f"Cannot draw {n_shots} shots from {n_rows - 1} other rows; lower "
                         "data.num_fewshot_examples or use more data.")
    rng = random.Random(seed + index)
    drawn = rng.sample(range(n_rows), n_shots + 1)
    return [i for i in drawn if i != index][:n_shots]


def build_example(tokenizer, rows: Sequence[dict], index: int, data_cfg, seed: int,
                  with_teacher: bool) -> TrainingExample:
    row = rows[index]
    question, answer = row["question"], row["answer"]
    student_prompt = render_prompt(tokenizer, question)
    answer_text = render_answer(tokenizer, question, answer)
    student_prompt_ids, answer_ids = tokenize_prompt_and_answer(tokenizer, student_prompt, answer_text)
    student_len = len(student_prompt_ids) + len(answer_ids)
    if student_len > data_cfg.max_seq_len_student:
        raise ValueError(
            f"Example {index}: student sequence has {student_len} tokens > data.max_seq_len_student="
            f"{data_cfg.max_seq_len_student}. The answer is never truncated: raise data.max_seq_len_student.")
    example = TrainingExample(index=index, student_input_ids=student_prompt_ids + answer_ids,
                              student_prompt_len=len(student_prompt_ids), answer_ids=answer_ids)
    if not with_teacher:
        return example
    shot_indices = sample_shot_indices(len(rows), index, data_cfg.num_fewshot_examples, seed)
    # Drop shots from the end until the teacher sequence fits; the answer itself is never cut.
    for n_shots in range(len(shot_indices), -1, -1):
        shots = [Shot(rows[i]["question"], rows[i]["answer"]) for i in shot_indices[:n_shots]]
        teacher_prompt = render_prompt(tokenizer, question, shots)
        teacher_prompt_ids, teacher_answer_ids = tokenize_prompt_and_answer(
            tokenizer, teacher_prompt, answer_text)
        if len(teacher_prompt_ids) + len(teacher_answer_ids) <= data_cfg.max_seq_len_teacher:
            break
    else:
        raise ValueError(
            f"Example {index}: even without shots the teacher sequence exceeds "
            f"data.max_seq_len_teacher={data_cfg.max_seq_len_teacher}; raise it.")
    if teacher_answer_ids != answer_ids:
        raise AlignmentError(
            f"Example {index}: the answer tokenizes differently after the teacher's few-shot prompt "
            f"({len(teacher_answer_ids)} tokens) than after the student's prompt ({len(answer_ids)} "
            "tokens). Use a tokenizer/template whose prompt ends at a token boundary.")
    example.teacher_input_ids = teacher_prompt_ids + teacher_answer_ids
    example.n_shots = n_shots
    return example


def build_examples(rows: Sequence[dict], tokenizer, data_cfg, seed: int, with_teacher: bool,
                   indices: Sequence[int] | None = None, progress: bool = False
                   ) -> tuple[list[TrainingExample], BuildStats]:
    from tqdm.auto import tqdm

    indices = range(len(rows)) if indices is None else indices
    examples, stats = [], BuildStats()
    for index in tqdm(indices, desc="tokenizing", disable=not progress):
        example = build_example(tokenizer, rows, index, data_cfg, seed, with_teacher)
        examples.append(example)
        stats.max_student_len = max(stats.max_student_len, len(example.student_input_ids))
        if example.teacher_input_ids is not None:
            stats.max_teacher_len = max(stats.max_teacher_len, len(example.teacher_input_ids))
            stats.teacher_shots_dropped += example.n_shots < data_cfg.num_fewshot_examples
            stats.shot_counts[example.n_shots] = stats.shot_counts.get(example.n_shots, 0) + 1
    stats.examples = len(examples)
    return examples, stats


def _pad(sequences: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), value, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


def collate_examples(examples: Sequence[TrainingExample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch. Student labels are -100 on the prompt and on padding.

    Keys (B = batch, Ts / Tt = longest student / teacher sequence):
      student_input_ids, student_attention_mask, student_labels: [B, Ts]
      teacher_input_ids, teacher_attention_mask: [B, Tt] (distillation examples only)
      example_index: [B]
    """
    student_ids = [e.student_input_ids for e in examples]
    labels = [[IGNORE_INDEX] * e.student_prompt_len + e.answer_ids for e in examples]
    batch = {
        "student_input_ids": _pad(student_ids, pad_token_id),
        "student_attention_mask": _pad([[1] * len(s) for s in student_ids], 0),
        "student_labels": _pad(labels, IGNORE_INDEX),
        "example_index": torch.tensor([e.index for e in examples], dtype=torch.long),
    }
    if all(e.teacher_input_ids is not None for e in examples):
        teacher_ids = [e.teacher_input_ids for e in examples]
        batch["teacher_input_ids"] = _pad(teacher_ids, pad_token_id)
        batch["teacher_attention_mask"] = _pad([[1] * len(t) for t in teacher_ids], 0)
    return batch
