"""Batched KV-cache generation (fewshot_distill/models/generation.py) on the tiny Qwen3 loaded through from_pretrained:
greedy ids equal transformers' `generate` and a step-by-step argmax loop without a cache; sampling is
reproducible from its generator; EOS and max_new_tokens end rows as reported."""

from __future__ import annotations

import pytest
import torch

from fewshot_distill.models.generation import generate_tokens, left_pad, next_token, prefill_attention_mask
from fewshot_distill.models.student import load_base_model, load_tokenizer
from tests.conftest import build_lora_student
from tests.helpers import sdpa_nan_for_keyless_rows

MAX_NEW = 12


@pytest.fixture(scope="module")
def model_and_prompts(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_base_model(str(tiny_model_dir), bf16=False).eval()
    torch.manual_seed(0)
    vocab = model.config.vocab_size
    # Three prompts of different lengths: two rows are left-padded.
    prompts = [torch.randint(10, vocab, (n,)).tolist() for n in (9, 4, 6)]
    return model, tokenizer, prompts


def manual_greedy(model, prompt: list[int], max_new: int, eos: set[int]) -> list[int]:
    """Argmax of a full forward over prompt + tokens so far, one token at a time (no cache, no padding)."""
    ids = list(prompt)
    new = []
    for _ in range(max_new):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        token = int(logits.argmax())
        new.append(token)
        ids.append(token)
        if token in eos:
            break
    return new


def test_greedy_equals_a_step_by_step_argmax_loop(model_and_prompts):
    model, tokenizer, prompts = model_and_prompts
    eos = {tokenizer.eos_token_id}
    out = generate_tokens(model, prompts, max_new_tokens=MAX_NEW, eos_ids=eos, pad_token_id=tokenizer.pad_token_id)
    for row, prompt in enumerate(prompts):
        assert out.token_ids[row] == manual_greedy(model, prompt, MAX_NEW, eos)


def test_greedy_equals_transformers_generate(model_and_prompts):
    model, tokenizer, prompts = model_and_prompts
    eos = {tokenizer.eos_token_id}
    out = generate_tokens(model, prompts, max_new_tokens=MAX_NEW, eos_ids=eos, pad_token_id=tokenizer.pad_token_id)
    input_ids, attention_mask = left_pad(prompts, tokenizer.pad_token_id)
    with torch.no_grad():
        reference = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=MAX_NEW,
                                   do_sample=False, temperature=None, top_p=None, top_k=None,
                                   pad_token_id=tokenizer.pad_token_id, eos_token_id=sorted(eos))
    for row in range(len(prompts)):
        expected = reference[row, input_ids.size(1):].tolist()
        assert out.token_ids[row] == expected[:len(out.token_ids[row])]
        assert len(out.token_ids[row]) == MAX_NEW or out.ended_with_eos[row]


def test_eos_ends_a_row_and_is_reported(model_and_prompts):
    model, tokenizer, prompts = model_and_prompts
    free = generate_tokens(model, prompts, max_new_tokens=MAX_NEW, eos_ids={tokenizer.eos_token_id},
                           pad_token_id=tokenizer.pad_token_id)
    # Declare row 0's third greedy token an EOS: row 0 stops there, the others run on unchanged
    # until they meet that id themselves.
    stop = free.token_ids[0][2]
    out = generate_tokens(model, prompts, max_new_tokens=MAX_NEW, eos_ids={tokenizer.eos_token_id, stop},
                          pad_token_id=tokenizer.pad_token_id)
    assert out.token_ids[0] == free.token_ids[0][:free.token_ids[0].index(stop) + 1]
    assert out.ended_with_eos[0]
    for row in (1, 2):
        ids = free.token_ids[row]
        cut = ids[:ids.index(stop) + 1] if stop in ids else ids
        assert out.token_ids[row] == cut
        assert out.ended_with_eos[row] == (stop in ids or free.ended_with_eos[row])


def test_sampling_is_reproducible_from_its_generator(model_and_prompts):
    model, tokenizer, prompts = model_and_prompts

    def sample(seed, **kwargs):
        return generate_tokens(model, prompts, max_new_tokens=MAX_NEW, eos_ids={tokenizer.eos_token_id},
                               pad_token_id=tokenizer.pad_token_id, temperature=1.5,
                               generator=torch.Generator().manual_seed(seed), **kwargs).token_ids

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    greedy = generate_tokens(model, prompts, max_new_tokens=MAX_NEW, eos_ids={tokenizer.eos_token_id},
                             pad_token_id=tokenizer.pad_token_id).token_ids
    assert sample(3, top_p=1e-6) == greedy  # top_p that keeps only the most likely id = greedy


def test_next_token_top_p_keeps_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    generator = torch.Generator().manual_seed(0)
    drawn = {int(next_token(logits, 1.0, 0.7, generator)) for _ in range(200)}
    assert drawn == {0, 1}  # 0.5 + 0.3 >= 0.7: ids 2 and 3 are never drawn
    assert int(next_token(logits)) == 0


def test_bad_arguments_are_one_line_errors(model_and_prompts):
    model, tokenizer, prompts = model_and_prompts
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_tokens(model, prompts, max_new_tokens=0, eos_ids={1}, pad_token_id=0)
    with pytest.raises(ValueError, match="empty prompt"):
        generate_tokens(model, [[]], max_new_tokens=2, eos_ids={1}, pad_token_id=0)


