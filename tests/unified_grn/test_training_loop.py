"""The training loop in one process (plain PyTorch): outputs, non-finite losses, i2v, text share, EMA, export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from script_loader import load_script

from unified_grn import AutoModelForGRN, GRNConfig, GRNForConditionalGeneration
from unified_grn.collator import GRNCollator, GRNSample
from unified_grn.objective import prepare_visual_inputs
from unified_grn.training import (
    NonFiniteLossError,
    export_checkpoint,
    load_train_config,
    plan_run,
    run_training,
)
from unified_grn.training.batches import block_pt_laws, block_rows, corrupt_for_training
from unified_grn.training.checkpoint import latest_checkpoint, save_checkpoint
from unified_grn.training.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "train" / "tiny.yaml"


def _run(out: Path, *overrides: str, resume: bool = False):
    cfg = load_train_config(TINY, [f"output_dir={out}", "run.progress=false", *overrides])
    return run_training(plan_run(cfg, 1, None), resume=resume)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_plain_run_writes_every_output_and_loss_falls(tmp_path):
    out = tmp_path / "run"
    tr = _run(out, "max_steps=8", "run.checkpoint_every=4")
    rows = _rows(out)
    assert [r["step"] for r in rows] == list(range(1, 9))
    for key in ("loss", "visual_loss", "text_loss", "lr", "tokens_per_s", "grad_norm", "peak_memory_mb"):
        assert key in rows[0]
    assert rows[0]["tokens_per_s"] > 0 and rows[-1]["samples"] == 64
    assert sum(r["loss"] for r in rows[-3:]) / 3 < rows[0]["loss"] - 0.02
    assert latest_checkpoint(out).name == "step_00000008"
    assert load_train_config(out / "config.yaml").run.max_steps == 8
    model = AutoModelForGRN.from_pretrained(out / "final")
    trained = dict(tr.model.named_parameters())
    assert all(torch.equal(p, trained[n]) for n, p in model.named_parameters())
    codes = torch.randint(0, 16, (1, 4, 4, 16))
    batch = GRNCollator.from_model(model, seed=0)([GRNSample.text_to_image("a red circle", codes)])
    with torch.no_grad():
        assert math.isfinite(float(model(**batch.as_dict()).loss))


def _nan_forward(monkeypatch, bad_calls):
    original = GRNForConditionalGeneration.forward
    calls = {"n": 0}

    def forward(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if bad_calls(calls["n"]):
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(GRNForConditionalGeneration, "forward", forward)


def test_a_non_finite_loss_is_skipped(tmp_path, monkeypatch, caplog):
    _nan_forward(monkeypatch, lambda n: n == 2)
    tr = _run(tmp_path / "run", "max_steps=3", "run.export_final=false")
    assert tr.step == 3 and tr.skipped_steps == 1
    assert "non-finite loss at step 2" in caplog.text
    assert all(math.isfinite(r["loss"]) for r in _rows(tmp_path / "run"))


def test_non_finite_losses_in_a_row_stop_with_a_checkpoint(tmp_path, monkeypatch):
    _nan_forward(monkeypatch, lambda n: n > 2)
    with pytest.raises(NonFiniteLossError, match="3 non-finite losses in a row at step 3") as err:
        _run(tmp_path / "run", "max_steps=10", "run.max_nan_steps=3")
    checkpoint = latest_checkpoint(tmp_path / "run")
    assert checkpoint is not None and str(checkpoint) in str(err.value)
    assert torch.load(checkpoint / "trainer.pt", weights_only=True)["step"] == 2


def test_gradient_checkpointing_gives_the_same_losses(tmp_path):
    _run(tmp_path / "a", "max_steps=2", "run.export_final=false")
    tr = _run(tmp_path / "b", "max_steps=2", "run.export_final=false", "model.gradient_checkpointing=true")
    assert getattr(tr.model, "is_activation_checkpointing", None) or tr.model.is_gradient_checkpointing
    for a, b in zip(_rows(tmp_path / "a"), _rows(tmp_path / "b")):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)


def test_gradient_accumulation_sees_the_same_samples_as_one_batch(tmp_path):
    """The README's ``data.batch_size=16 data.micro_batch_size=8``: two micro-batches per step."""
    whole = _run(tmp_path / "a", "max_steps=2", "run.export_final=false", "data.batch_size=16")
    split = _run(
        tmp_path / "b",
        "max_steps=2",
        "run.export_final=false",
        "data.batch_size=16",
        "data.micro_batch_size=8",
    )
    assert (whole.plan.accumulation, split.plan.accumulation) == (1, 2)
    for a, b in zip(_rows(tmp_path / "a"), _rows(tmp_path / "b"), strict=True):
        assert a["samples"] == b["samples"] and a["tokens"] == b["tokens"]  # the same samples per step
        # the corruption draws differ (drawn per micro-batch), so the losses agree only closely
        assert a["loss"] == pytest.approx(b["loss"], rel=0.02)


