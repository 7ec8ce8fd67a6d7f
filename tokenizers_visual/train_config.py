"""Typed training configs: the tokenizer trainer's schema (:class:`TrainTokenizerConfig`) and the
machinery that reads any nested dataclass from YAML with dotted ``key=value`` overrides.

The idea of nanoGPT's configurator without ``exec``: every value, from the YAML file or the
command line, is checked against the dataclass field's type hint (``int``, ``float``, ``bool``,
``str``, ``list[...]``, ``X | None``, ``Literal[...]``, ``dict``, nested dataclasses). Unknown keys
and wrong types raise :class:`ConfigError` naming the key and listing the valid ones.

    cfg = load_config(TrainTokenizerConfig, "configs/tokenizer/tiny.yaml", ["optim.lr=1e-3", "run.max_steps=5"])
    save_config(cfg, "outputs/run/config.yaml")

Command-line values are parsed as YAML scalars (``run.max_time_s=null``, ``optim.betas=[0.9,0.95]``),
then coerced: ``1e-3`` is accepted for a float, ``3`` is not accepted for a bool.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from .losses import TokenizerLossConfig
from .train_data import DataConfig

__all__ = [
    "ConfigError",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainTokenizerConfig",
    "apply_overrides",
    "check_config",
    "config_from_dict",
    "load_config",
    "save_config",
]

T = TypeVar("T")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class ConfigError(ValueError):
    """A config key that does not exist, or a value of the wrong type."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check / convert ``value`` to the type hint ``tp``; raise ConfigError naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{key}: {value!r} is not a valid {_type_name(tp)} ({'; '.join(errors)})")
    if origin is typing.Literal:
        for choice in args:
            try:
                if _coerce(value, type(choice), key) == choice:
                    return choice
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping (section {_type_name(tp)}), got {value!r}")
        return config_from_dict(tp, value, prefix=f"{key}.")
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.strip("[]()").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    return _coerce_scalar(value, tp, key)


