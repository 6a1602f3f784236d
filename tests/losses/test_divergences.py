"""The distillation loss family (fewshot_distill/losses/divergences.py) and its fused kernel (fewshot_distill/losses/window_kernel.py).

Every loss against a plain torch reference (`log_softmax`, `F.kl_div`, full-vocabulary softmax for the
tail bucket), values and gradients in float64; gradcheck of the fused path; chunking, masking, the
identical-inputs and lambda = 0 properties; the T^2 and jsd_beta limits; the mse path against values
written by the pre-registry kernel; config errors; and, on the tiny model, the zero-shot-teacher
property (LoRA B = 0 at init => every loss is 0 at the first step).
"""

from __future__ import annotations

import json

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fewshot_distill.config import ConfigError, DistillationConfig, load_config
from fewshot_distill.constants import IGNORE_INDEX
from fewshot_distill.losses.divergences import (DIVERGENCES, TAIL_MODES, LossSpec, divergence_rows, mse, support_logits,
                                                tail_logsumexp, top_k_logits)
from fewshot_distill.losses.reference import masked_cross_entropy
from fewshot_distill.losses.window_kernel import _mse_masked_mean_grad, answer_window_losses
from tests.conftest import REPO_ROOT, build_lora_student
from tests.helpers import assert_within_ulps, saved_vocab_sized_bytes, ulps_apart

IGN = IGNORE_INDEX
KL_FAMILY = ("forward_kl", "reverse_kl", "jsd")
# (loss, temperature, tail): every loss, the KL family at T = 1 and T = 2.5, both tail modes.
SPECS = [LossSpec("mse")] + [LossSpec(name, temperature, 0.3, tail)
                             for name in KL_FAMILY for temperature in (1.0, 2.5) for tail in TAIL_MODES]
SPEC_IDS = [f"{s.name}-T{s.temperature}-{s.topk_tail}" for s in SPECS]
GOLDEN = Path(__file__).parent / "golden" / "mse_fused_golden.json"


# --- plain torch references --------------------------------------------------------------------------

def reference_divergence(name: str, teacher_log_probs, student_log_probs, beta: float = 0.5):
    """On log-probs [M, S] -> [M], written with F.kl_div (its argument order: input = log q, target = p)."""
    def kl(p_log, q_log):  # KL(p || q)
        return F.kl_div(q_log, p_log, reduction="none", log_target=True).sum(dim=-1)

    if name == "forward_kl":
        return kl(teacher_log_probs, student_log_probs)
    if name == "reverse_kl":
        return kl(student_log_probs, teacher_log_probs)
    assert name == "jsd"
    mixture = beta * teacher_log_probs.exp() + (1 - beta) * student_log_probs.exp()
    return (beta * F.kl_div(mixture.log(), teacher_log_probs.exp(), reduction="none").sum(dim=-1)
            + (1 - beta) * F.kl_div(mixture.log(), student_log_probs.exp(), reduction="none").sum(dim=-1))


def reference_support_log_probs(full_logits, ids, spec: LossSpec):
    """From the full rows [M, V]: log-probs on the K ids (renormalize) or K ids + the rest (bucket)."""
    if spec.topk_tail == "renormalize":
        return (full_logits.gather(-1, ids) / spec.temperature).log_softmax(dim=-1)
    probs = (full_logits / spec.temperature).softmax(dim=-1)
    top = probs.gather(-1, ids)
    return torch.cat([top, 1 - top.sum(dim=-1, keepdim=True)], dim=-1).log()


def reference_rows(teacher_full, student_full, ids, spec: LossSpec):
    """Per-row reference loss from full-vocabulary rows [M, V] and the teacher's ids [M, K] -> [M]."""
    if spec.name == "mse":
        return (student_full.gather(-1, ids) - teacher_full.gather(-1, ids)).pow(2).mean(dim=-1)
    teacher = reference_support_log_probs(teacher_full, ids, spec)
    student = reference_support_log_probs(student_full, ids, spec)
    return spec.temperature ** 2 * reference_divergence(spec.name, teacher, student, spec.jsd_beta)


