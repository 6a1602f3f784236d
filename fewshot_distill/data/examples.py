"""Task rows -> tokenized teacher/student training examples -> padded batches.

Rows come from the hub (`data.dataset`/`data.subset`, GSM8K by default) or, when `data.path` is set,
from a local folder with `{split}.jsonl` files; the task (`data.task`, fewshot_distill/tasks/) maps records to
`{"question", "answer"}` rows and says which rows are usable. Each training example i gets its shots from
fewshot_distill/data/shots.py (`data.shot_sampling`; by default drawn with `random.Random(seed + i)` from the other
rows of the same split, never row i itself), and the teacher reads them as `distillation.teacher_context`
says (fewshot_distill/data/teacher_context.py), so the teacher input of an example is the same in every epoch and
on every rank.

    rows = load_task_rows(cfg.data, cfg.data.train_split)
    examples, stats = build_examples(rows, tokenizer, cfg.data, seed=cfg.training.seed, with_teacher=True)
    batch = collate_examples(examples[:4], pad_token_id=tokenizer.pad_token_id)

An example keeps its prompts and its answer as separate token-id lists; sequences are assembled when a
batch is built (`assemble_batch`), so the answer can be the gold one (`collate_examples`) or one the
student sampled (pass its ids instead of `example.answer_ids`; `batch_prompts` gives back the prompts
of an assembled batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from fewshot_distill.constants import IGNORE_INDEX
from fewshot_distill.data.dev_split import DEV_SPLIT, rows_of_split
from fewshot_distill.data.prompts import AlignmentError, render_answer, render_prompt, tokenize_prompt_and_answer
from fewshot_distill.data.shots import evaluation_shot_indices, question_index, training_shot_indices
from fewshot_distill.data.teacher_context import teacher_shots
from fewshot_distill.tasks import task_of, validate_rows
from fewshot_distill.utils.io import read_json_records
from fewshot_distill.utils.resources import DATA_FIX, ResourceError, loading


@dataclass
class TrainingExample:
    index: int                      # row index in the split: the key of everything derived from it
    student_prompt_ids: list[int]   # [question] as the student reads it
    answer_ids: list[int]           # the gold answer: the supervised tokens after either prompt
    teacher_prompt_ids: list[int] | None = None   # [context][question] (None: SFT, no teacher)
    n_shots: int = 0                # shots the teacher prompt holds
    shots_dropped: int = 0          # shots its context offered that did not fit max_seq_len_teacher

    @property
    def student_prompt_len(self) -> int:
        return len(self.student_prompt_ids)

    @property
    def student_input_ids(self) -> list[int]:
        """The student's gold sequence, prompt + answer."""
        return self.student_prompt_ids + self.answer_ids

    @property
    def teacher_input_ids(self) -> list[int] | None:
        """The teacher's gold sequence, prompt + answer (None without a teacher)."""
        return None if self.teacher_prompt_ids is None else self.teacher_prompt_ids + self.answer_ids


@dataclass
class BuildStats:
    examples: int = 0
    teacher_shots_dropped: int = 0      # examples whose teacher context lost shots to fit
    max_student_len: int = 0
    max_teacher_len: int = 0
    skipped_rows: int = 0
    shot_counts: dict = field(default_factory=dict)


