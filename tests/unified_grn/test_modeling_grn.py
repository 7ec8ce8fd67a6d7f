"""GRNForConditionalGeneration on GRN-tiny: shapes, the Alg. 2 loss, attention paths, bad input."""

from __future__ import annotations

import pytest
import torch

from unified_grn import (
    AutoModelForGRN,
    GRNCollator,
    GRNConfig,
    GRNSample,
    TextSegment,
    VisualSegment,
)
from unified_grn.attention_masks import build_visibility, prefix_visual_mask, to_additive_mask
from unified_grn.objective import block_mean, block_mean_cross_entropy, slot_cross_entropy
from unified_grn.objective import round_weighted as objective_round_weighted
from unified_grn.utils.import_utils import is_flex_attention_available

C, M = 16, 4  # hbq-tiny


def tiny(variant: str = "bit", family: str = "llama", attn: str = "sdpa", seed: int = 0):
    torch.manual_seed(seed)
    config = GRNConfig.from_preset("GRN-tiny", variant=variant, text_config={"model_type": family})
    return AutoModelForGRN.from_config(config, attn_implementation=attn)


def bits(*grid: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (*grid, C, M), generator=g, dtype=torch.uint8)


def collate(model, samples, drop: float = 0.0, seed: int = 0):
    return GRNCollator.from_model(model, condition_drop_prob=drop, seed=seed)(samples)


def mixed_samples(model) -> list[GRNSample]:
    return [
        GRNSample.text_to_image("two red circles", bits(1, 2, 2, seed=1)),
        GRNSample.text_to_video("a square moving right", bits(2, 2, 2, seed=2)),
        GRNSample.class_to_image(3, bits(1, 2, 2, seed=3), model.vocab),
        GRNSample.text_only("hello there", model.text_tokenizer.eos_token_id),
    ]


def fixed_inputs(batch, seed: int = 5):
    """Noisy codes for target blocks, clean codes for context blocks, and p_t per block."""
    g = torch.Generator().manual_seed(seed)
    noisy = torch.randint(0, 2, batch.visual_codes.shape, generator=g, dtype=torch.uint8)
    block = batch.block_ids[batch.block_ids > 0] - 1
    target = batch.block_is_target[block][:, None, None]
    inputs = torch.where(target, noisy, batch.visual_codes)
    pt = torch.where(batch.block_is_target, torch.rand(batch.block_grid.shape[0], generator=g), torch.ones(1))
    return inputs, pt


@pytest.mark.parametrize("variant,classes,slots", [("bit", 2, C * M), ("ind", 16, C)])
def test_forward_shapes_on_a_mixed_batch(variant, classes, slots):
    model = tiny(variant)
    batch = collate(model, mixed_samples(model))
    out = model(**batch.as_dict(), generator=torch.Generator().manual_seed(0))
    assert out.visual_logits.shape == (4 + 8 + 4, slots, classes)
    assert out.visual_targets.shape == (16, slots)
    num_text = int((batch.text_targets != -100).sum())
    assert out.text_logits.shape == (num_text, model.config.text_config.vocab_size)
    assert out.kept_fraction.shape == (3,) and bool(
        ((out.kept_fraction >= 0) & (out.kept_fraction <= 1)).all()
    )
    assert torch.allclose(out.loss, out.visual_loss + out.text_loss)
    assert batch.input_ids.shape == batch.block_ids.shape == batch.position_ids.shape