def ours_rows(teacher_full, student_full, ids, spec: LossSpec):
    """The registry path, fed like the kernel: logits at the ids and each side's tail log-sum-exp."""
    tails = ((tail_logsumexp(teacher_full, ids, spec.temperature),
              tail_logsumexp(student_full, ids, spec.temperature)) if spec.with_tail else (None, None))
    return divergence_rows(teacher_full.gather(-1, ids), student_full.gather(-1, ids), spec, *tails)


def full_rows_case(seed=0, rows=4, vocab=11, k=4):
    generator = torch.Generator().manual_seed(seed)
    teacher = 2 * torch.randn(rows, vocab, generator=generator, dtype=torch.float64)
    student = 2 * torch.randn(rows, vocab, generator=generator, dtype=torch.float64)
    return teacher, student, teacher.topk(k, dim=-1).indices


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_each_loss_equals_the_torch_reference_values_and_grads(spec):
    teacher, student, ids = full_rows_case()
    got_student = student.clone().requires_grad_(True)
    ref_student = student.clone().requires_grad_(True)
    got = ours_rows(teacher, got_student, ids, spec)
    ref = reference_rows(teacher, ref_student, ids, spec)
    assert got.shape == (4,) and bool((ref > 1e-3).all())
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    weights = torch.tensor([0.5, 1.0, -2.0, 3.0], dtype=torch.float64)
    (got * weights).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(got_student.grad, ref_student.grad, rtol=1e-9, atol=1e-12)
    # The tail bucket moves every vocabulary entry; renormalize / mse only the top-K ids.
    outside = torch.ones_like(student, dtype=torch.bool).scatter_(-1, ids, False)
    assert bool((got_student.grad[outside] != 0).any()) == spec.with_tail


def test_hand_computed_values():
    # teacher [log 3, 0] -> p_T = [3/4, 1/4]; student [0, 0] -> p_S = [1/2, 1/2]
    teacher, student = torch.tensor([[math.log(3.0), 0.0]]), torch.zeros(1, 2)
    forward = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    reverse = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    for name, expected in (("forward_kl", forward), ("reverse_kl", reverse)):
        assert divergence_rows(teacher, student, LossSpec(name)).item() == pytest.approx(expected, rel=1e-6)
    # beta = 0.5: M = [5/8, 3/8]
    half = 0.5 * (0.75 * math.log(0.75 / 0.625) + 0.25 * math.log(0.25 / 0.375)) \
        + 0.5 * (0.5 * math.log(0.5 / 0.625) + 0.5 * math.log(0.5 / 0.375))
    assert divergence_rows(teacher, student, LossSpec("jsd", jsd_beta=0.5)).item() == pytest.approx(half, rel=1e-6)
    assert divergence_rows(teacher, student, LossSpec("mse")).item() == pytest.approx(math.log(3.0) ** 2 / 2)


