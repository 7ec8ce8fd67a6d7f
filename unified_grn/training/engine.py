"""Model, optimizer and engine setup: plain PyTorch or a DeepSpeed engine (ZeRO-2 / ZeRO-3 / offload).

* **Precision** is chosen once (:func:`choose_precision`) and logged: bf16 where CUDA supports
  it, fp32 on CPU (bf16 runs about 22x slower on these CPUs, research/env_feasibility.md Sec. 7).
* **DeepSpeed configs** (``configs/deepspeed/*.json``) keep ``"auto"`` for the values the typed
  config owns; :func:`resolve_deepspeed_config` fills them (batch sizes, clipping, AdamW
  settings, bf16, bucket sizes from the hidden size; configs/deepspeed/README.md). On CPU the
  optimizer is forced to ``torch_adam`` (DeepSpeed's fused / CPU Adam compile for minutes).
* **Weights** are initialised by one seeded pass (:func:`init_weights`, transformers'
  ``initialize_weights_zero3`` order) in every mode, so plain, ZeRO-2 and ZeRO-3 runs start from
  identical weights; under ZeRO-3 a preset model is built inside ``deepspeed.zero.Init`` (partitioned
  as it is built) and each module's parameters are gathered for the pass.
* **Parameter groups**: weight decay on matrices only (official recipe), the backbone's own
  learning rate when ``model.backbone_lr`` is set, frozen parameters left out.
* **EMA** (:class:`EMA`) of the trainable weights, where they are whole on a rank (plain, ZeRO-2).

The visual tokenizer never enters the engine: it is built here, frozen, and used to encode pixels.
This module never starts a process group (``scripts/train.py`` does).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tokenizers_visual.modeling_hbq import HBQTokenizer
from tokenizers_visual.train_optim import lr_lambda
from unified_grn.configuration_grn import GRNConfig
from unified_grn.modeling_grn import GRNForConditionalGeneration
from unified_grn.training.config import OptimConfig, TrainConfig

__all__ = [
    "EMA",
    "Precision",
    "build_model",
    "build_optimizer",
    "choose_precision",
    "deepspeed_initialize",
    "BACKBONE_FIELDS",
    "OBJECTIVE_FIELDS",
    "grn_config_from",
    "backbone_overrides_check",
    "init_from_overrides",
    "init_weights",
    "param_groups",
    "resolve_deepspeed_config",
    "lr_lambda",
    "zero_stage",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Precision:
    """The training dtype and why it was chosen."""

    dtype: torch.dtype
    reason: str

    @property
    def bf16(self) -> bool:
        return self.dtype == torch.bfloat16


def choose_precision(requested: str, device: torch.device) -> Precision:
    """``auto``: bf16 on a CUDA device that supports it, else fp32. Logged."""
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if requested == "bf16" and device.type != "cuda":
        logger.warning("run.precision=bf16 on %s: it works but is far slower than fp32 there", device.type)
    if requested == "fp32" or (requested == "auto" and not cuda_bf16):
        reason = "requested" if requested == "fp32" else f"no bf16-capable CUDA device ({device.type})"
        precision = Precision(torch.float32, reason)
    else:
        precision = Precision(torch.bfloat16, "requested" if requested == "bf16" else "CUDA supports bf16")
    logger.info("precision: %s (%s)", str(precision.dtype).removeprefix("torch."), precision.reason)
    return precision


# ----------------------------------------------------------------------------- DeepSpeed config


def zero_stage(ds_config: dict[str, Any] | None) -> int | None:
    """The ZeRO stage of a DeepSpeed config (None: no DeepSpeed)."""
    if ds_config is None:
        return None
    return int(ds_config.get("zero_optimization", {}).get("stage", 0))


def resolve_deepspeed_config(
    raw: dict[str, Any],
    cfg: TrainConfig,
    micro_batch_size: int,
    accumulation: int,
    world_size: int,
    hidden_size: int,
    precision: Precision,
    cuda: bool,
) -> dict[str, Any]:
    """A copy of ``raw`` with every ``"auto"`` filled from the typed config (README of configs/deepspeed)."""
    o = cfg.optim
    values = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": accumulation,
        "train_batch_size": micro_batch_size * accumulation * world_size,
        "gradient_clipping": o.grad_clip,
        "lr": o.lr,
        "betas": list(o.betas),
        "eps": o.eps,
        "weight_decay": o.weight_decay,
        "enabled": precision.bf16,  # bf16.enabled (fp16 is never "auto")
        "reduce_bucket_size": hidden_size * hidden_size,
        "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "stage3_param_persistence_threshold": 10 * hidden_size,
    }

    def fill(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            return {k: fill(v, f"{path}.{k}" if path else k) for k, v in node.items()}
        if node == "auto":
            key = path.rsplit(".", 1)[-1]
            if key not in values:
                raise ValueError(f"DeepSpeed config: no value for 'auto' at {path}")
            return values[key]
        return node

    config = fill(copy.deepcopy(raw), "")
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size"):
        config[key] = values[key]  # the typed config owns the batch, whatever the file says
    if config.get("bf16", {}).get("enabled") and not precision.bf16:
        logger.warning(
            "the DeepSpeed config enables bf16 although the chosen precision is fp32; keeping fp32"
        )
        config["bf16"]["enabled"] = False
    config.setdefault("bf16", {})["enabled"] = precision.bf16
    params = config.get("optimizer", {}).get("params")
    if not cuda and params is not None and not params.get("torch_adam", False):
        logger.info("CPU run: optimizer.params.torch_adam=true (DeepSpeed's Adam ops compile for minutes)")
        params["torch_adam"] = True
    return config


# ----------------------------------------------------------------------------- model


def grn_config_from(cfg: TrainConfig, attn: str) -> GRNConfig:
    """The ``GRNConfig`` of ``cfg.model`` (preset + overrides) with the backbone's attention set."""
    config = GRNConfig.from_preset(cfg.model.preset, **cfg.model.overrides)
    config.text_config._attn_implementation = attn  # the backbone's only: not the visual tokenizer's
    return config


