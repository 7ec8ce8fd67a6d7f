"""Everything about a run that can be checked before a process group starts: :func:`plan_run`.

``scripts/train.py`` calls it right after reading the config, on every rank, before
``deepspeed.init_distributed``; every mistake it finds is a :class:`ConfigError` naming the key:
a missing data folder, a world size that does not divide the batch, a token cache or visual
tokenizer with other ``C`` / ``M`` than the model, class labels beyond the model's class tokens,
EMA under ZeRO-3, an unknown preset. It also builds the data sources and the visual tokenizer
(both local, small, and outside any DeepSpeed engine).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tokenizers_visual.modeling_hbq import HBQTokenizer
from unified_grn.configuration_grn import GRN_PRESETS, GRNConfig
from unified_grn.data.sources import Source
from unified_grn.loading import checked_visual_tokenizer, load_visual_tokenizer
from unified_grn.training.batches import build_sources, mixture_weights
from unified_grn.training.config import ConfigError, TrainConfig
from unified_grn.training.engine import (
    backbone_overrides_check,
    grn_config_from,
    init_from_overrides,
    zero_stage,
)

__all__ = ["TrainPlan", "batch_split", "plan_run", "read_deepspeed_config"]

logger = logging.getLogger(__name__)


@dataclass
class TrainPlan:
    """A checked run: config, world size, batch split, model config, data and visual tokenizer."""

    cfg: TrainConfig
    world_size: int
    micro_batch_size: int
    accumulation: int
    grn_config: GRNConfig
    sources: list[Source]
    weights: list[float]
    visual_tokenizer: HBQTokenizer
    deepspeed_config: dict[str, Any] | None = None  # as read (``"auto"`` values unresolved)

    @property
    def zero_stage(self) -> int | None:
        return zero_stage(self.deepspeed_config)


def read_deepspeed_config(path: str | Path) -> dict[str, Any]:
    """A DeepSpeed JSON file -> dict (ConfigError when missing or not JSON)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"DeepSpeed config {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"DeepSpeed config {path} is not valid JSON: {err}") from None


def batch_split(batch_size: int, micro_batch_size: int | None, world_size: int) -> tuple[int, int]:
    """``(micro batch, accumulation)`` with ``batch = micro x accumulation x world``, or ConfigError."""
    if micro_batch_size is None:
        if batch_size % world_size:
            raise ConfigError(
                f"world size {world_size} does not divide data.batch_size={batch_size}; use a batch "
                f"size that is a multiple of {world_size} (or set data.micro_batch_size)"
            )
        return batch_size // world_size, 1
    if batch_size % (micro_batch_size * world_size):
        raise ConfigError(
            f"data.batch_size={batch_size} is not data.micro_batch_size={micro_batch_size} x world size "
            f"{world_size} x an integer number of accumulation steps; change one of them"
        )
    return micro_batch_size, batch_size // (micro_batch_size * world_size)


def _model_config(cfg: TrainConfig) -> GRNConfig:
    m = cfg.model
    for key, path in (("backbone", m.backbone), ("init_from", m.init_from)):
        if path is not None and not (Path(path) / "config.json").is_file():
            raise ConfigError(f"model.{key}={path!r} is not a local model folder (no config.json)")
    if m.init_from is not None:
        try:
            return init_from_overrides(GRNConfig.from_pretrained(m.init_from), m.overrides)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if m.preset not in GRN_PRESETS:
        raise ConfigError(f"model.preset={m.preset!r} is unknown; presets: {sorted(GRN_PRESETS)}")
    try:
        if m.backbone is not None:
            backbone_overrides_check(m.overrides)
    except ValueError as err:  # its message names model.overrides already
        raise ConfigError(str(err)) from None
    try:
        return grn_config_from(cfg, "sdpa")
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.overrides: {err}") from None


def _visual_tokenizer(cfg: TrainConfig, grn_config: GRNConfig) -> HBQTokenizer:
    path = cfg.model.visual_tokenizer
    if path is None and cfg.model.init_from is not None:
        path = cfg.model.init_from  # a GRN folder holds its visual tokenizer
    try:
        if path is None:
            logger.warning(
                "model.visual_tokenizer is not set: an untrained %s-layout tokenizer encodes pixels "
                "(fine for smoke tests and token caches; set it to a trained tokenizer folder otherwise)",
                cfg.model.preset,
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.run.seed)
                tokenizer = HBQTokenizer(grn_config.visual_tokenizer_config).eval()
        else:
            if not Path(path).exists():
                raise ConfigError(f"model.visual_tokenizer={path!r} does not exist")
            tokenizer = load_visual_tokenizer(path)
        tokenizer.requires_grad_(False)
        return checked_visual_tokenizer(tokenizer, grn_config)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"model.visual_tokenizer: {err}") from None


def _num_classes(source: Source) -> int | None:
    """Classes a c2i source needs: its class names, or 1 + its largest stored label."""
    names = getattr(source, "class_names", None)
    if names is not None:
        return len(names)
    data, column = (
        getattr(source, "data", None),
        getattr(getattr(source, "cfg", None), "label_column", "label"),
    )
    if data is None or column not in getattr(data, "column_names", ()):
        return None
    labels = [v for v in data[column] if v is not None and v >= 0]
    return max(labels) + 1 if labels else None


def _check_sources(sources: list[Source], grn_config: GRNConfig, i2v_share: float) -> None:
    classes = grn_config.num_class_tokens
    for source in sources:
        if hasattr(source, "check"):  # a token cache: same C and M as the model
            try:
                source.check(num_channels=grn_config.num_channels, num_rounds=grn_config.num_rounds)
            except ValueError as err:
                raise ConfigError(str(err)) from None
        needed = _num_classes(source) if source.task == "c2i" else None
        if needed is not None and needed > classes:
            raise ConfigError(
                f"data source {source.name!r} has {needed} classes but the model has "
                f"num_class_tokens={classes}; set model.overrides.num_class_tokens >= {needed}"
            )
    if i2v_share > 0 and not any(s.task == "t2v" for s in sources):
        logger.warning(
            "data.i2v_share=%s but no video source: nothing is trained as image-to-video", i2v_share
        )


def plan_run(cfg: TrainConfig, world_size: int, deepspeed_config: dict[str, Any] | None) -> TrainPlan:
    """Check ``cfg`` for a run of ``world_size`` processes and build its data (see module docstring)."""
    micro, accumulation = batch_split(cfg.data.batch_size, cfg.data.micro_batch_size, world_size)
    stage = zero_stage(deepspeed_config)
    if deepspeed_config is None and world_size > 1:
        raise ConfigError(f"{world_size} processes need a DeepSpeed config (--deepspeed)")
    if stage == 3 and cfg.optim.ema_decay is not None:
        raise ConfigError(
            "optim.ema_decay under ZeRO-3 is not supported: the weights are partitioned across ranks, so an "
            "EMA would gather every parameter on every step. Train with ZeRO-2 (EMA is cheap there) or "
            "set optim.ema_decay=null"
        )
    grn_config = _model_config(cfg)
    sources = build_sources(cfg.data)
    _check_sources(sources, grn_config, cfg.data.i2v_share)
    weights = mixture_weights(sources, cfg.data.text_share)
    visual_tokenizer = _visual_tokenizer(cfg, grn_config)
    return TrainPlan(
        cfg, world_size, micro, accumulation, grn_config, sources, weights, visual_tokenizer, deepspeed_config
    )
