"""Training config: YAML + typed overrides, aliases, and every config error caught before a process group."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml
from script_loader import load_script

from unified_grn.training.batches import mixture_weights
from unified_grn.training.config import ConfigError, TrainConfig, load_train_config
from unified_grn.training.engine import Precision, resolve_deepspeed_config
from unified_grn.training.plan import batch_split, plan_run

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "train"


def _train_main():
    return load_script("train").main


@pytest.mark.parametrize("name", ["tiny", "shapes_t2i", "shapes"])
def test_shipped_configs_load_with_the_common_overrides(name, tmp_path):
    cfg = load_train_config(CONFIGS / f"{name}.yaml", ["max_steps=3", f"output_dir={tmp_path}"])
    assert cfg.run.max_steps == 3 and cfg.run.output_dir == str(tmp_path)
    dotted = load_train_config(CONFIGS / f"{name}.yaml", ["run.max_steps=4", "run.output_dir=x"])
    assert dotted.run.max_steps == 4 and dotted.run.output_dir == "x"


def test_embedded_default_is_grn_tiny_on_procedural_data():
    cfg = load_train_config()
    assert cfg.model.preset == "GRN-tiny" and cfg.run.deepspeed is None
    assert {s.kind for s in cfg.data.sources} == {"shapes", "moving-shapes", "shapes-classes"}
    assert cfg.optim.betas == [0.9, 0.999] and cfg.optim.lr == 2e-4  # the official recipe


def test_unknown_keys_and_wrong_types_are_named():
    with pytest.raises(ConfigError, match=r"unknown key 'optim.learning_rate'.*optim.lr"):
        load_train_config(None, ["optim.learning_rate=1e-3"])
    with pytest.raises(ConfigError, match="run.max_steps: expected int"):
        load_train_config(None, ["max_steps=ten"])
    with pytest.raises(ConfigError, match="data.sources\\[0\\]"):
        load_train_config(None, ["data.sources=[{kind: shapes, colour: red}]"])
    with pytest.raises(ConfigError, match="unknown data source kind|is not one of"):
        load_train_config(None, ["data.sources=[{kind: pictures}]"])
    with pytest.raises(ConfigError, match="run.precision"):
        load_train_config(None, ["run.precision=fp16"])


def test_yaml_typo_is_caught(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"optim": {"lr": 1e-3, "warmup": 10}}))
    with pytest.raises(ConfigError, match="optim.warmup"):
        load_train_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(tmp_path / "missing.yaml")


def test_value_ranges_are_checked():
    for override, match in [
        ("data.i2v_share=1.5", "i2v_share"),
        ("data.text_share=1.0", "text_share"),
        ("optim.betas=[0.9]", "betas"),
        ("max_steps=0", "max_steps"),
        ("optim.lr_schedule=exponential", "lr_schedule"),
        ("optim.decay_start=30", "decay_start"),  # the default max_steps is 20
        ("optim.min_lr_ratio=1.5", "min_lr_ratio"),
    ]:
        with pytest.raises(ConfigError, match=match):
            load_train_config(None, [override])
    with pytest.raises(ConfigError, match="contradict"):
        load_train_config(None, ["model.freeze_backbone=true", "model.backbone_lr=1e-5"])


def test_batch_split_and_world_size():
    assert batch_split(8, None, 2) == (4, 1)
    assert batch_split(8, 2, 2) == (2, 2)
    with pytest.raises(ConfigError, match="world size 3 does not divide data.batch_size=8"):
        batch_split(8, None, 3)
    with pytest.raises(ConfigError, match="micro_batch_size=3"):
        batch_split(8, 3, 1)


def test_plan_errors(tmp_path):
    cfg = load_train_config(None, [f"data.sources=[{{kind: images, path: {tmp_path / 'nope'}}}]"])
    with pytest.raises(ConfigError, match="does not exist"):
        plan_run(cfg, 1, None)
    cfg = load_train_config(None, ["model.overrides={num_class_tokens: 4}"])
    with pytest.raises(ConfigError, match="18 classes.*num_class_tokens=4"):
        plan_run(cfg, 1, None)
    with pytest.raises(ConfigError, match="EMA|ema_decay"):
        plan_run(load_train_config(None, ["optim.ema_decay=0.999"]), 1, {"zero_optimization": {"stage": 3}})
    with pytest.raises(ConfigError, match="preset"):
        plan_run(load_train_config(None, ["model.preset=GRN-huge"]), 1, None)
    with pytest.raises(ConfigError, match="need a DeepSpeed config"):
        plan_run(load_train_config(), 2, None)


def _main_errors(monkeypatch, caplog, argv, env=None):
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    code = _train_main()(argv)
    assert not (dist.is_available() and dist.is_initialized()), "a process group was started"
    return code, caplog.text


@pytest.mark.parametrize(
    "argv, env, message",
    [
        (["optim.learning_rate=1"], None, "unknown key"),
        (["max_steps=abc"], None, "expected int"),
        (["data.sources=[{kind: videos, path: /no/such/folder}]"], None, "does not exist"),
        (["--deepspeed", "/no/such.json"], None, "does not exist"),
        (
            ["--deepspeed", "zero3"],
            {"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "3"},
            "world size 3 does not divide",
        ),
    ],
)
def test_script_reports_config_errors_before_any_process_group(monkeypatch, caplog, argv, env, message):
    code, log = _main_errors(monkeypatch, caplog, argv, env)
    assert code == 2
    assert "config error" in log and message in log


def test_text_share_sets_the_text_sources_total():
    class S:
        def __init__(self, task, weight):
            self.task, self.weight = task, weight

    weights = mixture_weights([S("t2i", 2.0), S("text", 1.0), S("text", 3.0), S("c2i", 2.0)], 0.2)
    assert pytest.approx(sum(weights)) == 1.0
    assert pytest.approx(weights[1] + weights[2]) == 0.2 and pytest.approx(weights[2] / weights[1]) == 3.0
    assert pytest.approx(weights[0]) == 0.4
    with pytest.raises(ConfigError, match="no text source"):
        mixture_weights([S("t2i", 1.0)], 0.1)


@pytest.mark.parametrize("name", ["zero2", "zero3", "zero3_offload"])
def test_deepspeed_auto_values_are_filled(name):
    raw = json.loads((ROOT / "configs" / "deepspeed" / f"{name}.json").read_text())
    cfg = TrainConfig()
    out = resolve_deepspeed_config(raw, cfg, 4, 2, 2, 64, Precision(torch.float32, "test"), cuda=False)
    assert "auto" not in json.dumps(out)
    assert out["train_batch_size"] == 16 and out["gradient_accumulation_steps"] == 2
    assert out["bf16"]["enabled"] is False and out["optimizer"]["params"]["torch_adam"] is True
    assert out["optimizer"]["params"]["betas"] == [0.9, 0.999] and out["gradient_clipping"] == 1.0


def test_resume_with_another_world_size_is_refused_before_any_process_group(monkeypatch, caplog, tmp_path):
    step = tmp_path / "checkpoints" / "step_00000004"
    step.mkdir(parents=True)
    torch.save({"world": 2, "backend": "deepspeed-zero3", "step": 4}, step / "trainer.pt")
    (tmp_path / "checkpoints" / "latest").write_text("step_00000004\n")
    code, log = _main_errors(monkeypatch, caplog, ["--resume", f"output_dir={tmp_path}"])
    assert code == 2 and "written by 2 process(es) with deepspeed-zero3" in log


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_lr_schedules_warm_up_then_hold_or_decay_to_the_floor(schedule):
    from unified_grn.training.config import OptimConfig
    from unified_grn.training.engine import lr_lambda

    optim = OptimConfig(warmup_steps=10, lr_schedule=schedule, decay_start=40, min_lr_ratio=0.1)
    f = [lr_lambda(optim, max_steps=100)(step) for step in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == 1.0  # linear warm-up
    assert f[9:41] == [1.0] * 32  # held until decay_start
    if schedule == "constant":
        assert f[41:] == [1.0] * 59
        return
    assert all(a >= b for a, b in zip(f[40:], f[41:])) and f[41] < 1.0  # monotone decay after the start
    assert lr_lambda(optim, 100)(100) == pytest.approx(0.1)  # the floor at max_steps
    middle = lr_lambda(optim, 100)(70)
    assert middle == pytest.approx(0.1 + 0.9 * 0.5)  # linear and cosine meet half-way
    quarter = lr_lambda(optim, 100)(55)
    assert quarter == pytest.approx(
        0.1 + 0.9 * (0.75 if schedule == "linear" else 0.5 * (1 + math.cos(math.pi / 4)))
    )
    default_start = OptimConfig(warmup_steps=10, lr_schedule=schedule)
    assert (
        lr_lambda(default_start, 100)(9) == 1.0 > lr_lambda(default_start, 100)(11)
    )  # decay starts after warm-up