def load_task_rows(data_cfg, split: str) -> list[dict]:
    """Rows `{"question", "answer"}` of one split of `data.task`'s dataset, validated by that task.

    With `data.dev_examples` > 0 the train split loses its dev rows, and split "dev" is those rows
    (fewshot_distill/data/dev_split.py).
    """
    wanted, split = split, (data_cfg.train_split if split == DEV_SPLIT else split)
    if wanted == DEV_SPLIT and not data_cfg.dev_examples:
        raise ValueError("the dev split needs data.dev_examples=N (the N train rows held back from training)")
    task = task_of(data_cfg)
    if data_cfg.path:
        folder = Path(data_cfg.path)
        name = task.data_file(split)
        if name is None:
            raise ResourceError(f"data.task={task.name} has no {split!r} split (it has: "
                                f"{', '.join(task.split_files or ())}); set data.train_split/data.test_split")
        file = folder / name
        if not file.is_file():
            raise ResourceError(
                f"data.path={data_cfg.path!r} has no {name} ({file.resolve()}). Point data.path "
                "at a folder with train.jsonl/test.jsonl, or set data.path=null to load "
                f"{data_cfg.dataset} from the hub.")
        records, source = read_json_records(file), str(file)
    else:
        import datasets  # only for the hub: local files are read without it (fewshot_distill/utils/io.py)

        with loading("dataset", data_cfg.dataset, fix=DATA_FIX):
            records = list(datasets.load_dataset(data_cfg.dataset, data_cfg.subset, split=split))
        source = f"{data_cfg.dataset} {split} split"
    task.check_records(records, source)
    rows = [task.to_row(record) for record in records]
    rows, _ = validate_rows(rows, task, policy=data_cfg.invalid_rows, source=source)
    if split == data_cfg.train_split and data_cfg.dev_examples:
        rows = rows_of_split(rows, wanted, data_cfg.dev_examples)
    return rows


def build_example(tokenizer, rows: Sequence[dict], index: int, data_cfg, seed: int,
                  with_teacher: bool, teacher_context: str = "fewshot",
                  shot_rows: Sequence[dict] | None = None,
                  shot_questions: dict[str, list[int]] | None = None) -> TrainingExample:
    """Student (and teacher) token ids of row `index`.

    Shots come from `rows` itself (training: never row `index`) or, with `shot_rows`, from that other
    split (held-out rows: the training split, never a row asking the same question), chosen exactly
    as for the evaluation's few-shot base row. `shot_questions` is `question_index(shot_rows)`, cached.
    """
    row = rows[index]
    question, answer = row["question"], row["answer"]
    task = task_of(data_cfg)
    student_prompt = render_prompt(tokenizer, question, task=task)
    answer_text = render_answer(tokenizer, question, answer, task=task)
    student_prompt_ids, answer_ids = tokenize_prompt_and_answer(tokenizer, student_prompt, answer_text)
    student_len = len(student_prompt_ids) + len(answer_ids)
    if student_len > data_cfg.max_seq_len_student:
        raise ValueError(
            f"Example {index}: student sequence has {student_len} tokens > data.max_seq_len_student="
            f"{data_cfg.max_seq_len_student}. The answer is never truncated: raise data.max_seq_len_student.")
    example = TrainingExample(index=index, student_prompt_ids=student_prompt_ids, answer_ids=answer_ids)
    if not with_teacher:
        return example
    if shot_rows is None:
        shot_rows = rows
        shot_indices = training_shot_indices(len(rows), index, data_cfg.num_fewshot_examples, seed,
                                             data_cfg.shot_sampling)
    else:
        shot_indices = evaluation_shot_indices(shot_rows, question, index, data_cfg.num_fewshot_examples, seed,
                                               data_cfg.shot_sampling, shot_questions)
    offered = teacher_shots(teacher_context, shot_rows, index, shot_indices, seed)
    # Drop shots from the end until the teacher sequence fits; the answer itself is never cut.
    for n_shots in range(len(offered), -1, -1):
        teacher_prompt = render_prompt(tokenizer, question, offered[:n_shots], task=task)
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
    example.teacher_prompt_ids = teacher_prompt_ids
    example.n_shots = n_shots
    example.shots_dropped = len(offered) - n_shots
    return example


def build_examples(rows: Sequence[dict], tokenizer, data_cfg, seed: int, with_teacher: bool,
                   indices: Sequence[int] | None = None, progress: bool = False,
                   teacher_context: str = "fewshot", shot_rows: Sequence[dict] | None = None
                   ) -> tuple[list[TrainingExample], BuildStats]:
    """`build_example` for each index (all rows by default); `shot_rows` as there."""
    from tqdm.auto import tqdm

    shot_questions = question_index(shot_rows) if shot_rows is not None and with_teacher else None

    indices = range(len(rows)) if indices is None else indices
    examples, stats = [], BuildStats()
    for index in tqdm(indices, desc="tokenizing", disable=not progress):
        example = build_example(tokenizer, rows, index, data_cfg, seed, with_teacher, teacher_context,
                                shot_rows, shot_questions)
        examples.append(example)
        stats.max_student_len = max(stats.max_student_len, len(example.student_input_ids))
        if example.teacher_input_ids is not None:
            stats.max_teacher_len = max(stats.max_teacher_len, len(example.teacher_input_ids))
            stats.teacher_shots_dropped += example.shots_dropped > 0
            stats.shot_counts[example.n_shots] = stats.shot_counts.get(example.n_shots, 0) + 1
    stats.examples = len(examples)
    return examples, stats