def test_documented_gradients():
    """The closed forms in the docstrings, w.r.t. the student's support logits u."""
    generator = torch.Generator().manual_seed(3)
    teacher = torch.randn(3, 6, generator=generator, dtype=torch.float64).log_softmax(-1)
    u = torch.randn(3, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    p_t = teacher.exp()

    def grad_of(name, beta=0.5):
        u.grad = None
        DIVERGENCES[name].per_row(teacher, u.log_softmax(-1), LossSpec(name, jsd_beta=beta)).sum().backward()
        return u.grad.clone()

    s = u.detach().log_softmax(-1)
    p_s = s.exp()
    torch.testing.assert_close(grad_of("forward_kl"), p_s - p_t)
    reverse = (p_s * (s - teacher)).sum(-1, keepdim=True)
    torch.testing.assert_close(grad_of("reverse_kl"), p_s * ((s - teacher) - reverse))
    beta = 0.3
    m = (beta * p_t + (1 - beta) * p_s).log()
    kl_s_m = (p_s * (s - m)).sum(-1, keepdim=True)
    torch.testing.assert_close(grad_of("jsd", beta), (1 - beta) * p_s * ((s - m) - kl_s_m))
    # mse's closed form (used by the kernel) is its autograd gradient
    t_raw, s_raw = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([True, False, True])
    (torch.where(mask, mse(t_raw, s_raw, LossSpec()), 0.0).sum() * 0.7 / 2).backward()
    closed = _mse_masked_mean_grad(t_raw, s_raw.detach(), torch.tensor(0.7, dtype=torch.float64),
                                    torch.tensor(2.0, dtype=torch.float64), mask)
    torch.testing.assert_close(closed, s_raw.grad)


def test_bucket_support_is_the_folded_full_softmax():
    teacher, _, ids = full_rows_case(vocab=9, k=3)
    for temperature in (1.0, 0.7):
        tail = tail_logsumexp(teacher, ids, temperature)
        support = support_logits(teacher.gather(-1, ids), tail, temperature)
        # its log-sum-exp is the full row's at T, so its softmax needs no extra normaliser
        torch.testing.assert_close(support.logsumexp(-1), (teacher / temperature).logsumexp(-1))
        full = (teacher / temperature).softmax(-1)
        torch.testing.assert_close(support.softmax(-1)[:, -1], 1 - full.gather(-1, ids).sum(-1))


def test_temperature_scaling_is_t_squared_and_the_high_t_limit_is_centred_logit_mse():
    teacher, student, ids = full_rows_case(k=6)
    t_top, s_top = teacher.gather(-1, ids), student.gather(-1, ids)
    for name in KL_FAMILY:
        hot = divergence_rows(t_top, s_top, LossSpec(name, temperature=3.0, jsd_beta=0.3))
        cold = divergence_rows(t_top / 3.0, s_top / 3.0, LossSpec(name, jsd_beta=0.3))
        torch.testing.assert_close(hot, 9.0 * cold)
    # Hinton et al.: T^2 KL -> sum((d - mean d)^2) / 2K as T -> inf (d = student - teacher logits);
    # JSD_beta -> beta (1 - beta) times that. The T^2 factor keeps the loss O(1) at any T.
    d = s_top - t_top
    centred = ((d - d.mean(-1, keepdim=True)) ** 2).sum(-1) / (2 * d.size(-1))
    for name, factor in (("forward_kl", 1.0), ("reverse_kl", 1.0), ("jsd", 0.3 * 0.7)):
        far = divergence_rows(t_top, s_top, LossSpec(name, temperature=1e4, jsd_beta=0.3))
        torch.testing.assert_close(far, factor * centred, rtol=1e-3, atol=0.0)


def test_jsd_beta_limits_and_symmetry():
    teacher, student, ids = full_rows_case()
    t_top, s_top = teacher.gather(-1, ids), student.gather(-1, ids)

    def rows(name, beta=0.5, t=t_top, s=s_top):
        return divergence_rows(t, s, LossSpec(name, jsd_beta=beta))

    assert torch.equal(rows("jsd", 0.0), rows("forward_kl"))
    assert torch.equal(rows("jsd", 1.0), rows("reverse_kl"))
    # the end points are the normalised limits of the interior
    torch.testing.assert_close(rows("jsd", 1e-9) / 1e-9, rows("forward_kl"), rtol=1e-5, atol=0.0)
    torch.testing.assert_close(rows("jsd", 1 - 1e-9) / 1e-9, rows("reverse_kl"), rtol=1e-5, atol=0.0)
    torch.testing.assert_close(rows("jsd", 0.5), rows("jsd", 0.5, t=s_top, s=t_top))
    assert bool((rows("jsd", 0.5) <= math.log(2) + 1e-12).all())  # JSD is bounded by log 2


def test_identical_teacher_and_student_give_zero_for_every_loss_and_tail_mode():
    teacher, _, ids = full_rows_case()
    for spec in SPECS + [LossSpec("jsd", jsd_beta=b) for b in (0.0, 1.0)]:
        torch.testing.assert_close(ours_rows(teacher, teacher.clone(), ids, spec), torch.zeros(4, dtype=torch.float64),
                                   rtol=0, atol=1e-14)


# --- the fused kernel ---------------------------------------------------------------------------------

def fused_case(dtype=torch.float64, seed=0, batch=3, width=4, vocab=23, k=5):
    """Window logits [B, A + 1, V], answer ids / mask [B, A] (ragged), teacher full logits [B, A, V]."""
    generator = torch.Generator().manual_seed(seed)
    window = (2 * torch.randn(batch, width + 1, vocab, generator=generator, dtype=torch.float64)).to(dtype)
    answer_mask = torch.arange(width)[None, :] < torch.tensor([width, 2, 1][:batch])[:, None]
    answer_ids = torch.randint(0, vocab, (batch, width), generator=generator).masked_fill(~answer_mask, IGN)
    teacher_full = 2 * torch.randn(batch, width, vocab, generator=generator, dtype=torch.float64)
    return window, answer_ids, answer_mask, teacher_full, k


def teacher_side(teacher_full, k, spec: LossSpec):
    values, ids = teacher_full.topk(k, dim=-1)  # in the logits' dtype (top_k_logits would round float64)
    tail = tail_logsumexp(teacher_full, ids, spec.temperature) if spec.with_tail else None
    return values, ids, tail


def fused(window, answer_ids, answer_mask, teacher_full, k, spec, chunk_size=1024, with_teacher=True):
    """As distillation_loss_step calls it (seed alignment): teacher rows on window[:, 1:]."""
    targets, target_mask = F.pad(answer_ids, (0, 1), value=IGN), F.pad(answer_mask, (0, 1), value=False)
    if not with_teacher:
        return answer_window_losses(window, targets, target_mask, chunk_size=chunk_size)
    values, ids, tail = teacher_side(teacher_full, k, spec)
    return answer_window_losses(
        window, targets, target_mask, F.pad(ids, (0, 0, 1, 0)), F.pad(values, (0, 0, 1, 0)),
        F.pad(answer_mask, (1, 0), value=False), chunk_size=chunk_size, loss=spec,
        teacher_tail=None if tail is None else F.pad(tail, (1, 0)))


def unfused(window, answer_ids, answer_mask, teacher_full, k, spec):
    """Readable reference: masked CE on window[:, :-1] + masked mean of `reference_rows` on window[:, 1:]."""
    ce = masked_cross_entropy(window[:, :-1], answer_ids, answer_mask).to(window.dtype)
    _, ids = teacher_full.topk(k, dim=-1)
    rows = reference_rows(teacher_full[answer_mask], window[:, 1:][answer_mask], ids[answer_mask], spec)
    return ce, rows.sum() / answer_mask.sum()


def values_and_grad(loss_fn, window, *args, ce_weight=0.6, dist_weight=1.3, **kwargs):
    window = window.detach().clone().requires_grad_(True)
    ce, dist = loss_fn(window, *args, **kwargs)
    (ce_weight * ce + dist_weight * dist).backward()
    return ce.detach(), dist.detach(), window.grad


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_fused_equals_unfused_reference(spec):
    case = fused_case()
    ce, dist, grad = values_and_grad(fused, *case, spec, chunk_size=3)
    ref_ce, ref_dist, ref_grad = values_and_grad(unfused, *case, spec)
    assert float(dist) > 1e-2
    # masked_cross_entropy computes in float32 whatever the input: float32-level agreement on the CE part.
    torch.testing.assert_close(ce, ref_ce, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(dist, ref_dist, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.name == "mse" or s.temperature != 1.0],
                         ids=lambda s: f"{s.name}-T{s.temperature}-{s.topk_tail}")
def test_fused_gradcheck_float64(spec):
    window, answer_ids, answer_mask, teacher_full, _ = fused_case(batch=2, width=2, vocab=7)
    window.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: fused(x, answer_ids, answer_mask, teacher_full, 3, spec, chunk_size=2), (window,),
        eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_fused_chunk_size_does_not_matter(spec):
    case = fused_case()
    expected = values_and_grad(fused, *case, spec, chunk_size=10_000)
    for chunk_size in (1, 4):
        for got, want in zip(values_and_grad(fused, *case, spec, chunk_size=chunk_size), expected):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_fused_all_masked_gives_zero_and_zero_grads(spec):
    window, answer_ids, _, teacher_full, k = fused_case()
    nothing = torch.zeros(answer_ids.shape, dtype=torch.bool)
    ce, dist, grad = values_and_grad(fused, window, answer_ids.masked_fill(~nothing, IGN), nothing, teacher_full, k,
                                     spec)
    assert ce.item() == 0.0 and dist.item() == 0.0 and torch.all(grad == 0)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_fused_identical_teacher_gives_zero_distillation_and_its_gradient(spec):
    window, answer_ids, answer_mask, _, k = fused_case()
    teacher_full = window[:, 1:].clone()  # the teacher's logits are the student's own (seed rows)
    sft_ce, _, sft_grad = values_and_grad(fused, window, answer_ids, answer_mask, None, k, spec, with_teacher=False)
    ce, dist, grad = values_and_grad(fused, window, answer_ids, answer_mask, teacher_full, k, spec)
    assert abs(dist.item()) < 1e-14
    torch.testing.assert_close(ce, sft_ce, rtol=1e-14, atol=0.0)  # summed over more (zero-weight) rows
    torch.testing.assert_close(grad, sft_grad, rtol=0, atol=1e-14)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_fused_lambda_zero_gives_exactly_the_sft_gradients(spec):
    window, *rest = fused_case(dtype=torch.float32)
    sft_window = window.clone().requires_grad_(True)
    fused(sft_window, *rest, spec, with_teacher=False)[0].backward()
    distill_window = window.clone().requires_grad_(True)
    ce, dist = fused(distill_window, *rest, spec)
    (ce + 0.0 * dist).backward()
    assert dist.item() != 0.0
    assert torch.equal(distill_window.grad, sft_window.grad)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.temperature == 1.0], ids=lambda s: f"{s.name}-{s.topk_tail}")
