"""``model.chat(messages)``: the assistant's next turn of a conversation of text and images.

DESIGN.md ("What users do with it"), issue 8; images are drawn by GRN's global refinement (GRN
paper, Han et al., 2026, arXiv 2604.13030, Alg. 3) with the model's own sampler. One turn:

1. the messages are checked, their images encoded to clean HBQ codes at the model's default size,
   and the conversation laid out exactly as training lays it out, followed by ``"\\n"`` +
   ``"Assistant: "`` (``unified_grn.chat_format``); when it is longer than the backbone's
   ``max_position_embeddings`` the oldest whole turns are dropped with a ``logging`` warning;
2. the context runs once through the backbone (causal text, bidirectional clean image blocks, the
   training mask) and its KV cache is kept (:class:`ChatDecoder`);
3. text is decoded one token at a time against that cache (greedy, or sampled with temperature /
   top-k / top-p); ids the chat layout never trains the text head to emit are masked
   (:func:`chat_suppressed_ids`);
4. on ``<|image_start|>`` the image is refined against the cache
   (``GRNGenerationMixin._refine_and_decode``; with CFG the unconditional row is the empty
   prompt ``[BOS] <|image_start|>``, run as a second backbone call because the two prompts have
   different lengths), its final codes enter the cache clean
   (``visual_logits_from_cache(..., keep_in_cache=True)``), then ``<|image_end|>``, and text goes on;
5. the turn ends at EOS, after ``max_new_tokens`` sampled tokens (text tokens, the image start
   marker and EOS count; image positions do not), or when the context is full (a warning).

The reply is ``{"role": "assistant", "content": [str | PIL.Image, ...]}`` (text pieces and
images in order; ``[""]`` for an empty reply, so that the history lays out the EOS the model
produced), ready to append to the history: its images re-enter the next turn from their pixels.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from unified_grn.attention_masks import build_visibility, to_additive_mask
from unified_grn.chat_format import encode_chat_images, fit_to_context, layout_chat, normalize_messages
from unified_grn.collator import GRNBatch
from unified_grn.generation_utils import (
    VisualSettings,
    make_generators,
    resolve_visual_settings,
    unexpected_arguments,
)
from unified_grn.modeling_outputs import GRNPromptCache
from unified_grn.utils.cache_compat import cache_kwargs, output_cache
from unified_grn.vocab import MODALITY_TOKENS

__all__ = [
    "CHAT_IMAGE_KWARGS",
    "ChatDecoder",
    "TextSampler",
    "build_chat_context",
    "chat",
    "chat_suppressed_ids",
]

logger = logging.getLogger(__name__)

#: Image sampling arguments of :func:`chat` (those of ``model.generate``; the image temperature is
#: ``image_temperature`` because ``temperature`` is the text's).
CHAT_IMAGE_KWARGS = (
    "num_steps",
    "min_steps",
    "max_steps",
    "guidance_scale",
    "guidance_interval",
    "image_temperature",
    "schedule",
    "selection",
    "refine_mode",
    "refinement_config",
)


@torch.no_grad()
def chat(
    model,
    messages: Sequence[dict],
    *,
    max_new_tokens: int | None = None,
    do_sample: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    logits_processor: Sequence[Callable] | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    truncation: bool = True,
    progress_bar: bool = False,
    **image_kwargs: Any,
) -> dict:
    """The assistant's reply to ``messages`` (module docstring; message format: ``chat_format``).

    Args:
        model: a ``GRNForConditionalGeneration``.
        messages: the conversation, ending with a user (or system) message.
        max_new_tokens: most tokens to sample (default: the generation config's).
        do_sample, temperature, top_k, top_p: text decoding (defaults: the generation config's).
        logits_processor: callables ``(input_ids (1, L), scores (1, V)) -> scores`` applied to the
            text logits after the masked ids and before temperature / top-k / top-p; ``input_ids``
            holds the whole sequence so far (the pad id at image positions).
        seed, generator: an int, or a ``torch.Generator`` on the model's device; one stream drives
            text sampling and image refinement, so equal seeds give equal replies.
        truncation: drop the oldest turns of a too-long conversation (warning) or raise.
        progress_bar: a tqdm bar over the refinement steps of each image.
        **image_kwargs: ``CHAT_IMAGE_KWARGS``: ``num_steps``, ``guidance_scale``, ``schedule``, ...
            as in ``model.generate``, ``image_temperature`` for its ``temperature``.

    Returns:
        ``{"role": "assistant", "content": [str | PIL.Image.Image, ...]}``.
    """
    unknown = sorted(set(image_kwargs) - set(CHAT_IMAGE_KWARGS))
    if unknown:
        raise unexpected_arguments("chat()", unknown, _chat_arguments())
    settings = _image_settings(model, image_kwargs)
    gen = _generator(seed, generator, model.device)
    sampler = TextSampler(model, do_sample, temperature, top_k, top_p, logits_processor, gen)
    limit = max_new_tokens if max_new_tokens is not None else model.generation_config.max_new_tokens
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {limit!r}.")
    batch, kept = build_chat_context(model, messages, truncation=truncation)
    if kept[-1]["role"] == "assistant":
        raise ValueError(
            "the last message is the assistant's: append the user's next message before asking for a reply."
        )
    decoder = ChatDecoder(model)
    logits = decoder.prefill(batch)
    content = _reply(model, decoder, logits, sampler, settings, gen, limit, progress_bar)
    return {"role": "assistant", "content": content}


def build_chat_context(
    model, messages: Sequence[dict], add_generation_prompt: bool = True, truncation: bool = True
) -> tuple[GRNBatch, list[dict]]:
    """Check, encode, fit and lay out a conversation for ``model``.

    Returns:
        The one-row :class:`~unified_grn.collator.GRNBatch` of the (kept) conversation and the
        kept messages in normalized form (image items with their ``"codes"``).
    """
    normalized = normalize_messages(messages)
    if any(item["type"] == "image" for m in normalized for item in m["content"]):
        normalized = encode_chat_images(normalized, model.processor, model.visual_tokenizer)
    tokenizer, vocab = model.text_tokenizer, model.vocab

    def num_positions(msgs: list[dict]) -> int:
        return layout_chat(msgs, tokenizer, vocab, add_generation_prompt).input_ids.shape[1]

    limit = model.config.text_config.max_position_embeddings
    kept = fit_to_context(normalized, num_positions, limit, truncation)
    return layout_chat(kept, tokenizer, vocab, add_generation_prompt), kept


def _image_settings(model, image_kwargs: dict[str, Any]) -> VisualSettings:
    args: dict[str, Any] = {name: image_kwargs.get(name) for name in CHAT_IMAGE_KWARGS}
    args["temperature"] = args.pop("image_temperature")
    args.update(height=None, width=None, num_frames=None)  # chat images have the default size
    return resolve_visual_settings(model, "image", [None], None, "pil", args)


def _generator(seed: int | None, generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be one torch.Generator (chat draws one reply), got {generator!r}.")
    if generator is not None and generator.device.type != torch.device(device).type:
        raise ValueError(
            f"generator is on {generator.device} but the model is on {device}: "
            f"use torch.Generator(device={str(device)!r}), or pass seed=."
        )
    gens = make_generators(seed, generator, 1, device)
    if gens is None:
        gen = torch.Generator(device=device)
        gen.seed()  # non-deterministic, and leaves the global RNG alone
        return gen
    return gens if isinstance(gens, torch.Generator) else gens[0]


def chat_suppressed_ids(model) -> list[int]:
    """Ids the text head never emits in a chat turn: the ``lm_head``'s padding rows, class tokens,
    ``<|image_end|>`` (the chat inserts it after an image) and the video markers, BOS and pad
    (unless one of them is EOS). ``<|image_start|>`` and EOS stay: they are the model's decisions."""
    vocab, tokenizer = model.vocab, model.text_tokenizer
    ids = set(range(vocab.base_vocab_size + len(MODALITY_TOKENS), vocab.backbone_vocab_size))
    ids |= {vocab.image_end_id, vocab.video_start_id, vocab.video_end_id}
    ids |= {t for t in (tokenizer.bos_token_id, tokenizer.pad_token_id) if t is not None}
    return sorted(ids - {tokenizer.eos_token_id, vocab.image_start_id})


class TextSampler:
    """Picks the next text token from the logits of the last position (see :func:`chat`)."""

    def __init__(
        self,
        model,
        do_sample: bool | None,
        temperature: float | None,
        top_k: int | None,
        top_p: float | None,
        logits_processor: Sequence[Callable] | None,
        generator: torch.Generator,
    ) -> None:
        gen = model.generation_config
        self.do_sample = gen.do_sample if do_sample is None else bool(do_sample)
        warpers: list[Callable] = []
        if self.do_sample:
            temperature = gen.temperature if temperature is None else temperature
            top_k = gen.top_k if top_k is None else top_k
            top_p = gen.top_p if top_p is None else top_p
            if temperature is not None and temperature != 1.0:
                warpers.append(TemperatureLogitsWarper(temperature))  # checks temperature > 0
            if top_k:
                warpers.append(TopKLogitsWarper(top_k))
            if top_p is not None and top_p < 1.0:
                warpers.append(TopPLogitsWarper(top_p))
        self.processors = [*(logits_processor or []), *warpers]
        self.suppressed = torch.tensor(chat_suppressed_ids(model), dtype=torch.long, device=model.device)
        self.generator = generator

    def __call__(self, input_ids: list[int], logits: torch.Tensor) -> int:
        """``logits`` ``(V,)`` of the last position of ``input_ids`` -> the next token id."""
        scores = logits.float()[None].clone()  # (1, V)
        scores[:, self.suppressed] = float("-inf")
        ids = torch.tensor([input_ids], dtype=torch.long, device=scores.device)
        for processor in self.processors:
            scores = processor(ids, scores)
        if bool(torch.isneginf(scores).all()):
            raise ValueError("every text token was masked (check logits_processor); nothing to sample.")
        if not self.do_sample:
            return int(scores.argmax(-1))
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator))


