"""The typed training config of ``scripts/train.py``: :class:`TrainConfig` and its sections.

YAML files in ``configs/train/`` name any subset of the sections ``model / data / optim / run``;
missing keys keep the defaults below, which are the **embedded default**: GRN-tiny on the
procedural shapes, moving-shapes and shapes-classes worlds at 32 px, a few steps on a CPU.
Values from the file and from ``key=value`` overrides are type-checked by the generic loader of
:mod:`tokenizers_visual.train_config` (unknown keys and wrong types raise :class:`ConfigError`).

Overrides are dotted (``optim.lr=1e-3``, ``data.sources=[...]``); a few top-level aliases
(:data:`ALIASES`) save typing: ``max_steps=N`` = ``run.max_steps=N``, ``output_dir=DIR`` =
``run.output_dir=DIR``, ``seed=S`` = ``run.seed=S``, ``deepspeed=zero2`` = ``run.deepspeed=zero2``.

Optimizer defaults follow the official GRN recipe (research/grn_official.md Sec. 4.1): AdamW with
betas (0.9, 0.999), lr 2e-4 constant after a linear warm-up, weight decay 0.01 on matrices only,
gradient clipping, optional EMA 0.999; the condition drop (0.1) is a model setting
(``GRNConfig.condition_drop_prob``, ``model.overrides``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tokenizers_visual.train_config import ConfigError, load_config, save_config
from unified_grn.data.sources import SourceConfig

__all__ = [
    "ALIASES",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "load_train_config",
    "save_config",
]

#: Top-level override aliases: ``max_steps=5`` means ``run.max_steps=5``.
ALIASES = {
    "max_steps": "run.max_steps",
    "output_dir": "run.output_dir",
    "seed": "run.seed",
    "deepspeed": "run.deepspeed",
}


@dataclass
class ModelConfig:
    """What is trained.

    Attributes:
        preset: a ``GRN_PRESETS`` name; gives every GRN field (visual tokenizer layout, latent
            grid, class tokens) and, without ``backbone``, the backbone's size.
        backbone: a local folder with any causal LM (config, weights, tokenizer); replaces the
            preset's ``text_config`` (``GRNForConditionalGeneration.from_backbone``).
        init_from: a saved GRN folder (``save_pretrained``) to start from instead (fine-tuning,
            or a second stage); ``preset`` and ``backbone`` are then ignored, and ``overrides`` may
            change only the objective's fields (``engine.OBJECTIVE_FIELDS``: the ``p_t`` law,
            ``condition_drop_prob``, ``text_loss_weight``); other keys must match the saved model.
        visual_tokenizer: a trained HBQ tokenizer folder (or a GRN folder holding one), used to
            encode pixels on the fly and saved with the model; None: an untrained tokenizer of the
            preset's layout (fine for token caches, which already hold codes, and for smoke tests).
        overrides: ``GRNConfig`` fields over the preset (``text_config`` dicts are merged).
        freeze_backbone: train only GRN's visual modules (the backbone's weights stay fixed).
        backbone_lr: learning rate of the backbone's parameters (None: ``optim.lr``).
        gradient_checkpointing: recompute the backbone's activations in the backward pass.
        attn_implementation: ``eager`` / ``sdpa`` / ``flash_attention_2``; None: flash-attn
            where installed with CUDA, else SDPA.
    """

    preset: str = "GRN-tiny"
    backbone: str | None = None
    init_from: str | None = None
    visual_tokenizer: str | None = None
    overrides: dict[str, Any] = field(default_factory=lambda: {"num_class_tokens": 18})
    freeze_backbone: bool = False
    backbone_lr: float | None = None
    gradient_checkpointing: bool = False
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = None


def _tiny_sources() -> list[SourceConfig]:
    return [
        SourceConfig(kind="shapes", size=32, weight=2.0),
        SourceConfig(kind="moving-shapes", size=32, num_frames=9, weight=1.0),
        SourceConfig(kind="shapes-classes", size=32, weight=1.0),
    ]


@dataclass
class DataConfig:
    """Where the samples come from and how many make a step.

    Attributes:
        sources: the mixture (``unified_grn.data.sources.SourceConfig``: ``kind``, ``path``,
            ``weight``, ``size``, ...). Pixels are encoded on the fly with the visual tokenizer;
            ``kind: cache`` sources hold codes already (``grn cache-tokens``).
        text_share: the share of samples drawn from ``text`` sources (the rest keep their
            relative weights); None: use the weights as given.
        i2v_share: share of video samples trained as image-to-video (latent frame 0 kept clean).
        batch_size: samples per optimizer step over all ranks.
        micro_batch_size: samples per forward pass on one rank; None: ``batch_size / world
            size``. ``batch_size = micro_batch_size x accumulation x world size`` must hold.
        token_cache_dir: a folder of token caches; a non-procedural source named ``NAME`` is
            read from ``token_cache_dir/NAME`` when that cache exists (written by ``grn
            cache-tokens ... --out token_cache_dir/NAME``), else encoded on the fly.
        max_consecutive_skips: unreadable samples in a row (per rank) before the run stops.
        group_by_source: every optimizer step draws all its samples from one source (picked by
            weight), so a step of images is not padded to the length of a video in the batch; the
            long-run mix is unchanged.
    """

    sources: list[SourceConfig] = field(default_factory=_tiny_sources)
    text_share: float | None = None
    i2v_share: float = 0.25
    batch_size: int = 8
    micro_batch_size: int | None = None
    token_cache_dir: str | None = None
    max_consecutive_skips: int = 1000
    group_by_source: bool = False


@dataclass
class OptimConfig:
    """AdamW, linear warm-up then constant lr, weight decay on matrices only, clipping, EMA.

    ``lr_schedule`` ``constant`` is the official recipe; ``linear`` / ``cosine`` decay the lr from
    step ``decay_start`` (None: the end of warm-up) to ``min_lr_ratio * lr`` at ``run.max_steps``,
    as transformers' ``get_linear_schedule_with_warmup`` / ``get_cosine_schedule_with_warmup`` do.
    A resumed run may switch schedule (its step counter is in the checkpoint): train at a constant lr
    in chunks, then resume once more with ``optim.lr_schedule=linear optim.decay_start=<step>``.
    ``ema_decay`` keeps an exponential moving average of the trainable weights (plain and
    ZeRO-2 runs; ZeRO-3 partitions the weights, so it is refused there). ``grad_clip: 0`` turns
    clipping off.
    """

    lr: float = 2.0e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1.0e-8
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    decay_start: int | None = None
    min_lr_ratio: float = 0.0
    ema_decay: float | None = None


@dataclass
class RunConfig:
    """Budget, outputs, logging and distribution.

    Attributes:
        output_dir: the run folder (config, metrics, checkpoints, ``final/``).
        seed: seeds the weights, the data stream and every random draw of training.
        max_steps: optimizer steps to train (a resumed run continues up to this number).
        checkpoint_every: save every N steps (0: only at the end); always saved at the end.
        keep_checkpoints: how many recent checkpoints to keep.
        log_every: write a metrics row every N steps (and at step 1).
        max_nan_steps: stop (with a checkpoint) after this many non-finite losses in a row.
        deepspeed: a DeepSpeed JSON (path, or ``zero2`` / ``zero3`` / ``zero3_offload`` in
            ``configs/deepspeed/``); None: plain PyTorch in one process, ZeRO-3 under a launcher.
        precision: ``auto`` (bf16 where CUDA supports it, else fp32), ``fp32`` or ``bf16``.
        progress: a tqdm bar on rank 0.
        report_to: also log to ``wandb`` and/or ``tensorboard`` when installed (never required).
        export_final: write ``output_dir/final`` (``from_pretrained``-loadable) at the end.
    """

    output_dir: str = "outputs/grn-tiny"
    seed: int = 0
    max_steps: int = 20
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    log_every: int = 1
    max_nan_steps: int = 10
    deepspeed: str | None = None
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    progress: bool = True
    report_to: list[Literal["wandb", "tensorboard"]] = field(default_factory=list)
    export_final: bool = True


@dataclass
class TrainConfig:
    """``scripts/train.py``'s config: one section per concern (module docstring)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)


