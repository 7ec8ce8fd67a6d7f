"""tokenizers_visual.train_optim: starting from a trained tokenizer, decoder-only fine-tuning (the
codes must not move) and the lr schedules of the tokenizer trainer."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_train_tokenizer import _args, image_dir  # noqa: F401  (image_dir: a fixture)

from tokenizers_visual.modeling_hbq import HBQTokenizer
from tokenizers_visual.train import main
from tokenizers_visual.train_config import ConfigError, TrainTokenizerConfig, check_config, load_config
from tokenizers_visual.train_optim import lr_lambda

NO_GAN = ("loss.disc_start_step=100000", "run.checkpoint_every=100")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, image_dir):  # noqa: F811
    out = tmp_path_factory.mktemp("base")
    main(_args(out, image_dir, "run.max_steps=3", *NO_GAN))
    return out / "final"


def _pixels(seed: int) -> torch.Tensor:
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _split(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    enc = {k: v for k, v in state.items() if k.startswith("vae.encoder.")}
    dec = {k: v for k, v in state.items() if k.startswith("vae.decoder.")}
    assert enc and dec and len(enc) + len(dec) == len(state)
    return enc, dec


def test_freeze_encoder_changes_the_pixels_not_the_codes(tmp_path, image_dir, trained):  # noqa: F811
    out = tmp_path / "decoder"
    extra = (f"model.init_from={trained}", "model.freeze_encoder=true", "optim.ema_decay=0.5")
    main(_args(out, image_dir, "run.max_steps=3", "optim.lr=1e-2", *NO_GAN, *extra))
    before, after = HBQTokenizer.from_pretrained(trained), HBQTokenizer.from_pretrained(out / "final")
    enc0, dec0 = _split(before.state_dict())
    enc1, dec1 = _split(after.state_dict())
    assert all(torch.equal(enc0[k], enc1[k]) for k in enc0)
    assert any(not torch.equal(dec0[k], dec1[k]) for k in dec0)
    pixels = _pixels(0)
    codes0, codes1 = before.encode(pixels), after.encode(pixels)
    assert torch.equal(codes0.bits, codes1.bits)
    assert not torch.allclose(before.decode(codes0), after.decode(codes1))


def test_init_from_starts_from_the_saved_weights(tmp_path, image_dir, trained):  # noqa: F811
    out = tmp_path / "same"  # lr 0: AdamW moves nothing, so the result is the starting point
    main(_args(out, image_dir, "run.max_steps=2", "optim.lr=0.0", *NO_GAN, f"model.init_from={trained}"))
    saved = HBQTokenizer.from_pretrained(trained).state_dict()
    again = HBQTokenizer.from_pretrained(out / "final").state_dict()
    assert saved.keys() == again.keys() and all(torch.equal(saved[k], again[k]) for k in saved)


def test_resume_may_switch_to_a_decay(tmp_path, image_dir):  # noqa: F811
    out = tmp_path / "run"
    common = (*NO_GAN, "run.log_every=1", "optim.warmup_steps=0", "optim.lr=1e-3")
    main(_args(out, image_dir, "run.max_steps=2", *common))
    decay = ("optim.lr_schedule=linear", "optim.decay_start=2", "optim.min_lr_ratio=0.1")
    main([*_args(out, image_dir, "run.max_steps=6", *common, *decay), "--resume"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    lrs = {row["step"]: row["lr"] for row in rows}  # row N: the lr step N used, after N - 1 updates
    cfg = load_config(TrainTokenizerConfig, overrides=list(decay) + ["optim.warmup_steps=0"])
    assert lrs == {n: pytest.approx(1e-3 * lr_lambda(cfg.optim, 6)(n - 1)) for n in range(1, 7)}
    assert lrs[1] == lrs[2] == lrs[3] == pytest.approx(1e-3) and lrs[6] == pytest.approx(0.325e-3)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_lr_lambda_warms_up_holds_and_decays_to_the_floor(schedule):
    cfg = load_config(
        TrainTokenizerConfig,
        overrides=[
            "optim.warmup_steps=10",
            f"optim.lr_schedule={schedule}",
            "optim.decay_start=40",
            "optim.min_lr_ratio=0.2",
        ],
    )
    f = [lr_lambda(cfg.optim, 100)(step) for step in range(120)]
    assert f[:10] == sorted(f[:10]) and f[0] == pytest.approx(0.1)
    assert f[10:41] == [1.0] * 31
    assert f[40:101] == sorted(f[40:101], reverse=True)
    assert f[100:] == [pytest.approx(0.2)] * 20
    shape = {"linear": 0.75, "cosine": 0.5 * (1 + math.cos(math.pi / 4))}[
        schedule
    ]  # a quarter into the decay
    assert f[55] == pytest.approx(0.2 + 0.8 * shape)


def test_bad_model_and_schedule_settings_are_refused(tmp_path):
    from tokenizers_visual.modeling_hbq import HBQTokenizerConfig

    model_cfg = HBQTokenizerConfig.from_preset("hbq-tiny")
    cases = {
        "needs model.init_from": ["model.freeze_encoder=true"],
        "not a saved tokenizer folder": [f"model.init_from={tmp_path / 'missing'}"],
        "optim.lr_schedule": ["optim.lr_schedule=step"],
        r"min_lr_ratio must be in \[0, 1\]": ["optim.min_lr_ratio=2"],
        r"decay_start=50 must be in \[0, run.max_steps=10\)": ["optim.decay_start=50", "run.max_steps=10"],
    }
    for message, overrides in cases.items():
        with pytest.raises(ConfigError, match=message):  # while loading (types) or checking (values)
            check_config(load_config(TrainTokenizerConfig, overrides=overrides), model_cfg)