def _coerce_scalar(value: Any, tp: Any, key: str) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    else:
        raise ConfigError(f"{key}: unsupported field type {tp!r}")
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def config_from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) dict, checking every key and value."""
    fields = _fields(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {[prefix + k for k in unknown]}; valid keys: {[prefix + k for k in fields]}"
        )
    kwargs = {name: _coerce(value, fields[name], prefix + name) for name, value in data.items()}
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Return a copy of ``cfg`` with dotted ``section.key=value`` overrides applied and type-checked."""
    data = dataclasses.asdict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=1e-3)")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        node, cls = data, type(cfg)
        for depth, part in enumerate(parts):
            tp: Any = Any  # inside a free-form mapping (e.g. model.overrides.*) any key is allowed
            if cls is not None:
                fields = _fields(cls)
                if part not in fields:
                    prefix = ".".join(parts[:depth])
                    valid = [f"{prefix}.{k}" if prefix else k for k in fields]
                    raise ConfigError(f"unknown key {dotted!r}; valid keys here: {valid}")
                tp = fields[part]
            if depth == len(parts) - 1:
                node[part] = _parse_value(text)
                break
            if dataclasses.is_dataclass(tp):
                cls = tp
            elif tp is Any or tp is dict or typing.get_origin(tp) is dict:
                cls = None
            else:
                raise ConfigError(f"{'.'.join(parts[: depth + 1])} is a {_type_name(tp)}; it has no sub-keys")
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
    return config_from_dict(type(cfg), data)


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Defaults of ``cls``, updated by the YAML file at ``path``, then by ``overrides``."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded or {}
    base = dataclasses.asdict(cls())
    for key, value in data.items():  # merge sections so a YAML file may name only some keys
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    cfg = config_from_dict(cls, base)
    return apply_overrides(cfg, overrides or [])


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable again with :func:`load_config`)."""
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))


# ----------------------------------------------------------------------------------------- schema


@dataclass
class ModelConfig:
    """What is trained.

    Attributes:
        preset: a name in ``HBQ_TOKENIZER_PRESETS``; ``overrides``: any ``HBQTokenizerConfig`` fields.
        init_from: a trained tokenizer folder (``save_pretrained``, e.g. a run's ``final/``) to start
            from, with a fresh optimizer; ``preset`` and ``overrides`` are then ignored.
        freeze_encoder: train the decoder only (needs ``init_from``): the codes stay bit-identical,
            so token caches and a GRN trained on them stay valid while the pixels get better.
    """

    preset: str = "hbq-shapes"
    overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    freeze_encoder: bool = False


@dataclass
class OptimConfig:
    """AdamW (no weight decay on 1-D parameters), a linear warm-up, then the lr schedule; optional EMA.

    ``lr_schedule`` ``constant`` is the official recipe; ``linear`` / ``cosine`` decay the lr from step
    ``decay_start`` (None: the end of warm-up) to ``min_lr_ratio * lr`` at ``run.max_steps``, as in the
    GRN trainer. A resumed run may switch schedule (its step counter is in the checkpoint).
    """

    lr: float = 2.0e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    decay_start: int | None = None
    min_lr_ratio: float = 0.0
    ema_decay: float | None = None


@dataclass
class RunConfig:
    """Budget, logging, checkpoints, evaluation and distribution.

    ``max_time_s`` stops training after that many seconds of the training loop (setup, final
    evaluation and saving come on top). ``zero_stage`` applies under a distributed launcher only.
    ``num_threads`` sets ``torch.set_num_threads`` (None: torch's default, one per core); on a
    machine shared with other jobs, 1 avoids OpenMP oversubscription, which can cost 10x or more.
    """

    output_dir: str = "outputs/tokenizer"
    seed: int = 0
    max_steps: int = 1000
    max_time_s: float | None = None
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    eval_lpips: bool = True
    eval_batch_size: int = 16
    num_reconstructions: int = 8
    zero_stage: Literal[0, 1, 2, 3] = 0
    progress: bool = True
    num_threads: int | None = None


@dataclass
class TrainTokenizerConfig:
    """``python -m tokenizers_visual.train``'s config: one section per concern."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)


def check_config(cfg: TrainTokenizerConfig, model_cfg: Any) -> None:
    """Reject combinations that would only fail later, inside a conv or a collective."""
    s, s_t = model_cfg.spatial_stride, model_cfg.temporal_stride
    if cfg.data.resolution % s:
        raise ConfigError(
            f"data.resolution={cfg.data.resolution} must be a multiple of the spatial stride {s}"
        )
    if cfg.data.video_dir is not None and (cfg.data.num_frames - 1) % s_t:
        raise ConfigError(f"data.num_frames={cfg.data.num_frames} must be 1 + {s_t}k (temporal stride {s_t})")
    if not 0.0 <= cfg.data.image_fraction <= 1.0:
        raise ConfigError(f"data.image_fraction must be in [0, 1], got {cfg.data.image_fraction}")
    _check_model_and_optim(cfg)
    if cfg.run.zero_stage == 3:
        raise ConfigError(
            "run.zero_stage=3 is not supported: the adaptive GAN weight needs the gradient with respect to the "
            "decoder's last layer, which ZeRO-3 partitions across ranks. Use zero_stage 0 (data parallel), 1 or 2."
        )


def _check_model_and_optim(cfg: TrainTokenizerConfig) -> None:
    m, o = cfg.model, cfg.optim
    if m.init_from is not None and not (Path(m.init_from) / "config.json").is_file():
        raise ConfigError(
            f"model.init_from={m.init_from!r} is not a saved tokenizer folder (no config.json); "
            "point it at a run's final/ or any HBQTokenizer.save_pretrained folder"
        )
    if m.freeze_encoder and m.init_from is None:
        raise ConfigError(
            "model.freeze_encoder=true needs model.init_from (a trained tokenizer): a frozen random "
            "encoder would make random codes"
        )
    if o.lr_schedule not in ("constant", "linear", "cosine"):
        raise ConfigError(f"optim.lr_schedule must be constant, linear or cosine, got {o.lr_schedule!r}")
    if not 0.0 <= o.min_lr_ratio <= 1.0:
        raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {o.min_lr_ratio}")
    if o.decay_start is not None and not 0 <= o.decay_start < cfg.run.max_steps:
        raise ConfigError(
            f"optim.decay_start={o.decay_start} must be in [0, run.max_steps={cfg.run.max_steps})"
        )
