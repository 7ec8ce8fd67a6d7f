"""Training batches: mixture -> (encode pixels) -> collator samples -> ``GRNBatch``, resumably.

* **Sources** (:func:`build_sources`): built from ``data.sources``; a non-procedural source named
  ``NAME`` is read from ``data.token_cache_dir/NAME`` when that token cache exists.
* **Weights** (:func:`mixture_weights`): the sources' weights, or with ``data.text_share`` the
  text sources together get exactly that share and the others split the rest by weight.
* **Stream** (:class:`BatchStream`): per rank, micro-batches from the rank-sharded
  :class:`~unified_grn.data.DataMixture`; pixels are encoded on the fly by the frozen visual
  tokenizer (token caches already hold codes); samples longer than the backbone's positions are
  skipped and counted. Its :meth:`~BatchStream.state_dict` is the data position and the
  collator's condition-drop generator: loading it continues the identical stream.
* **Image-to-video** (:func:`corrupt_for_training`): a ``data.i2v_share`` of the video samples
  (chosen by a hash of their stream position) keep latent frame 0 clean: the model learns to
  continue a given first frame, as generation does (the loss still covers every position).
* **Per-task p_t** (:func:`block_pt_laws`): with ``GRNConfig.pt_logit_by_task`` each target block
  draws its kept fraction from its task's logit-normal (the official code's C2I law next to the
  T2I/T2V one).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tokenizers_visual.modeling_hbq import HBQTokenizer
from unified_grn.collator import GRNBatch, GRNCollator
from unified_grn.data.examples import Example, to_grn_sample
from unified_grn.data.mixture import DataMixture
from unified_grn.data.sources import PROCEDURAL, Source, SourceConfig, build_source
from unified_grn.data.token_cache import TOKEN_CACHE_META, encode_examples, load_token_cache
from unified_grn.objective import corrupt_target_blocks, sample_kept_fraction
from unified_grn.training.config import ConfigError, DataConfig

__all__ = [
    "BatchStream",
    "TrainBatch",
    "build_sources",
    "block_pt_laws",
    "block_rows",
    "corrupt_for_training",
    "mixture_weights",
]

logger = logging.getLogger(__name__)


def _cache_name(cfg: SourceConfig) -> str:
    return cfg.display_name.replace(":", "-").replace("/", "-")


def build_sources(data: DataConfig) -> list[Source]:
    """The sources of ``data`` (token caches from ``token_cache_dir`` where present).

    Raises:
        ConfigError: a missing folder / file or an unreadable source, named.
    """
    sources = []
    for cfg in data.sources:
        cached = Path(data.token_cache_dir or "") / _cache_name(cfg)
        try:
            if data.token_cache_dir and cfg.kind not in PROCEDURAL + ("cache",):
                if (cached / TOKEN_CACHE_META).is_file():
                    logger.info("source %s: reading codes from the token cache %s", cfg.display_name, cached)
                    sources.append(
                        load_token_cache(
                            cached, name=cfg.display_name, weight=cfg.weight, num_samples=cfg.num_samples
                        )
                    )
                    continue
                logger.warning(
                    "source %s: no token cache at %s, encoding pixels on the fly (write one with "
                    "`grn cache-tokens %s %s --tokenizer TOKENIZER --out %s`)",
                    cfg.display_name,
                    cached,
                    cfg.kind,
                    cfg.path,
                    cached,
                )
            if cfg.path is not None and not Path(cfg.path).exists():
                raise FileNotFoundError(f"{cfg.kind} path {cfg.path!r} does not exist")
            sources.append(build_source(cfg))
        except (OSError, ValueError) as err:
            raise ConfigError(f"data source {cfg.display_name!r}: {err}") from None
    return sources


def mixture_weights(sources: list[Source], text_share: float | None) -> list[float]:
    """Per-source weights; with ``text_share`` the text sources get that share in total."""
    weights = [float(s.weight) for s in sources]
    if text_share is None:
        return weights
    is_text = [s.task == "text" for s in sources]
    text_total = sum(w for w, t in zip(weights, is_text) if t)
    other_total = sum(w for w, t in zip(weights, is_text) if not t)
    if text_share > 0 and text_total <= 0:
        raise ConfigError("data.text_share > 0 but no text source (kind: text) has a weight > 0")
    if other_total <= 0:
        raise ConfigError("data.text_share needs at least one non-text source with a weight > 0")
    return [
        (text_share * w / text_total) if t else ((1.0 - text_share) * w / other_total)
        for w, t in zip(weights, is_text)
    ]


# ----------------------------------------------------------------------------- image-to-video


def block_rows(batch: GRNBatch) -> torch.Tensor:
    """``(G,)`` int64: the batch row each visual block belongs to."""
    num_blocks = batch.block_is_target.shape[0]
    rows = torch.arange(batch.block_ids.shape[0], device=batch.block_ids.device)[:, None]
    rows = rows.expand_as(batch.block_ids)[batch.block_ids > 0]  # (N,) row of every position
    out = torch.zeros(num_blocks, dtype=torch.long, device=batch.block_ids.device)
    return out.index_copy_(0, batch.block_ids[batch.block_ids > 0] - 1, rows)


def block_pt_laws(
    model_config, batch: GRNBatch, tasks: list[str]
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(mean, std)``, each ``(G,)``: the ``p_t`` logit-normal of every block from its row's task
    (``GRNConfig.pt_logit_by_task``); ``None`` when the config has no per-task laws."""
    if not model_config.pt_logit_by_task:
        return None
    if len(tasks) != batch.block_ids.shape[0]:
        raise ValueError(f"{len(tasks)} tasks for a batch of {batch.block_ids.shape[0]} rows.")
    laws = torch.tensor([model_config.pt_logit_law(task) for task in tasks], dtype=torch.float32)  # (B, 2)
    per_block = laws.to(batch.block_ids.device)[block_rows(batch)]  # (G, 2)
    return per_block[:, 0], per_block[:, 1]


