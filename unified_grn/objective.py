"""The GRN training objective: the corruption of Alg. 2 and the loss of Eq. 7.

``F_t = S * Y_gt + (1 - S) * Y_rand``, then cross-entropy on every visual slot.

GRN paper Sec. 3.2 (Eq. 4, 6, 7), Appendix B, Alg. 2; research/grn_official.md Sec. 4.1: ``p_t`` is
drawn per sample (the official code: ``sigmoid(N(-1.3, 1.3))`` for T2I/T2V, ``sigmoid(N(-0.8,
0.8))`` for C2I), each label slot (a bit for GRN_bit, a channel index for GRN_ind) is kept with
probability ``p_t`` and otherwise replaced by a uniform random value (which equals the truth by
chance, so the model also learns to keep correct inputs), and the model is told the *realised*
kept fraction (as the newer official code does). Every draw takes a ``torch.Generator``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from unified_grn.modeling_outputs import VisualInputs
from unified_grn.vocab import GRNVocab

__all__ = [
    "block_mean",
    "block_mean_cross_entropy",
    "corrupt_labels",
    "focal_weighted",
    "round_weighted",
    "prepare_visual_inputs",
    "rand",
    "randint",
    "realised_fraction",
    "sample_kept_fraction",
    "slot_cross_entropy",
]


def rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``torch.rand`` drawn on the generator's device, then moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def randint(
    high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.randint(high, shape, generator=generator, device=gen_device).to(device)


def sample_kept_fraction(
    num: int,
    distribution: str,
    logit_mean: float | torch.Tensor,
    logit_std: float | torch.Tensor,
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    """``(num,)`` kept fractions ``p_t`` in (0, 1): logit-normal or uniform.

    ``logit_mean`` / ``logit_std`` are one law for all, or ``(num,)`` tensors with one law per
    draw (``GRNConfig.pt_logit_by_task``); the generator is advanced identically either way.
    """
    if distribution == "uniform":
        return rand((num,), generator, device)
    if distribution != "logit_normal":
        raise ValueError(f"unknown p_t distribution {distribution!r}; use 'logit_normal' or 'uniform'.")
    gen_device = generator.device if generator is not None else device
    normal = torch.randn((num,), generator=generator, device=gen_device).to(device)
    if isinstance(logit_std, torch.Tensor):
        logit_std = logit_std.to(device)
    if isinstance(logit_mean, torch.Tensor):
        logit_mean = logit_mean.to(device)
    return torch.sigmoid(normal * logit_std + logit_mean)


def corrupt_labels(
    labels: torch.Tensor,
    kept_fraction: torch.Tensor,
    num_classes: int,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep each slot with probability ``p_t`` of its position, else draw it uniformly.

    Args:
        labels: ``(N, K)`` int64 ground truth.
        kept_fraction: ``(N,)`` float ``p_t`` of each position's block.
        num_classes: values per slot (2 or ``2^M``).

    Returns:
        ``(mixed, keep)``: ``(N, K)`` int64 model input and ``(N, K)`` bool selection map ``S``.
    """
    keep = rand(tuple(labels.shape), generator, labels.device) < kept_fraction[:, None]
    random_labels = randint(num_classes, tuple(labels.shape), generator, labels.device)
    return torch.where(keep, labels, random_labels), keep


def realised_fraction(keep: torch.Tensor, block_index: torch.Tensor, num_blocks: int) -> torch.Tensor:
    """Mean of the selection map ``keep`` ``(N, K)`` over each block's positions -> ``(num_blocks,)``."""
    per_position = keep.float().mean(dim=-1)  # (N,)
    total = torch.zeros(num_blocks, device=keep.device).index_add_(0, block_index, per_position)
    count = torch.zeros(num_blocks, device=keep.device).index_add_(
        0, block_index, torch.ones_like(per_position)
    )
    return total / count.clamp(min=1)


