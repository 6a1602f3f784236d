"""Held-out diagnostics: the pure metric functions on hand-made tensors, equality with a hand computation on
a tiny model (full-sequence logits + log_softmax, positions from the token lists), and the script's
output files, resume and separation from accuracy results."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from fewshot_distill.config import DataConfig
from fewshot_distill.eval import diagnostics as diag
from tests.conftest import REPO_ROOT, SMOKE_DATA


def test_row_sums_hand_values_and_masking():
    # B=1, A=2 (second answer token masked), W=3, V=3
    entry = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]]])
    teacher = torch.tensor([[[0.0, 0.0, 0.0], [9.0, 9.0, 9.0], [1.0, 2.0, 3.0]]])
    answer_ids = torch.tensor([[1, -100]])
    mask = torch.tensor([[True, False]])
    sums = diag.row_sums(entry, teacher, answer_ids, mask, top_k=2, alignment="seed")
    log_p = F.log_softmax(entry[0, 0], -1)
    assert sums["nll"].item() == pytest.approx(-log_p[1].item())
    assert sums["top1"].item() == 0.0                              # argmax 0, gold 1
    uniform = torch.full((3,), 1 / 3)
    assert sums["kl"].item() == pytest.approx((uniform * (uniform.log() - log_p)).sum().item())
    # seed alignment compares window row 1 (holds answer token 0): teacher top-2 of [9, 9, 9]
    values, ids = teacher[0, 1].topk(2)
    assert sums["topk_mse"].item() == pytest.approx((entry[0, 1][ids] - values).pow(2).mean().item())
    assert sums["tokens"].item() == 1.0
    predict = diag.row_sums(entry, teacher, answer_ids, mask, top_k=2, alignment="predict")
    values, ids = teacher[0, 0].topk(2)
    assert predict["topk_mse"].item() == pytest.approx((entry[0, 0][ids] - values).pow(2).mean().item())


def test_row_sums_identical_is_zero_and_chunking_does_not_matter():
    torch.manual_seed(0)
    window = torch.randn(3, 6, 50)
    answer_ids = torch.randint(0, 50, (3, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    same = diag.row_sums(window, window, answer_ids, mask, top_k=8)
    assert torch.allclose(same["kl"], torch.zeros(3, dtype=torch.float64), atol=1e-6) and torch.equal(same["topk_mse"], torch.zeros(3, dtype=torch.float64))
    other = torch.randn(3, 6, 50)
    whole = diag.row_sums(other, window, answer_ids, mask, top_k=8, chunk_size=1000)
    chunked = diag.row_sums(other, window, answer_ids, mask, top_k=8, chunk_size=2)
    for key in diag.SUM_KEYS:
        torch.testing.assert_close(whole[key], chunked[key])
    assert whole["tokens"].tolist() == [5.0, 2.0, 3.0]


def test_gap_closed_and_summary():
    assert diag.gap_closed(2.0, 2.0, 1.0) == 0.0
    assert diag.gap_closed(2.0, 1.0, 1.0) == 1.0
    assert diag.gap_closed(2.0, 1.5, 1.0) == pytest.approx(0.5)
    assert diag.gap_closed(1.0, 0.5, 1.0) is None      # teacher no better than 0-shot: undefined
    base0 = diag.Totals({"nll": 20.0, "top1": 5.0, "kl": 4.0, "topk_mse": 1.0, "tokens": 10.0}, rows=2)
    teacher = diag.Totals({"nll": 10.0, "top1": 7.0, "kl": 0.0, "topk_mse": 0.0, "tokens": 10.0}, rows=2)
    entry = diag.Totals({"nll": 15.0, "top1": 6.0, "kl": 1.0, "topk_mse": 0.5, "tokens": 10.0}, rows=2)
    metrics = diag.summarize(entry, base0, teacher)
    assert metrics["nll"] == 1.5 and metrics["top1"] == 0.6
    assert metrics["gap_closed_nll"] == pytest.approx(0.5) and metrics["gap_closed_kl"] == pytest.approx(0.75)
    assert diag.Totals.from_vector(entry.as_vector()) == entry


def _lora_model(model_dir, seed=1):
    """The tiny model with a LoRA adapter whose B is random (so the adapter changes the logits)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    return peft_model.eval()


