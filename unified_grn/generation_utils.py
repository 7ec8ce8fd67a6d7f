"""Argument checks, defaults and seeds of ``GRNForConditionalGeneration.generate`` (``generation.py``).

GRN paper Appendix E.4 (decoding hyper-parameters) and the official per-task defaults
(research/grn_official.md Sec. 5-6): T2I guidance 3.0, temperature 1.1; T2V guidance 4.0,
temperature 1.0; I2V guidance 3.0 (official ``tools/i2v_infer.py``; temperature not given there,
1.0 as T2V); C2I guidance 2.35 on the CFG interval [0.44, 1], temperature 1.31; 50 steps. The task
is C2I when every prompt is a class label, I2V for a video with ``image=``. A guidance or
temperature setting is taken, first found first: the ``generate`` argument, then the checkpoint's
``generation_config`` where it differs from :class:`GRNGenerationConfig`'s own default (its
``cfg_start_pt`` is the interval's ``lo``), then the task default. Size, steps and schedule come
from the generation config (a video's default length: the longest its latent grid allows, when
the config says 1 frame); so do ``min_steps`` / ``entropy_k`` / ``entropy_b`` when it has them.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig

from unified_grn.configuration_grn import GRNGenerationConfig
from unified_grn.refinement_config import RefinementConfig, _is_int

__all__ = [
    "MODALITIES",
    "OUTPUT_TYPES",
    "TASK_DEFAULTS",
    "Prompt",
    "VisualSettings",
    "make_generators",
    "normalize_prompts",
    "resolve_visual_settings",
    "text_generation_config",
    "text_seeds",
    "unexpected_arguments",
]

MODALITIES = ("image", "video", "text")
OUTPUT_TYPES = ("pil", "np", "pt", "codes")
Prompt = str | int | Sequence[int] | None

TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "t2i": dict(guidance_scale=3.0, temperature=1.1, guidance_interval=(0.0, 1.0)),
    "t2v": dict(guidance_scale=4.0, temperature=1.0, guidance_interval=(0.0, 1.0)),
    "i2v": dict(guidance_scale=3.0, temperature=1.0, guidance_interval=(0.0, 1.0)),
    "c2i": dict(guidance_scale=2.35, temperature=1.31, guidance_interval=(0.44, 1.0)),
}


# Names users bring from diffusers / other samplers, mapped to this API's.
ARGUMENT_ALIASES = {
    "num_inference_steps": "num_steps",
    "steps": "num_steps",
    "cfg_scale": "guidance_scale",
    "cfg": "guidance_scale",
    "guidance": "guidance_scale",
    "seeds": "seed",
    "num_images": "num_images_per_prompt",
    "num_samples": "num_images_per_prompt",
    "class_labels": "class_label",
    "prompts": "prompt",
    "images": "image",
}


def unexpected_arguments(where: str, unknown: Sequence[str], valid: Sequence[str]) -> TypeError:
    """A ``TypeError`` naming ``unknown`` arguments, the likely intended names and the valid ones."""
    hints = []
    for name in sorted(unknown):
        guess = ARGUMENT_ALIASES.get(name)
        if guess not in valid:
            close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.75)
            guess = close[0] if close else None
        if guess is not None:
            hints.append(f"{name!r} -> {guess!r}")
    hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
    return TypeError(
        f"{where} got unexpected arguments {sorted(unknown)}{hint}; it takes: {', '.join(valid)}."
    )


def _nearest(value: int, step: int, offset: int = 0) -> str:
    """The valid values ``offset + step * k`` (``>= max(offset, 1)``) just below and above ``value``."""
    below = offset + max((value - offset) // step, 0) * step
    options = sorted({v for v in (below, below + step) if v >= max(offset, 1)})
    return " or ".join(str(v) for v in options)


# ----------------------------------------------------------------------------- prompts and seeds
def normalize_prompts(
    prompt: Prompt | Sequence[Prompt], class_label: int | Sequence[int] | None
) -> list[Prompt]:
    """``prompt`` / ``class_label`` -> a non-empty list of prompts (text, class label, ids or None)."""
    if class_label is not None:
        if prompt is not None:
            raise ValueError("pass either prompt= or class_label=, not both.")
        labels = [class_label] if _is_int(class_label) else list(class_label)
        if not labels or not all(_is_int(c) for c in labels):
            raise ValueError(f"class_label must be an int or a non-empty list of ints, got {class_label!r}.")
        return labels
    if prompt is None or isinstance(prompt, str) or _is_int(prompt):
        return [prompt]
    if not isinstance(prompt, Sequence):
        raise ValueError(
            f"prompt must be a string, class label, id list, None or a list of them; got {prompt!r}."
        )
    prompts = list(prompt)
    if not prompts:
        raise ValueError(
            "prompt is an empty list: pass at least one prompt ('' or None is the unconditional prompt)."
        )
    for p in prompts:
        ids = isinstance(p, Sequence) and not isinstance(p, str) and all(_is_int(i) for i in p)
        if not (p is None or isinstance(p, str) or _is_int(p) or ids):
            raise ValueError(
                f"each prompt must be a string, a class label, a list of ids or None; got {p!r}."
            )
    return prompts


def make_generators(
    seed: int | Sequence[int] | None,
    generator: torch.Generator | Sequence[torch.Generator] | None,
    batch_size: int,
    device: torch.device,
) -> torch.Generator | list[torch.Generator] | None:
    """``seed=int`` -> sample ``i`` seeded with ``seed + i``; a list of seeds / generators -> one each."""
    if seed is not None and generator is not None:
        raise ValueError("pass either seed= or generator=, not both.")
    if generator is not None:
        if isinstance(generator, torch.Generator):
            return generator
        gens = list(generator)
        if len(gens) != batch_size or not all(isinstance(g, torch.Generator) for g in gens):
            raise ValueError(
                f"generator must be a torch.Generator or a list of {batch_size} (one per sample), "
                f"got {len(gens)} items."
            )
        return gens
    if seed is None:
        return None
    seeds = [seed + i for i in range(batch_size)] if _is_int(seed) else list(seed)
    if len(seeds) != batch_size or not all(_is_int(s) for s in seeds):
        raise ValueError(
            f"seed must be an int or a list of {batch_size} ints (one per sample), got {seed!r}."
        )
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def text_seeds(gens: torch.Generator | list[torch.Generator] | None, batch_size: int) -> list[int] | None:
    """One integer seed per sample, drawn from its generator (text decoding seeds the global RNG)."""
    if gens is None:
        return None
    gens = [gens] * batch_size if isinstance(gens, torch.Generator) else gens
    return [int(torch.randint(0, 2**62, (1,), generator=g, device=g.device).item()) for g in gens]


# ----------------------------------------------------------------------------- visual settings
@dataclass(frozen=True)
class VisualSettings:
    """Everything ``generate`` needs for one image/video call, checked."""

    modality: str
    task: str
    height: int
    width: int
    num_frames: int
    grid: tuple[int, int, int]
    refinement: RefinementConfig
    output_type: str


def task_of(modality: str, prompts: list[Prompt], image: Any) -> str:
    if modality == "video":
        return "t2v" if image is None else "i2v"
    return "c2i" if all(_is_int(p) for p in prompts) else "t2i"


def _checkpoint_value(gen: GRNGenerationConfig, name: str) -> Any:
    """The checkpoint's choice for a task-dependent setting, or None when it kept the class default."""
    default = GRNGenerationConfig()
    if name == "guidance_interval":
        start = getattr(gen, "cfg_start_pt", 0.0)
        return (float(start), 1.0) if start != default.cfg_start_pt else None
    value = getattr(gen, name, None)
    return value if value is not None and value != getattr(default, name) else None