def prepare_visual_inputs(
    config,
    vocab: GRNVocab,
    block_ids: torch.Tensor,
    visual_codes: torch.Tensor,
    visual_coords: torch.Tensor,
    block_is_target: torch.Tensor,
    visual_inputs: torch.Tensor | None = None,
    kept_fraction: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> VisualInputs:
    """Batch fields (``collator.GRNBatch``) -> per-position model inputs and targets.

    Target blocks are corrupted (``p_t`` per block from ``config.pt_distribution``), context
    blocks stay clean with ``p_t = 1``; or ``visual_inputs`` (already mixed, same layout as
    ``visual_codes``) and ``kept_fraction`` ``(G,)`` are used as given.
    """
    positions = block_ids > 0
    num_blocks = block_is_target.shape[0]
    if int(positions.sum()) != visual_codes.shape[0]:
        raise ValueError(
            f"block_ids mark {int(positions.sum())} visual positions but visual_codes has {visual_codes.shape[0]}."
        )
    targets = vocab.labels_from_codes(visual_codes)  # (N, K)
    block_index = block_ids[positions] - 1  # (N,)
    is_target = block_is_target[block_index]  # (N,)
    if visual_inputs is not None:
        if kept_fraction is None:
            raise ValueError("visual_inputs needs kept_fraction: (G,) realised p_t of every block.")
        inputs = vocab.labels_from_codes(visual_inputs)
        return VisualInputs(inputs, targets, visual_coords, block_index, is_target, kept_fraction.float())
    pt = sample_kept_fraction(
        num_blocks,
        config.pt_distribution,
        config.pt_logit_mean,
        config.pt_logit_std,
        generator,
        targets.device,
    )
    inputs, realised = corrupt_target_blocks(
        targets, pt[block_index], block_index, is_target, num_blocks, vocab.num_classes, generator
    )
    return VisualInputs(inputs, targets, visual_coords, block_index, is_target, realised)


def corrupt_target_blocks(
    targets: torch.Tensor,
    pt: torch.Tensor,
    block_index: torch.Tensor,
    is_target: torch.Tensor,
    num_blocks: int,
    num_classes: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5 on the target blocks only: each slot of a target position keeps its label with
    probability ``pt`` (``(N,)``, one kept fraction per position) or is drawn uniformly; context
    blocks stay clean.

    Returns:
        ``(inputs, realised)``: ``(N, K)`` mixed labels and ``(G,)`` realised kept fraction per block.
    """
    mixed, keep = corrupt_labels(targets, pt, num_classes, generator)
    keep = keep | ~is_target[:, None]  # context blocks are clean
    inputs = torch.where(is_target[:, None], mixed, targets)
    return inputs, realised_fraction(keep, block_index, num_blocks)


def slot_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(N, K, classes)`` logits, ``(N, K)`` targets -> ``(N, K)`` cross-entropy per slot (float32)."""
    ce = F.cross_entropy(rearrange(logits.float(), "n k v -> (n k) v"), targets.reshape(-1), reduction="none")
    return rearrange(ce, "(n k) -> n k", k=targets.shape[1])


def focal_weighted(ce: torch.Tensor, gamma: float) -> torch.Tensor:
    """``(1 - p_true) ** gamma * ce`` per slot (the focal loss of Lin et al. 2017; not part of GRN).

    Confidently right slots (the flat background, bits that were kept) count less, the uncertain
    ones (an object's bits) more; ``gamma = 0`` returns ``ce`` itself.
    """
    if gamma == 0:
        return ce
    # 1 - p_true = -expm1(-ce); the clamp keeps d/dx x**gamma finite (gamma < 1) where ce is 0
    miss = (-torch.expm1(-ce)).clamp(min=torch.finfo(ce.dtype).tiny)
    return miss**gamma * ce


def round_weighted(ce: torch.Tensor, weights: list[float] | None, num_rounds: int) -> torch.Tensor:
    """Each slot's loss times its HBQ round's weight over the mean weight (not part of GRN).

    ``ce`` is ``(N, K)`` with round-major slots (``K = M * C``, :mod:`unified_grn.vocab`), so the
    mean over slots of the result is ``sum_m w_m L_m / sum_m w_m`` for per-round means ``L_m``:
    equal weights (or ``None``) return ``ce`` itself, and the overall scale stays Eq. 7's.
    """
    if weights is None:
        return ce
    w = ce.new_tensor(weights)
    if w.numel() != num_rounds or ce.shape[-1] % num_rounds:
        raise ValueError(f"{w.numel()} round weights for {num_rounds} rounds and {ce.shape[-1]} slots.")
    per_round = rearrange(ce, "n (m c) -> n m c", m=num_rounds)
    scaled = per_round * (w / w.mean())[:, None]  # (N, M, C)
    return rearrange(scaled, "n m c -> n (m c)")


def block_mean(per_slot: torch.Tensor, block_index: torch.Tensor, num_blocks: int) -> torch.Tensor:
    """Eq. 7's reduction: ``(N, K)`` slot losses -> mean per block (its positions and slots), then over blocks."""
    per_position = per_slot.mean(-1)  # (N,)
    total = per_position.new_zeros(num_blocks).index_add(0, block_index, per_position)
    count = per_position.new_zeros(num_blocks).index_add(0, block_index, torch.ones_like(per_position))
    present = count > 0
    return (total[present] / count[present]).mean()


def block_mean_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    block_index: torch.Tensor,
    num_blocks: int,
    focal_gamma: float = 0.0,
) -> torch.Tensor:
    """Eq. 7: slot cross-entropy, mean per block (over its positions and slots), then over blocks.

    ``focal_gamma > 0`` weights each slot first (:func:`focal_weighted`); 0 is Eq. 7 exactly.

    Args:
        logits: ``(N, K, classes)``; targets: ``(N, K)``; block_index: ``(N,)`` block of each position.
    """
    ce = focal_weighted(slot_cross_entropy(logits, targets), focal_gamma)
    return block_mean(ce, block_index, num_blocks)
