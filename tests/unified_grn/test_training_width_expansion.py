"""Width expansion (unified_grn.training.width_expansion): the same outputs, trainable new units, CLI."""

from __future__ import annotations

import pytest
import torch
from test_training_expansion import _batch, _outputs
from tiny_models import build_tiny_grn

from unified_grn import AutoModelForGRN
from unified_grn.cli import main
from unified_grn.training.width_expansion import WidthPlan, expand_width

# GRN-tiny: hidden 64, MLP 128, 4 heads over 2 key/value heads (groups of 2), head_dim 16
WIDENINGS = [
    dict(hidden_size=96),
    dict(intermediate_size=200),
    dict(num_attention_heads=6, num_key_value_heads=3),  # groups of 2 kept, one new group
    dict(num_attention_heads=8),  # groups of 2 -> 4: old heads move to keep their key/value head
    dict(hidden_size=96, intermediate_size=192, num_attention_heads=6, num_key_value_heads=3),
]


def _assert_same(ref, got, tol=1e-6):
    assert (ref[0] - got[0]).abs().max() <= tol and (ref[1] - got[1]).abs().max() <= tol


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])  # qwen2: q/k/v biases; qwen3: q/k norms
@pytest.mark.parametrize("widths", WIDENINGS)
def test_widened_model_computes_the_same_logits(widths, family):
    model = build_tiny_grn(seed=4, text_config={"model_type": family})
    if family == "qwen2":  # give the biases values, so a misplaced head shows
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("_proj.bias"):
                    p.normal_(0, 0.5)
    batch = _batch(model)
    ref = _outputs(model, batch)
    wide = expand_width(model, **widths, init_std=0.2)  # a large std: nothing new may leak in
    t = wide.config.text_config
    head_dim = getattr(model.config.text_config, "head_dim", None) or 16  # qwen3's default is 128
    assert t.hidden_size == widths.get("hidden_size", 64) and t.head_dim == head_dim
    assert t.num_attention_heads == widths.get("num_attention_heads", 4)
    assert wide.language_model.layers[0].mlp.down_proj.weight.shape[1] == widths.get("intermediate_size", 128)
    # qwen3's q/k norms share rms_norm_eps, which the widening scales for the hidden-size norms
    _assert_same(
        ref, _outputs(wide, batch), tol=1e-5 if family == "qwen3" and "hidden_size" in widths else 1e-6
    )
    assert _outputs(model, batch)[0].equal(ref[0])  # the source is left alone


def test_tied_embeddings_stay_tied_and_write_no_new_dimension():
    model = build_tiny_grn(seed=4, text_config={"tie_word_embeddings": True})
    batch = _batch(model)
    ref = _outputs(model, batch)
    wide = expand_width(model, hidden_size=96, init_std=0.2)
    assert wide.get_input_embeddings().weight is wide.get_output_embeddings().weight
    assert wide.get_input_embeddings().weight[:, 64:].abs().max() == 0
    _assert_same(ref, _outputs(wide, batch))


def test_widened_model_generates_the_same_codes_with_and_without_the_prefix_cache():
    model = build_tiny_grn(seed=2)
    kw = dict(num_steps=4, guidance_scale=2.0, seed=3, output_type="codes", progress_bar=False)
    ref = model.generate(["a red circle", "two blue squares"], **kw)
    wide = expand_width(model, hidden_size=80, num_attention_heads=6, num_key_value_heads=3)
    for cache in (True, False):
        got = wide.generate(["a red circle", "two blue squares"], use_prefix_cache=cache, **kw)
        assert torch.equal(ref.codes.bits, got.codes.bits)


def test_every_new_unit_trains():
    """Zero writers get gradients at once; the new heads' and units' readers from the next step."""
    model = build_tiny_grn(seed=1).train()
    batch = _batch(model)
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    ref_loss = model(**batch.as_dict(), generator=g()).loss.item()
    wide = expand_width(
        model, hidden_size=96, intermediate_size=192, num_attention_heads=6, num_key_value_heads=3
    )
    wide.train()
    loss = wide(**batch.as_dict(), generator=g()).loss
    assert loss.item() == pytest.approx(ref_loss, abs=1e-5)
    loss.backward()
    block = wide.language_model.layers[0]
    assert block.self_attn.o_proj.weight.grad[64:].abs().sum() > 0  # new residual rows
    assert block.self_attn.o_proj.weight.grad[:, 64:].abs().sum() > 0  # new heads' columns
    assert block.mlp.down_proj.weight.grad[:, 128:].abs().sum() > 0  # new MLP units
    assert wide.get_input_embeddings().weight.grad[:, 64:].abs().sum() > 0
    opt = torch.optim.AdamW(wide.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        out = wide(**batch.as_dict(), generator=g())
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0]
    new_q = wide.language_model.layers[0].self_attn.q_proj.weight.grad.reshape(6, 16, 96)
    moved = WidthPlan.from_config(model.config.text_config, heads=6, kv_heads=3).query_head_index()
    fresh = sorted(set(range(6)) - set(moved.tolist()))
    assert new_q[fresh].abs().sum() > 0  # the new query heads are read by now


@pytest.mark.parametrize(
    "widths,match",
    [
        (dict(hidden_size=32), "can only grow"),
        (dict(num_attention_heads=5), "do not split into 2 key/value groups"),
        (dict(num_attention_heads=6, num_key_value_heads=6), "smaller than the current 2"),
        (dict(), "every width equals"),
    ],
)
def test_bad_widths_are_named(widths, match):
    with pytest.raises(ValueError, match=match):
        expand_width(build_tiny_grn(seed=0), **widths)


def test_an_unknown_backbone_family_is_refused():
    model = build_tiny_grn(seed=0)
    model.config.text_config.model_type = (
        "gemma"  # scales its embeddings by sqrt(d): padding would not preserve
    )
    with pytest.raises(ValueError, match="not 'gemma'"):
        expand_width(model, hidden_size=96)


def test_cli_widens_a_saved_model_that_reloads_with_the_same_outputs(tmp_path, capsys):
    model = build_tiny_grn(seed=5)
    model.generation_config.guidance_scale = 3.25  # a tuned setting travels with the weights
    model.save_pretrained(tmp_path / "src")
    batch = _batch(model)
    ref = _outputs(model, batch)
    args = ["expand-width", str(tmp_path / "src"), "--out", str(tmp_path / "wide"), "--hidden-size", "96"]
    assert main([*args, "--num-heads", "6", "--num-kv-heads", "3"]) == 0
    assert "to hidden 96, MLP 128, 6 heads" in capsys.readouterr().out
    wide = AutoModelForGRN.from_pretrained(tmp_path / "wide").eval()
    assert wide.visual_tokenizer is not None and wide.generation_config.guidance_scale == 3.25
    _assert_same(ref, _outputs(wide, batch))
    assert main([*args]) == 2 and "--overwrite" in capsys.readouterr().err
    bad = ["expand-width", str(tmp_path / "src"), "--out", str(tmp_path / "x"), "--hidden-size", "8"]
    assert main(bad) == 2 and "can only grow" in capsys.readouterr().err
