"""Teacher over a shared shot prefix: the prefix's keys and values once, each batch's suffixes on top.

With `data.shot_sampling=fixed` every teacher sequence is `prefix_ids + suffix_ids`: the prefix is
the rendered fixed shots (identical token ids for every example), the suffix is the example's own
`[question][answer]` turns. The teacher is frozen (base model, adapter disabled), so the prefix's
per-layer keys and values never change. `SharedPrefixTeacher` computes them once per process, on
first use, and runs each batch's suffixes attending to them: a teacher forward then costs about as
much as the student's (median suffix ~190 tokens on GSM8K) instead of ~1,860.

Exactness: attention over [cached prefix K/V ; suffix K/V] with suffix positions continuing from
the prefix length is the same computation as the full sequence, so the logits at every suffix
position equal the full-sequence teacher's up to float rounding (tests/teachers/test_shot_prefix.py:
1e-5 in float32; the measured bf16 difference is in docs/performance.md).

Shapes: B = batch, Tt = padded teacher length (prefix included), P = prefix length,
S = longest suffix in the batch, H = KV heads, D = head dim, N = positions asked for, V = vocab.

    prefix = fixed_shot_prefix_ids(examples, len(rows), cfg.data.num_fewshot_examples, seed)
    teacher = SharedPrefixTeacher(window_lm, prefix)
    logits = teacher.logits(teacher_input_ids, teacher_attention_mask, positions)   # [B, N, V]
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import torch
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicCache

from fewshot_distill.data.prompts import AlignmentError
from fewshot_distill.models.student import AnswerWindowLM, adapter_disabled, teacher_logits
from fewshot_distill.teachers.base import Teacher


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest token-id prefix shared by every sequence."""
    if not sequences:
        raise ValueError("common_prefix_length needs at least one sequence")
    first = sequences[0]
    length = min(len(s) for s in sequences)
    for sequence in sequences[1:]:
        if list(sequence[:length]) == list(first[:length]):
            continue
        same = 0
        while same < length and sequence[same] == first[same]:
            same += 1
        length = same
    return length


def shared_prefix_ids(teacher_sequences: Sequence[Sequence[int]], student_lengths: Sequence[int],
                      answer_lengths: Sequence[int]) -> list[int]:
    """The token ids every teacher sequence starts with, at least covering the shots.

    teacher_sequences: the unpadded teacher ids of the examples that read the fixed shots;
    student_lengths / answer_lengths: the same examples' student sequence and answer lengths.

    The prefix is the longest common token prefix (with a chat template it also covers the question
    turn's fixed opening, e.g. `<|im_start|>user\\nQuestion:`), cut so that every suffix keeps at
    least one prompt token before its answer (the `predict` alignment reads the logits there).
    The shots add `len(teacher) - len(student)` tokens to an example; a common prefix shorter than
    that means the template renders something example-dependent before or between the shots, and
    reusing a prefix would then be wrong for this template: that is an error.
    """
    if not teacher_sequences:
        raise ValueError("shared_prefix_ids needs at least one teacher sequence")
    length = common_prefix_length(teacher_sequences)
    # Leave >= 1 prompt token in every suffix: teacher_len - n_answer - 1 >= P.
    length = min(length, min(len(t) - n - 1 for t, n in zip(teacher_sequences, answer_lengths)))
    shot_tokens = [len(t) - s for t, s in zip(teacher_sequences, student_lengths)]
    if length < max(shot_tokens):
        worst = max(range(len(shot_tokens)), key=lambda i: shot_tokens[i])
        raise AlignmentError(
            f"distillation.reuse_shot_prefix: the teacher sequences share only {length} leading tokens but the "
            f"shots add {shot_tokens[worst]} tokens (sequence {worst}): the chat template renders "
            "example-dependent text before or between the shots, so there is no common shot prefix to "
            "reuse. Set distillation.reuse_shot_prefix=false.")
    return list(teacher_sequences[0][:length])