#: ``GRNConfig`` fields read only by the training objective and the collator, not by any weight:
#: ``model.overrides`` may change them on a saved model (``model.init_from``).
OBJECTIVE_FIELDS = (
    "condition_drop_prob",
    "pt_distribution",
    "pt_logit_mean",
    "pt_logit_std",
    "pt_logit_by_task",
    "text_loss_weight",
    "visual_focal_gamma",
    "visual_round_weights",
)


def init_from_overrides(config: GRNConfig, overrides: dict[str, Any]) -> GRNConfig:
    """Apply ``model.overrides`` to the config of an ``init_from`` model, in place.

    Objective fields (:data:`OBJECTIVE_FIELDS`) are set; any other key must equal the saved
    value (it would change the weights' layout), else ``ValueError`` names it.
    """
    for key, value in overrides.items():
        saved = getattr(config, key, "<unset>")
        if key in OBJECTIVE_FIELDS:
            setattr(config, key, value)
        elif saved != value:
            raise ValueError(
                f"model.overrides.{key}={value!r} differs from the init_from model's {saved!r}; with "
                f"model.init_from only {list(OBJECTIVE_FIELDS)} can change (build a new model with "
                "model.preset / model.backbone for the rest)"
            )
    config._check_choices()
    config._check_round_weights()
    return config


def _gather(params: list[nn.Parameter], zero3: bool):
    if not zero3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=0)


@torch.no_grad()
def init_weights(model: GRNForConditionalGeneration, seed: int, zero3: bool, rank: int = 0) -> None:
    """Initialise every module once with ``seed`` (the same values under plain, ZeRO-2 and ZeRO-3).

    transformers' ``initialize_weights_zero3`` order (children first, each sub-model with its own
    ``_initialize_weights``), with each module's parameters gathered under ZeRO-3 and written on
    rank 0 only.
    """
    from transformers import PreTrainedModel
    from transformers.initialization import guard_torch_init_functions

    def apply(module: nn.Module, fn) -> None:
        for child in module.children():
            apply(child, child._initialize_weights if isinstance(child, PreTrainedModel) else fn)
        params = list(module.parameters(recurse=False))
        for child in module.children():
            if not isinstance(child, PreTrainedModel):
                params.extend(child.parameters(recurse=False))
        with _gather(params, zero3):
            if rank == 0 or not zero3:
                fn(module, False)

    for module in model.modules():
        module.__dict__.pop("_is_hf_initialized", None)
    with torch.random.fork_rng(devices=[]), guard_torch_init_functions():
        torch.manual_seed(seed)
        apply(model, model._initialize_weights)
    model.tie_weights()


def _build_skeleton(config: GRNConfig, zero3_config: dict[str, Any] | None) -> GRNForConditionalGeneration:
    """The model with uninitialised weights (partitioned while built under ZeRO-3)."""
    from transformers.initialization import no_init_weights

    contexts = contextlib.ExitStack()
    with contexts:
        contexts.enter_context(no_init_weights())
        if zero3_config is not None:
            import deepspeed

            contexts.enter_context(deepspeed.zero.Init(config_dict_or_path=zero3_config))
        return GRNForConditionalGeneration(config)