def test_fused_bf16_logits_match_float32_of_the_same_values(spec):
    window, *rest = fused_case(dtype=torch.bfloat16)
    rest[2] = rest[2].float()
    ce, dist, grad = values_and_grad(fused, window, *rest, spec, chunk_size=2)
    ce32, dist32, grad32 = values_and_grad(fused, window.float(), *rest, spec, chunk_size=2)
    assert ce.dtype == dist.dtype == torch.float32 and grad.dtype == torch.bfloat16
    assert torch.equal(ce, ce32) and torch.equal(dist, dist32)
    torch.testing.assert_close(grad, grad32.bfloat16(), rtol=2 ** -7, atol=0.0)


def test_fused_bucket_keeps_only_the_logits_for_backward():
    window, answer_ids, answer_mask, teacher_full, k = fused_case(dtype=torch.bfloat16, vocab=64)
    window.requires_grad_(True)
    saved_vocab_bytes = saved_vocab_sized_bytes(
        lambda: fused(window, answer_ids, answer_mask, teacher_full.float(), k,
                      LossSpec("forward_kl", topk_tail="bucket")), window.size(-1))
    assert saved_vocab_bytes == [window.numel() * window.element_size()]


def load_golden_cases(path: Path) -> list[dict[str, torch.Tensor]]:
    """The golden JSON: per case, tensors as {dtype, shape, values}; float values are exact (float32 and
    bfloat16 numbers are exact in JSON's doubles)."""
    cases = []
    for case in json.loads(path.read_text()):
        tensors = {}
        for name, stored in case.items():
            dtype = getattr(torch, stored["dtype"])
            values = torch.tensor(stored["values"], dtype=torch.float64 if dtype.is_floating_point else torch.int64)
            tensors[name] = values.to(dtype).reshape(stored["shape"])
        cases.append(tensors)
    return cases