def fixed_shot_prefix_ids(examples: Sequence, n_rows: int, n_shots: int, seed: int) -> list[int]:
    """The shared shot prefix of `data.shot_sampling=fixed` training examples (TrainingExample list).

    The examples that read the fixed shot set unchanged are every example except the k shot rows
    themselves (they read a substitute shot, fewshot_distill/data/shots.py) and those that dropped shots to fit
    `data.max_seq_len_teacher`; those few run through the full-sequence teacher instead.
    """
    from fewshot_distill.data.shots import fixed_shot_indices

    shot_rows = set(fixed_shot_indices(n_rows, n_shots, seed))
    readers = [e for e in examples if e.teacher_input_ids is not None and e.index not in shot_rows
               and getattr(e, "shots_dropped", 0) == 0]
    if not readers:
        raise AlignmentError("distillation.reuse_shot_prefix: no training example reads the full fixed shot "
                             "set (all dropped shots to fit data.max_seq_len_teacher?); raise it or set "
                             "distillation.reuse_shot_prefix=false")
    return shared_prefix_ids([e.teacher_input_ids for e in readers], [len(e.student_input_ids) for e in readers],
                             [len(e.answer_ids) for e in readers])


class _FrozenPrefixLayer(CacheLayerMixin):
    """One attention layer's cached prefix K/V [1, H, P, D], read-only.

    `update` returns [prefix expanded to the batch ; new states] without storing anything: the
    prefix tensors are never modified (they serve every later batch), and only the layer being
    computed holds a [B, H, P + S, D] concatenation at any time (a DynamicCache would keep one per
    layer until the forward ends).
    """

    is_sliding = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.keys, self.values = keys, values
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True

    def lazy_initialization(self, key_states, value_states) -> None:
        pass

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        batch = key_states.size(0)
        keys = torch.cat([self.keys.expand(batch, -1, -1, -1), key_states], dim=-2)
        values = torch.cat([self.values.expand(batch, -1, -1, -1), value_states], dim=-2)
        return keys, values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_seq_length(self) -> int:
        return self.keys.size(-2)

    def get_max_length(self) -> int:
        return -1


