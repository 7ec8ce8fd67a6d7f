"""GRN global-refinement sampler: a scheduler object (``set_steps`` / ``step``), apart from the model.

GRN paper (Han et al., 2026, arXiv 2604.13030): Sec. 3.2 Eq. 4-6 (the refinement state
``F_t = S_t Y_t + (1 - S_t) Y_rand``), Alg. 3 (sampling), Eq. 8-9 (complexity-aware steps, see
``unified_grn.schedules``), Sec. 4.5.2 / Table 7 (``refine_mode="mask"``: MaskGIT-style, tokens
frozen once chosen), Appendix E.2 / Table 10 (``selection="confidence"``), Appendix D and E.4
(CFG, CFG interval, temperature). Order of operations per step, as in the official samplers
(research/grn_official.md Sec. 5):

    c, u    = model(F_t, l_t)                     conditional rows, and unconditional rows when guided
    H       = Eq. 8 on softmax(c)                 decides the entropy schedule at step t0; logged always
    g       = u + w (c - u)                       w = guidance_scale while l_t is in the CFG interval, else 1
    Y       ~ softmax(g / tau)                    one categorical draw per sub-token (bit or index)
    l_{t+1} = schedule(t)                         exactly 1 at each sample's last step
    S       = rand < l_{t+1}                      per sub-token; or the most confident sub-tokens
    F_{t+1} = S Y + (1 - S) Y_rand                Y_rand drawn once per sample and reused every step
    result  = the last Y                          (not the argmax, not F)

Guidance mixes logits. Mixing log-probabilities gives the same distribution: ``log_softmax``
subtracts one constant per sub-token, and ``softmax`` ignores it. The interval test is the
official C2I one on the nominal kept fraction of the current input: on iff
``(lo == 0 or l_t > lo) and l_t < hi``.

Shapes: labels ``(B, L, K)`` int64, ``L`` visual positions of ``K`` sub-tokens each taking ``V``
values (GRN_bit: ``K = C*M``, ``V = 2``; GRN_ind: ``K = C``, ``V = 2^M``); logits ``(B, L, K, V)``,
or ``(2B, L, K, V)`` = ``cat([cond, uncond])`` when guided. Randomness comes only from the
``torch.Generator`` arguments; a list of ``B`` generators gives every sample its own stream (random
fill, sampling noise, selection maps), so a batch equals its samples run one by one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch

from unified_grn.refinement_config import (
    RefinementConfig,
    RefinementOutput,
    RefinementState,
    RefinementStats,
    StepStats,
    _is_int,
)
from unified_grn.schedules import entropy_total_steps, fraction_after, normalized_entropy, softmax_last

__all__ = [
    "GRNRefinementScheduler",
    "RefinementConfig",
    "RefinementOutput",
    "RefinementState",
    "RefinementStats",
    "StepStats",
]

GeneratorArg = torch.Generator | Sequence[torch.Generator] | None
# logits_fn(labels (R, L, K), kept_fraction (R,), rows (R,)) -> logits (R, L, K, V); rows index the
# stack [cond_0 .. cond_{B-1}, uncond_0 .. uncond_{B-1}]: row r is sample r % B, unconditional iff r >= B.
LogitsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _generators(generator: GeneratorArg, batch_size: int, device: torch.device) -> list[torch.Generator]:
    """One generator per sample (shared when a single one is given); a fresh seeded one for ``None``."""
    if generator is None:
        gen = torch.Generator(device=device)
        gen.seed()  # non-deterministic, and leaves the global RNG alone
        return [gen] * batch_size
    if isinstance(generator, torch.Generator):
        return [generator] * batch_size
    gens = list(generator)
    if len(gens) != batch_size or not all(isinstance(g, torch.Generator) for g in gens):
        raise ValueError(
            f"generator must be a torch.Generator or a list of {batch_size} (one per sample), got {len(gens)}."
        )
    return gens


def _draw(
    kind: str, shape: tuple[int, ...], gens: list[torch.Generator], ids: list[int], device, high: int = 2
):
    """Uniform floats (``kind="rand"``) or ints in ``[0, high)`` of shape ``(len(ids), *shape)``.

    With one shared generator the rows come from one call; with per-sample generators row ``j`` is
    drawn from ``gens[ids[j]]`` alone. Drawn on the generator's device, then moved (as diffusers).
    """

    def one(gen: torch.Generator, size: tuple[int, ...]) -> torch.Tensor:
        if kind == "rand":
            return torch.rand(size, generator=gen, device=gen.device)
        return torch.randint(high, size, generator=gen, device=gen.device)

    picked = [gens[i] for i in ids]
    if all(g is picked[0] for g in picked):
        return one(picked[0], (len(ids), *shape)).to(device)
    return torch.stack([one(g, shape) for g in picked]).to(device)


def _sample_categorical(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: ``probs (..., V)``, ``uniform (...)`` in [0, 1) -> int64 ``(...)``."""
    cdf = probs.cumsum(-1)
    return (cdf <= uniform.unsqueeze(-1)).sum(-1).clamp_max(probs.shape[-1] - 1)