class ChatDecoder:
    """The KV cache of a conversation, grown piece by piece: the context, text tokens, clean images.

    Args:
        model: a ``GRNForConditionalGeneration``.

    Attributes:
        cache: the :class:`GRNPromptCache` of everything so far (one row, no padding).
        input_ids: the sequence so far, as the collator writes it (the pad id at image positions).
    """

    def __init__(self, model) -> None:
        self.model = model
        self.cache: GRNPromptCache | None = None
        self.input_ids: list[int] = []
        tokenizer = model.text_tokenizer
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @property
    def num_positions(self) -> int:
        """Positions in the cache (the position id of the next one)."""
        return 0 if self.cache is None else int(self.cache.next_position[0])

    def prefill(self, batch: GRNBatch) -> torch.Tensor:
        """Run a one-row context (clean blocks only) once, keep its cache; returns the next token's
        logits ``(V,)``."""
        model = self.model
        b = batch.to(model.device)
        if b.input_ids.shape[0] != 1 or not bool(b.attention_mask.all()) or bool(b.block_is_target.any()):
            raise ValueError("prefill takes one unpadded row whose image blocks are all clean (context).")
        visual = None
        if b.visual_codes.shape[0]:
            ones = torch.ones(b.block_grid.shape[0], device=model.device)
            visual = model._prepare_visual(
                b.block_ids, b.visual_codes, b.visual_coords, b.block_grid, b.block_is_target,
                visual_inputs=b.visual_codes, kept_fraction=ones, generator=None,
            )  # fmt: skip
        embeds = model._embed(b.input_ids, b.block_ids, visual)
        mask = to_additive_mask(build_visibility(b.attention_mask, b.block_ids), embeds.dtype)
        with model._full_sequence_attention():
            out = model.language_model(
                inputs_embeds=embeds, attention_mask=mask, position_ids=b.position_ids, use_cache=True
            )
        self.cache = GRNPromptCache(output_cache(out), b.attention_mask, b.position_ids[:, -1] + 1)
        self.input_ids = b.input_ids[0].tolist()
        return model.lm_head(out.last_hidden_state[:, -1])[0]

    def append_tokens(self, ids: Sequence[int]) -> torch.Tensor:
        """Append text ids (causal); returns the logits ``(V,)`` of the last one."""
        model, cache = self.model, self.cache
        n, prefix = len(ids), cache.attention_mask.shape[1]
        device = cache.attention_mask.device
        embeds = model.embed_text(torch.tensor([list(ids)], dtype=torch.long, device=device))
        position_ids = cache.next_position[:, None] + torch.arange(n, device=device)
        total = torch.cat([cache.attention_mask, cache.attention_mask.new_ones(1, n)], dim=-1)
        if model._uses_flash():
            mask = total
        else:
            causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
            visible = torch.cat(
                [cache.attention_mask.bool()[:, None, :].expand(1, n, prefix), causal[None]], -1
            )
            mask = to_additive_mask(visible, embeds.dtype)  # (1, 1, n, P + n)
        out = model.language_model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=position_ids,
            **cache_kwargs(model.language_model, cache.past_key_values),
            use_cache=True,
        )
        cache.attention_mask, cache.next_position = total, cache.next_position + n
        self.input_ids += list(ids)
        return model.lm_head(out.last_hidden_state[:, -1])[0]

    def append_image(self, bits: torch.Tensor) -> None:
        """Append an image block clean (``p_t = 1``): bits ``(1, T', H', W', C, M)``."""
        bits = bits.to(self.model.device)
        self.model.visual_logits_from_cache(self.cache, bits, 1.0, keep_in_cache=True)
        self.input_ids += [self._pad_id] * math.prod(bits.shape[1:4])