def _full_sequence_reference(model, tokenizer, rows, indices, data_cfg, seed, train_rows):
    """NLL and KL per answer token from whole-sequence logits, positions taken from the token lists.

    The teacher reads the evaluation's few-shot prompt (`build_prompts`, shots from `train_rows`).
    """
    from fewshot_distill.data.prompts import render_answer, render_prompt, tokenize_prompt_and_answer
    from fewshot_distill.eval.prompts import build_prompts

    nll_student, nll_teacher, nll_base, kl_entry, kl_base, tokens = 0.0, 0.0, 0.0, 0.0, 0.0, 0
    teacher_prompts = build_prompts(tokenizer, rows, indices, train_rows, data_cfg.num_fewshot_examples, seed)
    for index, teacher_prompt in zip(indices, teacher_prompts):
        question = rows[index]["question"]
        answer_text = render_answer(tokenizer, question, rows[index]["answer"])
        student_prompt_ids, answer_ids = tokenize_prompt_and_answer(tokenizer, render_prompt(tokenizer, question),
                                                                    answer_text)
        teacher_prompt_ids, teacher_answer_ids = tokenize_prompt_and_answer(tokenizer, teacher_prompt, answer_text)
        assert teacher_answer_ids == answer_ids
        n = len(answer_ids)
        student = torch.tensor([student_prompt_ids + answer_ids])
        teacher_ids = torch.tensor([teacher_prompt_ids + answer_ids])
        answer = torch.tensor(answer_ids)
        with torch.no_grad():
            entry_logp = F.log_softmax(model(student).logits[0].double(), -1)
            with model.disable_adapter():
                base_logp = F.log_softmax(model(student).logits[0].double(), -1)
                teacher_logp = F.log_softmax(model(teacher_ids).logits[0].double(), -1)
        s = torch.arange(len(student_prompt_ids) - 1, len(student_prompt_ids) - 1 + n)
        t = torch.arange(teacher_ids.size(1) - n - 1, teacher_ids.size(1) - 1)
        nll_student += -entry_logp[s, answer].sum().item()
        nll_base += -base_logp[s, answer].sum().item()
        nll_teacher += -teacher_logp[t, answer].sum().item()
        p_teacher = teacher_logp[t].exp()
        kl_entry += (p_teacher * (teacher_logp[t] - entry_logp[s])).sum().item()
        kl_base += (p_teacher * (teacher_logp[t] - base_logp[s])).sum().item()
        tokens += n
    return {"nll": nll_student / tokens, "nll_base": nll_base / tokens, "nll_teacher": nll_teacher / tokens,
            "kl": kl_entry / tokens, "kl_base": kl_base / tokens, "tokens": tokens}


def test_diagnostics_equal_a_full_sequence_hand_computation(tiny_model_dir):
    from fewshot_distill.data.examples import load_task_rows
    from fewshot_distill.models.student import AnswerWindowLM, load_tokenizer

    data_cfg = DataConfig(path=str(SMOKE_DATA), num_fewshot_examples=2, max_seq_len_teacher=1024,
                          max_seq_len_student=512, num_workers=0)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    rows = load_task_rows(data_cfg, "test")
    train_rows = load_task_rows(data_cfg, "train")
    indices = [3, 7, 11, 20, 41]
    model = _lora_model(tiny_model_dir)
    window_lm = AnswerWindowLM(model)
    batches = diag.build_heldout_batches(tokenizer, rows, indices, data_cfg, seed=5, batch_size=2,
                                         shot_rows=train_rows)
    reference = diag.build_reference(window_lm, batches, top_k=16, alignment="seed", device="cpu")
    entry = diag.Totals()
    for _, sums in diag.entry_rows(window_lm, reference, 16, "seed", "cpu"):
        entry.add(sums)
    metrics = diag.summarize(entry, reference.base0, reference.teacher)

    expected = _full_sequence_reference(model, tokenizer, rows, indices, data_cfg, seed=5, train_rows=train_rows)
    assert metrics["tokens"] == expected["tokens"] and metrics["rows"] == len(indices)
    assert metrics["nll"] == pytest.approx(expected["nll"], rel=1e-5)
    assert reference.base0.mean("nll") == pytest.approx(expected["nll_base"], rel=1e-5)
    assert reference.teacher.mean("nll") == pytest.approx(expected["nll_teacher"], rel=1e-5)
    assert metrics["kl"] == pytest.approx(expected["kl"], rel=1e-4, abs=1e-7)
    gap_nll = (expected["nll_base"] - expected["nll"]) / (expected["nll_base"] - expected["nll_teacher"])
    gap_kl = (expected["kl_base"] - expected["kl"]) / expected["kl_base"]
    assert metrics["gap_closed_nll"] == pytest.approx(gap_nll, rel=1e-3, abs=1e-5)
    assert metrics["gap_closed_kl"] == pytest.approx(gap_kl, rel=1e-3, abs=1e-5)
    assert metrics["kl"] > 0 and math.isfinite(metrics["topk_mse"])


