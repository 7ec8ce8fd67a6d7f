"""Configuration and data classes of the GRN refinement sampler (``unified_grn.refinement``).

``RefinementConfig`` holds the sampler's settings (GRN paper Alg. 3, Eq. 8-9, Sec. 4.5, Appendix
D and E.2-E.4; defaults and their official sources are documented on the class) and validates
them. ``RefinementState`` is what the sampler carries from one step to the next,
``StepStats`` / ``RefinementStats`` what it reports, ``RefinementOutput`` what ``run`` returns.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from unified_grn.schedules import SCHEDULES

__all__ = [
    "MODEL_FRACTIONS",
    "REFINE_MODES",
    "SELECTIONS",
    "RefinementConfig",
    "RefinementOutput",
    "RefinementState",
    "RefinementStats",
    "StepStats",
]

SELECTIONS = ("random", "confidence")
REFINE_MODES = ("refine", "mask")
MODEL_FRACTIONS = ("realised", "nominal")


def _is_int(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and float("-inf") < x < float("inf")


@dataclass(frozen=True)
class RefinementConfig:
    """Settings of the refinement sampler; every bad value raises ``ValueError`` on construction.

    Attributes:
        num_steps: refinement steps ``T`` (model calls per sample); with ``schedule="entropy"``
            this is ``T_max``. Default 50 (all official tasks).
        schedule: kept-fraction schedule, ``"linear"`` (Alg. 3), ``"cosine"`` (official code,
            default) or ``"entropy"`` (Eq. 8-9).
        selection: selection map, ``"random"`` (Eq. 6, default) or ``"confidence"`` (Table 10).
        refine_mode: ``"refine"`` (every sub-token may change each step, default) or ``"mask"``
            (a sub-token keeps its value once selected, MaskGIT-style, Table 7).
        temperature: ``tau > 0``; logits are divided by it after guidance. Default 1.0.
        guidance_scale: CFG scale ``w``; 1.0 (default) is no guidance and needs no unconditional rows.
        guidance_interval: ``(lo, hi)`` in ``[0, 1]``, ``lo <= hi``: guidance is on at a step iff
            ``(lo == 0 or l_t > lo) and l_t < hi`` for the input's nominal kept fraction ``l_t``
            (official C2I: scale 2.35 on ``(0.44, 1.0)``).
        shift: the official ``shift_pt`` factor applied to every schedule; 1.0 (default) = none.
        min_steps: ``T_min`` of the entropy schedule (default 20, official C2I).
        warmup_steps: ``t0``, fixed-rate warm-up steps before the entropy decision (default 5).
        entropy_k, entropy_b: ``k`` and ``b`` of Eq. 9 (official C2I: 700 and -620; model-dependent,
            fit them with ``unified_grn.schedules.fit_entropy_schedule``).
        alpha: ``alpha`` of Eq. 9; ``None`` (default) means ``num_steps`` (= ``T_max``), as the official code.
        adaptive_temperature: entropy schedule only: from step ``t0`` on, use
            ``tau * clip((S - 10) / 40 + 0.5, 0.5, 1)`` with ``S = steps - t0``, as the official C2I
            complexity-aware sampler (not in the paper). Default True.
        model_fraction: which kept fraction ``run`` hands the model: ``"realised"`` (the fraction of
            sub-tokens actually taken from the prediction, as the newer official T2I code, default)
            or ``"nominal"`` (the schedule's ``l_t``, as the official C2I code).
    """

    num_steps: int = 50
    schedule: str = "cosine"
    selection: str = "random"
    refine_mode: str = "refine"
    temperature: float = 1.0
    guidance_scale: float = 1.0
    guidance_interval: tuple[float, float] = (0.0, 1.0)
    shift: float = 1.0
    min_steps: int = 20
    warmup_steps: int = 5
    entropy_k: float = 700.0
    entropy_b: float = -620.0
    alpha: float | None = None
    adaptive_temperature: bool = True
    model_fraction: str = "realised"

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "guidance_interval", tuple(self.guidance_interval))
        except TypeError:
            raise ValueError(
                f"guidance_interval must be two numbers (lo, hi), got {self.guidance_interval!r}."
            ) from None
        if not _is_int(self.num_steps) or self.num_steps < 1:
            raise ValueError(f"num_steps must be an int >= 1, got {self.num_steps!r}.")
        for name, value, choices in (
            ("schedule", self.schedule, SCHEDULES),
            ("selection", self.selection, SELECTIONS),
            ("refine_mode", self.refine_mode, REFINE_MODES),
            ("model_fraction", self.model_fraction, MODEL_FRACTIONS),
        ):
            if value not in choices:
                raise ValueError(f"Unknown {name} {value!r}; expected one of {choices}.")
        if not _finite(self.temperature) or self.temperature <= 0:
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature!r}.")
        if not _finite(self.guidance_scale):
            raise ValueError(f"guidance_scale must be a finite number, got {self.guidance_scale!r}.")
        interval = self.guidance_interval
        if len(interval) != 2 or not all(_finite(v) for v in interval):
            raise ValueError(f"guidance_interval must be two numbers (lo, hi), got {interval!r}.")
        if not 0.0 <= interval[0] <= interval[1] <= 1.0:
            raise ValueError(f"guidance_interval must satisfy 0 <= lo <= hi <= 1, got {interval!r}.")
        if not _finite(self.shift) or self.shift <= 0:
            raise ValueError(f"shift must be a finite number > 0, got {self.shift!r}.")
        if self.schedule == "entropy":
            self._check_entropy()

    def _check_entropy(self) -> None:
        t0, t_min, t_max = self.warmup_steps, self.min_steps, self.num_steps
        if not (_is_int(t0) and _is_int(t_min)) or not 0 <= t0 < t_min:
            raise ValueError(f"need ints 0 <= warmup_steps < min_steps, got {t0!r}, {t_min!r}.")
        if t_min > t_max:
            raise ValueError(
                f"min_steps (T_min={t_min}) must not exceed num_steps (T_max={t_max}) for the entropy schedule."
            )
        if not (_finite(self.entropy_k) and _finite(self.entropy_b)):
            raise ValueError(
                f"entropy_k and entropy_b must be finite, got {self.entropy_k!r}, {self.entropy_b!r}."
            )
        if self.alpha is not None and (not _finite(self.alpha) or self.alpha <= t0):
            raise ValueError(f"alpha must be a number > warmup_steps ({t0}), got {self.alpha!r}.")

    @property
    def warmup_alpha(self) -> float:
        """``alpha`` of Eq. 9 as used: ``num_steps`` when not set."""
        return float(self.num_steps if self.alpha is None else self.alpha)


@dataclass(frozen=True)
class StepStats:
    """What one ``step`` did, one value per sample (``B``,); NaN / False for finished samples."""

    entropy: torch.Tensor  # Eq. 8 of the conditional prediction
    kept_fraction: torch.Tensor  # realised fraction of the next input taken from the prediction
    target_fraction: torch.Tensor  # nominal l_{t+1}
    guidance: torch.Tensor  # bool: guidance applied
    active: torch.Tensor  # bool: sample updated by this step


@dataclass(frozen=True)
class RefinementStats:
    """Per-step statistics of a run, ``(B, S)`` over the ``S`` steps the batch ran (NaN / False padded)."""

    entropy: torch.Tensor
    kept_fraction: torch.Tensor
    target_fraction: torch.Tensor
    guidance: torch.Tensor
    active: torch.Tensor
    steps_used: torch.Tensor  # (B,) int64 steps (model calls) per sample
    decision_entropy: torch.Tensor  # (B,) H(Y_{t0+1}) of the entropy schedule; NaN otherwise

    @classmethod
    def from_history(
        cls, history: Sequence[StepStats], steps_used: torch.Tensor, decision_entropy: torch.Tensor
    ) -> RefinementStats:
        names = ("entropy", "kept_fraction", "target_fraction", "guidance", "active")
        if history:
            cols = {n: torch.stack([getattr(s, n) for s in history], dim=1) for n in names}  # (B, S)
        else:
            batch = steps_used.shape[0]
            empty = torch.empty(batch, 0, device=steps_used.device)
            cols = {n: empty.bool() if n in ("guidance", "active") else empty for n in names}
        return cls(**cols, steps_used=steps_used, decision_entropy=decision_entropy)

    @property
    def mean_steps(self) -> float:
        return self.steps_used.double().mean().item()


@dataclass(frozen=True)
class RefinementState:
    """The sampler's state between steps. ``step`` returns a new state; tensors are never mutated.

    ``labels`` is the next model input ``F_t`` and ``prediction`` the last sampled ``Y`` (the result
    once ``done``); both ``(B, L, K)`` int64. ``frozen`` (mask mode) marks sub-tokens already chosen;
    ``fixed_mask`` / ``fixed_labels`` mark sub-tokens given by the caller (e.g. an image-to-video
    first frame), which hold their value in every input and prediction.
    """

    labels: torch.Tensor
    random_fill: torch.Tensor
    prediction: torch.Tensor
    kept_fraction: torch.Tensor  # (B,) float32 realised fraction of real (non-random) sub-tokens in labels
    target_fraction: torch.Tensor  # (B,) float32 nominal l_t of labels
    step_index: torch.Tensor  # (B,) int64 steps taken
    total_steps: torch.Tensor  # (B,) int64 steps planned (entropy: T_max until decided at step t0)
    decision_entropy: torch.Tensor  # (B,) float32, NaN until decided
    num_values: int
    frozen: torch.Tensor | None = None
    fixed_mask: torch.Tensor | None = None
    fixed_labels: torch.Tensor | None = None
    history: tuple[StepStats, ...] = field(default=())

    @property
    def batch_size(self) -> int:
        return self.labels.shape[0]

    @property
    def done(self) -> torch.Tensor:
        """``(B,)`` bool: the sample has taken all its steps and is no longer updated."""
        return self.step_index >= self.total_steps

    @property
    def stats(self) -> RefinementStats:
        return RefinementStats.from_history(self.history, self.step_index, self.decision_entropy)


@dataclass(frozen=True)
class RefinementOutput:
    labels: torch.Tensor  # (B, L, K) int64, the last sampled prediction of every sample
    stats: RefinementStats
    state: RefinementState