def test_mse_path_matches_the_pre_registry_kernel_within_ulps():
    """tests/losses/golden/mse_fused_golden.json: inputs and outputs of fewshot_distill/distillation.py at commit 4886e7d (before the
    registry), float32 and bf16 logits, chunk_size 2, loss 0.3 ce + 0.7 mse.

    Written on one CPU, so compared within 4 ulps (another CPU's summation order moved 5 of 555 float32
    gradient elements by one ulp); bit-equality is kept for comparisons inside one process."""
    for case in load_golden_cases(GOLDEN):
        window = case["window"].clone().requires_grad_(True)
        ce, dist = answer_window_losses(window, case["target_ids"], case["target_mask"], case["teacher_ids"],
                                          case["teacher_values"], case["distill_mask"], chunk_size=2)
        (0.3 * ce + 0.7 * dist).backward()
        assert_within_ulps(ce.detach(), case["ce"])
        assert_within_ulps(dist.detach(), case["dist"])
        assert_within_ulps(window.grad, case["grad"])


def test_ulps_apart_counts_units_in_the_last_place():
    one = torch.tensor([1.0, 1.0, 0.0, -3.0])
    eps = torch.finfo(torch.float32).eps
    moved = torch.tensor([1.0 + eps, 1.0 + 5 * eps, 0.0, -3.0 - 2 * (2 * eps)])
    assert ulps_apart(moved, one).tolist() == [1.0, 5.0, 0.0, 2.0]
    with pytest.raises(AssertionError, match="1 elements more than 4 ulps"):
        assert_within_ulps(moved, one)