def test_eval_diagnostics_script_outputs_resume_and_file_kind(tiny_model_dir, tmp_path, capsys):
    from fewshot_distill.eval.diagnostics_run import main
    from fewshot_distill.results.diagnostics import load_diagnostics
    from fewshot_distill.results.load import load_results

    output = tmp_path / "diag.json"
    argv = ["--config", "configs/online_v1.yaml", "--conditions", "base_0shot", "icl_2shot", "--n_samples", "6",
            "--output", str(output), f"model.name={tiny_model_dir}", f"data.path={SMOKE_DATA}",
            "data.num_fewshot_examples=2", "eval.mse_top_k=16"]
    assert main(argv) == 0
    data = load_diagnostics(output)
    assert set(data["conditions"]) == {"base_0shot", "icl_2shot"}
    teacher = data["conditions"]["icl_2shot"]["base"]
    assert teacher["kl"] == 0.0 and teacher["gap_closed_nll"] == 1.0 and teacher["rows"] == 6
    assert data["conditions"]["base_0shot"]["base"]["gap_closed_nll"] == 0.0
    rows = [json.loads(line) for line in output.with_name("diag.rows.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {r["index"] for r in rows} == set(data["subset_indices"])
    with pytest.raises(ValueError, match="accuracy"):
        load_results(output)  # a diagnostics file is not an accuracy results file

    capsys.readouterr()
    assert main(argv) == 0  # everything done: resumed, nothing recomputed
    assert "already in" in capsys.readouterr().err or output.with_name("diag.rows.jsonl").read_text().count("\n") == 12
    assert main(argv[:-1] + ["eval.mse_top_k=8"]) == 2  # another setup: refused, not mixed


def test_eval_diagnostics_on_a_text_task(tiny_model_dir, tmp_path):
    """An ICL task (task.answer_type: text, data/icl/first_letter): teacher-forced on its one-letter answers, the
    k-shot teacher from train.jsonl, every entry's proxies finite."""
    from fewshot_distill.eval.diagnostics_run import main
    from fewshot_distill.results.diagnostics import load_diagnostics

    output = tmp_path / "diag.json"
    assert main(["--config", str(REPO_ROOT / "configs" / "tasks" / "icl_first_letter.yaml"), "--conditions",
                 "base_0shot", "icl_8shot", "--n_samples", "4", "--output", str(output), f"model.name={tiny_model_dir}",
                 f"data.path={REPO_ROOT / 'data' / 'icl' / 'first_letter'}", "eval.mse_top_k=16"]) == 0
    data = load_diagnostics(output)
    assert data["prompting"]["shots_from"]["own_train_split"] and data["prompting"]["teacher_shots"] == 8
    teacher, base0 = data["conditions"]["icl_8shot"]["base"], data["conditions"]["base_0shot"]["base"]
    assert teacher["kl"] == 0.0 and teacher["gap_closed_nll"] == 1.0 and base0["gap_closed_nll"] == 0.0
    assert base0["rows"] == 4 and base0["kl"] > 0 and math.isfinite(base0["nll"]) and math.isfinite(base0["topk_mse"])