def build_model(
    cfg: TrainConfig,
    visual_tokenizer: HBQTokenizer,
    attn: str,
    zero3_config: dict[str, Any] | None = None,
    rank: int = 0,
) -> GRNForConditionalGeneration:
    """The GRN model of ``cfg.model``: a preset (seeded init), a local backbone or a saved GRN folder.

    Under ZeRO-3 (``zero3_config``) a preset model is built inside ``zero.Init`` (partitioned as
    it is built). Pretrained weights (``backbone``, ``init_from``) are loaded whole on every rank
    and partitioned by ``deepspeed.initialize`` (``loading.from_backbone`` also accepts a
    partitioned load: it gathers the embedding for its scale, ``loading.embedding_rms``).
    """
    m = cfg.model
    seed = cfg.run.seed
    if m.init_from is not None:
        model = GRNForConditionalGeneration.from_pretrained(m.init_from, attn_implementation=attn)
        init_from_overrides(model.config, m.overrides)
    elif m.backbone is not None:
        backbone_overrides_check(m.overrides)
        torch.manual_seed(seed)  # GRN's own modules are initialised in from_backbone
        grn_fields = {
            k: v for k, v in grn_config_from(cfg, attn).to_diff_dict().items() if k in BACKBONE_FIELDS
        }
        model = GRNForConditionalGeneration.from_backbone(
            m.backbone,
            visual_tokenizer=visual_tokenizer,
            attn_implementation=attn,
            **grn_fields,
        )
    else:
        model = _build_skeleton(grn_config_from(cfg, attn), zero3_config)
        init_weights(model, seed, zero3_config is not None, rank)
    model.visual_tokenizer = visual_tokenizer
    if m.freeze_backbone:
        model.backbone.requires_grad_(False)
    if m.gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return model


#: GRN fields a preset (and ``model.overrides``) passes on to ``from_backbone``; the rest (the
#: text config, ``base_vocab_size``) comes from the backbone folder, ``C`` and ``M`` from the
#: visual tokenizer. ``visual_init_std`` unset: the backbone's embedding RMS.
BACKBONE_FIELDS = OBJECTIVE_FIELDS + (
    "variant",
    "num_class_tokens",
    "max_latent_grid",
    "pt_frequency_dim",
    "vocab_pad_multiple",
    "visual_init_std",
)


def backbone_overrides_check(overrides: dict[str, Any]) -> None:
    """Refuse ``model.overrides`` keys that a ``model.backbone`` build would not use."""
    unused = sorted(set(overrides) - set(BACKBONE_FIELDS))
    if unused:
        raise ValueError(
            f"model.overrides {unused} cannot apply with model.backbone (the backbone folder and "
            f"the visual tokenizer decide them); overridable there: {list(BACKBONE_FIELDS)}"
        )


# ----------------------------------------------------------------------------- optimizer


def param_groups(model: GRNForConditionalGeneration, optim: OptimConfig, backbone_lr: float | None):
    """AdamW groups: (backbone | GRN modules) x (decay on >= 2-D | none on 1-D); frozen left out.

    Each group carries its own ``lr``; empty groups are dropped.
    """
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        ndim = len(getattr(p, "ds_shape", p.shape))  # ZeRO-3 partitions are flat
        groups.setdefault((id(p) in backbone_ids, ndim >= 2), []).append(p)
    out = []
    for (is_backbone, decay), params in sorted(groups.items()):
        lr = backbone_lr if (is_backbone and backbone_lr is not None) else optim.lr
        out.append({"params": params, "lr": lr, "weight_decay": optim.weight_decay if decay else 0.0})
    if not out:
        raise ValueError("no trainable parameters (is everything frozen?)")
    return out


def build_optimizer(model: nn.Module, groups: list[dict], optim: OptimConfig, max_steps: int):
    """Plain PyTorch: AdamW over ``groups`` and its lr schedule (:func:`lr_lambda`)."""
    optimizer = torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(optim, max_steps))
    return optimizer, scheduler


def deepspeed_initialize(
    model: nn.Module, groups: list[dict], ds_config: dict[str, Any], optim: OptimConfig, max_steps: int
):
    """A DeepSpeed engine (the process group must exist already) -> ``(engine, optimizer, scheduler)``."""
    import deepspeed

    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model,
        model_parameters=groups,
        config=ds_config,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(optim, max_steps)),
        dist_init_required=False,
    )
    return engine, optimizer, scheduler


# ----------------------------------------------------------------------------- EMA


class EMA:
    """``ema = decay * ema + (1 - decay) * weight`` over the trainable parameters, in fp32."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {
            name: p.detach().float().clone() for name, p in module.named_parameters() if p.requires_grad
        }

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for name, p in module.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:5]}")
        self.shadow = {k: v.float().clone() for k, v in state.items() if k in self.shadow}
