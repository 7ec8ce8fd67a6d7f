"""configs/deepspeed/*.json parse, carry the keys the training script relies on, and pass DeepSpeed's validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "deepspeed"
NAMES = ("zero2", "zero3", "zero3_offload")
# "auto" values the training script fills (configs/deepspeed/README.md), with stand-ins for the check.
AUTO = {
    "train_micro_batch_size_per_gpu": 2,
    "gradient_accumulation_steps": 1,
    "train_batch_size": 2,
    "gradient_clipping": 1.0,
    "lr": 2e-4,
    "betas": [0.9, 0.999],
    "eps": 1e-8,
    "weight_decay": 0.01,
    "enabled": False,
    "reduce_bucket_size": 4096,
    "stage3_prefetch_bucket_size": 3686,
    "stage3_param_persistence_threshold": 640,
}


def load(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


def resolve(config: dict) -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out[key] = resolve(value)
        elif value == "auto":
            assert key in AUTO, f"'auto' for {key!r}, which the training script does not fill"
            out[key] = AUTO[key]
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("name", NAMES)
def test_required_keys(name):
    config = load(name)
    zero = config["zero_optimization"]
    assert zero["stage"] == (2 if name == "zero2" else 3)
    assert config["bf16"]["enabled"] == "auto" and config["fp16"]["enabled"] is False
    assert config["optimizer"]["type"] == "AdamW" and config["optimizer"]["params"]["torch_adam"] is True
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert key in config
    if zero["stage"] == 3:
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    offload = name.endswith("offload")
    assert ("offload_optimizer" in zero) == offload and ("offload_param" in zero) == offload
    if offload:
        assert zero["offload_optimizer"]["device"] == "cpu" and config["zero_force_ds_cpu_optimizer"] is False
    resolve(config)  # every "auto" is one the script fills


@pytest.mark.parametrize("name", NAMES)
def test_deepspeed_accepts_the_resolved_config(name):
    pytest.importorskip("deepspeed", reason="DeepSpeed is in the train / dev extras")
    from deepspeed.runtime.config import DeepSpeedConfig

    parsed = DeepSpeedConfig(resolve(load(name)))
    assert parsed.zero_config.stage == load(name)["zero_optimization"]["stage"]
    assert parsed.train_batch_size == AUTO["train_batch_size"]