@torch.no_grad()
def corrupt_for_training(
    model_config,
    vocab,
    batch: GRNBatch,
    clean_first: torch.Tensor,
    generator: torch.Generator | None,
    pt_laws: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Alg. 2's corruption, as the model's own but with two training-loop choices: latent frame 0
    of the ``clean_first`` blocks kept clean (image-to-video), and a ``p_t`` law per block.

    The generator is advanced exactly as by the model's corruption, so with neither choice in
    use the inputs are identical to those the model would draw.

    Args:
        clean_first: ``(G,)`` bool, True for the (video target) blocks trained as image-to-video.
        pt_laws: ``(mean, std)`` ``(G,)`` each (:func:`block_pt_laws`); ``None`` = the config's one law.

    Returns:
        ``(visual_inputs, kept_fraction)`` for the model's forward: bits ``(N, C, M)`` uint8 and
        the realised kept fraction ``(G,)`` (frame 0 counts as kept).
    """
    positions = batch.block_ids > 0
    block_index = batch.block_ids[positions] - 1  # (N,)
    num_blocks = batch.block_is_target.shape[0]
    targets = vocab.labels_from_codes(batch.visual_codes)  # (N, K)
    mean, std = pt_laws if pt_laws is not None else (model_config.pt_logit_mean, model_config.pt_logit_std)
    pt = sample_kept_fraction(num_blocks, model_config.pt_distribution, mean, std, generator, targets.device)
    first_frame = clean_first[block_index] & (batch.visual_coords[:, 0] == 0)  # (N,) kept clean
    corrupted = batch.block_is_target[block_index] & ~first_frame  # (N,)
    inputs, realised = corrupt_target_blocks(
        targets, pt[block_index], block_index, corrupted, num_blocks, vocab.num_classes, generator
    )
    return vocab.bits_from_labels(inputs), realised


# ----------------------------------------------------------------------------- the stream


@dataclass
class TrainBatch:
    """One micro-batch: the collated tensors, its i2v blocks and its size."""

    batch: GRNBatch
    clean_first: torch.Tensor  # (G,) bool: blocks trained as image-to-video
    num_tokens: int  # real (non-padding) positions
    tasks: list[str]


class BatchStream:
    """Micro-batches of one rank (module docstring).

    Args:
        mixture: the rank's :class:`DataMixture`.
        collator: the model's collator (its generator draws the condition drop).
        visual_tokenizer: encodes pixel examples (frozen, outside any engine).
        micro_batch_size: samples per micro-batch.
        i2v_share: share of video samples with latent frame 0 kept clean.
        seed: the run seed (i2v choice = hash of seed and stream position).
        class_token_id / eos_token_id: passed to :func:`~unified_grn.data.examples.to_grn_sample`.
    """

    def __init__(
        self,
        mixture: DataMixture,
        collator: GRNCollator,
        visual_tokenizer: HBQTokenizer,
        micro_batch_size: int,
        i2v_share: float,
        seed: int,
        class_token_id=None,
        eos_token_id: int | None = None,
    ) -> None:
        self.mixture, self.collator, self.visual_tokenizer = mixture, collator, visual_tokenizer
        self.micro_batch_size, self.i2v_share, self.seed = micro_batch_size, i2v_share, seed
        self.class_token_id, self.eos_token_id = class_token_id, eos_token_id
        self._measure = GRNCollator(collator.tokenizer, collator.vocab, condition_drop_prob=0.0)
        self.too_long = 0

    def _fits(self, sample) -> bool:
        limit = self.collator.max_positions
        return limit is None or max(self._measure.build_row(sample).pos) + 1 <= limit

    def _is_i2v(self, example: Example) -> bool:
        if example.task != "t2v" or self.i2v_share <= 0:
            return False
        return random.Random(f"{self.seed}:i2v:{example.position}").random() < self.i2v_share

    def next_batch(self) -> TrainBatch:
        """The next micro-batch (over-long samples are skipped and counted)."""
        samples, i2v, tasks = [], [], []
        while len(samples) < self.micro_batch_size:
            examples = self.mixture.take(self.micro_batch_size - len(samples))
            for example in encode_examples(examples, self.visual_tokenizer):
                sample = to_grn_sample(example, self.class_token_id, self.eos_token_id)
                if not self._fits(sample):
                    self.too_long += 1
                    if self.too_long <= 5 or self.too_long % 1000 == 0:
                        logger.warning(
                            "skipping %s: longer than the backbone's %d positions (%d skipped so far)",
                            example.id,
                            self.collator.max_positions,
                            self.too_long,
                        )
                    continue
                samples.append(sample)
                i2v.append(self._is_i2v(example))
                tasks.append(example.task)
        batch = self.collator(samples)
        return TrainBatch(batch, _i2v_blocks(batch, i2v), int(batch.attention_mask.sum()), tasks)

    def counters(self) -> dict[str, int]:
        return {**self.mixture.counters(), "data/too_long": self.too_long}

    def state_dict(self) -> dict[str, Any]:
        return {
            "mixture": self.mixture.state_dict(),
            "collator_rng": self.collator.generator.get_state(),
            "too_long": self.too_long,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mixture.load_state_dict(state["mixture"])
        self.collator.generator.set_state(state["collator_rng"])
        self.too_long = int(state["too_long"])


def _i2v_blocks(batch: GRNBatch, rows: list[bool]) -> torch.Tensor:
    """``(G,)`` bool: the target blocks of the rows flagged image-to-video."""
    flagged = torch.tensor(rows, dtype=torch.bool, device=batch.block_ids.device)  # (B,)
    return flagged[block_rows(batch)] & batch.block_is_target
