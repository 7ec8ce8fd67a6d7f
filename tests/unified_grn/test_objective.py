"""Eq. 5 corruption of target blocks (``unified_grn.objective``)."""

import pytest
import torch

from unified_grn.objective import block_mean_cross_entropy, corrupt_target_blocks


def _layout(num_positions=(40, 30, 50), targets=(True, False, True), slots=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    block_index = torch.cat([torch.full((n,), b) for b, n in enumerate(num_positions)])  # (N,)
    labels = torch.randint(0, 2, (len(block_index), slots), generator=gen)  # (N, K)
    is_target = torch.tensor(targets)[block_index]  # (N,)
    return labels, block_index, is_target, len(num_positions)


def test_context_blocks_stay_clean_and_realised_fraction_follows_pt():
    labels, block_index, is_target, g = _layout()
    pt = torch.tensor([0.25, 0.25, 0.75])[block_index]
    gen = torch.Generator().manual_seed(1)
    inputs, realised = corrupt_target_blocks(labels, pt, block_index, is_target, g, 2, gen)
    assert torch.equal(inputs[~is_target], labels[~is_target])
    assert realised[1] == 1.0  # a context block is fully kept
    # kept = selected, or drawn equal by chance (1/2): E[agreement] = p + (1 - p) / 2
    for b, p in ((0, 0.25), (2, 0.75)):
        agree = (inputs[block_index == b] == labels[block_index == b]).float().mean()
        assert agree.item() == pytest.approx(p + (1 - p) / 2, abs=0.08)
        assert realised[b].item() == pytest.approx(p, abs=0.08)


def test_extremes_and_determinism():
    labels, block_index, is_target, g = _layout(targets=(True, True, True))
    ones, zeros = torch.ones(len(block_index)), torch.zeros(len(block_index))
    gen = torch.Generator().manual_seed(3)
    kept, realised = corrupt_target_blocks(labels, ones, block_index, is_target, g, 2, gen)
    assert torch.equal(kept, labels) and torch.equal(realised, torch.ones(g))
    a = corrupt_target_blocks(labels, zeros, block_index, is_target, g, 2, torch.Generator().manual_seed(4))
    b = corrupt_target_blocks(labels, zeros, block_index, is_target, g, 2, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], torch.zeros(g))
    assert not torch.equal(a[0], labels)  # nothing kept: the inputs are noise


def _slot_ce(logits, targets):
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.reshape(-1), reduction="none")


def test_focal_gamma_zero_is_eq7_and_weights_each_slot_by_one_minus_p_true():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(30, 8, 2, generator=g) * 3
    targets = torch.randint(0, 2, (30, 8), generator=g)
    blocks = torch.cat([torch.zeros(10, dtype=torch.long), torch.full((20,), 2)])  # block 1 is empty
    eq7 = block_mean_cross_entropy(logits, targets, blocks, 3)
    ce = _slot_ce(logits, targets).view(30, 8)
    assert torch.allclose(eq7, (ce[:10].mean() + ce[10:].mean()) / 2)  # mean per block, then over blocks
    assert torch.equal(block_mean_cross_entropy(logits, targets, blocks, 3, focal_gamma=0.0), eq7)

    p_true = logits.softmax(-1).gather(-1, targets[..., None])[..., 0]
    for gamma in (0.5, 2.0):
        w = (1 - p_true) ** gamma * ce
        expected = (w[:10].mean() + w[10:].mean()) / 2
        focal = block_mean_cross_entropy(logits, targets, blocks, 3, focal_gamma=gamma)
        assert torch.allclose(focal, expected, atol=1e-6) and focal < eq7
    # a confidently right slot is nearly ignored, a confidently wrong one keeps almost its full loss
    sure = torch.tensor([[[8.0, -8.0]], [[8.0, -8.0]]])
    right_wrong = torch.tensor([[0], [1]])
    per = [
        block_mean_cross_entropy(
            sure[i : i + 1], right_wrong[i : i + 1], torch.zeros(1, dtype=torch.long), 1, 2.0
        )
        for i in range(2)
    ]
    plain = [
        block_mean_cross_entropy(sure[i : i + 1], right_wrong[i : i + 1], torch.zeros(1, dtype=torch.long), 1)
        for i in range(2)
    ]
    assert per[0] < 1e-6 * plain[0] and torch.allclose(per[1], plain[1], rtol=1e-6)


def test_focal_gradients_stay_finite_on_certain_slots():
    """A slot with p_true == 1 in float32 (ce exactly 0) must not turn gamma < 1 into NaN gradients."""
    logits = torch.tensor([[[60.0, -60.0], [0.3, -0.2]]], requires_grad=True)
    targets = torch.tensor([[0, 1]])
    for gamma in (0.25, 0.5, 1.0, 2.0):
        logits.grad = None
        block_mean_cross_entropy(logits, targets, torch.zeros(1, dtype=torch.long), 1, gamma).backward()
        assert torch.isfinite(logits.grad).all() and logits.grad[0, 1].abs().sum() > 0