def _frames(model, modality: str, num_frames: int | None, has_image: bool) -> int:
    s_t = model.config.visual_tokenizer_config.temporal_stride
    if modality == "image":
        if num_frames not in (None, 1):
            raise ValueError(f"num_frames={num_frames} needs modality='video' (images have one frame).")
        return 1
    if num_frames is None:
        num_frames = model.generation_config.num_frames
        if num_frames == 1:  # an image checkpoint's default: the longest video the latent grid allows
            num_frames = 1 + s_t * (model.config.max_latent_grid[0] - 1)
    if not _is_int(num_frames) or num_frames < 1 or (num_frames - 1) % s_t:
        near = _nearest(num_frames, s_t, offset=1) if _is_int(num_frames) and num_frames >= 1 else "1"
        raise ValueError(
            f"num_frames must be 1 + {s_t}k (the visual tokenizer's temporal stride is {s_t}), got "
            f"{num_frames!r}; nearest valid counts: {near}."
        )
    if has_image and num_frames == 1:
        raise ValueError(f"image-to-video needs num_frames > 1 (1 + {s_t}k), got 1: the image is frame 1.")
    return num_frames


def latent_grid(model, modality: str, height, width, num_frames) -> tuple[int, int, int]:
    """Check pixel sizes against the tokenizer strides and the model's ``max_latent_grid``."""
    vt = model.config.visual_tokenizer_config
    s, s_t = vt.spatial_stride, vt.temporal_stride
    for name, size in (("height", height), ("width", width)):
        if not _is_int(size) or size < s or size % s:
            near = _nearest(size, s) if _is_int(size) and size > 0 else str(s)
            raise ValueError(
                f"{name} must be a positive multiple of the visual tokenizer's spatial stride {s}, got "
                f"{size!r}; nearest valid {name}s: {near}."
            )
    grid = (1 + (num_frames - 1) // s_t, height // s, width // s)
    limit = tuple(model.config.max_latent_grid)
    if any(g > m for g, m in zip(grid, limit)):
        largest = f"{1 + s_t * (limit[0] - 1)} frames of {limit[1] * s}x{limit[2] * s} pixels"
        raise ValueError(
            f"{modality} of {num_frames} frame(s) at {height}x{width} needs latent grid {grid}, beyond this "
            f"model's max_latent_grid {limit} (at most {largest})."
        )
    return grid


def _refinement(model, task: str, base: RefinementConfig | None, args: dict[str, Any]) -> RefinementConfig:
    """The sampler config: ``base`` (or the task / checkpoint defaults), then the explicit ``args``."""
    gen = model.generation_config
    steps, max_steps = args.pop("num_steps"), args.pop("max_steps")
    if steps is not None and max_steps is not None and steps != max_steps:
        raise ValueError(f"num_steps ({steps}) and max_steps ({max_steps}) both set T_max; they disagree.")
    explicit = {name: value for name, value in args.items() if value is not None}
    if steps is not None or max_steps is not None:
        explicit["num_steps"] = steps if steps is not None else max_steps
    if base is not None:
        return dataclasses.replace(base, **explicit)  # RefinementConfig checks every value
    defaults: dict[str, Any] = dict(num_steps=gen.num_steps, schedule=gen.schedule)
    for name, official in TASK_DEFAULTS[task].items():
        mine = _checkpoint_value(gen, name)
        defaults[name] = official if mine is None else mine
    for name in ("min_steps", "entropy_k", "entropy_b"):  # optional fields (e.g. a fitted k, b)
        if getattr(gen, name, None) is not None:
            defaults[name] = getattr(gen, name)
    return RefinementConfig(**{**defaults, **explicit})


def resolve_visual_settings(
    model, modality: str, prompts: list[Prompt], image: Any, output_type: str, args: dict[str, Any]
) -> VisualSettings:
    """Check the visual arguments of ``generate`` and fill in the defaults (see the module docstring).

    ``args`` holds height, width, num_frames, num_steps, max_steps, min_steps, guidance_scale,
    guidance_interval, temperature, schedule, selection, refine_mode and refinement_config.
    """
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"Unknown output_type {output_type!r}; expected one of {OUTPUT_TYPES}.")
    if image is not None and modality != "video":
        raise ValueError("image= is the first frame of image-to-video: use modality='video'.")
    args = dict(args)
    gen = model.generation_config
    height, width = args.pop("height"), args.pop("width")
    height, width = gen.height if height is None else height, gen.width if width is None else width
    num_frames = _frames(model, modality, args.pop("num_frames"), image is not None)
    grid = latent_grid(model, modality, height, width, num_frames)
    task = task_of(modality, prompts, image)
    interval = args.get("guidance_interval")
    if interval is not None:
        try:
            lo, hi = (float(v) for v in interval)
        except (TypeError, ValueError):
            raise ValueError(f"guidance_interval must be two numbers (lo, hi), got {interval!r}.") from None
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"guidance_interval must satisfy 0 <= lo <= hi <= 1, got {interval!r}.")
    for name in ("num_steps", "max_steps"):
        value = args.get(name)
        if value is not None and (not _is_int(value) or value < 1):
            raise ValueError(f"{name} must be an int >= 1 (refinement steps), got {value!r}.")
    refinement = _refinement(model, task, args.pop("refinement_config"), args)
    return VisualSettings(modality, task, height, width, num_frames, grid, refinement, output_type)


# ----------------------------------------------------------------------------- text
def text_generation_config(
    model,
    max_new_tokens: int | None,
    do_sample: bool | None,
    temperature: float | None,
    extra: dict[str, Any],
) -> GenerationConfig:
    """The backbone's ``GenerationConfig`` for text: the checkpoint's text fields, the arguments, and
    every id the text tokenizer cannot produce suppressed (GRN's padding rows of the ``lm_head``;
    the HBQ ids have no ``lm_head`` row at all). No ``guidance_scale``: transformers would read it
    as text CFG."""
    gen, tokenizer, vocab = model.generation_config, model.text_tokenizer, model.vocab
    sample = do_sample if do_sample is not None else gen.do_sample
    fields: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens if max_new_tokens is not None else gen.max_new_tokens,
        do_sample=sample,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        suppress_tokens=list(range(vocab.num_text_ids, vocab.backbone_vocab_size)),
    )
    if sample:
        fields.update(
            temperature=temperature if temperature is not None else gen.temperature,
            top_k=gen.top_k,
            top_p=gen.top_p,
        )
    return GenerationConfig(**{**fields, **extra})
