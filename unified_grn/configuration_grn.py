"""Configuration of the unified GRN model, its presets and its sampling defaults.

GRN paper (Han et al., 2026, arXiv 2604.13030), Sec. 3.2 (the refinement network, Eq. 4-7,
Alg. 2) and Appendix D, Table 8 (model sizes). ``GRN_PRESETS`` is the only place model sizes
appear; ``GRNConfig.from_preset(name, **overrides)`` builds one.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

from transformers import AutoConfig, GenerationConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from tokenizers_visual.modeling_hbq import HBQTokenizerConfig
from unified_grn.text_tokenizer import BYTE_VOCAB_SIZE
from unified_grn.vocab import MODALITY_TOKENS, GRNVocab

__all__ = ["GRN_PRESETS", "GRNConfig", "GRNGenerationConfig"]

logger = logging.getLogger(__name__)

# The offline byte-level tokenizer's BOS / EOS ids (text_tokenizer.py). No pad_token_id: pads are
# masked anyway, and an embedding padding_idx breaks weight init under deepspeed.zero.Init.
_BYTE_SPECIAL_IDS = dict(bos_token_id=256, eos_token_id=257)


def _padded_vocab_size(base_vocab_size: int, num_class_tokens: int, multiple: int) -> int:
    needed = base_vocab_size + len(MODALITY_TOKENS) + num_class_tokens
    return math.ceil(needed / multiple) * multiple


_TINY_TEXT = dict(
    model_type="llama",
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    vocab_size=320,
    **_BYTE_SPECIAL_IDS,
)
_C2I = dict(visual_tokenizer_config="hbq-paper-image", variant="ind", num_class_tokens=1000)
_C2I_PT = dict(pt_logit_mean=-0.8, pt_logit_std=0.8, max_latent_grid=(1, 16, 16))  # official C2I


def _c2i_text(depth: int, width: int, heads: int) -> dict[str, Any]:
    # JiT-style SwiGLU width int(4 * d * 2 / 3), as the official C2I blocks.
    return dict(
        model_type="llama",
        hidden_size=width,
        intermediate_size=int(4 * width * 2 / 3),
        num_hidden_layers=depth,
        num_attention_heads=heads,
        max_position_embeddings=1024,
    )


# Official T2I/T2V block: Qwen3-style (qk-norm, SwiGLU 8192), head_dim 128 (grn_official.md Sec. 3.1).
_T2IV_TEXT = dict(
    model_type="qwen3",
    hidden_size=2304,
    intermediate_size=8192,
    num_hidden_layers=28,
    num_attention_heads=18,
    num_key_value_heads=18,
    head_dim=128,
)

#: Named configurations. ``GRN-tiny`` is for tests (about 0.3M parameters), ``GRN-shapes`` the
#: CPU model for the 64x64 shapes world (8x8 latent grid, 9-frame videos -> 3x8x8), the others
#: are Table 8 (C2I: GRN-B/L/H/G; T2I/T2V: GRN-2B). The paper's C2I blocks use adaLN and
#: in-context class tokens; here a causal LM reads the class token in its prompt, so parameter
#: counts differ from Table 8 by the missing adaLN weights.
GRN_PRESETS: dict[str, dict[str, Any]] = {
    "GRN-tiny": dict(
        text_config=_TINY_TEXT,
        visual_tokenizer_config="hbq-tiny",
        num_class_tokens=10,
        max_latent_grid=(3, 4, 4),
    ),
    "GRN-shapes": dict(
        text_config=dict(
            model_type="llama",
            hidden_size=256,
            intermediate_size=688,
            num_hidden_layers=8,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=512,
        ),
        visual_tokenizer_config="hbq-shapes",
        num_class_tokens=18,
        max_latent_grid=(3, 8, 8),
    ),
    "GRN-B": dict(text_config=_c2i_text(12, 768, 12), **_C2I, **_C2I_PT),
    "GRN-L": dict(text_config=_c2i_text(24, 1024, 16), **_C2I, **_C2I_PT),
    "GRN-H": dict(text_config=_c2i_text(32, 1280, 16), **_C2I, **_C2I_PT),
    "GRN-G": dict(text_config=_c2i_text(40, 1664, 16), **_C2I, **_C2I_PT),
    "GRN-2B-T2I": dict(
        text_config=dict(_T2IV_TEXT, max_position_embeddings=8192),
        visual_tokenizer_config="hbq-paper-video",
        max_latent_grid=(1, 64, 64),
    ),
    "GRN-2B-T2V": dict(
        text_config=dict(_T2IV_TEXT, max_position_embeddings=131072),
        visual_tokenizer_config="hbq-paper-video",
        max_latent_grid=(21, 64, 64),
    ),
}

VARIANTS = ("bit", "ind")
PT_DISTRIBUTIONS = ("logit_normal", "uniform")
PT_TASKS = ("t2i", "t2v", "c2i", "chat")  # tasks with target blocks (pt_logit_by_task keys)


class GRNConfig(PreTrainedConfig):
    r"""Configuration of :class:`~unified_grn.modeling_grn.GRNForConditionalGeneration`.

    A GRN model is a causal LM (``text_config``) that reads text and writes HBQ codes of a visual
    tokenizer (``visual_tokenizer_config``). Defaults build ``GRN-tiny``.

    Args:
        text_config (`dict | PreTrainedConfig`, defaults to a 2-layer llama): config of the
            backbone, any model type with an ``AutoModelForCausalLM`` class (llama, qwen2, qwen3,
            ...). Its ``vocab_size`` is the final row count of the embedding and ``lm_head``
            (text ids + GRN special tokens, rounded up to ``vocab_pad_multiple``); it is raised to
            that at construction, so a saved model never resizes again.
        visual_tokenizer_config (`dict | HBQTokenizerConfig`, defaults to ``hbq-shapes``): config
            of the HBQ visual tokenizer; its ``latent_channels`` and ``rounds`` are ``C`` and ``M``.
        variant (`str`, defaults to `"bit"`): ``"bit"`` (GRN_bit: ``C * M`` binary slots per
            position) or ``"ind"`` (GRN_ind: ``C`` slots of ``2^M`` values), Sec. 3.1.
        num_channels (`int | None`, defaults to `None`): ``C``; ``None`` takes the tokenizer's
            ``latent_channels``, a value that disagrees with it is an error.
        num_rounds (`int | None`, defaults to `None`): ``M``; ``None`` takes the tokenizer's
            ``rounds``, a value that disagrees with it is an error.
        num_class_tokens (`int`, defaults to 0): number of ``<|class_k|>`` tokens (class-to-image).
        base_vocab_size (`int`, defaults to 259): ids of the text tokenizer before GRN's special
            tokens (259 = the offline byte-level tokenizer of ``text_tokenizer.py``).
        vocab_pad_multiple (`int`, defaults to 64): the backbone vocabulary is rounded up to this.
        max_latent_grid (`list[int]`, defaults to `[3, 4, 4]`): largest latent grid ``(T', H', W')``;
            sizes the 3D position embedding of visual positions.
        condition_drop_prob (`float`, defaults to 0.1): probability that the collator replaces a
            generation sample's condition by the empty prompt (classifier-free guidance).
        pt_distribution (`str`, defaults to `"logit_normal"`): training distribution of the kept
            fraction ``p_t`` (Alg. 2): ``"logit_normal"`` = ``sigmoid(N(pt_logit_mean,
            pt_logit_std))`` as the official code, or ``"uniform"`` on [0, 1] as the paper's text.
        pt_logit_mean (`float`, defaults to -1.3): mean of the logit-normal (official T2I/T2V
            script -1.3; the C2I presets use the official C2I -0.8).
        pt_logit_std (`float`, defaults to 1.3): std of the logit-normal (C2I presets: 0.8).
        pt_logit_by_task (`dict[str, list[float]] | None`, defaults to `None`): per-task
            ``[mean, std]`` of the logit-normal, e.g. ``{"c2i": [-0.8, 0.8]}``: a target block of a
            listed task (``"t2i"``, ``"t2v"``, ``"c2i"``, ``"chat"``) draws its ``p_t`` from its
            own law, the others from ``pt_logit_mean`` / ``pt_logit_std`` (the official code's
            separate T2I/T2V and C2I scripts, in one unified run). Read by the training loop.
        pt_frequency_dim (`int`, defaults to 256): sinusoidal features of the ``p_t`` embedding.
        text_loss_weight (`float`, defaults to 1.0): weight of the next-token loss in ``loss``.
        visual_focal_gamma (`float`, defaults to 0.0): focal exponent on the slot cross-entropy in
            ``loss`` (``(1 - p_true) ** gamma`` per slot, Lin et al. 2017; not in the paper): 0 is
            Eq. 7; ``visual_loss`` in the output always reports Eq. 7 itself.
        visual_round_weights (`list[float] | None`, defaults to `None`): one weight per HBQ round
            (coarse to fine, GRN_bit only) on the slot cross-entropy in ``loss``, normalised by
            their mean so the loss keeps Eq. 7's scale; e.g. ``[1, 1, 0.5, 0.25]`` spends more of
            the gradient on rounds 1-2, where the shapes worlds' object shape lives. Not in the
            paper; ``None`` is Eq. 7, and ``visual_loss`` always reports Eq. 7 itself.
        visual_init_std (`float | None`, defaults to `None`): init std of the HBQ input rows;
            ``None`` uses the backbone's ``initializer_range``; ``from_backbone`` stores the RMS of
            the pretrained text embedding here so visual and text inputs start at the same scale.
    """

    model_type = "grn"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama", init_kwargs=_TINY_TEXT),
        "visual_tokenizer_config": SubConfigSpec(config_class=HBQTokenizerConfig),
    }

    text_config: dict | PreTrainedConfig | None = None
    visual_tokenizer_config: dict | PreTrainedConfig | None = None
    variant: str = "bit"
    num_channels: int | None = None
    num_rounds: int | None = None
    num_class_tokens: int = 0
    base_vocab_size: int = BYTE_VOCAB_SIZE
    vocab_pad_multiple: int = 64
    max_latent_grid: list[int] | tuple[int, ...] = (3, 4, 4)
    condition_drop_prob: float = 0.1
    pt_distribution: str = "logit_normal"
    pt_logit_mean: float = -1.3
    pt_logit_std: float = 1.3
    pt_logit_by_task: dict[str, list[float]] | None = None
    pt_frequency_dim: int = 256
    text_loss_weight: float = 1.0
    visual_focal_gamma: float = 0.0
    visual_round_weights: list[float] | None = None
    visual_init_std: float | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self.max_latent_grid = [int(x) for x in self.max_latent_grid]
        self._check_choices()
        self._resolve_channels_and_rounds()
        self._check_round_weights()
        if self.text_config.vocab_size < self.min_backbone_vocab_size:
            logger.info(
                "text_config.vocab_size %d -> %d (text ids + GRN specials)",
                self.text_config.vocab_size,
                self.min_backbone_vocab_size,
            )
            self.text_config.vocab_size = self.min_backbone_vocab_size

    def _check_choices(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}.")
        if self.pt_distribution not in PT_DISTRIBUTIONS:
            raise ValueError(
                f"pt_distribution must be one of {PT_DISTRIBUTIONS}, got {self.pt_distribution!r}."
            )
        self._check_pt_logit_by_task()
        if not self.visual_focal_gamma >= 0.0:
            raise ValueError(f"visual_focal_gamma must be >= 0 (0: Eq. 7), got {self.visual_focal_gamma}.")
        if not 0.0 <= self.condition_drop_prob <= 1.0:
            raise ValueError(f"condition_drop_prob must be in [0, 1], got {self.condition_drop_prob}.")
        if len(self.max_latent_grid) != 3 or min(self.max_latent_grid) < 1:
            raise ValueError(
                f"max_latent_grid must be 3 positive ints (T', H', W'), got {self.max_latent_grid}."
            )
        if self.num_class_tokens < 0 or self.base_vocab_size < 1:
            raise ValueError("num_class_tokens must be >= 0 and base_vocab_size >= 1.")

    def _check_pt_logit_by_task(self) -> None:
        laws = self.pt_logit_by_task
        if laws is None:
            return
        if not isinstance(laws, dict):
            raise ValueError(f"pt_logit_by_task must be a dict task -> [mean, std], got {laws!r}.")
        for task, law in laws.items():
            if task not in PT_TASKS:
                raise ValueError(f"pt_logit_by_task: unknown task {task!r}; use one of {PT_TASKS}.")
            if not (isinstance(law, (list, tuple)) and len(law) == 2 and float(law[1]) > 0):
                raise ValueError(f"pt_logit_by_task[{task!r}] must be [mean, std] with std > 0, got {law!r}.")
        if self.pt_distribution != "logit_normal":
            raise ValueError("pt_logit_by_task needs pt_distribution='logit_normal'.")
        self.pt_logit_by_task = {task: [float(m), float(s)] for task, (m, s) in laws.items()}

    def pt_logit_law(self, task: str) -> tuple[float, float]:
        """``(mean, std)`` of the ``p_t`` logit-normal for a target block of ``task``."""
        law = (self.pt_logit_by_task or {}).get(task)
        return (law[0], law[1]) if law is not None else (self.pt_logit_mean, self.pt_logit_std)

    def _check_round_weights(self) -> None:
        weights = self.visual_round_weights
        if weights is None:
            return
        if self.variant != "bit":
            raise ValueError(
                "visual_round_weights needs variant='bit' (GRN_ind predicts all rounds as one class)."
            )
        if not isinstance(weights, (list, tuple)) or len(weights) != self.num_rounds:
            raise ValueError(
                f"visual_round_weights must list one weight per HBQ round ({self.num_rounds}), got {weights!r}."
            )
        weights = [float(w) for w in weights]
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"visual_round_weights must be >= 0 with a positive sum, got {weights}.")
        self.visual_round_weights = weights

    def _resolve_channels_and_rounds(self) -> None:
        vt = self.visual_tokenizer_config
        if vt.rounds is None:
            raise ValueError("visual_tokenizer_config has rounds=None (unquantized); GRN needs HBQ codes.")
        for field, vt_field in (("num_channels", "latent_channels"), ("num_rounds", "rounds")):
            value, expected = getattr(self, field), getattr(vt, vt_field)
            if value is None:
                setattr(self, field, expected)
            elif value != expected:
                raise ValueError(
                    f"{field}={value} disagrees with visual_tokenizer_config.{vt_field}={expected}; "
                    f"GRN's C and M must equal the visual tokenizer's."
                )

    @property
    def min_backbone_vocab_size(self) -> int:
        """Text ids + GRN special tokens, rounded up to ``vocab_pad_multiple``."""
        return _padded_vocab_size(self.base_vocab_size, self.num_class_tokens, self.vocab_pad_multiple)

    @property
    def vocab(self) -> GRNVocab:
        """The id layout (``unified_grn.vocab``) of this config."""
        return GRNVocab(
            base_vocab_size=self.base_vocab_size,
            backbone_vocab_size=self.text_config.vocab_size,
            num_class_tokens=self.num_class_tokens,
            variant=self.variant,
            num_channels=self.num_channels,
            num_rounds=self.num_rounds,
        )

    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> GRNConfig:
        """A config from :data:`GRN_PRESETS`; ``overrides`` replace fields (``text_config`` dicts
        are merged into the preset's, so ``text_config={"model_type": "qwen2"}`` swaps the family).
        ``visual_tokenizer_config`` may be an HBQ tokenizer preset name such as ``"hbq-tiny"``."""
        if name not in GRN_PRESETS:
            raise ValueError(f"unknown GRN preset {name!r}; known presets: {sorted(GRN_PRESETS)}")
        kwargs = copy.deepcopy(GRN_PRESETS[name])
        text_override = overrides.pop("text_config", None)
        if isinstance(text_override, dict):
            kwargs["text_config"] = {**kwargs["text_config"], **text_override}
        elif text_override is not None:
            kwargs["text_config"] = text_override
        kwargs.update(overrides)
        if isinstance(kwargs.get("visual_tokenizer_config"), str):
            kwargs["visual_tokenizer_config"] = HBQTokenizerConfig.from_preset(
                kwargs["visual_tokenizer_config"]
            )
        if isinstance(kwargs["text_config"], dict):
            # Presets give no vocab_size: the backbone is built at exactly text ids + specials (padded).
            vocab_size = _padded_vocab_size(
                kwargs.get("base_vocab_size", BYTE_VOCAB_SIZE),
                kwargs.get("num_class_tokens", 0),
                kwargs.get("vocab_pad_multiple", 64),
            )
            kwargs["text_config"] = {"vocab_size": vocab_size, **_BYTE_SPECIAL_IDS, **kwargs["text_config"]}
        return cls(**kwargs)


class GRNGenerationConfig(GenerationConfig):
    r"""Sampling defaults saved as ``generation_config.json`` next to a GRN model.

    It is a ``GenerationConfig`` (so text decoding reads ``max_new_tokens``, ``do_sample``, ...
    as usual) with the visual sampler's fields added:

    Args:
        height (`int`): image/video height in pixels.
        width (`int`): width in pixels.
        num_frames (`int`, defaults to 1): frames of a video (``1 + s_t k``); 1 = image.
        num_steps (`int`, defaults to 50): refinement steps (paper: 50 fixed steps, Appendix D).
        guidance_scale (`float`, defaults to 3.0): classifier-free guidance scale on logits.
        temperature (`float`, defaults to 1.0): sampling temperature of the visual tokens (and of
            text when ``do_sample``).
        schedule (`str`, defaults to `"cosine"`): kept-fraction schedule of the sampler.
        cfg_start_pt (`float`, defaults to 0.0): CFG is applied once the kept fraction reaches
            this value (the official C2I "CFG interval"; 0 = always).
    """

    def __init__(self, **kwargs: Any) -> None:
        self.height = kwargs.pop("height", 64)
        self.width = kwargs.pop("width", 64)
        self.num_frames = kwargs.pop("num_frames", 1)
        self.num_steps = kwargs.pop("num_steps", 50)
        self.schedule = kwargs.pop("schedule", "cosine")
        self.cfg_start_pt = kwargs.pop("cfg_start_pt", 0.0)
        kwargs.setdefault("guidance_scale", 3.0)
        kwargs.setdefault("temperature", 1.0)
        kwargs.setdefault("do_sample", True)
        kwargs.setdefault("max_new_tokens", 64)
        super().__init__(**kwargs)

    @classmethod
    def from_grn_config(cls, config: GRNConfig, **overrides: Any) -> GRNGenerationConfig:
        """Defaults for ``config``: the largest image its latent grid allows, 50 steps."""
        stride = config.visual_tokenizer_config.spatial_stride
        _, h, w = config.max_latent_grid
        defaults = dict(height=stride * h, width=stride * w)
        return cls(**{**defaults, **overrides})