def test_image_to_video_keeps_latent_frame_zero_clean():
    grn = GRNForConditionalGeneration(GRNConfig.from_preset("GRN-tiny"))
    gen = torch.Generator().manual_seed(0)
    video = torch.randint(0, 16, (3, 4, 4, 16))
    samples = [GRNSample.text_to_video("a circle moving right", video), GRNSample.text_to_video("x", video)]
    batch = GRNCollator(grn.text_tokenizer, grn.vocab, condition_drop_prob=0.0)(samples)
    clean_first = torch.tensor([True, False])
    inputs, kept = corrupt_for_training(grn.config, grn.vocab, batch, clean_first, gen)
    frame0 = batch.visual_coords[:, 0] == 0
    block = batch.block_ids[batch.block_ids > 0] - 1
    assert torch.equal(inputs[frame0 & (block == 0)], batch.visual_codes[frame0 & (block == 0)])
    assert not torch.equal(inputs[frame0 & (block == 1)], batch.visual_codes[frame0 & (block == 1)])
    assert kept[0] >= 1 / 3 - 1e-6  # one of three latent frames is whole
    with torch.no_grad():
        out = grn(**batch.as_dict(), visual_inputs=inputs, kept_fraction=kept)
    assert math.isfinite(float(out.loss))


def _mixed_batch(grn):
    image = torch.randint(0, 16, (1, 4, 4, 16))
    samples = [
        GRNSample.text_to_image("a red circle", image),
        GRNSample.text_to_image("two squares", image),
        GRNSample.text_to_video("a circle moving right", torch.randint(0, 16, (3, 4, 4, 16))),
    ]
    return GRNCollator(grn.text_tokenizer, grn.vocab, condition_drop_prob=0.0)(samples)


def test_loop_corruption_equals_the_models_own():
    grn = GRNForConditionalGeneration(GRNConfig.from_preset("GRN-tiny"))
    batch = _mixed_batch(grn)
    no_i2v = torch.zeros_like(batch.block_is_target)
    inputs, kept = corrupt_for_training(
        grn.config, grn.vocab, batch, no_i2v, torch.Generator().manual_seed(3)
    )
    fields = {k: getattr(batch, k) for k in ("block_ids", "visual_codes", "visual_coords", "block_is_target")}
    own = prepare_visual_inputs(grn.config, grn.vocab, **fields, generator=torch.Generator().manual_seed(3))
    assert torch.equal(grn.vocab.labels_from_codes(inputs), own.inputs)
    assert torch.equal(kept, own.kept_fraction)


def test_block_rows_follow_the_block_ids():
    grn = GRNForConditionalGeneration(GRNConfig.from_preset("GRN-tiny"))
    batch = _mixed_batch(grn)
    rows = block_rows(batch)
    for g, row in enumerate(rows.tolist()):
        assert bool((batch.block_ids[row] == g + 1).any())


