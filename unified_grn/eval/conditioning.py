"""Does the model use each attribute of its condition? A teacher-forced diagnostic of Eq. 7.

GRN is trained with the slot cross-entropy of Eq. 7 (paper Sec. 3.2) on corrupted codes. Here the
same loss is measured on held-out true codes twice with the *same* corruption draws: once under
the true condition and once under a condition that differs in one attribute (a class of the same
colour but another shape; a caption with every shape word changed). The difference, in nats per
slot, is how much the model's predictions depend on that attribute. A gap near zero says the model
draws the attribute from the unconditional distribution, whatever the prompt asks: no sampler
setting can then make samples follow it, only training can (the shipped model's ``RESULTS`` use
this to separate "cannot draw a square" from "does not listen to *square*").

The mean loss per HBQ round (``M`` rounds, coarse to fine, bit variant only) is reported beside it:
which rounds the model predicts well, which it leaves near chance (``ln 2 = 0.693``); and so is each
gap per round: in which rounds the model reads the attribute.

``condition_gap`` takes any codes and conditions (class labels or prompts);
``shapes_condition_gap`` runs it on the test split of the shapes world with its colour and shape
swaps (class-to-image and text-to-image).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from unified_grn.collator import GRNCollator, GRNSample
from unified_grn.data.shapes import COLORS, SHAPES, Scene, make_shapes_example, render_scene
from unified_grn.eval.ceiling import to_pixels
from unified_grn.objective import corrupt_target_blocks

__all__ = [
    "SHAPES_SWAPS",
    "condition_gap",
    "shapes_condition_gap",
    "swap_caption",
    "swap_class",
    "swap_scene",
]

logger = logging.getLogger(__name__)

Condition = int | str
SHAPES_SWAPS = ("shape", "colour")  # the attributes swap_class / swap_caption change


def _sample(condition: Condition, codes: torch.Tensor, vocab) -> GRNSample:
    if isinstance(condition, str):
        return GRNSample.text_to_image(condition, codes)
    if isinstance(condition, (int, np.integer)) and not isinstance(condition, bool):
        if not 0 <= int(condition) < vocab.num_class_tokens:
            raise ValueError(
                f"class label {condition} is outside this model's {vocab.num_class_tokens} class tokens "
                "(config.num_class_tokens); pass labels in range or prompts instead."
            )
        return GRNSample.class_to_image(int(condition), codes, vocab)
    raise TypeError(f"a condition is a class label (int) or a prompt (str), got {type(condition).__name__}.")


@torch.no_grad()
def _fixed_corruption(
    model, batch, kept_fraction: float, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """``visual_inputs`` / ``kept_fraction`` forward arguments: every target slot kept with
    probability ``kept_fraction`` (else drawn uniformly), instead of a ``p_t`` drawn per block."""
    vocab = model.vocab
    labels = vocab.labels_from_codes(batch.visual_codes)  # (N, K)
    block_index = batch.block_ids[batch.block_ids > 0] - 1  # (N,)
    is_target = batch.block_is_target[block_index]  # (N,)
    num_blocks = batch.block_is_target.shape[0]
    pt = torch.full((labels.shape[0],), float(kept_fraction), device=labels.device)
    mixed, realised = corrupt_target_blocks(
        labels, pt, block_index, is_target, num_blocks, vocab.num_classes, generator
    )
    inputs = vocab.bits_from_labels(mixed) if batch.visual_codes.dim() == 3 else mixed  # codes' layout
    return {"visual_inputs": inputs.to(batch.visual_codes.dtype), "kept_fraction": realised}


def _losses(
    model, collator, conditions, codes, seed: int, batch_size: int, kept_fraction: float | None = None
) -> tuple[float, torch.Tensor | None]:
    """Mean Eq. 7 loss over batches (batch ``b`` corrupted with ``seed + b``) and the per-round mean."""
    total, rounds, weights = 0.0, [], []
    vocab = model.vocab
    for b, start in enumerate(range(0, len(conditions), batch_size)):
        chunk = range(start, min(start + batch_size, len(conditions)))
        batch = collator([_sample(conditions[i], codes[i], vocab) for i in chunk]).to(model.device)
        generator = torch.Generator(device=model.device).manual_seed(seed + b)
        fixed = {} if kept_fraction is None else _fixed_corruption(model, batch, kept_fraction, generator)
        out = model(**batch.as_dict(), **fixed, generator=generator)
        total += out.visual_loss.item() * len(chunk)
        weights.append(len(chunk))
        if vocab.variant == "bit":
            ce = F.cross_entropy(
                rearrange(out.visual_logits.float(), "n k v -> (n k) v"), out.visual_targets.reshape(-1),
                reduction="none",
            )  # fmt: skip
            per_slot = rearrange(ce, "(n m c) -> n m c", m=vocab.num_rounds, c=vocab.num_channels)
            rounds.append(per_slot.mean(dim=(0, 2)) * len(chunk))  # slots are round-major (vocab)
    per_round = torch.stack(rounds).sum(0) / sum(weights) if rounds else None
    return total / sum(weights), per_round


def condition_gap(
    model,
    codes: Sequence[torch.Tensor],
    conditions: Sequence[Condition],
    variants: dict[str, Callable[[Condition], Condition]],
    seed: int = 0,
    batch_size: int = 32,
    repeats: int = 1,
    kept_fraction: float | None = None,
) -> dict[str, Any]:
    """Eq. 7 loss of ``codes`` under their true ``conditions`` and under each variant of them.

    Args:
        model: a ``GRNForConditionalGeneration`` (its mode is restored afterwards).
        codes: one image's HBQ codes per item: bits ``(T', H', W', C, M)`` / indices ``(T', H', W', C)``
            (an image without ``T'`` is accepted).
        conditions: the true condition of each item: a class label (int) or a prompt (str).
        variants: ``name -> f`` mapping a true condition to the altered one.
        seed: corruption seed; every variant sees exactly the true run's corruption draws (which
            depend on ``seed`` and ``batch_size``: batch ``b`` of repeat ``r`` uses ``seed + b + r * 100003``).
        batch_size: items per forward pass.
        repeats: corruption draws per item; the losses are their mean.
        kept_fraction: keep every slot with this probability (one noise level, e.g. 0.0 = the
            condition alone) instead of drawing ``p_t`` per image from the training distribution.

    Returns:
        ``{"true": L, "per_round": [...] | None, "variants": {name: L_name}, "gaps": {name: L_name - L},
        "gaps_per_round": {name: [...]} | None, "gap_stderr": {name: s} | None, "n": N, "repeats": R}``;
        losses in nats per slot (mean over blocks, as the training loss; the per-round values are
        means over positions, which equal it when every block has as many positions);
        ``gap_stderr`` is the standard error of a gap over the repeats.
    """
    if len(codes) != len(conditions) or not conditions:
        raise ValueError(
            f"need one condition per code grid and at least one item, got {len(codes)} / {len(conditions)}."
        )
    if batch_size < 1 or repeats < 1:
        raise ValueError(f"batch_size and repeats must be >= 1, got {batch_size}, {repeats}.")
    if kept_fraction is not None and not 0.0 <= kept_fraction < 1.0:
        raise ValueError(
            f"kept_fraction must be in [0, 1) (1 would leave nothing to predict), got {kept_fraction}."
        )
    collator = GRNCollator.from_model(model, condition_drop_prob=0.0)  # never drop the condition here
    altered_conditions = {name: [f(c) for c in conditions] for name, f in variants.items()}
    true, rounds, altered = [], [], {name: [] for name in variants}
    altered_rounds = {name: [] for name in variants}
    was_training = model.training
    model.eval()
    try:
        for r in range(repeats):
            draw = seed + r * 100003
            loss, per_round = _losses(
                model, collator, list(conditions), codes, draw, batch_size, kept_fraction
            )
            true.append(loss)
            rounds.append(per_round)
            for name, altered_list in altered_conditions.items():
                loss, per_round = _losses(
                    model, collator, altered_list, codes, draw, batch_size, kept_fraction
                )
                altered[name].append(loss)
                altered_rounds[name].append(per_round)
    finally:
        model.train(was_training)
    gaps = {name: np.asarray(values) - np.asarray(true) for name, values in altered.items()}
    report = {
        "true": float(np.mean(true)),
        "per_round": None
        if rounds[0] is None
        else [round(v, 5) for v in torch.stack(rounds).mean(0).tolist()],
        "variants": {name: float(np.mean(values)) for name, values in altered.items()},
        "gaps": {name: float(gap.mean()) for name, gap in gaps.items()},
        "gaps_per_round": None
        if rounds[0] is None
        else {
            name: [round(v, 6) for v in (torch.stack(values) - torch.stack(rounds)).mean(0).tolist()]
            for name, values in altered_rounds.items()
        },
        "gap_stderr": {name: float(gap.std(ddof=1) / np.sqrt(repeats)) for name, gap in gaps.items()}
        if repeats > 1
        else None,
        "n": len(conditions),
        "repeats": repeats,
        "kept_fraction": kept_fraction,
    }
    logger.info("condition gap: true %.4f, gaps %s", report["true"], report["gaps"])
    return report


def swap_class(label: int, attribute: str) -> int:
    """The shapes class (``3 * colour + shape``) with the next shape or the next colour."""
    colour, shape = divmod(int(label), len(SHAPES))
    if attribute == "shape":
        return len(SHAPES) * colour + (shape + 1) % len(SHAPES)
    if attribute == "colour":
        return len(SHAPES) * ((colour + 1) % len(COLORS)) + shape
    raise ValueError(f"attribute must be 'shape' or 'colour', got {attribute!r}.")


_SHAPE_WORD = re.compile(r"\b(" + "|".join(SHAPES) + r")(s?)\b")
_COLOUR_WORD = re.compile(r"\b(?:(an?) )?(" + "|".join(COLORS) + r")\b")


def swap_caption(caption: str, attribute: str) -> str:
    """The caption with every shape word (plurals too) or every colour word moved to the next one
    (an article before a colour follows the new word: "a purple" -> "an orange")."""
    if attribute == "shape":
        return _SHAPE_WORD.sub(lambda m: SHAPES[(SHAPES.index(m[1]) + 1) % len(SHAPES)] + m[2], caption)
    if attribute == "colour":

        def colour(m: re.Match) -> str:
            new = COLORS[(COLORS.index(m[2]) + 1) % len(COLORS)]
            return new if m[1] is None else ("an " if new[0] in "aeiou" else "a ") + new

        return _COLOUR_WORD.sub(colour, caption)
    raise ValueError(f"attribute must be 'shape' or 'colour', got {attribute!r}.")


def _next(value: str, attribute: str) -> str:
    names = SHAPES if attribute == "shape" else COLORS
    return names[(names.index(value) + 1) % len(names)]


def swap_scene(scene: Scene, attribute: str) -> Scene:
    """The same scene (places, sizes, background) with every object's shape or colour moved to the
    next one: the render that :func:`swap_caption` / :func:`swap_class` describe."""
    if attribute not in SHAPES_SWAPS:
        raise ValueError(f"attribute must be 'shape' or 'colour', got {attribute!r}.")
    key = "shape" if attribute == "shape" else "color"
    objects = [replace(o, **{key: _next(getattr(o, key), attribute)}) for o in scene.objects]
    groups = tuple(replace(g, **{key: _next(getattr(g, key), attribute)}) for g in scene.spec.groups)
    return replace(scene, objects=objects, spec=replace(scene.spec, groups=groups))


@torch.no_grad()
def _encode(tokenizer, images: list[np.ndarray], batch_size: int) -> list[torch.Tensor]:
    """uint8 ``(H, W, 3)`` images -> one bits tensor ``(1, H', W', C, M)`` each, on the CPU."""
    out: list[torch.Tensor] = []
    for start in range(0, len(images), batch_size):
        frames = np.stack(images[start : start + batch_size])[:, None]  # (B, 1, H, W, 3)
        out.extend(tokenizer.encode(to_pixels(tokenizer, frames)).bits.cpu())
    return out


def _section(
    model, scenes: list[Scene], condition, swap, seed: int, batch_size: int, repeats: int, kept_fraction
) -> dict[str, Any]:
    """condition_gap for ``scenes``, plus the share of slots each swap changes in the true codes."""
    tokenizer = model.visual_tokenizer
    codes = _encode(tokenizer, [np.asarray(render_scene(sc).convert("RGB")) for sc in scenes], batch_size)
    variants = {a: (lambda c, a=a: swap(c, a)) for a in SHAPES_SWAPS}
    report = condition_gap(
        model, codes, [condition(sc) for sc in scenes], variants, seed, batch_size, repeats, kept_fraction
    )
    report["slots_changed"] = {}
    for a in SHAPES_SWAPS:
        swapped = _encode(
            tokenizer,
            [np.asarray(render_scene(swap_scene(sc, a)).convert("RGB")) for sc in scenes],
            batch_size,
        )
        changed = [(x != y).float().mean().item() for x, y in zip(codes, swapped)]
        report["slots_changed"][a] = float(np.mean(changed))
    return report


def shapes_condition_gap(
    model,
    num_images: int = 64,
    data_seed: int = 0,
    seed: int = 0,
    size: int = 64,
    batch_size: int = 32,
    repeats: int = 4,
    kept_fraction: float | None = None,
    cell: int | None = None,
) -> dict[str, Any]:
    """:func:`condition_gap` on the shapes world's test split, for colour and shape swaps.

    ``t2i``: the first ``num_images`` test scenes under their caption and :func:`swap_caption`.
    ``c2i``: the first ``num_images`` single-object test scenes under their class and
    :func:`swap_class` (``None`` when the model has fewer class tokens than the world has classes).
    Codes come from ``model.visual_tokenizer``. Each section also reports ``slots_changed``: the
    share of the true codes' slots that differ from the codes of the swapped render
    (:func:`swap_scene`, same places and sizes), i.e. how much of the target each attribute decides.
    ``kept_fraction``: one fixed noise level instead of the training distribution (see
    :func:`condition_gap`). ``cell``: the test scenes drawn with their objects centred on a
    ``cell``-px grid (``shapes.sample_scene``), for a model trained to draw that way.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}.")

    def scene(i: int) -> Scene:
        example = make_shapes_example(data_seed, i, size=size, split="test", cell=cell)
        return Scene.from_dict(example["scene"])

    report: dict[str, Any] = {"t2i": None, "c2i": None}
    scenes = [scene(i) for i in range(num_images)]
    report["t2i"] = _section(
        model, scenes, lambda sc: sc.caption, swap_caption, seed, batch_size, repeats, kept_fraction
    )
    if model.vocab.num_class_tokens < len(COLORS) * len(SHAPES):
        logger.info("c2i condition gap skipped: the model has %d class tokens", model.vocab.num_class_tokens)
        return report
    singles, i = [], 0
    while len(singles) < num_images and i < 50 * num_images:
        if (candidate := scene(i)).label >= 0:
            singles.append(candidate)
        i += 1
    report["c2i"] = _section(
        model, singles, lambda sc: sc.label, swap_class, seed, batch_size, repeats, kept_fraction
    )
    return report
