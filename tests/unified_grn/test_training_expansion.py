"""Block expansion (unified_grn.training.expansion): unchanged outputs, trainable new blocks, save/load, CLI."""

from __future__ import annotations

import pytest
import torch
from tiny_models import build_tiny_grn

from unified_grn import AutoModelForGRN, GRNCollator, GRNSample
from unified_grn.cli import main
from unified_grn.training.expansion import expand_depth, insertion_points

C, M = 16, 4  # hbq-tiny


def _bits(*grid: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (*grid, C, M), generator=g, dtype=torch.uint8)


def _batch(model):
    samples = [
        GRNSample.text_to_image("two red circles", _bits(1, 2, 2, seed=1)),
        GRNSample.text_to_video("a square moving right", _bits(2, 2, 2, seed=2)),
        GRNSample.class_to_image(3, _bits(1, 2, 2, seed=3), model.vocab),
        GRNSample.text_only("hello there", model.text_tokenizer.eos_token_id),
    ]
    return GRNCollator.from_model(model, condition_drop_prob=0.0, seed=0)(samples)


def _outputs(model, batch):
    with torch.no_grad():
        out = model(**batch.as_dict(), generator=torch.Generator().manual_seed(0))
    return out.visual_logits, out.text_logits


@pytest.mark.parametrize(
    "layers,new,expected",
    [(6, 6, [0, 1, 2, 3, 4, 5]), (6, 3, [1, 3, 5]), (6, 4, [1, 2, 4, 5]), (2, 4, [0, 0, 1, 1]), (3, 1, [2])],
)
def test_insertion_points_spread_new_blocks_evenly(layers, new, expected):
    assert insertion_points(layers, new) == expected


@pytest.mark.parametrize("new", [1, 2, 3])
def test_expanded_model_computes_exactly_the_same(new):
    model = build_tiny_grn(seed=4)
    batch = _batch(model)
    ref = _outputs(model, batch)
    before = len(model.language_model.layers)
    positions = expand_depth(model, new)
    assert len(model.language_model.layers) == before + new == model.config.text_config.num_hidden_layers
    assert len(positions) == new
    # every attention knows its KV-cache slot
    assert [blk.self_attn.layer_idx for blk in model.language_model.layers] == list(range(before + new))
    got = _outputs(model, batch)
    assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])


def test_expanded_model_generates_the_same_codes_with_the_prefix_cache():
    model = build_tiny_grn(seed=2)
    kw = dict(num_steps=4, guidance_scale=2.0, seed=3, output_type="codes", progress_bar=False)
    ref = model.generate(["a red circle", "two blue squares"], **kw)
    expand_depth(model, 2)
    for cache in (True, False):
        got = model.generate(["a red circle", "two blue squares"], use_prefix_cache=cache, **kw)
        assert torch.equal(ref.codes.bits, got.codes.bits)


def test_new_blocks_train_and_the_old_outputs_start_from_the_same_loss():
    model = build_tiny_grn(seed=1).train()
    batch = _batch(model)
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    ref_loss = model(**batch.as_dict(), generator=g()).loss.item()
    positions = expand_depth(model, 2)
    loss = model(**batch.as_dict(), generator=g()).loss
    assert loss.item() == pytest.approx(ref_loss, abs=1e-6)
    loss.backward()
    new = [model.language_model.layers[p] for p in positions]
    # the zeroed projections get gradients at once, so the new blocks leave zero after one step
    assert all(float(b.self_attn.o_proj.weight.grad.abs().sum()) > 0 for b in new)
    assert all(float(b.mlp.down_proj.weight.grad.abs().sum()) > 0 for b in new)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        out = model(**batch.as_dict(), generator=g())
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0]
    assert all(float(b.mlp.down_proj.weight.detach().abs().sum()) > 0 for b in new)


def test_new_blocks_are_independent_copies():
    model = build_tiny_grn(seed=0)
    src = model.language_model.layers[0].self_attn.q_proj.weight.detach().clone()
    positions = expand_depth(model, 2)
    copy = model.language_model.layers[positions[0]]
    assert torch.equal(copy.self_attn.q_proj.weight, src)
    assert (
        copy.self_attn.q_proj.weight.data_ptr()
        != model.language_model.layers[0].self_attn.q_proj.weight.data_ptr()
    )
    assert float(copy.self_attn.o_proj.weight.detach().abs().sum()) == 0.0


def test_unknown_block_type_is_refused_and_the_model_is_left_alone():
    model = build_tiny_grn(seed=0)
    before = len(model.language_model.layers)
    with pytest.raises(ValueError, match="output_projections="):
        expand_depth(model, 1, output_projections=("no_such_linear",))
    assert len(model.language_model.layers) == before == model.config.text_config.num_hidden_layers
    with pytest.raises(ValueError, match="num_new_layers"):
        expand_depth(model, 0)


def test_cli_expands_a_saved_model_that_reloads_with_the_same_outputs(tmp_path, capsys):
    model = build_tiny_grn(seed=5)
    model.save_pretrained(tmp_path / "src")
    batch = _batch(model)
    ref = _outputs(model, batch)
    assert (
        main(["expand-depth", str(tmp_path / "src"), "--out", str(tmp_path / "big"), "--new-layers", "2"])
        == 0
    )
    assert "from 2 to 4 decoder layers" in capsys.readouterr().out
    big = AutoModelForGRN.from_pretrained(tmp_path / "big").eval()
    assert big.config.text_config.num_hidden_layers == 4 and big.visual_tokenizer is not None
    got = _outputs(big, batch)
    assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])
    # a non-empty output folder and a missing source are named, not tracebacks
    assert (
        main(["expand-depth", str(tmp_path / "src"), "--out", str(tmp_path / "big"), "--new-layers", "1"])
        == 2
    )
    assert "--overwrite" in capsys.readouterr().err
    assert (
        main(["expand-depth", str(tmp_path / "nope"), "--out", str(tmp_path / "x"), "--new-layers", "1"]) == 2
    )
    assert "no config.json" in capsys.readouterr().err


def test_qwen2_backbone_keeps_its_layer_types_in_step(tmp_path):
    model = build_tiny_grn(seed=6, text_config={"model_type": "qwen2"})
    batch = _batch(model)
    ref = _outputs(model, batch)
    before = list(model.config.text_config.layer_types)
    positions = expand_depth(model, 3)
    types = model.config.text_config.layer_types
    assert len(types) == model.config.text_config.num_hidden_layers == len(before) + 3
    assert all(types[p] == types[p - 1] for p in positions)  # a copy takes its source's attention type
    got = _outputs(model, batch)
    assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])
    model.save_pretrained(tmp_path / "q")
    again = AutoModelForGRN.from_pretrained(tmp_path / "q").eval()
    assert torch.equal(_outputs(again, batch)[0], ref[0])