def test_per_task_pt_laws_reach_their_blocks():
    config = GRNConfig.from_preset("GRN-tiny", pt_logit_by_task={"t2v": [9.0, 0.01]}, pt_logit_mean=-9.0)
    grn = GRNForConditionalGeneration(config)
    batch = _mixed_batch(grn)
    laws = block_pt_laws(config, batch, ["t2i", "t2i", "t2v"])
    rows = block_rows(batch)
    assert torch.equal(laws[0], torch.where(rows == 2, 9.0, -9.0))
    assert torch.allclose(laws[1], torch.where(rows == 2, 0.01, 1.3))
    no_i2v = torch.zeros_like(batch.block_is_target)
    _, kept = corrupt_for_training(config, grn.vocab, batch, no_i2v, torch.Generator().manual_seed(0), laws)
    targets = batch.block_is_target
    assert torch.all(kept[targets & (rows == 2)] > 0.999)  # p_t ~ sigmoid(9): nothing corrupted
    assert torch.all(kept[targets & (rows < 2)] < 0.7)  # p_t ~ 0: only chance agreement (1/2 per bit)
    assert block_pt_laws(GRNConfig.from_preset("GRN-tiny"), batch, ["t2i", "t2i", "t2v"]) is None


@pytest.mark.parametrize(
    "laws, match",
    [
        ({"x2y": [0.0, 1.0]}, "unknown task 'x2y'"),
        ({"c2i": [0.0, 0.0]}, "std > 0"),
        ({"c2i": 1.0}, "mean, std"),
    ],
)
def test_bad_per_task_laws_are_refused(laws, match):
    with pytest.raises(ValueError, match=match):
        GRNConfig.from_preset("GRN-tiny", pt_logit_by_task=laws)
    with pytest.raises(ValueError, match="logit_normal"):
        GRNConfig.from_preset("GRN-tiny", pt_logit_by_task={"c2i": [0.0, 1.0]}, pt_distribution="uniform")


def test_per_task_laws_train_and_equal_laws_change_nothing(tmp_path):
    same = "model.overrides={num_class_tokens: 18, pt_logit_by_task: {t2i: [-1.3, 1.3], c2i: [-1.3, 1.3]}}"
    c2i = "model.overrides={num_class_tokens: 18, pt_logit_by_task: {c2i: [-0.8, 0.8]}}"
    _run(tmp_path / "a", "max_steps=3", "run.export_final=false")
    _run(tmp_path / "b", "max_steps=3", "run.export_final=false", same)
    tr = _run(tmp_path / "c", "max_steps=3", "run.export_final=false", c2i)
    a, b, c = (_rows(tmp_path / k) for k in "abc")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], abs=1e-6)
    assert [r["loss"] for r in a] != pytest.approx([r["loss"] for r in c], abs=1e-6)
    assert tr.model.config.pt_logit_by_task == {"c2i": [-0.8, 0.8]}


def test_text_share_trains_the_text_head(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"there are {i} red circles above a blue square" for i in range(50)) + "\n")
    sources = f"data.sources=[{{kind: shapes, size: 32}}, {{kind: text, path: {corpus}, name: captions}}]"
    _run(tmp_path / "run", "max_steps=3", "run.export_final=false", sources, "data.text_share=0.5")
    rows = _rows(tmp_path / "run")
    assert any(r["text_loss"] is not None for r in rows)
    assert rows[-1]["data/captions/samples"] > 0 and rows[-1]["data/shapes/samples"] > 0


def test_ema_weights_are_exported_by_default(tmp_path):
    out = tmp_path / "run"
    tr = _run(out, "max_steps=3", "optim.ema_decay=0.5")
    ema = AutoModelForGRN.from_pretrained(out / "final")
    raw = AutoModelForGRN.from_pretrained(export_checkpoint(out, tmp_path / "raw", weights="model"))
    name = "hbq_head.proj.weight"
    assert torch.equal(raw.state_dict()[name], tr.model.state_dict()[name])
    assert torch.equal(ema.state_dict()[name], tr.ema.shadow[name])
    assert not torch.equal(ema.state_dict()[name], raw.state_dict()[name])


def test_frozen_backbone_and_its_own_learning_rate(tmp_path):
    tr = _run(tmp_path / "a", "max_steps=2", "run.export_final=false", "model.freeze_backbone=true")
    fresh = _run(
        tmp_path / "b", "max_steps=1", "run.export_final=false", "model.freeze_backbone=true", "optim.lr=1e-9"
    )
    name = "backbone.model.layers.0.mlp.up_proj.weight"
    assert torch.equal(tr.model.state_dict()[name], fresh.model.state_dict()[name])
    tr = _run(tmp_path / "c", "max_steps=1", "run.export_final=false", "model.backbone_lr=1e-5")
    assert sorted({g["lr"] for g in tr.optimizer.param_groups}) == [1e-5, 1e-3]