def _expand_aliases(overrides: list[str]) -> list[str]:
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        out.append(f"{ALIASES[key.strip()]}={value}" if sep and key.strip() in ALIASES else item)
    return out


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the YAML file at ``path``, then ``key=value`` overrides (aliases expanded).

    Raises:
        ConfigError: unknown key, wrong type or an invalid value (a data source's own checks too).
    """
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        cfg = load_config(TrainConfig, path, _expand_aliases(list(overrides or [])))
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:  # e.g. SourceConfig.__post_init__
        raise ConfigError(str(err)) from None
    _check_values(cfg)
    return cfg


def _check_values(cfg: TrainConfig) -> None:
    """Range checks that need no files, no model and no world size."""
    d, o, r, m = cfg.data, cfg.optim, cfg.run, cfg.model
    checks = [
        (d.batch_size >= 1, f"data.batch_size must be >= 1, got {d.batch_size}"),
        (d.micro_batch_size is None or d.micro_batch_size >= 1, "data.micro_batch_size must be >= 1"),
        (d.text_share is None or 0.0 <= d.text_share < 1.0, "data.text_share must be in [0, 1)"),
        (0.0 <= d.i2v_share <= 1.0, f"data.i2v_share must be in [0, 1], got {d.i2v_share}"),
        (bool(d.sources), "data.sources is empty"),
        (o.lr > 0 and o.eps > 0, "optim.lr and optim.eps must be > 0"),
        (len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "optim.betas must be 2 values in [0, 1)"),
        (o.weight_decay >= 0 and o.grad_clip >= 0, "optim.weight_decay and optim.grad_clip must be >= 0"),
        (o.warmup_steps >= 0, "optim.warmup_steps must be >= 0"),
        (
            o.lr_schedule in ("constant", "linear", "cosine"),
            f"optim.lr_schedule must be constant, linear or cosine, got {o.lr_schedule!r}",
        ),
        (
            o.decay_start is None or 0 <= o.decay_start < r.max_steps,
            f"optim.decay_start must be in [0, run.max_steps={r.max_steps}), got {o.decay_start}",
        ),
        (0.0 <= o.min_lr_ratio <= 1.0, f"optim.min_lr_ratio must be in [0, 1], got {o.min_lr_ratio}"),
        (o.ema_decay is None or 0 < o.ema_decay < 1, "optim.ema_decay must be in (0, 1) or null"),
        (r.max_steps >= 1, f"run.max_steps must be >= 1, got {r.max_steps}"),
        (
            r.checkpoint_every >= 0 and r.keep_checkpoints >= 1,
            "run.checkpoint_every >= 0, keep_checkpoints >= 1",
        ),
        (r.log_every >= 1 and r.max_nan_steps >= 1, "run.log_every and run.max_nan_steps must be >= 1"),
        (m.backbone_lr is None or m.backbone_lr > 0, "model.backbone_lr must be > 0 or null"),
        (
            not (m.freeze_backbone and m.backbone_lr is not None),
            "model.freeze_backbone and model.backbone_lr contradict each other; set one",
        ),
        (not (m.backbone and m.init_from), "model.backbone and model.init_from are exclusive; set one"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    names = [s.display_name for s in d.sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"data source names must be unique, got {names}; give the sources a `name`")