def test_fused_rejects_a_missing_or_unexpected_tail():
    window, answer_ids, answer_mask, teacher_full, k = fused_case()
    values, ids = top_k_logits(teacher_full, k)
    args = (window, F.pad(answer_ids, (0, 1), value=IGN), F.pad(answer_mask, (0, 1), value=False),
            F.pad(ids, (0, 0, 1, 0)), F.pad(values, (0, 0, 1, 0)), F.pad(answer_mask, (1, 0), value=False))
    with pytest.raises(ValueError, match="tail log-sum-exp"):
        answer_window_losses(*args, loss=LossSpec("forward_kl", topk_tail="bucket"))
    with pytest.raises(ValueError, match="teacher_tail given"):
        answer_window_losses(*args, loss=LossSpec("forward_kl"), teacher_tail=torch.zeros(window.shape[:2]))
    with pytest.raises(ValueError, match="no tail"):
        tail_logsumexp(teacher_full, teacher_full.topk(teacher_full.size(-1), -1).indices, 1.0)


# --- configuration ------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (["distillation.loss=kl"], "distillation.loss must be one of"),
    (["distillation.loss=forward_kl", "distillation.temperature=0"], "temperature must be a finite number > 0"),
    (["distillation.loss=forward_kl", "distillation.temperature=-1.5"], "temperature must be a finite number > 0"),
    (["distillation.loss=forward_kl", "distillation.temperature=nan"], "temperature must be a finite number > 0"),
    (["distillation.loss=jsd", "distillation.jsd_beta=1.5"], r"jsd_beta must be in \[0, 1\]"),
    (["distillation.jsd_beta=-0.1"], r"jsd_beta must be in \[0, 1\]"),
    (["distillation.loss=forward_kl", "distillation.topk_tail=rest"], "topk_tail must be one of"),
    (["distillation.loss=forward_kl", "distillation.topk_tail=bucket", "distillation.n_top_logits=0"],
     "bucket needs teacher top-K ids"),
    (["distillation.temperature=2.0"], "does not apply to loss=mse"),
    (["distillation.topk_tail=bucket"], "does not apply to loss=mse"),
])
def test_bad_loss_settings_are_one_line_config_errors(overrides, message):
    base = REPO_ROOT / "configs" / "online_v1.yaml"
    with pytest.raises(ConfigError, match=message) as error:
        load_config(base, overrides)
    assert "\n" not in str(error.value)


