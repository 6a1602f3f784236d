"""Teacher top-K cache: exact reuse, hit/miss counts, keys that change with every setting, disk and
DDP sharing, and the same losses and gradients with and without the cache. The config switch in a real
run: tests/teachers/test_shot_prefix.py::test_fixed_shots_with_prefix_reuse_and_the_disk_cache_train_under_ddp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fewshot_distill.data.examples import collate_examples
from fewshot_distill.models.student import AnswerWindowLM
from fewshot_distill.methods.distill import distillation_loss_step
from fewshot_distill.teachers.base import AdapterDisabledTeacher, Teacher
from fewshot_distill.teachers.cache import build_teacher_cache, CachedTeacher, teacher_cache_context, TeacherTopKCache
from fewshot_distill.losses.alignment import student_answer_window

from tests.conftest import build_lora_student

K = 8


@pytest.fixture(scope="module")
def student_and_batches(tiny_model_dir, smoke_examples):
    tokenizer, examples = smoke_examples
    first = collate_examples(examples[:3], tokenizer.pad_token_id)
    # The same examples regrouped, as in a later epoch: different neighbours and padding.
    second = collate_examples([examples[4], examples[1], examples[3]], tokenizer.pad_token_id)
    peft_model = build_lora_student(tiny_model_dir, lora_b_std=0.05).eval()
    return AnswerWindowLM(peft_model), first, second


def answer_window(batch):
    _, mask, ids = student_answer_window(batch["student_labels"])
    return ids, mask


def make_cache(student, mode="memory", k=K, alignment="seed", folder=None):
    return build_teacher_cache(mode, student, "tiny", k, alignment, "float32", folder=folder)


def test_hits_return_the_online_values_exactly(student_and_batches):
    student, first, _ = student_and_batches
    online = AdapterDisabledTeacher(student, K, "seed")
    cache = make_cache(student)
    cached = CachedTeacher(online, cache)
    ids, mask = answer_window(first)
    expected_values, expected_ids = online.top_k(first, ids, mask)
    for _ in range(2):  # first call: misses; second: hits
        values, top_ids = cached.top_k(first, ids, mask)
        assert torch.equal(values[mask], expected_values[mask])
        assert torch.equal(top_ids[mask], expected_ids[mask])
        assert values.dtype == torch.float32 and top_ids.dtype == torch.long
    assert (cache.misses, cache.hits) == (3, 3)
    assert len(cache) == 3


def test_cached_step_gives_the_same_losses(student_and_batches):
    student, first, second = student_and_batches
    online = AdapterDisabledTeacher(student, K, "seed")
    cached = CachedTeacher(online, make_cache(student))
    cached.top_k(first, *answer_window(first))  # fill with examples 0, 1, 2
    trainable = [p for p in student.parameters() if p.requires_grad]  # LoRA: what a training step updates
    for batch in (first, second):
        plain = distillation_loss_step(student, batch, online, 0.5, "seed")
        plain_grads = torch.autograd.grad(plain["loss"], trainable)
        memo = distillation_loss_step(student, batch, cached, 0.5, "seed")
        memo_grads = torch.autograd.grad(memo["loss"], trainable)
        if batch is first:  # same batch as when cached: bit-identical
            assert torch.equal(plain["loss"], memo["loss"])
            assert all(torch.equal(a, b) for a, b in zip(plain_grads, memo_grads))
        else:  # regrouped: only float noise from a different padded width
            torch.testing.assert_close(plain["loss"], memo["loss"], rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(memo_grads, plain_grads, rtol=1e-5, atol=1e-7)
    # second batch: examples 4, 3 were new, example 1 a hit
    assert (cached.cache.misses, cached.cache.hits) == (3 + 2, 3 + 1)


def test_changed_setting_misses(student_and_batches):
    student, first, _ = student_and_batches
    ids, mask = answer_window(first)
    base_context = teacher_cache_context(student, "tiny", K, "seed")
    variants = [teacher_cache_context(student, "tiny", K + 1, "seed"),
                teacher_cache_context(student, "tiny", K, "predict"),
                teacher_cache_context(student, "other-model", K, "seed"),
                teacher_cache_context(student, "tiny", K, "seed", compute_dtype="bfloat16")]
    assert len({base_context, *variants}) == 5
    key = TeacherTopKCache("memory", base_context).key(first["teacher_input_ids"][0, :50], 10)
    for context in variants:
        assert TeacherTopKCache("memory", context).key(first["teacher_input_ids"][0, :50], 10) != key
    # different teacher input (e.g. other shots) or answer length: another key
    cache = TeacherTopKCache("memory", base_context)
    assert cache.key(first["teacher_input_ids"][0, :50], 11) != key
    assert cache.key(first["teacher_input_ids"][1, :50], 10) != key


def test_changed_k_misses_in_the_same_folder(student_and_batches, tmp_path):
    student, first, _ = student_and_batches
    ids, mask = answer_window(first)
    for k, expected_misses in ((K, 3), (K + 4, 3), (K, 0)):
        cache = make_cache(student, "disk", k=k, folder=tmp_path)
        values, _ = CachedTeacher(AdapterDisabledTeacher(student, k, "seed"), cache).top_k(first, ids, mask)
        assert values.size(-1) == k
        assert cache.misses == expected_misses and cache.hits == 3 - expected_misses


def test_changed_weights_change_the_context(student_and_batches):
    student, _, _ = student_and_batches
    before = teacher_cache_context(student, "tiny", K, "seed")
    embedding = student.wrapped_model.get_base_model().get_input_embeddings().weight
    with torch.no_grad():
        embedding[0, 0] += 1.0
    try:
        assert teacher_cache_context(student, "tiny", K, "seed") != before
    finally:
        with torch.no_grad():
            embedding[0, 0] -= 1.0


def test_disk_cache_is_reused_by_a_new_process_object(student_and_batches, tmp_path):
    student, first, _ = student_and_batches
    ids, mask = answer_window(first)
    online = AdapterDisabledTeacher(student, K, "seed")
    first_values, _ = CachedTeacher(online, make_cache(student, "disk", folder=tmp_path)).top_k(first, ids, mask)
    reader = make_cache(student, "disk", folder=tmp_path)
    values, _ = CachedTeacher(online, reader).top_k(first, ids, mask)
    assert (reader.hits, reader.misses) == (3, 0)
    assert torch.equal(values[mask], first_values[mask])


def test_bf16_values_are_stored_compactly_and_exactly():
    cache = TeacherTopKCache("memory", "ctx")
    values = torch.randn(5, 4).to(torch.bfloat16).float()
    cache.put("a", values, torch.arange(20).view(5, 4))
    assert cache.entries["a"][0].dtype == torch.bfloat16
    assert torch.equal(cache.get("a")[0], values)
    exact32 = torch.randn(5, 4) + 1e-3
    cache.put("b", exact32, torch.arange(20).view(5, 4))
    assert torch.equal(cache.get("b")[0], exact32)


def test_bad_mode_is_a_clear_error(student_and_batches):
    student, _, _ = student_and_batches
    with pytest.raises(ValueError, match="none"):
        build_teacher_cache("ram", student, "tiny", K, "seed", "float32")
    with pytest.raises(ValueError, match="folder"):
        TeacherTopKCache("disk", "ctx")
    assert build_teacher_cache("none", student, "tiny", K, "seed", "float32") is None


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_bucket_tail_is_cached_exactly_and_enters_the_key(student_and_batches, mode, tmp_path):
    from fewshot_distill.losses.divergences import LossSpec

    student, first, _ = student_and_batches
    ids, mask = answer_window(first)
    online = AdapterDisabledTeacher(student, K, "seed", tail_temperature=2.0)
    expected = online.top_k(first, ids, mask)
    assert len(expected) == 3 and expected[2].shape == ids.shape
    cache = build_teacher_cache(mode, student, "tiny", K, "seed", "float32", folder=tmp_path, tail_temperature=2.0)
    for _ in range(2):  # misses, then hits
        got = CachedTeacher(online, cache).top_k(first, ids, mask)
        for part, want in zip(got, expected):
            assert torch.equal(part[mask], want[mask])
    assert (cache.misses, cache.hits) == (3, 3)
    if mode == "disk":  # a new reader gets the tail from disk
        reader = build_teacher_cache(mode, student, "tiny", K, "seed", "float32", folder=tmp_path,
                                     tail_temperature=2.0)
        assert torch.equal(CachedTeacher(online, reader).top_k(first, ids, mask)[2][mask], expected[2][mask])
        assert reader.hits == 3
    # the cached step gives the online step's losses
    loss = LossSpec("forward_kl", 2.0, 0.5, "bucket")
    plain = distillation_loss_step(student, first, online, 0.5, "seed", loss=loss)
    memo = distillation_loss_step(student, first, CachedTeacher(online, cache), 0.5, "seed", loss=loss)
    assert torch.equal(plain["loss"], memo["loss"]) and plain["dist_loss"].item() > 0


def test_tail_mode_and_its_temperature_change_the_context(student_and_batches):
    student, _, _ = student_and_batches
    contexts = {teacher_cache_context(student, "tiny", K, "seed"),
                teacher_cache_context(student, "tiny", K, "seed", tail_temperature=1.0),
                teacher_cache_context(student, "tiny", K, "seed", tail_temperature=2.0)}
    assert len(contexts) == 3


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    calls = []

    class FakeOnline(Teacher):
        def top_k(self, batch, answer_ids, answer_mask):  # deterministic in the teacher input
            calls.append(batch["teacher_input_ids"].size(0))
            seed = batch["teacher_input_ids"].sum(dim=1, keepdim=True).float()
            values = seed[:, :, None].expand(-1, answer_ids.size(1), 3) / 1000
            return values.clone(), torch.zeros_like(values, dtype=torch.long)

    cache = TeacherTopKCache("memory", "ddp-test")
    cached = CachedTeacher(FakeOnline(k=3), cache).top_k
    examples = [torch.tensor([7, 1 + i, 2 + i, 9]) for i in range(4)]  # answer = last token (9)

    def batch_of(indices):
        return {"teacher_input_ids": torch.stack([examples[i] for i in indices]),
                "teacher_attention_mask": torch.ones(len(indices), 4, dtype=torch.long)}

    answer_ids, answer_mask = torch.full((2, 1), 9), torch.ones(2, 1, dtype=torch.bool)
    cached(batch_of([0, 1] if rank == 0 else [2, 3]), answer_ids, answer_mask)  # epoch 0
    cached(batch_of([2, 3] if rank == 0 else [0, 1]), answer_ids, answer_mask)  # epoch 1: other rank's
    Path(out_dir, f"{rank}.json").write_text(json.dumps({"hits": cache.hits, "misses": cache.misses,
                                                         "online_calls": calls}))
    dist.destroy_process_group()


@pytest.mark.slow
def test_memory_cache_is_shared_across_ddp_ranks(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    for rank in range(2):
        result = json.loads((tmp_path / f"{rank}.json").read_text())
        assert result == {"hits": 2, "misses": 2, "online_calls": [2]}


def _rewrite_entry(path: Path, change) -> None:
    """Rewrite a disk entry with `change(dict)` applied, as another version or a bad copy could."""
    data = torch.load(path, weights_only=True)
    change(data)
    torch.save(data, path)


def _flip_stored_value_bytes(path: Path) -> None:
    """Invert 4 bytes inside the stored values tensor (a flip in the zip's padding would be harmless)."""
    values = torch.load(path, weights_only=True)["values"]
    raw = values.contiguous().view(torch.uint8).numpy().tobytes()
    data = bytearray(path.read_bytes())
    start = data.find(raw) + len(raw) // 2
    assert start >= len(raw) // 2, "the stored values were not found in the file"
    data[start: start + 4] = bytes(b ^ 0xFF for b in data[start: start + 4])
    path.write_bytes(bytes(data))


def _entry_faults():
    from tests.helpers import truncate

    faults = {"truncate": truncate, "flip_bytes": _flip_stored_value_bytes}
    faults.update({
        "garbage": lambda path: path.write_bytes(b"not a torch file"),
        "wrong_shape": lambda path: _rewrite_entry(path, lambda d: d.update(values=d["values"][:-1], ids=d["ids"][:-1])),
        "wrong_k": lambda path: _rewrite_entry(path, lambda d: d.update(values=d["values"][:, :-1], ids=d["ids"][:, :-1])),
        "wrong_dtype": lambda path: _rewrite_entry(path, lambda d: d.update(ids=d["ids"].long())),
        "changed_values": lambda path: _rewrite_entry(path, lambda d: d["values"].mul_(2)),
        "old_format": lambda path: _rewrite_entry(path, lambda d: d.pop("sha256")),
    })
    return faults


@pytest.mark.parametrize("fault", list(_entry_faults()))
def test_damaged_disk_entry_is_counted_recomputed_and_rewritten(student_and_batches, tmp_path, fault):
    student, first, _ = student_and_batches
    ids, mask = answer_window(first)
    online = AdapterDisabledTeacher(student, K, "seed")
    expected, expected_ids = online.top_k(first, ids, mask)
    writer = make_cache(student, "disk", folder=tmp_path)
    CachedTeacher(online, writer).top_k(first, ids, mask)
    entries = sorted(writer.folder.glob("*/*.pt"))
    assert len(entries) == 3
    _entry_faults()[fault](entries[1])

    reader = make_cache(student, "disk", folder=tmp_path)
    values, top_ids = CachedTeacher(online, reader).top_k(first, ids, mask)
    # the damaged row is recomputed alone (cropped to its own length): equal up to float rounding
    torch.testing.assert_close(values[mask], expected[mask], rtol=1e-5, atol=1e-5)
    assert torch.equal(top_ids[mask], expected_ids[mask])
    assert reader.stats()["damaged"] == 1 and (reader.hits, reader.misses) == (2, 1)
    # the entry was rewritten: the next reader hits every entry and finds nothing damaged
    again = make_cache(student, "disk", folder=tmp_path)
    CachedTeacher(online, again).top_k(first, ids, mask)
    assert (again.hits, again.misses, again.damaged) == (3, 0, 0)


def test_entry_checks_on_hand_made_tensors():
    from fewshot_distill.teachers.cache import entry_problem, tensors_sha256

    values, ids = torch.randn(4, 3), torch.arange(12, dtype=torch.int32).view(4, 3)
    good = {"values": values, "ids": ids, "key": "k1", "sha256": tensors_sha256(values, ids)}
    assert entry_problem(good, "k1", n_answer=4, k=3) is None
    assert entry_problem(good, "k1", n_answer=None, k=None) is None
    assert "another key" in entry_problem(good, "k2", 4, 3)
    assert "answer positions" in entry_problem(good, "k1", 5, 3)
    assert "K = 3" in entry_problem(good, "k1", 4, 8)
    assert "sha256" in entry_problem({**good, "values": values + 1}, "k1", 4, 3)
    assert "dtypes" in entry_problem({**good, "ids": ids.long()}, "k1", 4, 3)
    assert "shapes" in entry_problem({**good, "ids": ids[:2]}, "k1", 4, 3)
    assert "missing fields" in entry_problem([values, ids], "k1", 4, 3)
    tail = torch.randn(4)  # the top-K tail log-sum-exp of distillation.topk_tail=bucket
    with_tail = {**good, "tail": tail, "sha256": tensors_sha256(values, ids, tail)}
    assert entry_problem(with_tail, "k1", 4, 3) is None
    assert "tail" in entry_problem({**with_tail, "tail": tail[:3]}, "k1", 4, 3)
    assert "sha256" in entry_problem({**with_tail, "tail": tail + 1}, "k1", 4, 3)


def test_memory_mode_counts_no_damage(student_and_batches):
    student, first, _ = student_and_batches
    cache = make_cache(student)
    CachedTeacher(AdapterDisabledTeacher(student, K, "seed"), cache).top_k(first, *answer_window(first))
    assert cache.stats()["damaged"] == 0 and cache.stats()["mode"] == "memory"
