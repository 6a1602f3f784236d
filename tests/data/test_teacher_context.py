"""Teacher contexts (fewshot_distill/data/teacher_context.py): fewshot, zeroshot, shuffled_answers."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from fewshot_distill.config import ConfigError, DistillationConfig, LoraConfig
from fewshot_distill.data.examples import build_example, build_examples, collate_examples, load_task_rows
from fewshot_distill.data.shots import training_shot_indices
from fewshot_distill.data.teacher_context import TEACHER_CONTEXTS, derangement, teacher_shots
from fewshot_distill.models.student import AnswerWindowLM, load_base_model, load_tokenizer
from fewshot_distill.methods.distill import distillation_loss_step
from fewshot_distill.teachers.base import AdapterDisabledTeacher
from fewshot_distill.teachers.cache import teacher_cache_context
from tests.conftest import build_lora_student, smoke_data_cfg


def rows(n: int) -> list[dict]:
    return [{"question": f"q{i}?", "answer": f"a{i}\n#### {i}"} for i in range(n)]


@pytest.mark.parametrize("n", [0, 2, 3, 8, 20])
def test_derangement_moves_every_position(n):
    for seed in range(200):
        permutation = derangement(n, random.Random(seed))
        assert sorted(permutation) == list(range(n))
        assert all(p != i for i, p in enumerate(permutation))


def test_derangement_of_one_shot_is_a_clear_error():
    with pytest.raises(ValueError, match="num_fewshot_examples >= 2"):
        derangement(1, random.Random(0))


def test_shuffled_answers_keep_questions_and_answers_but_never_pair_them():
    data = rows(50)
    seen_permutations = set()
    for index in range(40):
        shot_ids = training_shot_indices(len(data), index, 8, seed=42)
        fewshot = teacher_shots("fewshot", data, index, shot_ids, 42)
        shuffled = teacher_shots("shuffled_answers", data, index, shot_ids, 42)
        assert [s.question for s in shuffled] == [s.question for s in fewshot]
        assert Counter(s.answer for s in shuffled) == Counter(s.answer for s in fewshot)
        assert all(s.answer != data[i]["answer"] for s, i in zip(shuffled, shot_ids))
        assert shuffled == teacher_shots("shuffled_answers", data, index, shot_ids, 42)  # deterministic
        position = {shot.answer: j for j, shot in enumerate(fewshot)}
        seen_permutations.add(tuple(position[shot.answer] for shot in shuffled))
    assert len(seen_permutations) > 20  # seeded per example, not one permutation for all
    shot_ids = training_shot_indices(len(data), 0, 8, seed=42)
    assert (teacher_shots("shuffled_answers", data, 0, shot_ids, 42)
            != teacher_shots("shuffled_answers", data, 0, shot_ids, 43))


def test_registry_matches_the_config_values():
    for name in TEACHER_CONTEXTS:
        assert DistillationConfig(teacher_context=name).teacher_context == name
    with pytest.raises(ConfigError, match="distillation.teacher_context"):
        DistillationConfig(teacher_context="eightshot")
    with pytest.raises(ValueError, match="teacher_context"):
        teacher_shots("eightshot", rows(4), 0, [1, 2], 0)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    cfg = smoke_data_cfg()
    return load_tokenizer(str(tiny_model_dir)), load_task_rows(cfg, "train"), cfg


def test_zeroshot_teacher_reads_the_student_sequence(tiny):
    tokenizer, data, cfg = tiny
    for index in range(5):
        example = build_example(tokenizer, data, index, cfg, seed=42, with_teacher=True, teacher_context="zeroshot")
        assert example.teacher_input_ids == example.student_input_ids
        assert example.n_shots == 0 and example.shots_dropped == 0


def test_shuffled_teacher_holds_the_same_shot_count_and_answer(tiny):
    tokenizer, data, cfg = tiny
    fewshot = build_example(tokenizer, data, 3, cfg, seed=42, with_teacher=True)
    shuffled = build_example(tokenizer, data, 3, cfg, seed=42, with_teacher=True,
                             teacher_context="shuffled_answers")
    assert shuffled.n_shots == fewshot.n_shots == cfg.num_fewshot_examples
    assert shuffled.teacher_input_ids != fewshot.teacher_input_ids
    n = len(fewshot.answer_ids)
    assert shuffled.teacher_input_ids[-n:] == fewshot.answer_ids == shuffled.answer_ids


def test_each_context_has_its_own_cache_context(tiny_model_dir):
    model = load_base_model(str(tiny_model_dir), bf16=False)
    contexts = {teacher_cache_context(model, "tiny", 8, "seed", teacher_context=name) for name in TEACHER_CONTEXTS}
    assert len(contexts) == len(TEACHER_CONTEXTS)


@pytest.mark.parametrize("alignment", ["seed", "predict"])
def test_zeroshot_distillation_term_is_zero_at_the_first_step(tiny, tiny_model_dir, alignment):
    """LoRA B starts at 0, so the student equals the adapter-disabled teacher on the same sequence."""
    tokenizer, data, cfg = tiny
    examples, _ = build_examples(data, tokenizer, cfg, seed=42, with_teacher=True, indices=range(4),
                                 teacher_context="zeroshot")
    batch = collate_examples(examples, tokenizer.pad_token_id)
    student = AnswerWindowLM(build_lora_student(tiny_model_dir, seed=0, dropout=LoraConfig().dropout))
    student.train()  # LoRA dropout on: it only feeds the B = 0 branch
    terms = distillation_loss_step(student, batch, AdapterDisabledTeacher(student, 16, alignment),
                                   lambda_distill=0.5, alignment=alignment)
    assert float(terms["dist_loss"]) < 1e-10
    assert float(terms["ce_loss"]) > 0


def test_ablation_configs_differ_from_online_v1_only_in_the_teacher_context():
    from fewshot_distill.config import config_to_dict, load_config
    from tests.conftest import REPO_ROOT

    reference = config_to_dict(load_config(REPO_ROOT / "configs/online_v1.yaml"))
    for file, context, output_dir in [("zeroshot_teacher.yaml", "zeroshot", "experiments/online_zeroshot"),
                                      ("shuffled_answers.yaml", "shuffled_answers", "experiments/online_shuffled")]:
        ablation = config_to_dict(load_config(REPO_ROOT / "configs/ablations" / file))
        assert ablation["distillation"]["teacher_context"] == context
        assert ablation["training"]["output_dir"] == output_dir
        ablation["distillation"]["teacher_context"] = "fewshot"
        ablation["training"]["output_dir"] = reference["training"]["output_dir"]
        assert ablation == reference


@pytest.mark.slow
def test_a_non_default_teacher_context_trains_under_2_process_ddp(tiny_model_dir, tmp_path):
    """One launch of the shuffled-answers ablation config (a context other than fewshot): the context
    reaches the examples, run identity and losses under DDP. What differs between the contexts is data,
    checked above in this process (zeroshot's first-step distillation term of 0 included); fewshot's own
    DDP run is tests/training/test_train_e2e.py's online_run."""
    import json
    import subprocess
    import sys

    from fewshot_distill.results.metrics import read_metrics_jsonl
    from fewshot_distill.methods import read_run_identity
    from tests.conftest import REPO_ROOT, SMOKE_DATA
    from tests.helpers import free_port, run_env

    out = tmp_path / "run"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--main_process_port", str(free_port()), "-m", "fewshot_distill.train",
               "--config", "configs/ablations/shuffled_answers.yaml", "--output_dir", str(out),
               f"model.name={tiny_model_dir}", f"data.path={SMOKE_DATA}", "data.num_fewshot_examples=2",
               "data.num_workers=0", "training.max_steps=2", "training.save_steps=2", "training.logging_steps=1",
               "training.per_device_train_batch_size=2", "training.gradient_accumulation_steps=1",
               "training.bf16=false"]
    result = subprocess.run(command, cwd=REPO_ROOT, env=run_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    identity = read_run_identity(out)
    assert identity["method"] == "online_v1" and identity["teacher_context"] == "shuffled_answers"
    assert identity["condition"] == "online_shuffled"
    info = json.loads((out / "run_info.json").read_text())
    assert info["world_size"] == 2
    assert info["data"]["teacher_shot_counts"] == {"2": 256}
    metrics = read_metrics_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    assert metrics[0]["train/dist_loss"] > 0
    assert (out / "checkpoint-2" / "adapter_config.json").is_file() and (out / "final").is_dir()