def test_a_prompt_longer_than_a_sliding_window_is_refused(tiny_model_dir, model_and_prompts):
    """The prefill mask is full causal: a sliding-window layer must not get a prompt past its window."""
    _, tokenizer, prompts = model_and_prompts
    model = load_base_model(str(tiny_model_dir), bf16=False).eval()  # a copy: its config is changed below
    model.config.layer_types = ["sliding_attention"] * model.config.num_hidden_layers
    model.config.sliding_window = 8
    with pytest.raises(ValueError, match="exceeds the model's sliding window"):
        generate_tokens(model, prompts, max_new_tokens=2, eos_ids={1}, pad_token_id=tokenizer.pad_token_id)


def test_greedy_through_a_peft_adapter_equals_the_argmax_loop(tiny_model_dir, model_and_prompts):
    """The student (LoRA on, nonzero B) generates through peft exactly as step-by-step argmax."""
    _, tokenizer, prompts = model_and_prompts
    # B large enough that the adapter changes the greedy ids
    peft_model = build_lora_student(tiny_model_dir, lora_b_std=0.5).eval()
    eos = {tokenizer.eos_token_id}
    out = generate_tokens(peft_model, prompts, max_new_tokens=6, eos_ids=eos, pad_token_id=tokenizer.pad_token_id)
    for row, prompt in enumerate(prompts):
        assert out.token_ids[row] == manual_greedy(peft_model, prompt, 6, eos)
    with peft_model.disable_adapter():
        base = generate_tokens(peft_model, prompts, max_new_tokens=6, eos_ids=eos,
                               pad_token_id=tokenizer.pad_token_id)
    assert base.token_ids != out.token_ids  # the adapter changed what is generated


def test_keyless_query_rows_cannot_reach_a_left_padded_row(tiny_model_dir, model_and_prompts):
    """Under an SDPA that returns NaN for query rows with no visible key (cuDNN on Hopper is reported
    to), every row of a left-padded batch still generates exactly what it generates alone, greedy and
    sampled, through the base model and through peft."""
    model, tokenizer, prompts = model_and_prompts
    peft_model = build_lora_student(tiny_model_dir, lora_b_std=0.5).eval()
    eos = {tokenizer.eos_token_id}
    for lm in (model, peft_model):
        for temperature in (0.0, 1.5):
            def generate(rows):
                generators = [torch.Generator().manual_seed(100 + row) for row in rows]
                return generate_tokens(lm, [prompts[row] for row in rows], max_new_tokens=MAX_NEW, eos_ids=eos,
                                       pad_token_id=tokenizer.pad_token_id, temperature=temperature,
                                       generator=generators).token_ids

            with sdpa_nan_for_keyless_rows():
                batched = generate(range(len(prompts)))
                alone = [generate([row])[0] for row in range(len(prompts))]
            assert batched == alone, f"temperature {temperature}"


def test_prefill_mask_lets_a_pad_query_see_only_itself():
    padding = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    mask = prefill_attention_mask(padding, "sdpa", torch.float32)
    expected_row0 = torch.tensor([[1, 0, 0, 0],   # pads: themselves only
                                  [0, 1, 0, 0],
                                  [0, 0, 1, 0],   # real tokens: causal over real keys, never a pad
                                  [0, 0, 1, 1]], dtype=torch.bool)
    assert mask.shape == (2, 1, 4, 4) and mask.dtype == torch.bool
    assert torch.equal(mask[0, 0], expected_row0)
    assert torch.equal(mask[1, 0], torch.ones(4, 4, dtype=torch.bool).tril())
    additive = prefill_attention_mask(padding, "eager", torch.bfloat16)
    assert additive.dtype == torch.bfloat16
    assert torch.equal(additive == 0, mask)
    assert bool((additive[~mask] == torch.finfo(torch.bfloat16).min).all())
    assert prefill_attention_mask(padding, "flash_attention_2", torch.float32) is padding


def test_eager_attention_generates_what_sdpa_does(tiny_model_dir, model_and_prompts):
    """The additive prefill mask eager attention reads gives the same greedy ids as sdpa's boolean one."""
    model, tokenizer, prompts = model_and_prompts
    eager = load_base_model(str(tiny_model_dir), bf16=False, attn_implementation="eager").eval()
    kwargs = dict(max_new_tokens=MAX_NEW, eos_ids={tokenizer.eos_token_id}, pad_token_id=tokenizer.pad_token_id)
    assert generate_tokens(eager, prompts, **kwargs).token_ids == generate_tokens(model, prompts, **kwargs).token_ids


def test_checking_for_finished_rows_less_often_gives_the_same_tokens(model_and_prompts):
    """The all-rows-ended check (a host sync on an accelerator) every 1, 5 or 16 tokens: the same ids and
    EOS flags, greedy and sampled with one generator per row, with rows ending at different tokens."""
    model, tokenizer, prompts = model_and_prompts
    free = generate_tokens(model, prompts, max_new_tokens=MAX_NEW, eos_ids={tokenizer.eos_token_id},
                           pad_token_id=tokenizer.pad_token_id)
    eos = {tokenizer.eos_token_id, free.token_ids[0][1], free.token_ids[2][3]}  # rows end early, apart
    for temperature in (0.0, 1.0):
        results = []
        for every in (1, 5, 16):
            generators = [torch.Generator().manual_seed(row) for row in range(len(prompts))]
            out = generate_tokens(model, prompts, max_new_tokens=MAX_NEW, eos_ids=eos,
                                  pad_token_id=tokenizer.pad_token_id, temperature=temperature,
                                  generator=generators, finished_check_every=every)
            results.append((out.token_ids, out.ended_with_eos))
        assert results[0] == results[1] == results[2]
    assert any(len(ids) < MAX_NEW for ids in results[0][0])
