"""Eq. 5 corruption of target blocks (``unified_grn.objective``)."""

import pytest
import torch

from unified_grn.objective import corrupt_target_blocks


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