def _pad(sequences: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), value, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


def assemble_batch(student_prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]],
                   example_index: Sequence[int], pad_token_id: int,
                   teacher_prompts: Sequence[Sequence[int]] | None = None) -> dict[str, torch.Tensor]:
    """Right-padded batch of `prompt + answer` sequences; labels are the answer, -100 elsewhere.

    One row per example: its student prompt ids, its answer ids (gold, or a sample of the student's)
    and, for distillation, its teacher prompt ids. Both sequences end with the same answer ids, so
    teacher and student are aligned by construction (checked again per batch by the teacher).

    Keys (B = batch, Ts / Tt = longest student / teacher sequence):
      student_input_ids, student_attention_mask, student_labels: [B, Ts]
      teacher_input_ids, teacher_attention_mask: [B, Tt] (with teacher_prompts only)
      example_index: [B]
    """
    if not len(student_prompts) == len(answers) == len(example_index):
        raise ValueError(f"assemble_batch: {len(student_prompts)} prompts, {len(answers)} answers and "
                         f"{len(example_index)} example indices; expected one of each per row")
    student_ids = [list(p) + list(a) for p, a in zip(student_prompts, answers)]
    labels = [[IGNORE_INDEX] * len(p) + list(a) for p, a in zip(student_prompts, answers)]
    batch = {
        "student_input_ids": _pad(student_ids, pad_token_id),
        "student_attention_mask": _pad([[1] * len(s) for s in student_ids], 0),
        "student_labels": _pad(labels, IGNORE_INDEX),
        "example_index": torch.tensor(list(example_index), dtype=torch.long),
    }
    if teacher_prompts is not None:
        if len(teacher_prompts) != len(answers):
            raise ValueError(f"assemble_batch: {len(teacher_prompts)} teacher prompts for {len(answers)} rows")
        teacher_ids = [list(p) + list(a) for p, a in zip(teacher_prompts, answers)]
        batch["teacher_input_ids"] = _pad(teacher_ids, pad_token_id)
        batch["teacher_attention_mask"] = _pad([[1] * len(t) for t in teacher_ids], 0)
    return batch


def batch_prompts(batch: dict[str, torch.Tensor]) -> tuple[list[list[int]], list[list[int]] | None]:
    """The per-row prompt ids of an assembled batch: (student prompts, teacher prompts or None).

    The inverse of `assemble_batch` without the answers: a student prompt is everything before the
    row's supervised labels, a teacher prompt everything before its last n_answer real tokens. So a
    step holding a gold batch can re-assemble it with other answers (e.g. the student's samples).
    """
    labels = batch["student_labels"]
    supervised = labels != IGNORE_INDEX
    n_answer = supervised.sum(dim=1).tolist()
    starts = supervised.int().argmax(dim=1).tolist()
    student = [batch["student_input_ids"][row, :start].tolist() for row, start in enumerate(starts)]
    if "teacher_input_ids" not in batch:
        return student, None
    teacher_lengths = batch["teacher_attention_mask"].sum(dim=1).tolist()
    teacher = [batch["teacher_input_ids"][row, :length - n].tolist()
               for row, (length, n) in enumerate(zip(teacher_lengths, n_answer))]
    return student, teacher


def collate_examples(examples: Sequence[TrainingExample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """The gold batch: `assemble_batch` with each example's gold answer (teacher keys when every
    example has a teacher prompt)."""
    with_teacher = all(e.teacher_prompt_ids is not None for e in examples)
    return assemble_batch([e.student_prompt_ids for e in examples], [e.answer_ids for e in examples],
                          [e.index for e in examples], pad_token_id,
                          [e.teacher_prompt_ids for e in examples] if with_teacher else None)