def test_saving_the_same_step_twice_keeps_latest_complete(tmp_path):
    tr = _run(tmp_path / "run", "max_steps=1", "run.export_final=false")
    (tmp_path / "run" / "checkpoints" / ".tmp-step_00000009").mkdir()  # left by a killed run
    again = save_checkpoint(tr)
    assert again.name == "step_00000001.1" and latest_checkpoint(tmp_path / "run") == again
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp-*"))


def test_script_trains_the_embedded_default_without_a_config(tmp_path):
    script = load_script("train")
    assert script.main(["max_steps=2", f"output_dir={tmp_path}", "run.progress=false"]) == 0
    assert load_train_config(tmp_path / "config.yaml").model.preset == "GRN-tiny"
    assert AutoModelForGRN.from_pretrained(tmp_path / "final").config.num_class_tokens == 18


def test_local_backbone_and_init_from(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from unified_grn.text_tokenizer import build_byte_tokenizer

    tokenizer = build_byte_tokenizer()
    lm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=256,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    lm.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    backbone = f"model.backbone={tmp_path / 'lm'}"
    with pytest.raises(
        ConfigError, match=r"model.overrides \['num_rounds'\] cannot apply with model.backbone"
    ):
        _run(tmp_path / "x", "max_steps=1", backbone, "model.overrides={num_rounds: 2}")
    objective = (
        "model.overrides={num_class_tokens: 18, visual_focal_gamma: 1.5, pt_logit_mean: -0.8, "
        "visual_round_weights: [1, 1, 0.5, 0.25]}"
    )
    tr = _run(tmp_path / "a", "max_steps=2", backbone, "model.backbone_lr=1e-5", objective)
    assert tr.model.config.text_config.hidden_size == 32
    assert (tr.model.config.visual_focal_gamma, tr.model.config.pt_logit_mean) == (1.5, -0.8)  # not dropped
    assert tr.model.config.visual_round_weights == [1.0, 1.0, 0.5, 0.25]
    layer = "backbone.model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(tr.model.state_dict()[layer], lm.state_dict()["model.layers.0.mlp.up_proj.weight"])
    again = _run(
        tmp_path / "b", "max_steps=1", f"model.init_from={tmp_path / 'a' / 'final'}", "optim.lr=1e-9"
    )
    assert torch.allclose(again.model.state_dict()[layer], tr.model.state_dict()[layer], atol=1e-6)
    with pytest.raises(ValueError, match="one weight per HBQ round"):
        _run(
            tmp_path / "c",
            "max_steps=1",
            f"model.init_from={tmp_path / 'a' / 'final'}",
            "model.overrides={visual_round_weights: [1, 1]}",
        )


def test_a_resumed_run_can_switch_to_a_decaying_lr(tmp_path):
    out = tmp_path / "run"
    _run(out, "max_steps=4", "optim.warmup_steps=0", "run.checkpoint_every=4")
    _run(
        out,
        "max_steps=8",
        "optim.warmup_steps=0",
        "optim.lr_schedule=linear",
        "optim.decay_start=4",
        resume=True,
    )
    lrs = [r["lr"] for r in _rows(out)]
    base = load_train_config(TINY).optim.lr
    assert len(lrs) == 8 and lrs[:5] == [pytest.approx(base)] * 5  # a row logs the lr its step used
    assert base > lrs[5] > lrs[6] > lrs[7] > 0  # linear decay over the resumed stretch
    assert lrs[5] - lrs[6] == pytest.approx(lrs[6] - lrs[7]) == pytest.approx(base / 4)


def test_resuming_with_another_lr_keeps_the_checkpoints_and_says_so(tmp_path, caplog):
    out = tmp_path / "run"
    _run(out, "max_steps=2", "optim.warmup_steps=0", "run.checkpoint_every=2")
    base = load_train_config(TINY).optim.lr
    with caplog.at_level("WARNING", logger="unified_grn.training.checkpoint"):
        tr = _run(out, "max_steps=3", "optim.warmup_steps=0", f"optim.lr={base / 10}", resume=True)
    assert "keeps the checkpoint's base lrs" in caplog.text
    assert _rows(out)[-1]["lr"] == pytest.approx(base)
    assert all(g["lr"] == pytest.approx(base) for g in tr.optimizer.param_groups)
    caplog.clear()
    with caplog.at_level("WARNING", logger="unified_grn.training.checkpoint"):
        _run(out, "max_steps=4", "optim.warmup_steps=0", resume=True)
    assert "keeps the checkpoint's base lrs" not in caplog.text


def test_export_may_ship_a_decoder_only_fine_tune_of_the_run_tokenizer(tmp_path, capsys):
    from tokenizers_visual.modeling_hbq import HBQTokenizer
    from unified_grn.cli import main as grn

    out = tmp_path / "run"
    _run(out, "max_steps=2", "run.export_final=false")
    run_tokenizer = HBQTokenizer.from_pretrained(out / "model" / "visual_tokenizer")

    def variant(name: str, part: str, **config) -> Path:
        tok = HBQTokenizer.from_pretrained(out / "model" / "visual_tokenizer", **config)
        with torch.no_grad():
            next(getattr(tok.vae, part).parameters()).add_(0.01)
        tok.save_pretrained(tmp_path / name)
        return tmp_path / name

    shipped = AutoModelForGRN.from_pretrained(
        export_checkpoint(out, tmp_path / "export", visual_tokenizer=variant("decoder_ft", "decoder"))
    )
    pixels = torch.rand(1, 3, 16, 16) * 2 - 1
    codes = shipped.visual_tokenizer.encode(pixels)
    assert torch.equal(codes.bits, run_tokenizer.encode(pixels).bits)  # the codes the GRN learned
    assert not torch.allclose(shipped.visual_tokenizer.decode(codes), run_tokenizer.decode(codes))
    wider = HBQTokenizer(run_tokenizer.config.__class__(**{
        **run_tokenizer.config.to_dict(), "decoder_base_channels": 2 * run_tokenizer.config.base_channels
    }))  # fmt: skip
    wider.vae.encoder.load_state_dict(run_tokenizer.vae.encoder.state_dict())  # a wider decoder, same encoder
    wider.save_pretrained(tmp_path / "wider")
    loaded = AutoModelForGRN.from_pretrained(
        export_checkpoint(out, tmp_path / "wide", visual_tokenizer=tmp_path / "wider")
    )
    assert loaded.visual_tokenizer.config.decoder_base_channels == wider.config.decoder_base_channels
    assert loaded.visual_tokenizer.decode(codes).shape == run_tokenizer.decode(codes).shape
    with pytest.raises(ValueError, match="encoder differs from the run's"):
        export_checkpoint(out, tmp_path / "bad", visual_tokenizer=variant("encoder_ft", "encoder"))
    assert grn(["export-checkpoint", str(out), "--out", str(tmp_path / "bad"), "--visual-tokenizer",
                str(variant("other", "decoder", rounds=run_tokenizer.config.rounds - 1))]) == 2  # fmt: skip
    assert "config differs from the run's in ['rounds']" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_init_from_takes_objective_overrides_and_refuses_layout_changes(tmp_path):
    first = _run(tmp_path / "a", "max_steps=1")
    saved = tmp_path / "a" / "final"
    law = "model.overrides={num_class_tokens: 18, pt_logit_mean: -0.8, pt_logit_std: 0.8, visual_focal_gamma: 1.0}"
    again = _run(tmp_path / "b", "max_steps=1", f"model.init_from={saved}", law)
    assert (again.model.config.pt_logit_mean, again.model.config.pt_logit_std) == (-0.8, 0.8)
    assert again.model.config.visual_focal_gamma == 1.0
    assert first.model.config.pt_logit_mean == -1.3  # the saved model itself is untouched
    assert AutoModelForGRN.from_pretrained(tmp_path / "b" / "final").config.pt_logit_mean == -0.8
    with pytest.raises(ConfigError, match="num_class_tokens=4 differs"):
        _run(
            tmp_path / "c", "max_steps=1", f"model.init_from={saved}", "model.overrides={num_class_tokens: 4}"
        )
