"""Memoised teacher top-K: compute each example's teacher logits once, reuse them every later epoch.

Why it is exact: the teacher is the base model with the adapter disabled, or a frozen copy of the starting
weights in a full fine-tuning run (frozen weights, no dropout)
and example i's teacher input (its shots are drawn with `seed + i`) is the same in every epoch, so
its top-K values and ids never change during a run. The paper's schedule (1000 steps x 32 examples
over GSM8K's 7,473) sees each example ~4.3 times; with the cache the teacher runs once per example.

Key of an entry = sha256 of (context, the example's unpadded teacher input ids, its answer length).
The context (`teacher_cache_context`) holds everything else that determines the values: model name,
model config, a fingerprint of the frozen weights, attention backend, compute dtype, K, the
alignment and the top-K tail mode (with the tail bucket, its temperature). A changed setting therefore
changes every key and never reads a stale entry.

Stored values: the teacher's compute dtype when that round-trips exactly (bf16 under bf16 autocast:
the logits were bf16 before `top_k_logits` upcast them), else float32; ids as int32. Reading an entry
returns exactly the float32 values and int64 ids the online teacher returned. With
`distillation.topk_tail=bucket` an entry also holds the teacher's tail log-sum-exp (float32, [n_answer]).

Modes: "memory" (a dict per process; under DDP each micro-batch's new entries are all-gathered, so an
example first seen on rank 0 is a hit on rank 1 in a later epoch) or "disk" (one file per entry under
a folder every rank reads and writes, default `{output_dir}/teacher_cache`; it survives restarts and
resumes; several nodes need a shared filesystem). A disk entry also stores its key and the sha256 of
its tensors; an entry that is cut short, unreadable, changed or of the wrong shape / dtype / K /
answer length is counted (`stats()["damaged"]`), deleted and recomputed like a miss, never used.

    online = AdapterDisabledTeacher(window_lm, 256, "seed")
    cache = TeacherTopKCache("memory", teacher_cache_context(online.frozen_weights, "Qwen/Qwen3-1.7B", 256, "seed"))
    teacher = CachedTeacher(online, cache)      # teacher.top_k(batch, answer_ids, answer_mask)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import torch

from fewshot_distill.config import TEACHER_CACHE_MODES as CACHE_MODES
from fewshot_distill.losses.alignment import ALIGNMENTS, check_aligned_token_ids
from fewshot_distill.teachers.base import Teacher
VALUE_DTYPES = (torch.bfloat16, torch.float32)
ID_DTYPE = torch.int32
# Tensors of a disk entry, in the order `get` returns them ("tail": only with a top-K tail bucket).
ENTRY_TENSORS = ("values", "ids", "tail")

logger = logging.getLogger("fewshot_distill")


def weights_fingerprint(model: torch.nn.Module) -> str:
    """Cheap identity of the frozen (non-LoRA) weights: float64 sum and abs-sum of every tensor."""
    sums = []
    with torch.no_grad():
        for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
            if "lora_" in name:
                continue  # the adapter is disabled for the teacher
            flat = param.detach().double()
            sums.append(f"{name}:{tuple(param.shape)}:{float(flat.sum()):.12e}:{float(flat.abs().sum()):.12e}")
    return hashlib.sha256("\n".join(sums).encode()).hexdigest()


def teacher_cache_context(teacher: torch.nn.Module, model_name: str, k: int, alignment: str,
                          compute_dtype: str = "float32", teacher_context: str = "fewshot",
                          tail_temperature: float | None = None, shot_prefix_reuse: bool = False) -> str:
    """Everything besides the input ids that determines the teacher's top-K, as one string.

    `teacher` is the AnswerWindowLM (or any module whose `named_parameters` are the model's).
    `tail_temperature`: set with topk_tail=bucket (entries then hold the tail log-sum-exp at that T).
    `shot_prefix_reuse`: values from the cached-prefix teacher (fewshot_distill/teachers/shot_prefix.py) equal
    the full-sequence ones only up to rounding, so they get their own keys. The key itself covers
    the full teacher ids, prefix included.
    """
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    if k <= 0:
        raise ValueError(f"k must be > 0 to cache a teacher top-K, got {k}")
    base = teacher.causal_lm if hasattr(teacher, "causal_lm") else teacher  # an AnswerWindowLM: its transformer
    model_config = base.config.to_dict() if hasattr(base, "config") else {}
    attn = getattr(getattr(base, "config", None), "_attn_implementation", None)
    context = {
        "model_name": str(model_name), "model_config": model_config, "attn_implementation": attn,
        "weights": weights_fingerprint(base), "compute_dtype": compute_dtype, "k": k, "alignment": alignment,
        "teacher_context": teacher_context,
        "topk_tail": "renormalize" if tail_temperature is None else "bucket", "tail_temperature": tail_temperature,
    }
    if shot_prefix_reuse:  # absent otherwise, so existing caches keep their keys
        context["teacher"] = "shared_shot_prefix"
    return json.dumps(context, sort_keys=True, default=str)


class TeacherTopKCache:
    """Per-example teacher top-K (values [n_answer, K], ids [n_answer, K][, tail [n_answer]]) by content key."""

    def __init__(self, mode: str, context: str, folder: str | Path | None = None):
        if mode not in ("memory", "disk"):
            raise ValueError(f"teacher cache mode must be 'memory' or 'disk', got {mode!r} "
                             "('none' means: do not build a cache)")
        self.mode = mode
        self.context_hash = hashlib.sha256(context.encode()).hexdigest()
        self.entries: dict[str, tuple[torch.Tensor, ...]] = {}
        self.folder = None
        if mode == "disk":
            if folder is None:
                raise ValueError("disk teacher cache needs a folder, e.g. {output_dir}/teacher_cache")
            # One subfolder per context: another model/K/alignment never shares entries.
            self.folder = Path(folder) / self.context_hash[:16]
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "context.json").write_text(context)
        self.k = _context_k(context)
        self.hits = 0
        self.misses = 0
        self.damaged = 0

    def key(self, teacher_ids: torch.Tensor, n_answer: int) -> str:
        digest = hashlib.sha256(self.context_hash.encode())
        digest.update(teacher_ids.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
        digest.update(f"|{int(n_answer)}".encode())
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.pt"

    def get(self, key: str, n_answer: int | None = None) -> tuple[torch.Tensor, ...] | None:
        """(values float32 [n_answer, K], ids int64 [n_answer, K][, tail float32 [n_answer]]) on the CPU, or None.

        Disk mode: a damaged entry is deleted and returns None (the caller recomputes and rewrites it).
        """
        stored = self.entries.get(key)
        if stored is None and self.mode == "disk":
            stored = self._read_disk_entry(key, n_answer)
        if stored is None:
            return None
        return (stored[0].float(), stored[1].long(), *stored[2:])

    def _read_disk_entry(self, key: str, n_answer: int | None) -> tuple[torch.Tensor, ...] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a cut-short or overwritten zip raises several error types
            problem = f"unreadable ({type(error).__name__})"
        else:
            problem = entry_problem(data, key, n_answer, self.k)
        if problem is None:
            return tuple(data[name] for name in ENTRY_TENSORS if name in data)
        self.damaged += 1
        if self.damaged == 1:
            logger.warning("teacher cache entry %s is damaged (%s): recomputed and rewritten (later ones "
                           "are counted in the cache stats)", path, problem)
        path.unlink(missing_ok=True)
        return None

    def put(self, key: str, values: torch.Tensor, ids: torch.Tensor, tail: torch.Tensor | None = None) -> None:
        values, ids = values.detach().to("cpu", torch.float32), ids.detach().to("cpu", torch.int64)
        stored = (_compact_values(values), ids.to(torch.int32))
        if tail is not None:
            stored += (tail.detach().to("cpu", torch.float32),)
        if self.mode == "memory":
            self.entries[key] = stored
            return
        path = self._path(key)
        if path.is_file():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: another rank never reads a half-written entry.
        handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(handle)
        entry = dict(zip(ENTRY_TENSORS, stored))
        torch.save({**entry, "key": key, "sha256": tensors_sha256(*stored)}, tmp)
        os.replace(tmp, path)

    def __len__(self) -> int:
        if self.mode == "memory":
            return len(self.entries)
        return sum(1 for _ in self.folder.glob("*/*.pt"))

    def stats(self) -> dict:
        return {"mode": self.mode, "hits": self.hits, "misses": self.misses, "damaged": self.damaged,
                "context": self.context_hash[:16]}


def _context_k(context: str) -> int | None:
    """K from a `teacher_cache_context` string (None for a free-form context, as in unit tests)."""
    try:
        k = json.loads(context).get("k")
    except (json.JSONDecodeError, AttributeError):
        return None
    return k if isinstance(k, int) else None


def tensors_sha256(*tensors: torch.Tensor) -> str:
    """sha256 of the stored bytes of an entry's tensors (with their dtypes and shapes)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}|".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def entry_problem(data, key: str, n_answer: int | None, k: int | None) -> str | None:
    """Why a loaded disk entry must not be used, or None.

    values [n_answer, K] bf16/fp32, ids [n_answer, K] int32, optional tail [n_answer] float32.
    """
    if not isinstance(data, dict) or not {"values", "ids", "key", "sha256"} <= data.keys():
        return "not a cache entry (missing fields; written by an older version?)"
    tensors = [data[name] for name in ENTRY_TENSORS if name in data]
    if not all(isinstance(tensor, torch.Tensor) for tensor in tensors):
        return "values/ids are not tensors"
    values, ids = data["values"], data["ids"]
    if data["key"] != key:
        return "stored under another key"
    if values.dtype not in VALUE_DTYPES or ids.dtype != ID_DTYPE:
        return f"dtypes {values.dtype}/{ids.dtype}, expected bf16 or float32 / int32"
    if values.dim() != 2 or ids.shape != values.shape:
        return f"shapes {tuple(values.shape)} / {tuple(ids.shape)}, expected two equal [n_answer, K]"
    if n_answer is not None and values.size(0) != n_answer:
        return f"{values.size(0)} answer positions, expected {n_answer}"
    if k is not None and values.size(1) != k:
        return f"K = {values.size(1)}, expected {k}"
    if "tail" in data and (data["tail"].dtype != torch.float32 or data["tail"].shape != values.shape[:1]):
        return f"tail {data['tail'].dtype} {tuple(data['tail'].shape)}, expected float32 [{values.size(0)}]"
    if data["sha256"] != tensors_sha256(*tensors):
        return "sha256 differs (content changed)"
    return None


def _compact_values(values: torch.Tensor) -> torch.Tensor:
    """bf16 when that is lossless (the teacher computed in bf16), else the float32 values."""
    as_bf16 = values.to(torch.bfloat16)
    return as_bf16 if torch.equal(as_bf16.float(), values) else values


def _world() -> tuple[bool, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return True, dist.get_world_size()
    return False, 1


def _share_new_entries(cache: TeacherTopKCache, new_entries: list, device: torch.device) -> None:
    """Memory mode under DDP: every rank gets every rank's new entries of this micro-batch.

    Called on every rank for every micro-batch (collectives must match); the all-gather itself runs
    only when some rank had a miss, i.e. during the first epoch.
    """
    import torch.distributed as dist

    distributed, world_size = _world()
    if not distributed or cache.mode != "memory":
        return
    n_new = torch.tensor([len(new_entries)], device=device)
    dist.all_reduce(n_new)
    if int(n_new) == 0:
        return
    gathered: list = [None] * world_size
    dist.all_gather_object(gathered, [(k, _compact_values(v), i.to(torch.int32), *tail)
                                      for k, v, i, *tail in new_entries])
    for rank_entries in gathered:
        for key, *entry in rank_entries:
            cache.entries.setdefault(key, tuple(entry))


class CachedTeacher(Teacher):
    """Another `Teacher`, memoised: hits come from the cache; the missing rows of a batch go to
    `online.top_k` together (cropped to their longest teacher sequence)."""

    def __init__(self, online: Teacher, cache: TeacherTopKCache):
        if not online.cacheable:
            raise ValueError(f"{type(online).__name__} changes during training; its top-K cannot be cached")
        super().__init__(online.k, online.alignment, online.tail_temperature)
        self.online = online
        self.cache = cache

    @property
    def frozen_weights(self) -> torch.nn.Module:
        return self.online.frozen_weights

    def stats(self) -> dict:
        return {"teacher_cache": self.cache.stats(), **self.online.stats()}

    def top_k(self, batch: dict, answer_ids: torch.Tensor, answer_mask: torch.Tensor):
        online_top_k, cache = self.online.top_k, self.cache
        teacher_ids, teacher_mask = batch["teacher_input_ids"], batch["teacher_attention_mask"]
        teacher_lengths = teacher_mask.sum(dim=1)
        # Hits skip the online call, so the alignment check runs here for every row.
        check_aligned_token_ids(teacher_ids, teacher_lengths, answer_ids, answer_mask,
                                  batch.get("example_index"))
        n_answer = answer_mask.sum(dim=1).tolist()
        lengths = teacher_lengths.tolist()
        keys = [cache.key(teacher_ids[row, :lengths[row]], n_answer[row]) for row in range(len(lengths))]
        found = [cache.get(key, n_answer[row]) for row, key in enumerate(keys)]
        missing = [row for row, entry in enumerate(found) if entry is None]
        cache.hits += len(keys) - len(missing)
        cache.misses += len(missing)

        new_entries = []
        if missing:
            rows = torch.tensor(missing, device=teacher_ids.device)
            width = max(lengths[row] for row in missing)
            sub_batch = {"teacher_input_ids": teacher_ids[rows, :width],
                         "teacher_attention_mask": teacher_mask[rows, :width]}
            if "example_index" in batch:
                sub_batch["example_index"] = batch["example_index"][rows.to(batch["example_index"].device)]
            computed = online_top_k(sub_batch, answer_ids[rows], answer_mask[rows])  # values, ids[, tail]
            for j, row in enumerate(missing):
                entry = tuple(part[j, :n_answer[row]].detach().cpu() for part in computed)
                found[row] = entry
                new_entries.append((keys[row], *entry))
                cache.put(keys[row], *entry)
        _share_new_entries(cache, new_entries, teacher_ids.device)

        batch_size, width = answer_ids.shape
        k = found[0][0].size(-1)
        out_values = torch.zeros(batch_size, width, k, dtype=torch.float32)
        out_ids = torch.zeros(batch_size, width, k, dtype=torch.long)
        with_tail = len(found[0]) == 3
        out_tail = torch.zeros(batch_size, width, dtype=torch.float32) if with_tail else None
        for row, (values, ids, *tail) in enumerate(found):
            out_values[row, :n_answer[row]] = values
            out_ids[row, :n_answer[row]] = ids
            if with_tail:
                out_tail[row, :n_answer[row]] = tail[0]
        device = answer_ids.device
        out = (out_values.to(device, non_blocking=True), out_ids.to(device, non_blocking=True))
        return out + (out_tail.to(device, non_blocking=True),) if with_tail else out


def build_teacher_cache(mode: str, teacher: torch.nn.Module, model_name: str, k: int, alignment: str,
                        compute_dtype: str, folder: str | Path | None = None,
                        teacher_context: str = "fewshot", tail_temperature: float | None = None,
                        shot_prefix_reuse: bool = False
                        ) -> TeacherTopKCache | None:
    """None for mode "none"; else a cache keyed by this teacher's context."""
    if mode not in CACHE_MODES:
        raise ValueError(f"distillation.teacher_cache must be one of {CACHE_MODES}, got {mode!r}")
    if mode == "none":
        return None
    return TeacherTopKCache(mode, teacher_cache_context(teacher, model_name, k, alignment, compute_dtype,
                                                        teacher_context, tail_temperature, shot_prefix_reuse),
                            folder)
