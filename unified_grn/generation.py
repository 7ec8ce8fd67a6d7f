"""``model.generate(...)``: GRN sampling of images, videos, class-conditional images and text.

GRN paper (Han et al., 2026, arXiv 2604.13030): Alg. 3 (global refinement sampling), Eq. 8-9
(complexity-aware steps), Appendix D and E.4 (classifier-free guidance, CFG interval,
temperature). The sampler itself is :class:`~unified_grn.refinement.GRNRefinementScheduler`;
this module feeds it logits from the model:

* the prompts are encoded **once** (:meth:`encode_prompt`); every refinement step runs only the
  visual block against that KV cache (:meth:`visual_logits_from_cache` crops it back after each
  step), so a step costs ``V`` positions instead of ``P + V``;
* conditional and unconditional rows run in **one batch** ``[cond_0..cond_{B-1}, uncond_0..]``
  (the unconditional prompt is the empty one, ``[BOS] <|image_start|>``); the scheduler asks
  only for the rows it needs (finished samples and rows outside the CFG interval are skipped);
* every random draw of sample ``i`` comes from sample ``i``'s generator, so with one generator
  (or seed) per sample a batch gives the samples it would give one by one;
* image-to-video holds the first latent frame at the codes of the given image (never resampled);
  class-to-image reads the ``<|class_k|>`` token; text is the backbone's own ``GenerationMixin``
  decoding with every id outside the text vocabulary masked.

``use_prefix_cache=False`` (re-encode the prompts at every step) and ``cfg_batched=False`` (cond and
uncond rows in two passes) exist for tests and ``scripts/bench_generate.py``; they give the same
codes. Settings and their defaults: ``unified_grn.generation_utils``.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers import GenerationConfig

from tokenizers_visual.modeling_hbq import HBQCodes
from unified_grn.generation_outputs import GRNGenerationOutput, GRNVideo
from unified_grn.generation_utils import (
    MODALITIES,
    Prompt,
    VisualSettings,
    make_generators,
    normalize_prompts,
    resolve_visual_settings,
    text_generation_config,
    text_seeds,
    unexpected_arguments,
)
from unified_grn.modeling_outputs import GRNPromptCache
from unified_grn.refinement import GRNRefinementScheduler, RefinementConfig, RefinementState

# generate() parameters that a visual modality does not take.
_NOT_VISUAL = ("self", "text_kwargs", "max_new_tokens", "do_sample")

__all__ = ["GRNGenerationMixin", "GRNGenerationOutput", "GRNVideo", "PromptCacheLogits"]

logger = logging.getLogger(__name__)


def select_cache_rows(cache: GRNPromptCache, rows: torch.Tensor) -> GRNPromptCache:
    """The prompt cache of ``rows`` (int64 ``(R,)``), leaving ``cache`` untouched.

    All rows in order: ``cache`` itself; a contiguous range: views (no copy); else an index copy.
    The new cache has its own layer objects, so running a block on it never changes ``cache``.
    """
    ids = rows.tolist()
    if ids == list(range(cache.attention_mask.shape[0])):
        return cache
    index = slice(ids[0], ids[-1] + 1) if ids == list(range(ids[0], ids[0] + len(ids))) else rows
    kv = copy.copy(cache.past_key_values)
    kv.layers = [copy.copy(layer) for layer in kv.layers]  # layers re-bind, never mutate, their tensors
    kv.batch_select_indices(index)
    return GRNPromptCache(kv, cache.attention_mask[index], cache.next_position[index])


class PromptCacheLogits:
    """``logits_fn`` for :meth:`GRNRefinementScheduler.run`: the visual block against the prompt cache.

    Args:
        model: the GRN model.
        prompts: ``P`` prompts (text, class label, ids or None); sample ``i`` reads prompt ``i // n``.
        samples_per_prompt: ``n``.
        modality: ``"image"`` or ``"video"`` (the start token).
        grid: latent grid ``(T', H', W')``.
        guided: add the unconditional rows (rows ``B .. 2B-1`` of the stack).
        use_prefix_cache: encode the prompts once (default) or again at every call.
        cfg_batched: cond and uncond rows in one backbone call (default) or two.
    """

    def __init__(
        self,
        model,
        prompts: Sequence[Prompt],
        samples_per_prompt: int,
        modality: str,
        grid: tuple[int, int, int],
        guided: bool,
        *,
        use_prefix_cache: bool = True,
        cfg_batched: bool = True,
    ) -> None:
        self.model, self.grid, self.cfg_batched = model, tuple(grid), cfg_batched
        self.batch_size = len(prompts) * samples_per_prompt
        unique = [*prompts, None] if guided else list(prompts)
        self.input_ids, self.attention_mask = model.prepare_prompts(unique, modality)  # (P [+1], S)
        device = self.input_ids.device
        rows = torch.arange(len(prompts), device=device).repeat_interleave(samples_per_prompt)
        if guided:
            rows = torch.cat([rows, torch.full_like(rows, len(prompts))])
        self.row_prompt = rows  # (B,) or (2B,): the prompt of every row of the stack
        self.cache = self.encode() if use_prefix_cache else None

    def encode(self) -> GRNPromptCache:
        """Run the distinct prompts once and lay their cache out as the row stack."""
        cache = self.model.encode_prompt(self.input_ids, self.attention_mask)
        return select_cache_rows(cache, self.row_prompt)

    def codes(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels ``(R, L, K)`` -> the model's code input: bits ``(R, T', H', W', C, M)`` or indices."""
        vocab = self.model.vocab
        if vocab.variant == "bit":
            bits = vocab.bits_from_labels(labels)  # (R, L, C, M)
            return bits.reshape(-1, *self.grid, vocab.num_channels, vocab.num_rounds)
        return labels.reshape(-1, *self.grid, vocab.num_slots)  # GRN_ind labels are the indices

    def __call__(self, labels: torch.Tensor, kept_fraction: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        stack = self.cache if self.cache is not None else self.encode()
        if self.cfg_batched:
            cache = select_cache_rows(stack, rows)
            return self.model.visual_logits_from_cache(cache, self.codes(labels), kept_fraction, self.grid)
        out = None
        for part in (rows < self.batch_size, rows >= self.batch_size):  # cond rows, then uncond rows
            if not bool(part.any()):
                continue
            cache = select_cache_rows(stack, rows[part])
            logits = self.model.visual_logits_from_cache(
                cache, self.codes(labels[part]), kept_fraction[part], self.grid
            )  # (R_part, L, K, classes)
            out = logits.new_empty((rows.numel(), *logits.shape[1:])) if out is None else out
            out[part] = logits
        return out


class GRNGenerationMixin:
    """Adds :meth:`generate` and :meth:`chat` to ``GRNForConditionalGeneration`` (module docstring)."""

    def chat(self, messages: Sequence[dict], **generation_kwargs: Any) -> dict:
        """The assistant's reply to a conversation of text and images: :func:`unified_grn.chat.chat`
        (arguments and layout there); returns ``{"role": "assistant", "content": [str | PIL image]}``."""
        from unified_grn.chat import chat  # chat builds on this module

        return chat(self, messages, **generation_kwargs)

    @torch.no_grad()
    def generate(
        self,
        prompt: Prompt | Sequence[Prompt] = None,
        modality: str = "image",
        *,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_interval: tuple[float, float] | None = None,
        temperature: float | None = None,
        schedule: str | None = None,
        min_steps: int | None = None,
        max_steps: int | None = None,
        selection: str | None = None,
        refine_mode: str | None = None,
        class_label: int | Sequence[int] | None = None,
        image: Any = None,
        seed: int | Sequence[int] | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        num_images_per_prompt: int = 1,
        output_type: str = "pil",
        progress_bar: bool = True,
        max_new_tokens: int | None = None,
        do_sample: bool | None = None,
        refinement_config: RefinementConfig | None = None,
        use_prefix_cache: bool = True,
        cfg_batched: bool = True,
        **text_kwargs: Any,
    ) -> GRNGenerationOutput:
        r"""Generate images, videos (text-, image- or class-conditioned) or text.

        Args:
            prompt: a string, a class label (int), a list of token ids, ``None`` / ``""``
                (unconditional), or a list of these; one output per prompt and copy.
            modality: ``"image"``, ``"video"`` or ``"text"``.
            height, width, num_frames: output size in pixels / frames (``1 + s_t k``); default
                from ``generation_config`` (video: the longest the latent grid allows).
            num_steps: refinement steps ``T`` (``T_max`` of the entropy schedule; same as
                ``max_steps``). min_steps: ``T_min`` of the entropy schedule.
            guidance_scale, guidance_interval, temperature: CFG scale, the ``(lo, hi)`` range of the
                kept fraction where CFG is on, sampling temperature; task defaults in
                ``generation_utils.TASK_DEFAULTS`` (T2I 3.0 / 1.1, T2V 4.0 / 1.0, C2I 2.35 on
                ``(0.44, 1)`` / 1.31) unless the checkpoint's generation config sets them.
            schedule, selection, refine_mode: ``"linear" | "cosine" | "entropy"``,
                ``"random" | "confidence"``, ``"refine" | "mask"`` (see ``RefinementConfig``).
            class_label: class-to-image labels (instead of ``prompt``).
            image: image-to-video first frame(s): a PIL image, an ``(H, W, 3)`` array, a ``(3, H, W)``
                tensor in ``[-1, 1]``, one-frame ``HBQCodes``, or a list with one per prompt.
            seed: an int (sample ``i`` gets ``seed + i``) or one int per sample.
            generator: a ``torch.Generator`` (shared) or one per sample; not with ``seed``.
            num_images_per_prompt: samples per prompt ``n``; samples are prompt-major.
            output_type: ``"pil"``, ``"np"``, ``"pt"`` or ``"codes"`` (no decoding).
            progress_bar: a tqdm bar over refinement steps.
            max_new_tokens, do_sample, \*\*text_kwargs: text decoding (``GenerationConfig`` fields).
            refinement_config: a full :class:`RefinementConfig` replacing the defaults (explicit
                arguments still override its fields).
            use_prefix_cache, cfg_batched: switch off the prompt cache / the one-batch CFG (same codes).

        Returns:
            :class:`GRNGenerationOutput` (``.images`` or ``.videos``, ``.codes``, ``.stats``; ``.text``).
        """
        if modality not in MODALITIES:
            raise ValueError(f"Unknown modality {modality!r}; expected one of {MODALITIES}.")
        if not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be an int >= 1, got {num_images_per_prompt!r}.")
        prompts = normalize_prompts(prompt, class_label)
        batch_size = len(prompts) * num_images_per_prompt
        gens = make_generators(seed, generator, batch_size, self.device)
        if modality == "text":
            if image is not None or class_label is not None:
                raise ValueError("modality='text' takes text prompts only (no image= or class_label=).")
            expanded = [p for p in prompts for _ in range(num_images_per_prompt)]
            return self._generate_text(expanded, gens, max_new_tokens, do_sample, temperature, text_kwargs)
        if text_kwargs:
            valid = [n for n in inspect.signature(type(self).generate).parameters if n not in _NOT_VISUAL]
            raise unexpected_arguments(f"generate(modality={modality!r})", text_kwargs, valid)
        args = dict(
            height=height, width=width, num_frames=num_frames, num_steps=num_steps, max_steps=max_steps,
            min_steps=min_steps, guidance_scale=guidance_scale, guidance_interval=guidance_interval,
            temperature=temperature, schedule=schedule, selection=selection, refine_mode=refine_mode,
            refinement_config=refinement_config,
        )  # fmt: skip
        settings = resolve_visual_settings(self, modality, prompts, image, output_type, args)
        logger.info(
            "generating %d %s(s) (%s) on grid %s: %s",
            batch_size, modality, settings.task, settings.grid, settings.refinement,
        )  # fmt: skip
        fixed = (
            None if image is None else self._first_frame(image, settings, len(prompts), num_images_per_prompt)
        )
        logits_fn = PromptCacheLogits(
            self, prompts, num_images_per_prompt, modality, settings.grid,
            guided=settings.refinement.guidance_scale != 1.0,
            use_prefix_cache=use_prefix_cache, cfg_batched=cfg_batched,
        )  # fmt: skip
        return self._refine_and_decode(logits_fn, settings, gens, fixed, progress_bar)

    # ------------------------------------------------------------------ visual
    def _refine_and_decode(
        self,
        logits_fn: PromptCacheLogits,
        settings: VisualSettings,
        gens,
        fixed: tuple[torch.Tensor, torch.Tensor] | None,
        progress_bar: bool,
    ) -> GRNGenerationOutput:
        scheduler = GRNRefinementScheduler(settings.refinement)
        num_positions = settings.grid[0] * settings.grid[1] * settings.grid[2]
        shape = (logits_fn.batch_size, num_positions, self.vocab.num_slots)
        fixed_labels, fixed_mask = fixed if fixed is not None else (None, None)
        state = scheduler.init_state(
            shape,
            self.vocab.num_classes,
            gens,
            device=self.device,
            fixed_labels=fixed_labels,
            fixed_mask=fixed_mask,
        )
        with tqdm(total=scheduler.num_steps, desc="GRN refinement", disable=not progress_bar) as bar:

            def advance(_: RefinementState) -> None:
                bar.update(1)

            result = scheduler.run(logits_fn, state, gens, callback=advance)
            bar.total = bar.n  # the entropy schedule may stop before T_max
        labels = result.labels.reshape(-1, *settings.grid, self.vocab.num_slots)  # (B, T', H', W', K)
        codes = HBQCodes.from_bits(self.vocab.bits_from_labels(labels))
        logger.info("refinement done: mean %.1f steps per sample", result.stats.mean_steps)
        output = GRNGenerationOutput(codes=codes, stats=result.stats)
        if settings.output_type == "codes":
            return output
        tokenizer = self.visual_tokenizer
        pixels = tokenizer.decode(codes.bits.to(tokenizer.device))  # (B, 3, T, H, W) in [-1, 1]
        processor = self.processor
        if settings.modality == "image":
            output.images = processor.postprocess(pixels[:, :, 0], settings.output_type)
        else:
            videos = processor.postprocess(pixels, settings.output_type)
            pil = settings.output_type == "pil"
            output.videos = [GRNVideo(frames, processor.fps) for frames in videos] if pil else videos
        return output

    def _first_frame(
        self, image: Any, settings: VisualSettings, num_prompts: int, per_prompt: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image-to-video: ``(fixed_labels, fixed_mask)`` ``(B, L, K)`` holding latent frame 0."""
        codes = image if isinstance(image, HBQCodes) else self._encode_first_frames(image, settings)
        _, h, w = settings.grid
        if tuple(codes.grid) != (1, h, w):
            raise ValueError(
                f"image-to-video codes must have one latent frame of {h}x{w} (the video's grid), got {codes.grid}."
            )
        count = codes.bits.shape[0]
        if count not in (1, num_prompts):
            raise ValueError(
                f"give one image for all prompts or one per prompt ({num_prompts}), got {count}."
            )
        frame = self.vocab.labels_from_codes(codes.bits.to(self.device)).flatten(1, 3)  # (N, H'W', K)
        frame = frame.expand(num_prompts, -1, -1).repeat_interleave(per_prompt, dim=0)  # (B, H'W', K)
        batch, length = frame.shape[0], settings.grid[0] * h * w
        labels = torch.zeros(batch, length, frame.shape[-1], dtype=torch.long, device=self.device)
        mask = torch.zeros_like(labels, dtype=torch.bool)
        labels[:, : h * w], mask[:, : h * w] = frame, True  # positions are t-major: frame 0 first
        return labels, mask

    def _encode_first_frames(self, image: Any, settings: VisualSettings) -> HBQCodes:
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        if torch.is_tensor(image) and image.dim() == 4:
            images = list(image)  # (N, 3, H, W)
        for im in images:
            ok = isinstance(im, Image.Image) or (hasattr(im, "ndim") and im.ndim in (2, 3))
            if not ok or (torch.is_tensor(im) and (im.dim() != 3 or im.shape[0] != 3)):
                kind = f"{type(im).__name__} of shape {tuple(im.shape)}" if hasattr(im, "shape") else repr(im)
                raise ValueError(
                    "image must be a PIL image, an (H, W, 3) array, a (3, H, W) tensor in [-1, 1], one-frame "
                    f"HBQCodes, or a list of these (one per prompt); got {kind}."
                )
        pixels = self.processor.preprocess_images(images, settings.height, settings.width)  # (N, 3, H, W)
        tokenizer = self.visual_tokenizer
        return tokenizer.encode(pixels.to(tokenizer.device, tokenizer.dtype))

    # ------------------------------------------------------------------ text
    def _generate_text(
        self,
        prompts: list[Prompt],
        gens,
        max_new_tokens: int | None,
        do_sample: bool | None,
        temperature: float | None,
        extra: dict[str, Any],
    ) -> GRNGenerationOutput:
        tokenizer = self.text_tokenizer
        config = text_generation_config(self, max_new_tokens, do_sample, temperature, extra)
        seeds = text_seeds(gens, len(prompts)) if config.do_sample else None
        if seeds is None:
            rows = self._decode_text(prompts, config, None)
        else:  # one backbone call per sample under its own seed: a batch equals its samples one by one
            rows = [r for p, s in zip(prompts, seeds) for r in self._decode_text([p], config, s)]
        width = max(len(r) for r in rows)
        sequences = torch.full((len(rows), width), config.pad_token_id, dtype=torch.long)
        for i, r in enumerate(rows):
            sequences[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        text = tokenizer.batch_decode(rows, skip_special_tokens=True)
        return GRNGenerationOutput(text=text, sequences=sequences)

    def _decode_text(
        self, prompts: list[Prompt], config: GenerationConfig, seed: int | None
    ) -> list[list[int]]:
        """Left-padded ``[BOS] prompt`` rows through the backbone's ``generate``; new ids per row."""
        tokenizer = self.text_tokenizer
        rows = []
        for p in prompts:
            if isinstance(p, int):
                raise ValueError(f"modality='text' needs text prompts, got the class label {p!r}.")
            ids = (
                tokenizer(p, add_special_tokens=False)["input_ids"]
                if isinstance(p, str) and p
                else list(p or [])
            )
            rows.append(([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + ids)
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), config.pad_token_id, dtype=torch.long, device=self.device)
        attention_mask = torch.zeros_like(input_ids)
        for b, r in enumerate(rows):
            input_ids[b, length - len(r) :] = torch.tensor(r, device=self.device)
            attention_mask[b, length - len(r) :] = 1
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            out = self.backbone.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=config
            )
        new_ids = []
        for row in out[:, length:].tolist():  # the new ids, cut after the first EOS (then padding)
            eos = [i for i, t in enumerate(row) if t == tokenizer.eos_token_id]
            new_ids.append(row[: eos[0] + 1] if eos else row)
        return new_ids
