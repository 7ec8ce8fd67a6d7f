"""The GRN refinement sampler (unified_grn.refinement, unified_grn.schedules) keeps its contract.

Everything runs on constructed logits or a toy ``logits_fn`` that predicts a fixed target with a
confidence growing with the kept fraction, so the file takes a few seconds on a CPU.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from unified_grn.refinement import GRNRefinementScheduler, RefinementConfig, RefinementState
from unified_grn.schedules import (
    entropy_total_steps,
    fit_entropy_schedule,
    fraction_after,
    normalized_entropy,
    softmax_last,
)

L, K = 6, 8  # visual positions, sub-tokens per position


def gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def make_target(batch: int, num_values: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(num_values, (batch, L, K), generator=torch.Generator().manual_seed(seed))


def toy_fn(target, num_values, gain=(0.5, 20.0), sharp=None, uncond_target=None, calls=None):
    """A "denoiser": logits favour ``target`` with strength ``(a + g * p) * sharp[sample]``.

    Rows ``r >= B`` are unconditional and favour ``uncond_target`` (default: the target, weaker).
    The input labels also nudge the logits, so the trajectory matters. Row-wise, so a batch and
    its samples run one by one see the same logits.
    """
    batch = target.shape[0]
    sharp = torch.ones(batch) if sharp is None else torch.as_tensor(sharp, dtype=torch.float32)
    uncond_target = target if uncond_target is None else uncond_target

    def fn(labels, frac, rows):
        if calls is not None:
            calls.append(rows.clone())
        sample, is_uncond = rows % batch, rows >= batch
        tgt = torch.where(is_uncond.view(-1, 1, 1), uncond_target[sample], target[sample])
        strength = (gain[0] + gain[1] * frac) * sharp[sample] * torch.where(is_uncond, 0.5, 1.0)
        logits = strength.view(-1, 1, 1, 1) * F.one_hot(tgt, num_values).float()
        return logits + 0.3 * F.one_hot(labels, num_values).float()

    return fn


def run(config: RefinementConfig, fn, batch: int, num_values: int, generator, **kw):
    scheduler = GRNRefinementScheduler(config)
    state = scheduler.init_state((batch, L, K), num_values, generator)
    return scheduler.run(fn, state, generator, **kw)


CONFIGS = [
    RefinementConfig(num_steps=8, schedule="linear"),
    RefinementConfig(num_steps=8, schedule="cosine", guidance_scale=2.0, guidance_interval=(0.3, 1.0)),
    RefinementConfig(
        num_steps=30, schedule="entropy", min_steps=10, warmup_steps=3, entropy_k=40, entropy_b=-15
    ),
    RefinementConfig(num_steps=8, selection="confidence", temperature=0.7),
    RefinementConfig(num_steps=8, refine_mode="mask", guidance_scale=1.5),
    RefinementConfig(num_steps=8, refine_mode="mask", selection="confidence"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.schedule}-{c.selection}-{c.refine_mode}")
def test_seeded_runs_are_deterministic_and_leave_global_rng_alone(config):
    target = make_target(2, 2)
    rng_before = torch.get_rng_state()
    a = run(config, toy_fn(target, 2, gain=(0.0, 2.0)), 2, 2, torch.Generator().manual_seed(7))
    b = run(config, toy_fn(target, 2, gain=(0.0, 2.0)), 2, 2, torch.Generator().manual_seed(7))
    c = run(config, toy_fn(target, 2, gain=(0.0, 2.0)), 2, 2, None)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.equal(a.labels, b.labels)
    torch.testing.assert_close(a.stats.kept_fraction, b.stats.kept_fraction, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(a.stats.entropy, b.stats.entropy, rtol=0, atol=0, equal_nan=True)
    assert c.labels.shape == a.labels.shape and c.labels.dtype == torch.int64


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.schedule}-{c.selection}-{c.refine_mode}")
@pytest.mark.parametrize("num_values", [2, 16])
def test_batch_with_per_sample_generators_equals_samples_one_by_one(config, num_values):
    seeds, sharp = (11, 12, 13), (0.1, 2.0, 0.6)  # different confidence -> different entropy steps
    target = make_target(3, num_values)
    uncond = make_target(3, num_values, seed=1)
    fn = toy_fn(target, num_values, gain=(1.0, 3.0), sharp=sharp, uncond_target=uncond)
    batch = run(config, fn, 3, num_values, gens(*seeds))
    for i, seed in enumerate(seeds):
        one_fn = toy_fn(target[i : i + 1], num_values, (1.0, 3.0), sharp[i : i + 1], uncond[i : i + 1])
        # A list of one generator and a bare generator draw the same streams for one sample.
        generator = gens(seed) if i % 2 else torch.Generator().manual_seed(seed)
        one = run(config, one_fn, 1, num_values, generator)
        assert torch.equal(batch.labels[i], one.labels[0])
        steps = int(one.stats.steps_used[0])
        assert int(batch.stats.steps_used[i]) == steps
        torch.testing.assert_close(batch.stats.kept_fraction[i, :steps], one.stats.kept_fraction[0])
        torch.testing.assert_close(batch.stats.entropy[i, :steps], one.stats.entropy[0])
    if config.schedule == "entropy":
        assert len(set(batch.stats.steps_used.tolist())) > 1  # the batch really mixed step counts


@pytest.mark.parametrize("num_values", [2, 16])
@pytest.mark.parametrize("schedule", ["linear", "cosine", "entropy"])
def test_toy_denoising_recovers_the_target(schedule, num_values):
    target = make_target(2, num_values, seed=3)
    config = RefinementConfig(num_steps=20, schedule=schedule, min_steps=8, warmup_steps=2)
    out = run(config, toy_fn(target, num_values), 2, num_values, gens(0, 1))
    assert torch.equal(out.labels, target)
    assert torch.equal(out.labels, out.state.prediction)


def constant_fn(logits_per_row, calls):
    def fn(labels, frac, rows):
        calls.append(rows.clone())
        return logits_per_row[rows % logits_per_row.shape[0]]

    return fn


def test_entropy_schedule_uses_fewer_steps_for_confident_logits():
    config = RefinementConfig(schedule="entropy")  # official C2I: k=700, b=-620, T_min=20, t0=5, T_max=50
    confident = torch.tensor([0.0, 30.0]).expand(1, L, K, 2)
    uniform = torch.zeros(1, L, K, 2)
    middle = torch.tensor([0.0, 0.6]).expand(1, L, K, 2)  # H ~ 0.94 -> k H + b ~ 37 -> 42 steps
    calls: list[torch.Tensor] = []
    out = run(config, constant_fn(torch.cat([confident, uniform, middle]), calls), 3, 2, gens(0, 1, 2))
    steps = out.stats.steps_used.tolist()
    h_mid = normalized_entropy(middle).item()
    assert steps[0] == 20 and steps[1] == 50
    assert steps[2] == 5 + round(min(max(700 * h_mid - 620, 15), 45)) and 20 < steps[2] < 50
    torch.testing.assert_close(out.stats.decision_entropy[:2], torch.tensor([0.0, 1.0]), atol=1e-6, rtol=0)
    # Finished samples are neither sent to the model nor updated.
    assert all(0 not in rows.tolist() for rows in calls[20:])
    assert not out.stats.active[0, 20:].any() and out.stats.active[1].all()
    assert torch.isnan(out.stats.entropy[0, 20:]).all()


@given(
    steps=st.integers(1, 60),
    schedule=st.sampled_from(["linear", "cosine", "entropy"]),
    shift=st.floats(0.2, 5.0),
    entropy=st.floats(0.0, 1.0),
    kb=st.tuples(st.floats(0, 1500), st.floats(-1500, 100)),
)
@settings(max_examples=80, deadline=None)
def test_kept_fraction_schedule_is_monotone_and_ends_at_one(steps, schedule, shift, entropy, kb):
    total = torch.tensor([steps])
    if schedule == "entropy":
        t0, t_min = min(5, steps - 1), max(1, min(20, steps))
        t_min = max(t_min, t0 + 1)
        if t_min > steps:
            return
        total = entropy_total_steps(
            torch.tensor([entropy]), kb[0], kb[1], warmup_steps=t0, min_steps=t_min, max_steps=steps
        )
        assert t_min <= total.item() <= steps
    else:
        t0 = 5
    idx = torch.arange(int(total))
    frac = fraction_after(
        idx, total.expand_as(idx), schedule, warmup_steps=t0, alpha=float(steps), shift=shift
    )
    assert (frac[1:] >= frac[:-1]).all() and frac[0] >= 0
    assert frac[-1] == 1.0 and (frac[:-1] <= 1.0).all()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.schedule}-{c.selection}-{c.refine_mode}")
def test_run_kept_fraction_reaches_one_at_each_samples_last_step(config):
    out = run(config, toy_fn(make_target(2, 2), 2, gain=(0.0, 2.0)), 2, 2, gens(3, 4))
    stats = out.stats
    for i, steps in enumerate(stats.steps_used.tolist()):
        nominal = stats.target_fraction[i, :steps]
        assert (nominal[1:] >= nominal[:-1]).all()
        assert nominal[-1] == 1.0 and stats.kept_fraction[i, steps - 1] == 1.0
        if config.refine_mode == "mask" or config.selection == "confidence":
            realised = stats.kept_fraction[i, :steps]  # exact counts or a growing set: monotone too
            assert (realised[1:] >= realised[:-1]).all()
    assert torch.equal(out.state.labels, out.labels)  # at l = 1 the input is the prediction


@pytest.mark.parametrize("selection", ["random", "confidence"])
def test_mask_mode_never_changes_a_chosen_token(selection):
    scheduler = GRNRefinementScheduler(
        num_steps=10, refine_mode="mask", selection=selection, schedule="linear"
    )
    generator = gens(5, 6)
    state = scheduler.init_state((2, L, K), 16, generator)
    noise = torch.Generator().manual_seed(0)
    history: list[RefinementState] = [state]
    while not state.done.all():
        logits = torch.randn(2, L, K, 16, generator=noise) * 3  # a model that changes its mind every step
        state = scheduler.step(logits, state, generator)
        history.append(state)
    for before, after in zip(history[1:-1], history[2:]):
        assert (after.frozen | ~before.frozen).all()  # frozen sets only grow
        chosen = before.frozen
        assert torch.equal(after.labels[chosen], before.labels[chosen])
        assert torch.equal(after.prediction[chosen], before.labels[chosen])
    assert history[-1].frozen.all()


def test_refine_mode_does_change_chosen_tokens():
    scheduler = GRNRefinementScheduler(num_steps=10, schedule="linear")
    state = scheduler.init_state((1, L, K), 16, gens(0))
    noise = torch.Generator().manual_seed(0)
    changed = False
    for _ in range(10):
        prev = state
        state = scheduler.step(torch.randn(1, L, K, 16, generator=noise) * 3, state, gens(0))
        changed |= bool((state.prediction != prev.prediction).any())
    assert changed


def test_guidance_scale_one_equals_no_guidance_and_needs_no_uncond_rows():
    target, other = make_target(2, 2), make_target(2, 2, seed=9)
    base = RefinementConfig(num_steps=6)
    plain = run(base, toy_fn(target, 2, gain=(0.0, 2.0)), 2, 2, gens(1, 2))
    scale_one = RefinementConfig(num_steps=6, guidance_scale=1.0)
    with_rows = run(
        scale_one, toy_fn(target, 2, (0.0, 2.0), uncond_target=other), 2, 2, gens(1, 2), compact=False
    )
    assert torch.equal(plain.labels, with_rows.labels)
    assert not plain.stats.guidance.any()
    # A step on stacked (2B) logits with scale 1 ignores the unconditional half entirely.
    scheduler = GRNRefinementScheduler(scale_one)
    state = scheduler.init_state((2, L, K), 2, gens(0, 1))
    cond = torch.randn(2, L, K, 2, generator=torch.Generator().manual_seed(1))
    a = scheduler.step(cond, state, gens(3, 4))
    b = scheduler.step(torch.cat([cond, torch.full_like(cond, 1e4)]), state, gens(3, 4))
    assert torch.equal(a.prediction, b.prediction)


def test_guidance_is_off_outside_the_interval_and_on_inside():
    scheduler = GRNRefinementScheduler(
        num_steps=10, schedule="linear", guidance_scale=3.0, guidance_interval=(0.44, 1.0)
    )
    state = scheduler.init_state((1, L, K), 2, gens(0))
    cond = torch.tensor([2.0, 0.0]).expand(1, L, K, 2)  # prefers 0
    uncond = torch.tensor([4.0, 0.0]).expand(1, L, K, 2)  # guidance pushes towards 1: u + 3 (c - u) = (-2, 0)
    tiny = GRNRefinementScheduler(scheduler.config, temperature=1e-4)
    for i in range(10):
        nominal = state.target_fraction.item()
        on = nominal > 0.44  # C2I: strict lower bound (0.4 and 0.44 are off), hi = 1 never reached
        assert scheduler.guidance_mask(state.target_fraction).item() == on
        out = tiny.step(torch.cat([cond, uncond]), state, gens(i))
        assert bool(out.history[-1].guidance.item()) == on
        assert (out.prediction == (1 if on else 0)).all()
        state = scheduler.step(torch.cat([cond, uncond]), state, gens(i))
    always = GRNRefinementScheduler(num_steps=10, guidance_scale=3.0)
    with pytest.raises(ValueError, match="guidance is on"):
        always.step(cond, always.init_state((1, L, K), 2, gens(0)), gens(0))


def test_cfg_mixes_logits_before_temperature():
    scheduler = GRNRefinementScheduler(num_steps=4, guidance_scale=2.5, temperature=0.5)
    state = scheduler.init_state((1, L, K), 16, gens(0))
    g = torch.Generator().manual_seed(2)
    cond, uncond = torch.randn(1, L, K, 16, generator=g), torch.randn(1, L, K, 16, generator=g)
    out = scheduler.step(torch.cat([cond, uncond]), state, gens(1))
    # Same draw from an unguided scheduler handed the already-guided, tempered logits at tau = 1.
    reference = GRNRefinementScheduler(num_steps=4)
    ref = reference.step((uncond + 2.5 * (cond - uncond)) / 0.5, state, gens(1))
    assert torch.equal(out.prediction, ref.prediction)


@pytest.mark.parametrize("num_values", [2, 16])
def test_temperature_to_zero_gives_the_argmax(num_values):
    scheduler = GRNRefinementScheduler(num_steps=4, temperature=1e-5)
    state = scheduler.init_state((3, L, K), num_values, gens(0, 1, 2))
    logits = torch.randn(3, L, K, num_values, generator=torch.Generator().manual_seed(0))
    out = scheduler.step(logits, state, gens(3, 4, 5))
    assert torch.equal(out.prediction, logits.argmax(-1))


def test_categorical_draws_follow_the_probabilities():
    probs = torch.tensor([0.05, 0.15, 0.0, 0.3, 0.5])
    scheduler = GRNRefinementScheduler(num_steps=2)
    state = scheduler.init_state((1, 100, 100), 5, gens(0))
    out = scheduler.step(probs.log().expand(1, 100, 100, 5), state, gens(1))
    freq = torch.bincount(out.prediction.flatten(), minlength=5).float() / 1e4
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)  # 3 sigma at n = 1e4; seeded


def test_confidence_selection_keeps_the_most_confident_tokens():
    scheduler = GRNRefinementScheduler(num_steps=4, schedule="linear", selection="confidence")
    state = scheduler.init_state((1, L, K), 2, gens(0))
    margin = torch.arange(L * K, dtype=torch.float32).view(1, L, K) / 10  # distinct confidences
    logits = torch.stack([torch.zeros_like(margin), margin], -1)
    out = scheduler.step(logits, state, gens(1))
    conf = torch.softmax(logits, -1).gather(-1, out.prediction.unsqueeze(-1)).squeeze(-1).flatten()
    kept = out.labels.flatten() == out.prediction.flatten()
    n = round(0.25 * L * K)
    chosen = torch.zeros(L * K, dtype=torch.bool)
    chosen[conf.argsort(descending=True, stable=True)[:n]] = True
    assert out.kept_fraction.item() == n / (L * K)
    assert kept[chosen].all()  # the chosen ones are copied from the prediction
    fill = state.random_fill.flatten()
    assert torch.equal(out.labels.flatten()[~chosen], fill[~chosen])  # the rest is the random fill


def test_random_fill_is_drawn_once_and_reused():
    scheduler = GRNRefinementScheduler(num_steps=6, schedule="linear")
    state = scheduler.init_state((2, L, K), 16, gens(0, 1))
    fill = state.random_fill
    for _ in range(5):
        state = scheduler.step(
            torch.randn(2, L, K, 16, generator=torch.Generator().manual_seed(0)), state, gens(0, 1)
        )
        assert state.random_fill is fill
        dropped = state.labels != state.prediction
        assert torch.equal(state.labels[dropped], fill[dropped])


def test_fixed_sub_tokens_never_change():
    scheduler = GRNRefinementScheduler(num_steps=6)
    fixed_mask = torch.zeros(2, L, K, dtype=torch.bool)
    fixed_mask[:, :2] = True  # e.g. the first latent frame of an image-to-video sample
    fixed_labels = make_target(2, 16, seed=4)
    state = scheduler.init_state((2, L, K), 16, gens(0, 1), fixed_labels=fixed_labels, fixed_mask=fixed_mask)
    out = scheduler.run(toy_fn(make_target(2, 16), 16), state, gens(0, 1))
    assert torch.equal(out.labels[fixed_mask], fixed_labels[fixed_mask])
    assert state.kept_fraction.tolist() == pytest.approx([2 / L] * 2)


@pytest.mark.parametrize("k", [None, 700.0])
@pytest.mark.parametrize("target", [24.0, 35.5, 47.0])
def test_fit_entropy_schedule_hits_the_target_mean(k, target):
    entropies = 0.85 + 0.1 * torch.rand(400, generator=torch.Generator().manual_seed(0))
    k_fit, b_fit = fit_entropy_schedule(lambda: entropies, target, k=k)
    steps = entropy_total_steps(entropies, k_fit, b_fit, warmup_steps=5, min_steps=20, max_steps=50)
    assert abs(steps.double().mean().item() - target) < 0.05
    if k is not None:
        assert k_fit == k
    elif target == 35.5:  # a centred target: the fitted k spreads the set over the whole range
        assert steps.min() <= 21 and steps.max() >= 49


def test_decision_entropy_feeds_the_fit():
    scheduler = GRNRefinementScheduler(schedule="entropy")
    target = make_target(4, 2)
    fn = toy_fn(target, 2, gain=(1.0, 3.0), sharp=(0.1, 0.6, 2.0, 4.0))
    ent = scheduler.decision_entropy(
        fn, scheduler.init_state((4, L, K), 2, gens(0, 1, 2, 3)), gens(0, 1, 2, 3)
    )
    assert ent.shape == (4,) and not ent.isnan().any() and (ent[:-1] > ent[1:]).all()
    k, b = fit_entropy_schedule(ent, 35.0)
    fitted = GRNRefinementScheduler(schedule="entropy", entropy_k=k, entropy_b=b)
    out = fitted.run(fn, fitted.init_state((4, L, K), 2, gens(0, 1, 2, 3)), gens(0, 1, 2, 3))
    assert abs(out.stats.mean_steps - 35.0) <= 0.5
    torch.testing.assert_close(out.stats.decision_entropy, ent)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_steps": 0}, "num_steps"),
        ({"num_steps": 2.5}, "num_steps"),
        ({"schedule": "exp"}, "schedule"),
        ({"selection": "topk"}, "selection"),
        ({"refine_mode": "erase"}, "refine_mode"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"guidance_interval": (0.5, 0.2)}, "lo <= hi"),
        ({"guidance_interval": (-0.1, 1.0)}, "0 <= lo"),
        ({"guidance_interval": (0.0, 1.5)}, "hi <= 1"),
        ({"guidance_scale": math.inf}, "guidance_scale"),
        ({"schedule": "entropy", "num_steps": 10}, "T_min"),
        ({"schedule": "entropy", "warmup_steps": 20}, "warmup_steps < min_steps"),
        ({"schedule": "entropy", "alpha": 3.0}, "alpha"),
        ({"shift": 0.0}, "shift"),
    ],
)
def test_bad_config_raises_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RefinementConfig(**kwargs)


def test_set_steps_validates_and_only_entropy_needs_t_min():
    scheduler = GRNRefinementScheduler()
    scheduler.set_steps(8)  # cosine: T_min does not apply
    assert scheduler.num_steps == 8
    with pytest.raises(ValueError, match="num_steps"):
        scheduler.set_steps(0)
    entropy = GRNRefinementScheduler(schedule="entropy")
    with pytest.raises(ValueError, match="T_min"):
        entropy.set_steps(10)
    assert entropy.num_steps == 50


def test_bad_inputs_raise_clear_errors():
    scheduler = GRNRefinementScheduler(num_steps=4)
    with pytest.raises(ValueError, match="one per sample"):
        scheduler.init_state((2, L, K), 2, gens(0))
    with pytest.raises(ValueError, match="num_values"):
        scheduler.init_state((2, L, K), 1)
    with pytest.raises(ValueError, match=r"\(B, L, K\)"):
        scheduler.init_state((2, L), 2)
    state = scheduler.init_state((2, L, K), 2, gens(0, 1))
    with pytest.raises(ValueError, match="logits must be"):
        scheduler.step(torch.zeros(2, L, K, 3), state, gens(0, 1))
    with pytest.raises(ValueError, match="logits must be"):
        scheduler.step(torch.zeros(3, L, K, 2), state, gens(0, 1))
    with pytest.raises(ValueError, match="logits_fn must return"):
        scheduler.run(lambda labels, frac, rows: torch.zeros(1, L, K, 2), state, gens(0, 1))
    with pytest.raises(ValueError, match="decision_entropy needs"):
        scheduler.decision_entropy(toy_fn(make_target(2, 2), 2), state)
    with pytest.raises(ValueError, match="target_mean_steps"):
        fit_entropy_schedule([0.5, 0.6], 60.0)


def test_bf16_logits_and_callback():
    scheduler = GRNRefinementScheduler(num_steps=5, guidance_scale=2.0)
    seen: list[int] = []
    fn = toy_fn(make_target(2, 16), 16)
    out = scheduler.run(
        lambda *a: fn(*a).bfloat16(),
        scheduler.init_state((2, L, K), 16, gens(0, 1)),
        gens(0, 1),
        callback=lambda s: seen.append(int(s.step_index.max())),
    )
    assert seen == [1, 2, 3, 4, 5]
    assert out.labels.dtype == torch.int64 and out.stats.entropy.dtype == torch.float32


@pytest.mark.parametrize("model_fraction", ["realised", "nominal"])
def test_compact_rows_equal_full_rows(model_fraction):
    config = RefinementConfig(
        num_steps=30,
        schedule="entropy",
        min_steps=10,
        warmup_steps=3,
        entropy_k=40,
        entropy_b=-15,
        guidance_scale=2.0,
        guidance_interval=(0.3, 1.0),
        model_fraction=model_fraction,
    )
    target, uncond = make_target(3, 2), make_target(3, 2, seed=1)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    fn = toy_fn(target, 2, gain=(1.0, 3.0), sharp=(0.1, 2.0, 0.6), uncond_target=uncond)

    def spy(labels, frac, rows):
        seen.append((frac.clone(), rows.clone()))
        return fn(labels, frac, rows)

    compact = run(config, spy, 3, 2, gens(0, 1, 2))
    full = run(config, fn, 3, 2, gens(0, 1, 2), compact=False)
    assert torch.equal(compact.labels, full.labels)
    assert torch.equal(compact.stats.steps_used, full.stats.steps_used)
    assert len(set(compact.stats.steps_used.tolist())) > 1
    first_frac, first_rows = seen[0]
    assert first_rows.tolist() == [0, 1, 2] and (first_frac == 0).all()  # no guidance at l = 0 < 0.3
    stats = compact.stats
    expected = stats.kept_fraction if model_fraction == "realised" else stats.target_fraction
    for i, (frac, rows) in enumerate(seen[1:]):
        assert torch.equal(frac, expected[rows % 3, i])


@pytest.mark.parametrize("values", [2, 3, 16])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_last_matches_torch_and_does_not_depend_on_the_batch(values, log):
    logits = torch.randn(5, 12, 16, values, generator=torch.Generator().manual_seed(values)) * 4
    got = softmax_last(logits, log=log)
    ref = (torch.log_softmax if log else torch.softmax)(logits, dim=-1)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    probs = got.exp() if log else got
    torch.testing.assert_close(probs.sum(-1), torch.ones(5, 12, 16))
    for row in range(5):  # batched == one by one, bit for bit (batched vs single generation)
        assert torch.equal(softmax_last(logits[row : row + 1], log=log)[0], got[row])
