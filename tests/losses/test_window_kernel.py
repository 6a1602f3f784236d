"""Alignment and loss functions on small hand-made tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from fewshot_distill.data.prompts import AlignmentError
from fewshot_distill.constants import IGNORE_INDEX
from fewshot_distill.losses.alignment import ALIGNMENTS, answer_spans_from_labels, check_aligned_token_ids, student_answer_window, teacher_answer_positions
from fewshot_distill.losses.divergences import top_k_logits
from fewshot_distill.losses.reference import gather_vocab, masked_cross_entropy, masked_mse
from fewshot_distill.losses.window_kernel import answer_window_losses
from tests.helpers import saved_vocab_sized_bytes

IGN = IGNORE_INDEX


def labels_for(rows):
    """rows: list of (prompt_len, answer_ids, pad) -> labels tensor."""
    width = max(p + len(a) + pad for p, a, pad in rows)
    out = torch.full((len(rows), width), IGN)
    for i, (p, a, _) in enumerate(rows):
        out[i, p:p + len(a)] = torch.tensor(a)
    return out


def test_answer_spans_from_labels():
    labels = labels_for([(3, [7, 8], 2), (1, [5, 6, 9, 4], 0)])
    start, n = answer_spans_from_labels(labels)
    assert start.tolist() == [3, 1] and n.tolist() == [2, 4]


def test_answer_spans_reject_empty_and_gapped_spans():
    with pytest.raises(AlignmentError, match="no supervised"):
        answer_spans_from_labels(torch.full((1, 4), IGN))
    gapped = torch.tensor([[IGN, 5, IGN, 6]])
    with pytest.raises(AlignmentError, match="contiguous"):
        answer_spans_from_labels(gapped)


def test_student_answer_window_positions_mask_and_ids():
    labels = labels_for([(3, [7, 8], 2), (1, [5, 6, 9, 4], 0)])
    positions, mask, ids = student_answer_window(labels)
    # window starts one before the answer and spans A + 1 = 5 positions (masked ones clamp to the start)
    assert positions.tolist() == [[2, 3, 4, 2, 2], [0, 1, 2, 3, 4]]
    assert mask.tolist() == [[True, True, False, False], [True, True, True, True]]
    assert ids.tolist() == [[7, 8, IGN, IGN], [5, 6, 9, 4]]


def test_teacher_positions_seed_and_predict():
    lengths, n = torch.tensor([10, 6]), torch.tensor([2, 4])
    assert teacher_answer_positions(lengths, n, 4, "seed").tolist() == [[8, 9, 8, 8], [2, 3, 4, 5]]
    assert teacher_answer_positions(lengths, n, 4, "predict").tolist() == [[7, 8, 7, 7], [1, 2, 3, 4]]
    with pytest.raises(ValueError):
        teacher_answer_positions(lengths, n, 4, "middle")


def test_check_aligned_token_ids_accepts_matching_and_names_mismatching_examples():
    teacher = torch.tensor([[1, 2, 3, 7, 8, 0, 0], [1, 5, 6, 9, 4, 0, 0]])
    lengths = torch.tensor([5, 5])
    ids = torch.tensor([[7, 8, IGN, IGN], [5, 6, 9, 4]])
    mask = ids != IGN
    check_aligned_token_ids(teacher, lengths, ids, mask)
    changed = torch.tensor([[1, 2, 3, 7, 8, 0, 0], [1, 5, 6, 9, 3, 0, 0]])  # row 1's last token differs
    with pytest.raises(AlignmentError, match=r"examples \[42\]"):
        check_aligned_token_ids(changed, lengths, ids, mask, torch.tensor([41, 42]))
    no_prompt = torch.tensor([[1, 2, 3, 7, 8, 0, 0], [5, 6, 9, 4, 0, 0, 0]])  # row 1 lost its prompt
    with pytest.raises(AlignmentError, match="shorter than its student answer"):
        check_aligned_token_ids(no_prompt, torch.tensor([5, 4]), ids, mask)
    off_by_one = torch.tensor([[1, 2, 3, 7, 8, 0, 0], [1, 5, 6, 9, 4, 0, 0]])
    with pytest.raises(AlignmentError):
        check_aligned_token_ids(off_by_one, torch.tensor([5, 6]), ids, mask)


def test_top_k_and_gather_vocab():
    logits = torch.tensor([[[0.1, 3.0, -1.0, 2.0]]])
    values, ids = top_k_logits(logits, 2)
    assert ids.tolist() == [[[1, 3]]] and values.tolist() == [[[3.0, 2.0]]]
    student = torch.tensor([[[10.0, 11.0, 12.0, 13.0]]])
    assert gather_vocab(student, ids).tolist() == [[[11.0, 13.0]]]
    with pytest.raises(ValueError, match="exceeds the vocabulary"):
        top_k_logits(logits, 5)


def test_masked_mse_hand_computed_and_padding_ignored():
    teacher = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[3.0, 3.0], [9.0, 9.0]]])
    student = torch.tensor([[[2.0, 4.0], [5.0, 5.0]], [[3.0, 1.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, False], [True, False]])
    # position (0,0): ((1)^2 + (2)^2)/2 = 2.5 ; position (1,0): (0 + 4)/2 = 2 ; mean = 2.25
    assert masked_mse(teacher, student, mask).item() == pytest.approx(2.25)
    # changing masked positions changes nothing
    student[0, 1] = 1e6
    teacher[1, 1] = -1e6
    assert masked_mse(teacher, student, mask).item() == pytest.approx(2.25)


def test_masked_mse_zero_for_identical_and_all_masked():
    x = torch.randn(2, 3, 4)
    assert masked_mse(x, x.clone(), torch.ones(2, 3, dtype=torch.bool)).item() == 0.0
    student = torch.randn(2, 3, 4, requires_grad=True)
    loss = masked_mse(x, student, torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(student.grad == 0)


def test_masked_cross_entropy_hand_computed():
    logits = torch.tensor([[[0.0, math.log(3.0)], [5.0, 5.0]], [[2.0, 2.0], [0.0, 0.0]]])
    targets = torch.tensor([[1, 0], [0, IGN]])
    mask = targets != IGN
    # row0 pos0: p(1) = 3/4 -> -log .75 ; row0 pos1: p = 1/2 ; row1 pos0: p = 1/2
    expected = (-math.log(0.75) + 2 * math.log(2.0)) / 3
    assert masked_cross_entropy(logits, targets, mask).item() == pytest.approx(expected, rel=1e-6)
    # equals F.cross_entropy with ignore_index, also when chunked
    reference = F.cross_entropy(logits.reshape(-1, 2), targets.reshape(-1), ignore_index=IGN)
    assert masked_cross_entropy(logits, targets, mask, chunk_size=1).item() == pytest.approx(reference.item())


def test_masked_cross_entropy_bf16_matches_float32():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 50).bfloat16()
    targets = torch.randint(0, 50, (2, 5))
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    got = masked_cross_entropy(logits, targets, mask, chunk_size=3)
    assert got.dtype == torch.float32
    expected = F.cross_entropy(logits.float()[mask], targets[mask])
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_lambda_zero_gives_exactly_the_sft_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(2, 4, 8)
    head = torch.nn.Linear(8, 20)
    targets = torch.randint(0, 20, (2, 4))
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    teacher_values, teacher_ids = top_k_logits(torch.randn(2, 4, 20), 5)

    def grads(total_fn):
        head.zero_grad()
        total_fn(head(hidden)).backward()
        return [p.grad.clone() for p in head.parameters()]

    sft = grads(lambda logits: masked_cross_entropy(logits, targets, mask))
    distill = grads(lambda logits: masked_cross_entropy(logits, targets, mask)
                    + 0.0 * masked_mse(teacher_values, gather_vocab(logits, teacher_ids), mask))
    for a, b in zip(sft, distill):
        assert torch.equal(a, b)


# --- answer_window_losses: the fused CE + MSE must equal the unfused composition above ----------

def window_case(dtype, seed=0, batch=3, width=4, vocab=37, k=5):
    """Random window logits [B, A + 1, V], answer ids / mask [B, A] (ragged), teacher top-K [B, A, K]."""
    generator = torch.Generator().manual_seed(seed)
    window = (3 * torch.randn(batch, width + 1, vocab, generator=generator)).to(dtype)
    answer_mask = torch.arange(width)[None, :] < torch.tensor([width, 2, 1][:batch])[:, None]
    answer_ids = torch.randint(0, vocab, (batch, width), generator=generator).masked_fill(~answer_mask, IGN)
    teacher_values, teacher_ids = top_k_logits(3 * torch.randn(batch, width, vocab, generator=generator), k)
    return window, answer_ids, answer_mask, teacher_ids, teacher_values


def unfused_losses(window, answer_ids, answer_mask, teacher_ids, teacher_values, alignment):
    """The readable reference: CE on window[:, :-1], MSE on window[:, 1:] (seed) or window[:, :-1]."""
    shift = 1 if alignment == "seed" else 0
    ce = masked_cross_entropy(window[:, :-1], answer_ids, answer_mask)
    student_values = gather_vocab(window[:, shift: shift + answer_ids.size(1)], teacher_ids)
    return ce, masked_mse(teacher_values, student_values, answer_mask)


def fused_losses(window, answer_ids, answer_mask, teacher_ids, teacher_values, alignment, chunk_size=1024):
    """answer_window_losses with everything padded onto the window rows, as the training step does."""
    shift = 1 if alignment == "seed" else 0
    return answer_window_losses(
        window, F.pad(answer_ids, (0, 1), value=IGN), F.pad(answer_mask, (0, 1), value=False),
        teacher_ids=F.pad(teacher_ids, (0, 0, shift, 1 - shift)),
        teacher_values=F.pad(teacher_values, (0, 0, shift, 1 - shift)),
        distill_mask=F.pad(answer_mask, (shift, 1 - shift), value=False), chunk_size=chunk_size)


def values_and_grads(loss_fn, window, *args, ce_weight=1.0, mse_weight=0.7):
    """(ce, mse, d(ce_weight * ce + mse_weight * mse) / d window)."""
    window = window.detach().clone().requires_grad_(True)
    ce, mse = loss_fn(window, *args)
    (ce_weight * ce + mse_weight * mse).backward()
    return ce.detach(), mse.detach(), window.grad


@pytest.mark.parametrize("alignment", ALIGNMENTS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_answer_window_losses_equal_unfused_values_and_grads(alignment, dtype):
    case = window_case(dtype)
    ce, mse, grad = values_and_grads(fused_losses, *case, alignment)
    ref_ce, ref_mse, ref_grad = values_and_grads(unfused_losses, *case, alignment)
    assert float(mse) > 1.0 and grad.dtype == dtype
    # The reference computes in float32 whatever the input dtype: float32-level agreement.
    torch.testing.assert_close(ce, ref_ce.to(ce.dtype), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(mse, ref_mse.to(mse.dtype), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_answer_window_losses_bf16_logits(alignment):
    case = window_case(torch.bfloat16)
    ce, mse, grad = values_and_grads(fused_losses, *case, alignment)
    ref_ce, ref_mse, ref_grad = values_and_grads(unfused_losses, *case, alignment)
    assert ce.dtype == mse.dtype == torch.float32 and grad.dtype == torch.bfloat16
    # Values: both upcast the same bf16 logits to float32.
    torch.testing.assert_close(ce, ref_ce, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(mse, ref_mse, rtol=1e-6, atol=1e-6)
    # Gradients: the reference rounds the CE and MSE parts to bf16 separately and adds them in bf16;
    # ours adds in float32 and rounds once. They differ by a few bf16 ulps of the largest entry.
    scale = ref_grad.float().abs().max()
    torch.testing.assert_close(grad.float(), ref_grad.float(), rtol=2 ** -6, atol=float(scale) * 2 ** -7)
    # ... and ours is the float32 gradient of the same bf16 logits rounded once.
    _, _, exact_grad = values_and_grads(fused_losses, case[0].float(), *case[1:], alignment)
    torch.testing.assert_close(grad, exact_grad.bfloat16(), rtol=2 ** -7, atol=0.0)


@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_answer_window_losses_gradcheck_float64(alignment):
    window, *rest = window_case(torch.float64, batch=2, width=3, vocab=7, k=3)
    window.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: fused_losses(x, *rest, alignment, chunk_size=2), (window,), eps=1e-6, atol=1e-8)


def test_answer_window_losses_chunk_size_does_not_matter():
    case = window_case(torch.float64)
    expected = values_and_grads(fused_losses, *case, "seed", 10_000)
    for chunk_size in (1, 3):
        got = values_and_grads(fused_losses, *case, "seed", chunk_size)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_answer_window_losses_all_masked_give_zero_and_zero_grads():
    window, answer_ids, answer_mask, teacher_ids, teacher_values = window_case(torch.float32)
    nothing = torch.zeros_like(answer_mask)
    ce, mse, grad = values_and_grads(
        fused_losses, window, answer_ids.masked_fill(~nothing, IGN), nothing, teacher_ids, teacher_values,
        "seed")
    assert ce.item() == 0.0 and mse.item() == 0.0 and torch.all(grad == 0)
    # MSE masked out, CE not: the MSE is 0 and contributes no gradient.
    window.requires_grad_(True)
    _, mse = answer_window_losses(window, F.pad(answer_ids, (0, 1), value=IGN),
                                    F.pad(answer_mask, (0, 1), value=False),
                                    F.pad(teacher_ids, (0, 0, 1, 0)), F.pad(teacher_values, (0, 0, 1, 0)),
                                    torch.zeros(window.shape[:2], dtype=torch.bool))
    mse.backward()
    assert mse.item() == 0.0 and torch.all(window.grad == 0)


def test_answer_window_losses_ignore_padding_rows():
    window, answer_ids, answer_mask, teacher_ids, teacher_values = window_case(torch.float32)
    args = (answer_ids, answer_mask, teacher_ids, teacher_values, "predict")
    used = F.pad(answer_mask, (0, 1), value=False)  # predict: the CE and MSE rows are the same
    ce, mse, grad = values_and_grads(fused_losses, window, *args)
    assert torch.all(grad[~used] == 0) and torch.all(grad[used].abs().sum(-1) > 0)
    changed = window.clone()
    changed[~used] = 1e4 * torch.randn_like(changed[~used])
    ce2, mse2, grad2 = values_and_grads(fused_losses, changed, *args)
    assert torch.equal(ce, ce2) and torch.equal(mse, mse2) and torch.equal(grad, grad2)


def test_answer_window_losses_hand_computed():
    # One example, A = 1: window row 0 predicts the answer token, row 1 holds it (seed MSE row).
    window = torch.tensor([[[0.0, math.log(2.0), 0.0], [1.0, 2.0, 3.0]]], requires_grad=True)
    answer_ids, answer_mask = torch.tensor([[1]]), torch.tensor([[True]])
    teacher_ids, teacher_values = torch.tensor([[[2, 0]]]), torch.tensor([[[2.5, 1.0]]])
    ce, mse = fused_losses(window, answer_ids, answer_mask, teacher_ids, teacher_values, "seed")
    # softmax(row 0) = [1/4, 1/2, 1/4] -> ce = log 2; row 1 at ids [2, 0] = [3, 1] -> ((0.5)^2 + 0^2) / 2
    assert ce.item() == pytest.approx(math.log(2.0)) and mse.item() == pytest.approx(0.125)
    (ce + mse).backward()
    # d ce = softmax - onehot on row 0; d mse = 2 (s - t) / K at the teacher ids on row 1.
    expected = torch.tensor([[[0.25, -0.5, 0.25], [0.0, 0.0, 0.5]]])
    torch.testing.assert_close(window.grad, expected)
    # predict: the MSE is on row 0, whose logits at ids [2, 0] are [0, 0] -> (2.5^2 + 1^2) / 2
    _, mse = fused_losses(window, answer_ids, answer_mask, teacher_ids, teacher_values, "predict")
    assert mse.item() == pytest.approx(3.625)


def test_answer_window_losses_without_teacher_is_the_sft_cross_entropy():
    window, answer_ids, answer_mask, _, _ = window_case(torch.float32)

    def sft_only(x, ids, mask):
        return answer_window_losses(x, F.pad(ids, (0, 1), value=IGN), F.pad(mask, (0, 1), value=False),
                                      chunk_size=2)

    ce, mse, grad = values_and_grads(sft_only, window, answer_ids, answer_mask)
    ref_ce = masked_cross_entropy(window[:, :-1], answer_ids, answer_mask)
    window_ref = window.clone().requires_grad_(True)
    masked_cross_entropy(window_ref[:, :-1], answer_ids, answer_mask).backward()
    assert mse.item() == 0.0
    torch.testing.assert_close(ce, ref_ce, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad, window_ref.grad, rtol=1e-5, atol=1e-7)


def test_answer_window_losses_keep_only_the_logits_for_backward():
    # Memory: the unfused graph saves a float32 copy of the used rows; ours only the bf16 logits.
    window, *rest = window_case(torch.bfloat16, vocab=64)
    window.requires_grad_(True)
    saved_vocab_bytes = saved_vocab_sized_bytes(lambda: fused_losses(window, *rest, "seed"), window.size(-1))
    assert saved_vocab_bytes == [window.numel() * window.element_size()]


def test_answer_window_losses_reject_inconsistent_inputs():
    window, answer_ids, answer_mask, teacher_ids, teacher_values = window_case(torch.float32)
    targets, target_mask = F.pad(answer_ids, (0, 1), value=IGN), F.pad(answer_mask, (0, 1), value=False)
    with pytest.raises(ValueError, match="window rows"):
        answer_window_losses(window, answer_ids, answer_mask)  # not placed on the window
    with pytest.raises(ValueError, match="distill_mask"):
        answer_window_losses(window, targets, target_mask, F.pad(teacher_ids, (0, 0, 1, 0)),
                               F.pad(teacher_values, (0, 0, 1, 0)))