def test_good_loss_settings_load_and_defaults_are_the_paper():
    base = REPO_ROOT / "configs" / "online_v1.yaml"
    assert (DistillationConfig().loss, DistillationConfig().temperature, DistillationConfig().topk_tail) == \
        ("mse", 1.0, "renormalize")
    cfg = load_config(base, ["distillation.loss=jsd", "distillation.temperature=2", "distillation.jsd_beta=1",
                             "distillation.topk_tail=bucket"])
    spec = LossSpec(cfg.distillation.loss, cfg.distillation.temperature, cfg.distillation.jsd_beta,
                    cfg.distillation.topk_tail)
    assert spec.with_tail and spec.temperature == 2.0
    with pytest.raises(ValueError, match="distillation.loss"):
        LossSpec("tvd")


# --- zero-shot teacher at the first step (tiny model) ---------------------------------------------

@pytest.fixture(scope="module")
def fresh_student_and_batch(tiny_model_dir, smoke_batch):
    from fewshot_distill.config import LoraConfig
    from fewshot_distill.models.student import AnswerWindowLM

    # B = 0 and the config's default dropout on, in train mode: dropout only feeds the B = 0 branch, so
    # the zero loss must hold with it on (lora_student has dropout 0).
    peft_model = build_lora_student(tiny_model_dir, seed=0, dropout=LoraConfig().dropout)
    peft_model.train()
    return AnswerWindowLM(peft_model), smoke_batch


ZERO_SHOT_CASES = [(LossSpec(name), "seed") for name in DIVERGENCES] + [
    (LossSpec("forward_kl", 2.0, 0.5, "bucket"), "seed"), (LossSpec("jsd", 2.0, 0.3, "bucket"), "predict"),
    (LossSpec("reverse_kl", 0.5, 0.5, "bucket"), "predict")]


@pytest.mark.parametrize("spec, alignment", ZERO_SHOT_CASES,
                         ids=[f"{s.name}-T{s.temperature}-b{s.jsd_beta}-{s.topk_tail}-{a}" for s, a in ZERO_SHOT_CASES])
def test_zero_shot_teacher_gives_zero_loss_at_the_first_step(fresh_student_and_batch, spec, alignment):
    """teacher_context=zeroshot: the teacher reads the student's own [question][answer] with the adapter
    disabled; LoRA B starts at 0, so the two are the same function and every loss is 0 at step 1."""
    from fewshot_distill.methods.distill import distillation_loss_step
    from fewshot_distill.teachers.base import AdapterDisabledTeacher

    student, batch = fresh_student_and_batch
    zeroshot = {**batch, "teacher_input_ids": batch["student_input_ids"],
                "teacher_attention_mask": batch["student_attention_mask"]}
    teacher = AdapterDisabledTeacher(student, 16, alignment, tail_temperature=spec.tail_temperature)
    terms = distillation_loss_step(student, zeroshot, teacher, 0.5, alignment, loss=spec)
    assert terms["ce_loss"].item() > 1.0
    assert abs(terms["dist_loss"].item()) < 1e-6
    # The student's own seed-vs-predict rows differ, so a nonzero loss is there to be seen had they not matched.
    other = "predict" if alignment == "seed" else "seed"
    mismatched = distillation_loss_step(student, zeroshot, AdapterDisabledTeacher(
        student, 16, other, tail_temperature=spec.tail_temperature), 0.5, alignment, loss=spec)
    assert mismatched["dist_loss"].item() > 1e-5