@pytest.mark.parametrize("variant", ["bit", "ind"])
def test_overfits_a_fixed_tiny_batch(variant):
    model = tiny(variant).train()
    batch = collate(
        model, [GRNSample.text_to_image(p, bits(1, 2, 2, seed=i)) for i, p in enumerate(["red", "blue"])]
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(80):
        out = model(**batch.as_dict(), generator=torch.Generator().manual_seed(0))  # fixed p_t and noise
        losses.append(out.loss.item())
        if losses[-1] <= 0.1 * losses[0]:
            break
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert losses[-1] <= 0.1 * losses[0], losses[::10]


def test_focal_gamma_changes_the_training_term_only():
    """visual_loss stays Eq. 7 (comparable across runs); loss trains on the focal-weighted term."""
    model = tiny()
    batch = collate(model, mixed_samples(model))
    plain = model(**batch.as_dict(), generator=torch.Generator().manual_seed(0))
    model.config.visual_focal_gamma = 2.0
    focal = model(**batch.as_dict(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(focal.visual_loss, plain.visual_loss) and torch.equal(focal.text_loss, plain.text_loss)
    blocks = torch.tensor([0] * 4 + [1] * 8 + [2] * 4)  # T2I 1x2x2, T2V 2x2x2, C2I 1x2x2 positions
    expected = block_mean_cross_entropy(focal.visual_logits, focal.visual_targets, blocks, 3, focal_gamma=2.0)
    assert torch.allclose(focal.loss - focal.text_loss, expected) and expected < 0.8 * focal.visual_loss
    with pytest.raises(ValueError, match="visual_focal_gamma must be >= 0"):
        GRNConfig.from_preset("GRN-tiny", visual_focal_gamma=-1.0)


def test_round_weights_change_the_training_term_only():
    """Equal weights are Eq. 7; ``[1, 0, ...]`` trains on round 1 alone; ``visual_loss`` stays Eq. 7."""
    model = tiny()
    batch = collate(model, mixed_samples(model))
    m, c = model.config.num_rounds, model.config.num_channels

    def run(weights):
        model.zero_grad()
        model.config.visual_round_weights = weights
        out = model(**batch.as_dict(), generator=torch.Generator().manual_seed(0))
        out.visual_logits.retain_grad()
        out.loss.backward()
        return out

    plain, equal = run(None), run([2.0] * m)
    assert torch.allclose(equal.loss, plain.loss) and torch.equal(equal.visual_loss, plain.visual_loss)
    first = run([1.0] + [0.0] * (m - 1))
    assert torch.equal(first.visual_loss, plain.visual_loss)
    blocks = torch.tensor([0] * 4 + [1] * 8 + [2] * 4)  # T2I 1x2x2, T2V 2x2x2, C2I 1x2x2 positions
    ce = slot_cross_entropy(first.visual_logits, first.visual_targets)[:, :c]  # round 1's slots
    assert torch.allclose(first.loss - first.text_loss, block_mean(ce, blocks, 3))
    grad = first.visual_logits.grad  # (N_t, K, 2), slots round-major
    assert grad[:, c:].abs().max() == 0 and grad[:, :c].abs().max() > 0
    assert objective_round_weighted(torch.ones(2, m * c), [3.0] + [1.0] * (m - 1), m).mean() == 1.0


@pytest.mark.parametrize(
    "weights,match",
    [
        ([1.0], "one weight per HBQ round"),
        ([1.0, -1.0, 1.0, 1.0], ">= 0 with a positive sum"),
        ([0.0] * 4, "positive"),
    ],
)
def test_round_weights_are_validated(weights, match):
    with pytest.raises(ValueError, match=match):
        GRNConfig.from_preset("GRN-tiny", visual_round_weights=weights)
    with pytest.raises(ValueError, match="needs variant='bit'"):
        GRNConfig.from_preset("GRN-tiny", variant="ind", visual_round_weights=[1.0] * 4)


@pytest.mark.parametrize(
    "family,attn", [("llama", "eager"), ("llama", "sdpa"), ("qwen2", "eager"), ("qwen2", "sdpa")]
)
def test_prefix_cache_matches_full_sequence(family, attn):
    model = tiny(family=family, attn=attn).eval()
    prompts = ["a red circle above a blue square", "hi"]  # different lengths: left padding
    codes = torch.stack([bits(1, 2, 3, seed=1), bits(1, 2, 3, seed=2)])
    batch = collate(model, [GRNSample.text_to_image(p, c) for p, c in zip(prompts, codes)])
    inputs, pt = fixed_inputs(batch)
    with torch.no_grad():
        full = model(**batch.as_dict(), visual_inputs=inputs, kept_fraction=pt).visual_logits
        cache = model.encode_prompt(*model.prepare_prompts(prompts))
        prompt_len = cache.past_key_values.get_seq_length()
        cached = model.visual_logits_from_cache(cache, inputs.reshape(2, 1, 2, 3, C, M), pt)
    assert cache.past_key_values.get_seq_length() == prompt_len  # cropped back to the prompt
    torch.testing.assert_close(cached.reshape(full.shape), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n,distinct", [(0, 1), (5, 2), (64, 1), (300, 3), (200, 150)])
def test_kept_fraction_mlp_once_per_value_equals_per_position(n, distinct):
    emb = tiny().visual_embed.kept_fraction
    values = torch.rand(distinct, generator=torch.Generator().manual_seed(n))
    kept = values[torch.randint(0, distinct, (n,), generator=torch.Generator().manual_seed(1))]
    pad = max(0, emb.MIN_ROWS - n)  # the per-position reference also at >= MIN_ROWS rows: a matmul of
    rows = torch.cat([kept, kept[-1:].expand(pad)]) if n else kept  # fewer rows takes another CPU kernel
    with torch.no_grad():
        once = emb(kept)
        assert torch.equal(once, emb.mlp(emb.sinusoid(rows))[:n])  # bit-identical, not just close
        torch.testing.assert_close(once, emb.mlp(emb.sinusoid(kept)), atol=1e-6, rtol=1e-5)


def test_block_mask_memo_follows_the_prefix_mask():
    model = tiny()
    a, b = torch.tensor([[1, 1, 1], [0, 1, 1]]), torch.tensor([[0, 1, 1], [1, 1, 1]])
    for prefix, num_visual, dtype in (
        (a, 4, torch.float32),
        (b, 4, torch.float32),
        (a, 4, torch.float32),
        (a[:1], 4, torch.float32),
        (a, 2, torch.float32),
        (a, 2, torch.float64),
    ):
        got, kwargs = model._block_mask(prefix, num_visual, dtype)
        assert kwargs == {} and got.dtype == dtype
        assert torch.equal(got, prefix_visual_mask(prefix, num_visual, dtype))
    # the same mask again (equal values, another tensor) is served from the memo
    assert model._block_mask(a, 2, torch.float64)[0] is model._block_mask(a.clone(), 2, torch.float64)[0]


def test_eager_matches_sdpa():
    eager, sdpa = tiny(attn="eager").eval(), tiny(attn="sdpa").eval()
    batch = collate(eager, mixed_samples(eager))
    inputs, pt = fixed_inputs(batch)
    with torch.no_grad():
        a = eager(**batch.as_dict(), visual_inputs=inputs, kept_fraction=pt)
        b = sdpa(**batch.as_dict(), visual_inputs=inputs, kept_fraction=pt)
    torch.testing.assert_close(a.visual_logits, b.visual_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.text_logits, b.text_logits, atol=1e-5, rtol=1e-5)


def _loss_and_grads(model, batch):
    model.zero_grad()
    out = model(**batch.as_dict(), generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_gradient_checkpointing_gives_the_same_loss_and_grads():
    model = tiny().train()
    batch = collate(model, mixed_samples(model))
    loss_a, grads_a = _loss_and_grads(model, batch)
    model.activation_checkpointing_enable()
    assert model.backbone.model.layers[0].gradient_checkpointing
    loss_b, grads_b = _loss_and_grads(model, batch)
    torch.testing.assert_close(loss_a, loss_b)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grad, grads_b[name], atol=1e-6, rtol=1e-5, msg=name)


def test_kept_fraction_embedding_changes_the_output():
    model = tiny().eval()
    cache = model.encode_prompt(*model.prepare_prompts(["red"]))
    codes = bits(1, 1, 2, 2)
    with torch.no_grad():
        low = model.visual_logits_from_cache(cache, codes, 0.1)
        high = model.visual_logits_from_cache(cache, codes, 0.9)
    assert (low - high).abs().max() > 1e-4


def test_left_padded_batch_matches_single_rows():
    model = tiny(family="qwen2").eval()
    samples = [
        GRNSample.text_to_image("three blue triangles at the top", bits(1, 2, 2, seed=1)),
        GRNSample.class_to_image(1, bits(1, 2, 2, seed=2), model.vocab),
    ]
    batch = collate(model, samples)
    inputs, pt = fixed_inputs(batch)
    with torch.no_grad():
        together = model(**batch.as_dict(), visual_inputs=inputs, kept_fraction=pt).visual_logits
        for row, sample in enumerate(samples):
            single = collate(model, [sample])
            alone = model(
                **single.as_dict(),
                visual_inputs=inputs[row * 4 : row * 4 + 4],
                kept_fraction=pt[row : row + 1],
            )
            torch.testing.assert_close(
                alone.visual_logits, together[row * 4 : row * 4 + 4], atol=1e-5, rtol=1e-5
            )


@pytest.mark.parametrize("kind", ["text_only", "visual_only"])
def test_every_parameter_gets_a_gradient(kind):
    model = tiny().train()
    if kind == "text_only":
        samples = [GRNSample.text_only("just text", model.text_tokenizer.eos_token_id)]
    else:
        samples = [GRNSample.text_to_image("red", bits(1, 2, 2))]
    out = model(**collate(model, samples).as_dict())
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    if kind == "text_only":
        assert out.visual_loss is None and float(model.hbq_head.proj.weight.grad.abs().sum()) == 0.0
    else:
        assert out.text_loss is None and float(model.lm_head.weight.grad.abs().sum()) == 0.0


def test_text_head_never_covers_hbq_ids():
    model = tiny()
    vocab = model.vocab
    assert model.lm_head.out_features == model.config.text_config.vocab_size == vocab.hbq_offset
    assert (
        model.visual_embed.hbq_rows.weight.shape[0]
        == model.hbq_head.proj.out_features
        == vocab.num_hbq_tokens
    )
    assert vocab.num_text_ids <= vocab.hbq_offset < vocab.total_vocab_size


def test_target_image_is_noisy_where_predicted_and_clean_where_read():
    model = tiny().eval()
    codes = bits(1, 2, 2, seed=4)
    sample = GRNSample(
        [TextSegment("draw red"), VisualSegment(codes, target=True), TextSegment("done", loss=True)]
    )
    batch = collate(model, [sample])
    assert batch.block_is_target.tolist() == [True, False]  # noisy block, then its clean copy
    positions = batch.position_ids[0][batch.block_ids[0] > 0]
    assert torch.equal(positions[:4], positions[4:])  # the copy reuses the block's positions
    inputs, pt = fixed_inputs(batch)
    other = inputs.clone()
    other[:4] = 1 - other[:4]  # change only the noisy block
    with torch.no_grad():
        a = model(**batch.as_dict(), visual_inputs=inputs, kept_fraction=pt)
        b = model(**batch.as_dict(), visual_inputs=other, kept_fraction=pt)
        clean = inputs.clone()
        clean[4:] = 1 - clean[4:]  # change the clean copy: later text must see it
        c = model(**{**batch.as_dict(), "visual_codes": clean}, visual_inputs=clean, kept_fraction=pt)
    torch.testing.assert_close(a.text_logits, b.text_logits, atol=0, rtol=0)
    assert (a.visual_logits - b.visual_logits).abs().max() > 1e-4
    assert (a.text_logits - c.text_logits).abs().max() > 1e-4


def test_context_image_enters_clean_and_has_no_visual_loss():
    model = tiny().eval()
    codes = bits(1, 2, 2, seed=6)
    sample = GRNSample(
        [VisualSegment(codes, target=False), TextSegment("what colour?"), TextSegment("red", loss=True)]
    )
    batch = collate(model, [sample])
    out = model(**batch.as_dict(), generator=torch.Generator().manual_seed(0))
    assert batch.block_is_target.tolist() == [False] and out.visual_loss is None and out.visual_logits is None
    assert out.kept_fraction.tolist() == [1.0] and out.text_loss is not None


def test_prompt_cache_repeat_matches_repeated_prompts():
    model = tiny().eval()
    codes = torch.stack([bits(1, 1, 2, seed=1), bits(1, 1, 2, seed=2)] * 2)
    with torch.no_grad():
        repeated = model.encode_prompt(*model.prepare_prompts(["red", "blue"])).repeat_interleave(2)
        direct = model.encode_prompt(*model.prepare_prompts(["red", "red", "blue", "blue"]))
        a = model.visual_logits_from_cache(repeated, codes, 0.5)
        b = model.visual_logits_from_cache(direct, codes, 0.5)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_condition_drop_keeps_a_non_empty_prompt_and_is_seeded():
    model = tiny()
    sample = GRNSample.text_to_image("a red circle", bits(1, 2, 2))
    dropped = collate(model, [sample], drop=1.0)
    real = dropped.input_ids[0][dropped.attention_mask[0].bool()].tolist()
    assert real[:2] == [model.text_tokenizer.bos_token_id, model.vocab.image_start_id]
    kept = collate(model, [sample], drop=0.0)
    assert kept.attention_mask.sum() > dropped.attention_mask.sum()
    text = GRNSample.text_only("never dropped")
    assert (
        collate(model, [text], drop=1.0).attention_mask.sum() == collate(model, [text]).attention_mask.sum()
    )
    a = collate(model, [sample] * 16, drop=0.5, seed=3)
    b = collate(model, [sample] * 16, drop=0.5, seed=3)
    assert torch.equal(a.input_ids, b.input_ids) and 0 < int((a.attention_mask.sum(-1) == 2 + 4).sum()) < 16


def test_padded_rows_stay_finite():
    model = tiny(attn="eager").eval()
    samples = [GRNSample.text_only("x"), GRNSample.text_to_video("a long prompt " * 4, bits(3, 2, 2))]
    batch = collate(model, samples)
    mask = to_additive_mask(build_visibility(batch.attention_mask), torch.float32)
    with torch.no_grad():
        hidden = model.language_model(input_ids=batch.input_ids, attention_mask=mask).last_hidden_state
        out = model(**batch.as_dict())
    assert bool(torch.isfinite(hidden).all()) and bool(torch.isfinite(out.loss))


def test_bad_inputs_name_the_expected_value():
    model = tiny().eval()
    cache = model.encode_prompt(*model.prepare_prompts(["red"]))
    with pytest.raises(ValueError, match=r"C=16, M=4"):
        model.visual_logits_from_cache(cache, torch.zeros(1, 1, 2, 2, 8, 4, dtype=torch.uint8), 0.5)
    with pytest.raises(ValueError, match=r"max_latent_grid=\(3, 4, 4\)"):
        model.visual_logits_from_cache(cache, bits(1, 1, 5, 4), 0.5)
    with pytest.raises(ValueError, match="max_position_embeddings=256"):
        model.encode_prompt(*model.prepare_prompts(["x" * 300]))
    with pytest.raises(ValueError, match="max_position_embeddings=256"):
        collate(model, [GRNSample.text_to_image("y" * 300, bits(1, 2, 2))])
    with pytest.raises(ValueError, match=r"C=16, M=4"):
        collate(model, [GRNSample.text_to_image("red", torch.zeros(1, 2, 2, 16, 3, dtype=torch.uint8))])


@pytest.mark.gpu
@pytest.mark.skipif(
    not is_flex_attention_available(), reason="flex attention needs CUDA (no backward on CPU)"
)
def test_flex_attention_matches_sdpa_on_gpu():
    sdpa = tiny(attn="sdpa").cuda().eval()
    flex = tiny(attn="flex_attention").cuda().eval()
    batch = collate(sdpa, mixed_samples(sdpa)).to("cuda")
    inputs, pt = fixed_inputs(batch)
    with torch.no_grad():
        a = sdpa(**batch.as_dict(), visual_inputs=inputs, kept_fraction=pt)
        b = flex(**batch.as_dict(), visual_inputs=inputs, kept_fraction=pt)
    torch.testing.assert_close(a.visual_logits, b.visual_logits, atol=1e-4, rtol=1e-4)
