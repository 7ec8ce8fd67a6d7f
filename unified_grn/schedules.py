"""Kept-fraction schedules of GRN global refinement, and the Eq. 8 entropy that drives one of them.

GRN paper (Han et al., 2026, arXiv 2604.13030): Sec. 3.2 Eq. 6 (``S_t = RandLike(Y_t) < l_t``),
Alg. 3 (linear ``l_t``), Eq. 8 (normalised prediction entropy), Eq. 9 (complexity-aware ``l_t``),
Sec. 4.5.3 and Appendix E.4 (``k``, ``b``, ``T_min``, ``T_max``). Official code: the C2I sampler
``grn/utils_c2i/denoiser.py`` (research/grn_official.md Sec. 5.2-5.3).

Step convention (that of the official C2I sampler). Steps count from 0. Step ``i`` feeds the model
an input whose nominal kept fraction is ``l_i`` (``l_0 = 0``), samples a prediction and builds the
next input with kept fraction ``l_{i+1} = fraction_after(i)``. The last step has
``l_{i+1} = 1`` exactly, and its prediction is the result, so ``T`` steps are ``T`` model calls.

    linear   l_{i+1} = (i + 1) / T                                    (Alg. 3)
    cosine   l_{i+1} = 1 - cos(pi/2 * (i + 1) / T)                    (official C2I ``cosine``)
    entropy  Eq. 9 with t = i + 1 (1-based step), warm-up t0, alpha:
             l_t = t / alpha                                          t <= t0
             l_t = t0/alpha + (1 - t0/alpha) * (t - t0) / S           t >  t0
             S   = round(clip(k * H + b, T_min - t0, T_max - t0)),    total steps = t0 + S

``H = H(Y_{t0+1})`` is Eq. 8 on the *conditional* prediction (no guidance, no temperature) of the
(t0+1)-th model call, i.e. step ``i = t0``; the official code computes it there and rounds ``S``
after clipping, so ``k * H + b`` counts the steps *after* the warm-up and the total lies in
``[T_min, T_max]``. The official code sets ``alpha = T_max`` (its ``t_next = (i+1)/steps``); the
paper's defaults are ``alpha = T_max = 50``. The official T2I snapshot's cosine,
``0.999 * (1 - cos(pi/2 * (i+1)/(T-1)))``, never reaches 1; we use the C2I form, which does.

An optional ``shift`` (the official ``shift_pt``, ``n = 1 - l``, ``n' = a n / (1 + (a-1) n)``)
bends any schedule towards later steps (``a > 1``) while keeping it monotone; ``a = 1`` is the
identity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

__all__ = [
    "SCHEDULES",
    "entropy_total_steps",
    "fit_entropy_schedule",
    "fraction_after",
    "normalized_entropy",
    "shift_fraction",
]

SCHEDULES = ("linear", "cosine", "entropy")


def shift_fraction(fraction: torch.Tensor, shift: float) -> torch.Tensor:
    """The official ``shift_pt``: ``1 - a (1 - l) / (1 + (a - 1)(1 - l))``; monotone, fixes 0 and 1."""
    if shift == 1.0:
        return fraction
    rest = 1.0 - fraction
    return 1.0 - shift * rest / (1.0 + (shift - 1.0) * rest)


def fraction_after(
    step: torch.Tensor,
    total_steps: torch.Tensor,
    schedule: str,
    *,
    warmup_steps: int = 5,
    alpha: float = 50.0,
    shift: float = 1.0,
) -> torch.Tensor:
    """Nominal kept fraction ``l_{i+1}`` of the input built after step ``i`` (0-based).

    Args:
        step: ``(B,)`` int, the step just taken.
        total_steps: ``(B,)`` int, each sample's step count (``T``; for ``entropy``, ``t0 + S``).
        schedule: ``"linear"``, ``"cosine"`` or ``"entropy"``.
        warmup_steps, alpha: ``t0`` and ``alpha`` of Eq. 9 (``entropy`` only).
        shift: the official ``shift_pt`` factor, 1 = none.

    Returns:
        ``(B,)`` float32 in ``[0, 1]``, exactly 1 where ``step + 1 >= total_steps``.
    """
    t = (step + 1).to(torch.float32)
    total = total_steps.to(torch.float32)
    if schedule == "linear":
        frac = t / total
    elif schedule == "cosine":
        frac = 1.0 - torch.cos(0.5 * math.pi * t / total)
    elif schedule == "entropy":
        t0 = float(warmup_steps)
        refine = (total - t0).clamp_min(1.0)  # S; only read once t > t0, when S >= 1 holds
        after = t0 / alpha + (1.0 - t0 / alpha) * (t - t0) / refine
        frac = torch.where(t <= t0, t / alpha, after)
    else:
        raise ValueError(f"Unknown schedule {schedule!r}; expected one of {SCHEDULES}.")
    frac = shift_fraction(frac.clamp(0.0, 1.0), shift)
    return torch.where(step + 1 >= total_steps, torch.ones_like(frac), frac.clamp(0.0, 1.0))


def softmax_last(logits: torch.Tensor, log: bool = False) -> torch.Tensor:
    """``softmax`` (or ``log_softmax``) over the last dim, fast when it is tiny (GRN_bit: V = 2).

    The CPU kernel for a last dim of 2 pays per row and runs ~10x slower than the same reduction
    over a middle dim, where it vectorises across rows. For ``V <= 4`` the values are laid out
    ``(..., V, K)`` and reduced there (the same formula, per element independent of the batch);
    larger ``V`` take ``torch.softmax`` as it is.
    """
    fn = torch.log_softmax if log else torch.softmax
    if logits.shape[-1] > 4 or logits.dim() < 2:
        return fn(logits, dim=-1)
    moved = logits.transpose(-1, -2).contiguous()  # (..., V, K)
    return fn(moved, dim=-2).transpose(-1, -2)  # (..., K, V)


def normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Eq. 8: mean over all sub-tokens of the entropy of ``softmax(logits)``, divided by ``log V``.

    Args:
        logits: ``(B, ..., V)``, any float dtype (computed in float32).

    Returns:
        ``(B,)`` float32 in ``[0, 1]``: 0 for one-hot predictions, 1 for uniform ones.
    """
    num_values = logits.shape[-1]
    logp = softmax_last(logits.float(), log=True)
    plogp = torch.nan_to_num(logp.exp() * logp, nan=0.0)  # a zero probability gives 0 * -inf = nan -> 0
    ent = -plogp.sum(-1)  # (B, ...) in nats
    return ent.flatten(1).mean(1) / math.log(num_values)