def _top_fraction(score: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    """Per sample, mark the ``round(fraction * N)`` highest scores of ``score (n, L, K)`` (ties: first)."""
    flat = score.flatten(1)  # (n, L*K)
    count = (fraction * flat.shape[1]).round().long()
    order = flat.argsort(dim=1, descending=True, stable=True)
    ranks_kept = torch.arange(flat.shape[1], device=flat.device).unsqueeze(0) < count.unsqueeze(1)
    return torch.zeros_like(ranks_kept).scatter(1, order, ranks_kept).view_as(score)


class _Rows:
    """The unfinished samples of a batch: gather their rows, scatter results back (no copies when all are)."""

    def __init__(self, done: torch.Tensor) -> None:
        self.ids = (~done).nonzero().flatten()
        self.list = self.ids.tolist()
        self.all = len(self.list) == done.numel()

    def take(self, x: torch.Tensor | None) -> torch.Tensor | None:
        return x if x is None or self.all else x[self.ids]

    def put(self, full: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        part = part.to(full.dtype)
        return part if self.all else full.index_copy(0, self.ids, part)


class GRNRefinementScheduler:
    """The GRN sampler (cf. diffusers schedulers): kept-fraction schedule, selection map, CFG, temperature.

    Typical loop (``run`` does this, calling the model only on the rows still needed)::

        scheduler = GRNRefinementScheduler(RefinementConfig(guidance_scale=2.35, guidance_interval=(0.44, 1)))
        scheduler.set_steps(50)
        state = scheduler.init_state((B, L, K), num_values=2, generator=gens)
        while not state.done.all():
            logits = model(cat([state.labels] * 2), cat([state.kept_fraction] * 2))  # (2B, L, K, V)
            state = scheduler.step(logits, state, generator=gens)
        labels, stats = state.prediction, state.stats
    """

    def __init__(self, config: RefinementConfig | None = None, **overrides) -> None:
        self.config = dataclasses.replace(config or RefinementConfig(), **overrides)

    @property
    def num_steps(self) -> int:
        return self.config.num_steps

    def set_steps(self, num_steps: int) -> None:
        """Set ``T`` (``T_max`` for the entropy schedule); call before ``init_state``."""
        self.config = dataclasses.replace(self.config, num_steps=num_steps)

    def init_state(
        self,
        shape: tuple[int, int, int],
        num_values: int,
        generator: GeneratorArg = None,
        *,
        device: torch.device | str | None = None,
        fixed_labels: torch.Tensor | None = None,
        fixed_mask: torch.Tensor | None = None,
    ) -> RefinementState:
        """Draw the random fill ``Y_rand`` (once per sample) and return the starting state.

        Args:
            shape: ``(B, L, K)``.
            num_values: ``V``, values per sub-token (2 for GRN_bit, ``2^M`` for GRN_ind).
            generator: one ``torch.Generator``, a list of ``B`` (one per sample), or ``None``.
            device: where the state lives; default ``fixed_labels``' device, else the CPU.
            fixed_labels, fixed_mask: ``(B, L, K)`` int and bool: sub-tokens that keep the given
                value throughout (they count as kept in the realised fraction).
        """
        if len(shape) != 3 or not all(_is_int(s) and s > 0 for s in shape):
            raise ValueError(f"shape must be (B, L, K) with positive ints, got {tuple(shape)!r}.")
        if not _is_int(num_values) or num_values < 2:
            raise ValueError(f"num_values must be an int >= 2, got {num_values!r}.")
        if (fixed_labels is None) != (fixed_mask is None):
            raise ValueError("fixed_labels and fixed_mask must be given together.")
        if fixed_labels is not None:
            device = device or fixed_labels.device
            if (
                fixed_labels.shape != tuple(shape)
                or fixed_mask.shape != tuple(shape)
                or fixed_mask.dtype != torch.bool
            ):
                raise ValueError(
                    f"fixed_labels / fixed_mask must be (B, L, K) = {tuple(shape)}, int and bool."
                )
            fixed_labels, fixed_mask = fixed_labels.to(device, torch.int64), fixed_mask.to(device)
        device = torch.device(device or "cpu")
        batch = shape[0]
        gens = _generators(generator, batch, device)
        fill = _draw("int", tuple(shape[1:]), gens, list(range(batch)), device, high=num_values)  # (B, L, K)
        labels = fill if fixed_mask is None else torch.where(fixed_mask, fixed_labels, fill)
        kept = (
            torch.zeros(batch, device=device) if fixed_mask is None else fixed_mask.flatten(1).float().mean(1)
        )
        return RefinementState(
            labels=labels,
            random_fill=fill,
            prediction=labels,
            kept_fraction=kept,
            target_fraction=torch.zeros(batch, device=device),
            step_index=torch.zeros(batch, dtype=torch.int64, device=device),
            total_steps=torch.full((batch,), self.num_steps, dtype=torch.int64, device=device),
            decision_entropy=torch.full((batch,), float("nan"), device=device),
            num_values=num_values,
            frozen=torch.zeros_like(fill, dtype=torch.bool) if self.config.refine_mode == "mask" else None,
            fixed_mask=fixed_mask,
            fixed_labels=fixed_labels,
        )

    def guidance_mask(self, fraction: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: is guidance on for inputs with nominal kept fraction ``fraction``?"""
        lo, hi = self.config.guidance_interval
        if self.config.guidance_scale == 1.0:
            return torch.zeros_like(fraction, dtype=torch.bool)
        return ((fraction > lo) | (lo == 0.0)) & (fraction < hi)

    def model_rows(self, state: RefinementState, compact: bool = True) -> torch.Tensor:
        """Rows the model must compute this step, in ``[0, 2B)`` (``r >= B``: unconditional of ``r - B``).

        ``compact`` leaves out finished samples and unconditional rows while guidance is off;
        otherwise all ``B`` rows, or all ``2B`` when ``guidance_scale != 1``.
        """
        batch, device = state.batch_size, state.labels.device
        if not compact:
            return torch.arange(batch * (1 if self.config.guidance_scale == 1.0 else 2), device=device)
        active = ~state.done
        uncond = active & self.guidance_mask(state.target_fraction)
        return torch.cat([active.nonzero().flatten(), uncond.nonzero().flatten() + batch])

    def model_inputs(self, state: RefinementState, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(labels (R, L, K), kept_fraction (R,))`` for the given rows."""
        frac = state.kept_fraction if self.config.model_fraction == "realised" else state.target_fraction
        src = rows % state.batch_size
        return state.labels[src], frac[src]

    def step(
        self, logits: torch.Tensor, state: RefinementState, generator: GeneratorArg = None
    ) -> RefinementState:
        """One refinement step for every unfinished sample (finished ones are left as they are).

        Args:
            logits: ``(B, L, K, V)``, or ``(2B, L, K, V)`` = ``cat([cond, uncond])``; required when
                guidance is on for some unfinished sample. Rows of finished samples are ignored.
            state: from ``init_state`` or the previous ``step``.
            generator: as for ``init_state`` (pass the same ones every step).

        Returns:
            The next state; ``state.history[-1]`` holds this step's ``StepStats``.
        """
        cond, uncond = self._split(logits, state)
        rows = _Rows(state.done)
        if not rows.list:
            return state
        gens = _generators(generator, state.batch_size, state.labels.device)
        frac = rows.take(state.target_fraction)
        on = self.guidance_mask(frac)
        if uncond is None and bool(on.any()):
            raise ValueError("guidance is on at this step: pass (2B, L, K, V) logits = cat([cond, uncond]).")
        cond = rows.take(cond).float()  # (n, L, K, V)
        entropy = normalized_entropy(cond)
        step, total, decision = self._decide(state, rows, entropy)
        if uncond is not None:
            cond = torch.where(on.view(-1, 1, 1, 1), self._cfg(cond, rows.take(uncond)), cond)
        probs = softmax_last(cond / self._temperature(step, total).view(-1, 1, 1, 1))
        uniform = _draw("rand", tuple(state.labels.shape[1:]), gens, rows.list, probs.device)
        frozen = rows.take(state.frozen)
        pred = self._pin(_sample_categorical(probs, uniform), state, rows, frozen)  # (n, L, K)
        frac_next = self._fraction_after(step, total)
        select = self._select(probs, pred, frac, frac_next, frozen, gens, rows.list)
        labels = self._pin(torch.where(select, pred, rows.take(state.random_fill)), state, rows, frozen)
        real = select if state.fixed_mask is None else select | rows.take(state.fixed_mask)
        kept = real.flatten(1).sum(1) / real[0].numel()  # exact: integer count / N

        def stat(part: torch.Tensor, fill: float | bool) -> torch.Tensor:
            return rows.put(torch.full((state.batch_size,), fill, device=part.device, dtype=part.dtype), part)

        nan = float("nan")
        stats = StepStats(
            entropy=stat(entropy, nan),
            kept_fraction=stat(kept, nan),
            target_fraction=stat(frac_next, nan),
            guidance=stat(on, False),
            active=stat(torch.ones_like(on), False),
        )
        return dataclasses.replace(
            state,
            labels=rows.put(state.labels, labels),
            prediction=rows.put(state.prediction, pred),
            kept_fraction=rows.put(state.kept_fraction, kept),
            target_fraction=rows.put(state.target_fraction, frac_next),
            step_index=rows.put(state.step_index, step + 1),
            total_steps=rows.put(state.total_steps, total),
            decision_entropy=rows.put(state.decision_entropy, decision),
            frozen=None if frozen is None else rows.put(state.frozen, select),
            history=(*state.history, stats),
        )

    def run(
        self,
        logits_fn: LogitsFn,
        state: RefinementState,
        generator: GeneratorArg = None,
        *,
        compact: bool = True,
        callback: Callable[[RefinementState], None] | None = None,
    ) -> RefinementOutput:
        """Step until every sample is done, calling ``logits_fn(labels, kept_fraction, rows)`` once a step.

        ``rows`` (see ``model_rows``) says which sample each row belongs to and whether it is
        unconditional: with ``compact=True`` finished samples and unneeded unconditional rows are
        skipped (the entropy schedule and the CFG interval then save model work); with
        ``compact=False`` the model always sees all ``B`` (or ``2B``) rows. ``callback(state)``
        runs after each step (e.g. a progress bar).
        """
        state = self._loop(logits_fn, state, generator, compact, callback, until=lambda s: bool(s.done.all()))
        return RefinementOutput(labels=state.prediction, stats=state.stats, state=state)

    def decision_entropy(
        self, logits_fn: LogitsFn, state: RefinementState, generator: GeneratorArg = None
    ) -> torch.Tensor:
        """Run the ``t0 + 1`` warm-up steps and return ``H(Y_{t0+1})`` per sample ``(B,)`` (for fitting k, b)."""
        if self.config.schedule != "entropy":
            raise ValueError("decision_entropy needs schedule='entropy'.")
        # warmup_steps < min_steps: every sample is decided at step t0, before any finishes.
        state = self._loop(
            logits_fn, state, generator, True, None, until=lambda s: not s.decision_entropy.isnan().any()
        )
        return state.decision_entropy

    # -- internals ---------------------------------------------------------------------------------

    def _loop(self, logits_fn, state, generator, compact, callback, until) -> RefinementState:
        batch = state.batch_size
        while not until(state):
            rows = self.model_rows(state, compact=compact)
            out = logits_fn(*self.model_inputs(state, rows), rows)
            if out.dim() != 4 or out.shape[:3] != (rows.numel(), *state.labels.shape[1:]):
                raise ValueError(
                    f"logits_fn must return (R, L, K, V) = ({rows.numel()}, {tuple(state.labels.shape[1:])}, V), "
                    f"got {tuple(out.shape)}."
                )
            width = 2 * batch if bool((rows >= batch).any()) else batch
            if rows.numel() != width:  # scatter the computed rows into a full (B | 2B) stack
                full = out.new_zeros((width, *out.shape[1:]))
                out = full.index_copy(0, rows, out)
            state = self.step(out, state, generator)
            if callback is not None:
                callback(state)
        return state

    def _split(
        self, logits: torch.Tensor, state: RefinementState
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, grid = state.batch_size, tuple(state.labels.shape[1:])
        if (
            logits.dim() != 4
            or logits.shape[1:] != (*grid, state.num_values)
            or logits.shape[0] not in (batch, 2 * batch)
        ):
            raise ValueError(
                f"logits must be (B, L, K, V) or (2B, L, K, V) with B={batch}, (L, K)={grid}, "
                f"V={state.num_values}; got {tuple(logits.shape)}."
            )
        if logits.shape[0] == batch:
            return logits, None
        return logits[:batch], logits[batch:]

    def _cfg(self, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        return uncond.float() + self.config.guidance_scale * (cond - uncond.float())

    def _decide(self, state: RefinementState, rows: _Rows, entropy: torch.Tensor):
        """Step index, planned steps and decision entropy of the active samples (Eq. 9 at step t0)."""
        cfg = self.config
        step, total, decision = (
            rows.take(t) for t in (state.step_index, state.total_steps, state.decision_entropy)
        )
        if cfg.schedule == "entropy":
            now = step == cfg.warmup_steps
            planned = entropy_total_steps(
                entropy,
                cfg.entropy_k,
                cfg.entropy_b,
                warmup_steps=cfg.warmup_steps,
                min_steps=cfg.min_steps,
                max_steps=cfg.num_steps,
            )
            total = torch.where(now, planned, total)
            decision = torch.where(now, entropy, decision)
        return step, total, decision

    def _temperature(self, step: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        tau = torch.full(step.shape, cfg.temperature, device=step.device)
        if cfg.schedule == "entropy" and cfg.adaptive_temperature:
            refine = (total - cfg.warmup_steps).float()
            factor = ((refine - 10.0) / 40.0 + 0.5).clamp(0.5, 1.0)
            tau = torch.where(step >= cfg.warmup_steps, tau * factor, tau)
        return tau

    def _fraction_after(self, step: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        return fraction_after(
            step, total, cfg.schedule, warmup_steps=cfg.warmup_steps, alpha=cfg.warmup_alpha, shift=cfg.shift
        )

    def _pin(self, labels, state: RefinementState, rows: _Rows, frozen) -> torch.Tensor:
        """Hold frozen (mask mode) and caller-fixed sub-tokens at their values."""
        if frozen is not None:
            labels = torch.where(frozen, rows.take(state.labels), labels)
        if state.fixed_mask is not None:
            labels = torch.where(rows.take(state.fixed_mask), rows.take(state.fixed_labels), labels)
        return labels

    def _select(self, probs, pred, frac, frac_next, frozen, gens, id_list) -> torch.Tensor:
        """The selection map ``S`` (bool ``(n, L, K)``) for the next input, kept fraction ``frac_next``."""
        if self.config.selection == "confidence":
            conf = probs.gather(-1, pred.unsqueeze(-1)).squeeze(-1)  # (n, L, K) prob of the drawn value
            if frozen is not None:
                conf = conf.masked_fill(frozen, float("inf"))
            return _top_fraction(conf, frac_next)
        uniform = _draw("rand", tuple(pred.shape[1:]), gens, id_list, pred.device)
        if frozen is None:
            return uniform < frac_next.view(-1, 1, 1)
        # Mask mode: add unfrozen sub-tokens with probability q so that E[kept] = l_{t+1}.
        q = ((frac_next - frac) / (1.0 - frac)).clamp(0.0, 1.0)
        return frozen | (uniform < q.view(-1, 1, 1))