class ChatImageLogits:
    """``logits_fn`` of the refinement sampler for one chat image: row 0 runs against the
    conversation's cache, row 1 (CFG's unconditional row) against the empty prompt's cache."""

    def __init__(self, model, cache: GRNPromptCache, uncond: GRNPromptCache | None, grid) -> None:
        self.model, self.caches, self.grid = model, (cache, uncond), tuple(grid)
        self.batch_size = 1

    def __call__(self, labels: torch.Tensor, kept_fraction: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        vocab, out = self.model.vocab, []
        for i, row in enumerate(rows.tolist()):
            bits = vocab.bits_from_labels(labels[i : i + 1])  # (1, L, C, M)
            bits = bits.reshape(1, *self.grid, vocab.num_channels, vocab.num_rounds)
            cache = self.caches[row]
            out.append(self.model.visual_logits_from_cache(cache, bits, kept_fraction[i : i + 1], self.grid))
        return torch.cat(out)  # (R, L, K, classes)


def draw_image(
    model, decoder: ChatDecoder, settings: VisualSettings, generator: torch.Generator, progress_bar: bool
) -> Image.Image:
    """Append ``<|image_start|>``, refine an image against the conversation, append it clean."""
    decoder.append_tokens([model.vocab.image_start_id])
    guided = settings.refinement.guidance_scale != 1.0
    uncond = model.encode_prompt(*model.prepare_prompts([None], "image")) if guided else None
    logits_fn = ChatImageLogits(model, decoder.cache, uncond, settings.grid)
    output = model._refine_and_decode(logits_fn, settings, generator, None, progress_bar)
    decoder.append_image(output.codes.bits)  # (1, T', H', W', C, M)
    return output.images[0]


def _reply(
    model,
    decoder: ChatDecoder,
    logits: torch.Tensor,
    sampler: TextSampler,
    settings: VisualSettings,
    generator: torch.Generator,
    max_new_tokens: int,
    progress_bar: bool,
) -> list[str | Image.Image]:
    """Decode the turn (module docstring, steps 3-5) -> its content items."""
    tokenizer, vocab = model.text_tokenizer, model.vocab
    limit = model.config.text_config.max_position_embeddings
    block = math.prod(settings.grid)
    content: list[str | Image.Image] = []
    text: list[int] = []
    for count in range(1, max_new_tokens + 1):
        token = sampler(decoder.input_ids, logits)
        if token == tokenizer.eos_token_id:
            break
        last = count == max_new_tokens
        if token != vocab.image_start_id:
            text.append(token)
            if last or _context_full(decoder.num_positions + 1, limit):
                break
            logits = decoder.append_tokens([token])
            continue
        if _context_full(decoder.num_positions + block + 2, limit):  # start marker, block, end marker
            break
        _flush_text(text, content, tokenizer)
        content.append(draw_image(model, decoder, settings, generator, progress_bar))
        if last:
            break
        logits = decoder.append_tokens([vocab.image_end_id])
    _flush_text(text, content, tokenizer)
    return content or [""]


def _context_full(needed: int, limit: int) -> bool:
    if needed <= limit:
        return False
    logger.warning(
        "the reply was cut: the context is full (max_position_embeddings=%d); start a new conversation "
        "or drop old turns to get longer replies",
        limit,
    )
    return True


def _flush_text(text: list[int], content: list, tokenizer) -> None:
    if text:
        content.append(tokenizer.decode(text, skip_special_tokens=True))
        text.clear()


def _chat_arguments() -> list[str]:
    """Every argument :func:`chat` takes besides ``model`` and ``messages`` (read from its signature)."""
    named = [n for n in inspect.signature(chat).parameters if n not in ("model", "messages", "image_kwargs")]
    return named + list(CHAT_IMAGE_KWARGS)