def entropy_total_steps(
    entropy: torch.Tensor,
    k: float,
    b: float,
    *,
    warmup_steps: int,
    min_steps: int,
    max_steps: int,
) -> torch.Tensor:
    """Eq. 9's step count: ``t0 + round(clip(k H + b, T_min - t0, T_max - t0))``, int64 like ``entropy``."""
    refine = (k * entropy.to(torch.float32) + b).clamp(min_steps - warmup_steps, max_steps - warmup_steps)
    return refine.round().to(torch.int64) + warmup_steps


def _mean_steps(entropy: torch.Tensor, k: float, b: float, **bounds: int) -> float:
    return entropy_total_steps(entropy, k, b, **bounds).double().mean().item()


def fit_entropy_schedule(
    entropies: torch.Tensor | Sequence[float] | Callable[[], torch.Tensor | Sequence[float]],
    target_mean_steps: float,
    *,
    k: float | None = None,
    warmup_steps: int = 5,
    min_steps: int = 20,
    max_steps: int = 50,
) -> tuple[float, float]:
    """Fit ``(k, b)`` of Eq. 9 so that the mean step count over a prompt set hits a target.

    ``H(Y_{t0+1})`` does not depend on ``k`` or ``b`` (it is measured during the warm-up), so one
    measurement per prompt suffices: ``GRNRefinementScheduler.decision_entropy`` gives it.

    Args:
        entropies: the decision entropies of the prompt set, ``(N,)``, or a callable returning them.
        target_mean_steps: the wanted mean of ``t0 + S`` over the set, in ``[min_steps, max_steps]``.
        k: keep this ``k`` and fit ``b`` only. ``None`` sets ``k`` so that the central 90% of the
            entropies spans ``[min_steps, max_steps]`` (the paper tunes ``k`` in [300, 1200] and
            sets ``b`` "accordingly"), or 0 when the entropies are all (nearly) equal.
        warmup_steps, min_steps, max_steps: ``t0``, ``T_min``, ``T_max``.

    Returns:
        ``(k, b)``. The step count is an integer per prompt, so the mean is hit to about
        ``1 / N`` steps (more when many prompts share one entropy).
    """
    values = entropies() if callable(entropies) else entropies
    ent = torch.as_tensor(values, dtype=torch.float64).flatten()
    if ent.numel() == 0 or not torch.isfinite(ent).all():
        raise ValueError("fit_entropy_schedule needs a non-empty set of finite entropies.")
    if not 0 <= warmup_steps < min_steps <= max_steps:
        raise ValueError(
            f"need 0 <= warmup_steps < min_steps <= max_steps, got {warmup_steps}, {min_steps}, {max_steps}."
        )
    if not min_steps <= target_mean_steps <= max_steps:
        raise ValueError(
            f"target_mean_steps must lie in [{min_steps}, {max_steps}], got {target_mean_steps}."
        )
    if k is None:
        lo, hi = torch.quantile(ent, torch.tensor([0.05, 0.95], dtype=torch.float64)).tolist()
        k = (max_steps - min_steps) / (hi - lo) if hi - lo > 1e-6 else 0.0
    bounds = {"warmup_steps": warmup_steps, "min_steps": min_steps, "max_steps": max_steps}
    # The mean is a non-decreasing step function of b: bisect for the first b reaching the target.
    b_lo = min_steps - warmup_steps - k * ent.max().item() - 1.0
    b_hi = max_steps - warmup_steps - k * ent.min().item() + 1.0
    for _ in range(100):
        mid = 0.5 * (b_lo + b_hi)
        if _mean_steps(ent, k, mid, **bounds) >= target_mean_steps:
            b_hi = mid
        else:
            b_lo = mid
    err_lo = abs(_mean_steps(ent, k, b_lo, **bounds) - target_mean_steps)
    err_hi = abs(_mean_steps(ent, k, b_hi, **bounds) - target_mean_steps)
    return float(k), float(b_lo if err_lo < err_hi else b_hi)