@contextmanager
def _inference_mode_of(module: torch.nn.Module):
    """Modules in eval mode for the duration, each restored afterwards.

    Needed because transformers' gradient-checkpointing layers drop `past_key_values` in training
    mode. The teacher computes the same thing in either mode (its adapter and dropout are off).
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


class SharedPrefixTeacher:
    """The frozen teacher (adapter disabled) reading `prefix_ids + suffix` with the prefix cached.

    Rows of a batch that do not start with the prefix (e.g. an example that is itself one of the
    fixed shots and reads a substitute shot) run through the ordinary full-sequence teacher, so
    every row is exact; `rows_on_prefix` / `rows_full` count both.
    """

    def __init__(self, window_lm: AnswerWindowLM, prefix_ids: Sequence[int]):
        if len(prefix_ids) == 0:
            raise ValueError("prefix_ids is empty: there is no shared shot prefix to reuse")
        self.window_lm = window_lm
        self.prefix_ids = torch.tensor(list(prefix_ids), dtype=torch.long)
        self._cache: tuple[tuple, list[tuple[torch.Tensor, torch.Tensor]]] | None = None
        self.prefix_computations = 0
        self.rows_on_prefix = 0
        self.rows_full = 0

    @property
    def prefix_length(self) -> int:
        return self.prefix_ids.numel()

    def _causal_lm(self):
        return self.window_lm.causal_lm

    def prefix_key_values(self, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (keys, values) [1, H, P, D] of the prefix; computed on first use, then reused.

        Recomputed only if the device or the autocast state changes (the K/V dtype follows it).
        """
        autocast = (torch.is_autocast_enabled(device.type),
                    torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None)
        state = (device, autocast)
        if self._cache is None or self._cache[0] != state:
            causal_lm = self._causal_lm()
            cache = DynamicCache(config=causal_lm.config)
            with torch.no_grad(), adapter_disabled(self.window_lm), _inference_mode_of(causal_lm):
                causal_lm.get_decoder()(input_ids=self.prefix_ids.to(device)[None], past_key_values=cache,
                                        use_cache=True)
            self._cache = (state, [(layer.keys, layer.values) for layer in cache.layers])
            self.prefix_computations += 1
        return self._cache[1]

    def rows_with_prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B] bool: the row's real tokens start with the prefix and go on after it."""
        length = self.prefix_length
        if input_ids.size(1) <= length:
            return torch.zeros(input_ids.size(0), dtype=torch.bool, device=input_ids.device)
        starts = (input_ids[:, :length] == self.prefix_ids.to(input_ids.device)).all(dim=1)
        return starts & (attention_mask.sum(dim=1) > length)

    @torch.no_grad()
    def suffix_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
                      ) -> torch.Tensor:
        """Logits at `positions` of rows that all start with the prefix.

        input_ids / attention_mask [B, Tt] (full right-padded teacher rows, prefix included),
        positions [B, N] (positions in the full sequence, all >= P) -> logits [B, N, V].
        """
        length = self.prefix_length
        suffix_mask = attention_mask[:, length:]
        width = int(suffix_mask.sum(dim=1).max())
        suffix_ids, suffix_mask = input_ids[:, length:length + width], suffix_mask[:, :width]
        suffix_positions = positions - length
        if bool((suffix_positions < 0).any()) or bool((suffix_positions >= width).any()):
            raise AlignmentError("A teacher position to read lies inside the shared shot prefix or past the "
                                 "sequence: the prefix must end before every answer's first prompt token.")
        batch = input_ids.size(0)
        device = input_ids.device
        # Positions continue from the prefix; the mask covers [prefix ; suffix] (the prefix is all real).
        position_ids = torch.arange(length, length + width, device=device).expand(batch, -1)
        full_mask = torch.cat([suffix_mask.new_ones(batch, length), suffix_mask], dim=1)
        causal_lm = self._causal_lm()
        with adapter_disabled(self.window_lm), _inference_mode_of(causal_lm):
            past = Cache(layers=[_FrozenPrefixLayer(k, v) for k, v in self.prefix_key_values(device)])
            hidden = causal_lm.get_decoder()(input_ids=suffix_ids, attention_mask=full_mask,
                                             position_ids=position_ids, past_key_values=past,
                                             use_cache=False).last_hidden_state
            index = suffix_positions.unsqueeze(-1).expand(-1, -1, hidden.size(-1))
            return causal_lm.get_output_embeddings()(hidden.gather(1, index))

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
               ) -> torch.Tensor:
        """Drop-in for `teacher_logits`: [B, Tt] x2, positions [B, N] -> logits [B, N, V]."""
        on_prefix = self.rows_with_prefix(input_ids, attention_mask)
        n_prefix = int(on_prefix.sum())
        self.rows_on_prefix += n_prefix
        self.rows_full += input_ids.size(0) - n_prefix
        if n_prefix == input_ids.size(0):
            return self.suffix_logits(input_ids, attention_mask, positions)
        if n_prefix == 0:
            return teacher_logits(self.window_lm, input_ids, attention_mask, positions)
        out = None
        for rows, compute in ((on_prefix, self.suffix_logits), (~on_prefix, self._full_logits)):
            index = rows.nonzero().flatten()
            part = compute(input_ids[index], attention_mask[index], positions[index])
            if out is None:
                out = part.new_empty(input_ids.size(0), *part.shape[1:])
            out[index] = part
        return out

    def _full_logits(self, input_ids, attention_mask, positions):
        width = int(attention_mask.sum(dim=1).max())
        return teacher_logits(self.window_lm, input_ids[:, :width], attention_mask[:, :width], positions)

    def stats(self) -> dict:
        return {"prefix_tokens": self.prefix_length, "prefix_computations": self.prefix_computations,
                "rows_on_prefix": self.rows_on_prefix, "rows_full_sequence": self.rows_full}


class ShotPrefixTeacher(Teacher):
    """The adapter-disabled teacher reading each row's suffix on a cached shared shot prefix.

    Equal to `AdapterDisabledTeacher` up to float rounding (tests/teachers/test_shot_prefix.py), hence its
    own `cache_tag`. Rows that do not start with the prefix run the full sequence.
    """

    cache_tag = "shared_shot_prefix"

    def __init__(self, shot_prefix: SharedPrefixTeacher, k: int, alignment: str = "seed",
                 tail_temperature: float | None = None):
        super().__init__(k, alignment, tail_temperature)
        self.shot_prefix = shot_prefix

    @property
    def frozen_weights(self) -> torch.nn.Module:
        return self.shot_prefix.window_lm

    def logits_at(self, input_ids, attention_mask, positions):
        return self.shot_prefix.logits(input_ids, attention_mask, positions)

    def stats(self) -> dict:
        return {"shared_shot_prefix": self.shot_prefix.stats()}
