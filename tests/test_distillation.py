"""Alignment and loss functions on small hand-made tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from src import distillation as D
from src.data.prompts import AlignmentError

IGN = D.IGNORE_INDEX


def labels_for(rows):
    """rows: list of (prompt_len, answer_ids, pad) -> labels tensor."""
    width = max(p + len(a) + pad for p, a, pad in rows)
    out = torch.full((len(rows), width), IGN)
    for i, (p, a, _) in enumerate(rows):
        out[i, p:p + len(a)] = torch.tensor(a)
    return out


def test_answer_spans_from_labels():
    labels = labels_for([(3, [7, 8], 2), (1, [5, 6, 9, 4], 0)])
    start, n = D.answer_spans_from_labels(labels)
    assert start.tolist() == [3, 1] and n.tolist() == [2, 4]


def test_answer_spans_reject_empty_and_gapped_spans():
    with pytest.raises(AlignmentError, match="no supervised"):
        D.answer_spans_from_labels(torch.full((1, 4), IGN))
    gapped = torch.tensor([[IGN, 5, IGN, 6]])
    with pytest.raises(AlignmentError, match="contiguous"):
        D.answer_spans_from_labels(gapped)


def test_student_answer_window_positions_mask_and_ids():
    labels = labels_for([(3, [7, 8], 2), (1, [5, 6, 9, 4], 0)])
    positions, mask, ids = D.student_answer_window(labels)
    # window starts one before the answer and spans A + 1 = 5 positions (masked ones clamp to the start)
    assert positions.tolist() == [[2, 3, 4, 2, 2], [0, 1, 2, 3, 4]]
    assert mask.tolist() == [[True, True, False, False], [True, True, True, True]]
    assert ids.tolist() == [[7, 8, IGN, IGN], [5, 6, 9, 4]]


def test_teacher_positions_seed_and_predict():
    lengths, n = torch.tensor([10, 6]), torch.tensor([2, 4])
    assert D.teacher_answer_positions(lengths, n, 4, "seed").tolist() == [[8, 9, 8, 8], [2, 3, 4, 5]]
    assert D.teacher_answer_positions(lengths, n, 4, "predict").tolist() == [[7, 8, 7, 7], [1, 2, 3, 4]]
    with pytest.raises(ValueError):
        D.teacher_answer_positions(lengths, n, 4, "middle")


def test_check_aligned_token_ids_accepts_matching_and_names_mismatching_examples():
    teacher = torch.tensor([[1, 2, 3, 7, 8, 0, 0], [1, 5, 6, 9, 4, 0, 0]])
    lengths = torch.tensor([5, 5])
    ids = torch.tensor([[7, 8, IGN, IGN], [5, 6, 9, 4]])
    mask = ids != IGN
    D.check_aligned_token_ids(teacher, lengths, ids, mask)
    changed = torch.tensor([[1, 2, 3, 7, 8, 0, 0], [1, 5, 6, 9, 3, 0, 0]])  # row 1's last token differs
    with pytest.raises(AlignmentError, match=r"examples \[42\]"):
        D.check_aligned_token_ids(changed, lengths, ids, mask, torch.tensor([41, 42]))
    no_prompt = torch.tensor([[1, 2, 3, 7, 8, 0, 0], [5, 6, 9, 4, 0, 0, 0]])  # row 1 lost its prompt
    with pytest.raises(AlignmentError, match="shorter than its student answer"):
        D.check_aligned_token_ids(no_prompt, torch.tensor([5, 4]), ids, mask)
    off_by_one = torch.tensor([[1, 2, 3, 7, 8, 0, 0], [1, 5, 6, 9, 4, 0, 0]])
    with pytest.raises(AlignmentError):
        D.check_aligned_token_ids(off_by_one, torch.tensor([5, 6]), ids, mask)


def test_top_k_and_gather_vocab():
    logits = torch.tensor([[[0.1, 3.0, -1.0, 2.0]]])
    values, ids = D.top_k_logits(logits, 2)
    assert ids.tolist() == [[[1, 3]]] and values.tolist() == [[[3.0, 2.0]]]
    student = torch.tensor([[[10.0, 11.0, 12.0, 13.0]]])
    assert D.gather_vocab(student, ids).tolist() == [[[11.0, 13.0]]]
    with pytest.raises(ValueError, match="exceeds the vocabulary"):
        D.top_k_logits(logits, 5)


def test_masked_mse_hand_computed_and_padding_ignored():
    teacher = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[3.0, 3.0], [9.0, 9.0]]])
    student = torch.tensor([[[2.0, 4.0], [5.0, 5.0]], [[3.0, 1.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, False], [True, False]])
    # position (0,0): ((1)^2 + (2)^2)/2 = 2.5 ; position (1,0): (0 + 4)/2 = 2 ; mean = 2.25
    assert D.masked_mse(teacher, student, mask).item() == pytest.approx(2.25)
    # changing masked positions changes nothing
    student[0, 1] = 1e6
    teacher[1, 1] = -1e6
    assert D.masked_mse(teacher, student, mask).item() == pytest.approx(2.25)


def test_masked_mse_zero_for_identical_and_all_masked():
    x = torch.randn(2, 3, 4)
    assert D.masked_mse(x, x.clone(), torch.ones(2, 3, dtype=torch.bool)).item() == 0.0
    student = torch.randn(2, 3, 4, requires_grad=True)
    loss = D.masked_mse(x, student, torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(student.grad == 0)


def test_masked_cross_entropy_hand_computed():
    logits = torch.tensor([[[0.0, math.log(3.0)], [5.0, 5.0]], [[2.0, 2.0], [0.0, 0.0]]])
    targets = torch.tensor([[1, 0], [0, IGN]])
    mask = targets != IGN
    # row0 pos0: p(1) = 3/4 -> -log .75 ; row0 pos1: p = 1/2 ; row1 pos0: p = 1/2
    expected = (-math.log(0.75) + 2 * math.log(2.0)) / 3
    assert D.masked_cross_entropy(logits, targets, mask).item() == pytest.approx(expected, rel=1e-6)
    # equals F.cross_entropy with ignore_index, also when chunked
    reference = F.cross_entropy(logits.reshape(-1, 2), targets.reshape(-1), ignore_index=IGN)
    assert D.masked_cross_entropy(logits, targets, mask, chunk_size=1).item() == pytest.approx(reference.item())


def test_masked_cross_entropy_bf16_matches_float32():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 50).bfloat16()
    targets = torch.randint(0, 50, (2, 5))
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    got = D.masked_cross_entropy(logits, targets, mask, chunk_size=3)
    assert got.dtype == torch.float32
    expected = F.cross_entropy(logits.float()[mask], targets[mask])
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_distillation_loss_combines_terms():
    ce, mse = torch.tensor(2.0), torch.tensor(0.3)
    assert D.distillation_loss(ce, mse, 0.5).item() == pytest.approx(2.15)


def test_lambda_zero_gives_exactly_the_sft_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(2, 4, 8)
    head = torch.nn.Linear(8, 20)
    targets = torch.randint(0, 20, (2, 4))
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    teacher_values, teacher_ids = D.top_k_logits(torch.randn(2, 4, 20), 5)

    def grads(total_fn):
        head.zero_grad()
        total_fn(head(hidden)).backward()
        return [p.grad.clone() for p in head.parameters()]

    sft = grads(lambda logits: D.masked_cross_entropy(logits, targets, mask))
    distill = grads(lambda logits: D.distillation_loss(
        D.masked_cross_entropy(logits, targets, mask),
        D.masked_mse(teacher_values, D.gather_vocab(logits, teacher_ids), mask), 0.0))
    for a, b in zip(sft, distill):
        assert torch.equal(a, b)
