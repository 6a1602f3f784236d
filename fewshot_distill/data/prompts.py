"""Prompt text and token ids for teacher and student sequences.

Both sequences end with the same supervised answer: the gold GSM8K answer followed by the chat
template's end-of-turn marker (`<|im_end|>` for Qwen3), so the model learns where to stop.

    student: [question][answer]                     (chat: one user turn, one assistant turn)
    teacher: [shot_1 .. shot_k][question][answer]   (each shot a user turn + assistant turn)

The answer is tokenized inside the full sequence (the way inference sees it), and the prompt's token
ids must be a prefix of the full sequence's ids; otherwise the tokenizer merges tokens across the
prompt/answer boundary and teacher and student answers could tokenize differently. That is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from fewshot_distill.tasks import Task, get_task

# Plain-text format for tokenizers without a chat template (e.g. base-model tokenizers).
PLAIN_SHOT_SEPARATOR = "\n\n"
PLAIN_ANSWER_PREFIX = "\nAnswer:"


class AlignmentError(ValueError):
    """Teacher and student answer tokens do not line up; training on them would be silently wrong."""


@dataclass(frozen=True)
class Shot:
    question: str
    answer: str


def build_messages(question: str, shots: Sequence[Shot] = (), answer: str | None = None,
                   task: Task | None = None) -> list[dict]:
    """Chat messages: one user/assistant pair per shot, then the question (and its answer if given).

    User turns are written by the task (`task.format_question`; GSM8K: `Question: ...`); None = gsm8k.
    """
    task = task or get_task()
    messages = []
    for shot in shots:
        messages.append({"role": "user", "content": task.format_question(shot.question)})
        messages.append({"role": "assistant", "content": shot.answer})
    messages.append({"role": "user", "content": task.format_question(question)})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer, question: str, shots: Sequence[Shot] = (), task: Task | None = None) -> str:
    """The text the model reads before it answers (used for training prompts and for evaluation)."""
    task = task or get_task()
    if has_chat_template(tokenizer):
        # enable_thinking=False goes to apply_chat_template directly: Qwen3's template then emits an
        # empty `<think>\n\n</think>\n\n` block and the model answers without reasoning traces.
        return tokenizer.apply_chat_template(
            build_messages(question, shots, task=task), tokenize=False, add_generation_prompt=True,
            enable_thinking=False)
    parts = [f"{task.format_question(s.question)}{PLAIN_ANSWER_PREFIX} {s.answer}" for s in shots]
    parts.append(f"{task.format_question(question)}{PLAIN_ANSWER_PREFIX}")
    return PLAIN_SHOT_SEPARATOR.join(parts)


def render_answer(tokenizer, question: str, answer: str, task: Task | None = None) -> str:
    """The supervised continuation of `render_prompt`: the answer plus the end-of-turn marker.

    Surrounding whitespace is stripped (chat templates strip leading newlines of the final turn).
    """
    answer = answer.strip()
    if not has_chat_template(tokenizer):
        if tokenizer.eos_token is None:
            raise ValueError("Tokenizer has neither a chat template nor an eos_token; set one so the "
                             "model can learn where an answer ends.")
        return f" {answer}{tokenizer.eos_token}"
    prompt = render_prompt(tokenizer, question, task=task)
    full = tokenizer.apply_chat_template(build_messages(question, answer=answer, task=task), tokenize=False,
                                         enable_thinking=False)
    if not full.startswith(prompt + answer):
        raise AlignmentError(
            "The chat template renders the assistant turn differently from the generation prompt "
            "(thinking flag not honoured?), so training and inference would see different text. "
            f"Prompt ends {prompt[-60:]!r}; full conversation continues {full[len(prompt) - 20:][:80]!r}.")
    # Keep the end-of-turn marker (what stops generation) but not the newline the template adds after it.
    end_of_turn = full[len(prompt) + len(answer):].rstrip("\n")
    return answer + end_of_turn


def tokenize_prompt_and_answer(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids of `prompt` and of `answer` as it tokenizes after that prompt."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise AlignmentError(
            "The tokenizer merges tokens across the prompt/answer boundary "
            f"(prompt ends {prompt[-30:]!r}, answer starts {answer[:30]!r}), so the answer's token ids "
            "depend on the context. End the prompt at a token boundary (e.g. a newline).")
    answer_ids = full_ids[len(prompt_ids):]
    if not answer_ids:
        raise AlignmentError(f"Answer {answer[:40]!r} tokenized to no tokens")
    return prompt_ids, answer_ids
