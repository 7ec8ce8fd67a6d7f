"""Property tests for Hierarchical Binary Quantization (GRN paper Eq. 1-3, Alg. 1, Fig. 3)."""

from __future__ import annotations

import math
from fractions import Fraction
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tokenizers_visual import hbq

ROUNDS = st.integers(min_value=1, max_value=hbq.MAX_ROUNDS)
VALUES = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, width=32)
EDGES = [-1.0, 1.0, 0.0, -0.0, 0.5, -0.5, 0.25, 1.0 - 2.0**-20, -1.0 + 2.0**-20]


def _features(values: list[float]) -> torch.Tensor:
    return torch.tensor(values + EDGES, dtype=torch.float32).reshape(-1, 1)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(VALUES, min_size=1, max_size=64), rounds=ROUNDS)
def test_reconstruction_error_is_bounded_by_two_to_minus_m(values, rounds):
    z = _features(values)
    bits = hbq.quantize(z, rounds)
    assert bits.shape == (*z.shape, rounds) and bits.dtype == torch.uint8
    err = (z.double() - hbq.dequantize(bits, dtype=torch.float64)).abs()
    assert err.max().item() <= 2.0**-rounds


@settings(max_examples=100, deadline=None)
@given(values=st.lists(VALUES, min_size=1, max_size=32), rounds=st.integers(2, hbq.MAX_ROUNDS))
def test_truncated_prefix_error_decays_exponentially(values, rounds):
    """Fig. 3: reconstructing from only the first m rounds leaves an error <= 2^-m."""
    z = _features(values)
    bits = hbq.quantize(z, rounds)
    for m in range(1, rounds + 1):
        err = (z.double() - hbq.dequantize(bits[..., :m], dtype=torch.float64)).abs()
        assert err.max().item() <= 2.0**-m
        # the first m bits of an M-round code are the m-round code itself
        assert torch.equal(bits[..., :m], hbq.quantize(z, m))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), rounds=ROUNDS)
def test_bits_indices_round_trip(data, rounds):
    arr = data.draw(hnp.arrays(dtype="int64", shape=(3, 5), elements=st.integers(0, 2**rounds - 1)))
    indices = torch.from_numpy(arr)
    bits = hbq.indices_to_bits(indices, rounds)
    assert bits.shape == (3, 5, rounds) and bits.dtype == torch.uint8
    assert torch.equal(hbq.bits_to_indices(bits), indices)
    assert torch.equal(hbq.indices_to_bits(hbq.bits_to_indices(bits), rounds), bits)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(VALUES, min_size=1, max_size=32), rounds=ROUNDS)
def test_index_is_the_uniform_bucket_with_msb_coarsest(values, rounds):
    z = _features(values)
    idx = hbq.bits_to_indices(hbq.quantize(z, rounds))
    # closed form, in exact rational arithmetic: ceil((z + 1) 2^(M-1)) - 1, clipped to [0, 2^M);
    # a value exactly on a bucket edge goes to the lower bucket
    exact = [math.ceil((Fraction(v) + 1) * 2 ** (rounds - 1)) - 1 for v in z.flatten().tolist()]
    expected = torch.tensor([min(max(i, 0), 2**rounds - 1) for i in exact]).reshape(z.shape)
    assert torch.equal(idx, expected)
    centres = hbq.indices_to_values(idx, rounds, dtype=torch.float64)
    assert torch.equal(centres, hbq.dequantize(hbq.quantize(z, rounds), dtype=torch.float64))


def _reference_recursion(z: torch.Tensor, rounds: int) -> torch.Tensor:
    """Eq. 1-2 literally: c_1 = 0, q_i = [F > c_i], c_{i+1} = c_i + (2 q_i - 1) 2^-i."""
    centre = torch.zeros_like(z, dtype=torch.float64)
    bits = []
    for i in range(1, rounds + 1):
        bit = z.double() > centre
        bits.append(bit)
        centre = centre + (bit.double() * 2 - 1) * 2.0**-i
    return torch.stack(bits, dim=-1).to(torch.uint8)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(VALUES, min_size=1, max_size=64), rounds=ROUNDS)
def test_quantize_equals_the_recursion_of_eq_1_2(values, rounds):
    z = _features(values + [1e-30, -1e-30, 2.0**-rounds, -(2.0**-rounds)])
    assert torch.equal(hbq.quantize(z, rounds), _reference_recursion(z, rounds))
    with mock.patch.object(hbq, "_CHUNK", 5):  # the chunked CPU path (M = 4, float32), several chunks
        bits = hbq.quantize(z, rounds)
        assert hbq._can_stream(z, rounds) == (rounds == 4)
        assert torch.equal(bits, _reference_recursion(z, rounds))
        assert torch.equal(hbq.dequantize(bits), _matmul_reference(bits, torch.float32))
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        zd = z.to(dtype)
        assert torch.equal(hbq.quantize(zd, rounds), _reference_recursion(zd, rounds))


def test_coarsest_bit_is_the_sign_and_known_values():
    z = torch.tensor([-0.9, -0.1, 0.0, 0.1, 0.3, 0.9])
    bits = hbq.quantize(z.unsqueeze(-1), 2).squeeze(-2)
    assert bits[:, 0].tolist() == [0, 0, 0, 1, 1, 1]  # 0 goes low: Eq. 2 uses a strict ">"
    assert hbq.dequantize(bits.unsqueeze(-2)).squeeze(-1).tolist() == [-0.75, -0.25, -0.25, 0.25, 0.25, 0.75]


def test_any_rank_dtype_and_device_are_kept():
    for shape in [(4,), (2, 4), (2, 3, 5, 5, 4)]:
        for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            z = torch.rand(shape, dtype=torch.float32).mul(2).sub(1).to(dtype)
            z_hat, bits = hbq.quantize_ste(z, 4)
            assert z_hat.dtype == dtype and z_hat.shape == z.shape and z_hat.device == z.device
            assert bits.shape == (*shape, 4)
    assert hbq.quantize(torch.empty(0, 3), 3).shape == (0, 3, 3)


def test_ste_gradient_is_identity():
    z = torch.rand(2, 3, 8, dtype=torch.float64).mul(2).sub(1).requires_grad_(True)
    z_hat, _ = hbq.quantize_ste(z, 4)
    upstream = torch.randn_like(z)
    (z_hat * upstream).sum().backward()
    assert torch.equal(z.grad, upstream)
    assert torch.allclose(z_hat.detach(), hbq.dequantize(hbq.quantize(z.detach(), 4), torch.float64))


@pytest.mark.parametrize(
    "z, rounds, match",
    [
        (torch.tensor([[1.5]]), 4, r"\[-1, 1\].*tanh"),
        (torch.tensor([[float("nan")]]), 4, "NaN"),
        (torch.tensor([[0.2]]), 0, "rounds"),
        (torch.tensor([[0.2]]), 17, "rounds"),
        (torch.tensor([[0.2]]), 2.0, "rounds"),
        (torch.tensor([[1]]), 4, "floating-point"),
    ],
)
def test_quantize_rejects_bad_input(z, rounds, match):
    with pytest.raises(ValueError, match=match):
        hbq.quantize(z, rounds)


def test_bits_and_indices_reject_bad_input():
    with pytest.raises(ValueError, match="only 0 and 1"):
        hbq.dequantize(torch.tensor([[2, 0]], dtype=torch.uint8))
    with pytest.raises(ValueError, match="integer or bool"):
        hbq.bits_to_indices(torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        hbq.indices_to_bits(torch.tensor([16]), 4)
    with pytest.raises(ValueError, match="integer tensor"):
        hbq.indices_to_bits(torch.tensor([1.0]), 4)


def _matmul_reference(bits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Eq. 3 written out: sum_i (2 q_i - 1) 2^-i, in float64."""
    weights = torch.tensor([2.0**-i for i in range(1, bits.shape[-1] + 1)], dtype=torch.float64)
    return ((bits.to(torch.float64) * 2 - 1) * weights).sum(-1).to(dtype)


def test_m4_word_gather_path_equals_eq_3_on_every_layout():
    every = torch.tensor([[(i >> (3 - k)) & 1 for k in range(4)] for i in range(16)], dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    random = torch.randint(0, 2, (3, 5, 7, 4), generator=gen, dtype=torch.uint8)
    unaligned = torch.randint(0, 2, (4 * 6 + 1,), generator=gen, dtype=torch.uint8)[1:].view(6, 4)
    layouts = {
        "all 16 patterns": every.unsqueeze(0),  # (1, 16, 4)
        "random": random,
        "bool": random.bool(),
        "non-contiguous (matmul path)": random.transpose(0, 1),
        "offset not a whole word (matmul path)": unaligned.unsqueeze(0),
        "a contiguous slice": random[1:],
    }
    for name, bits in layouts.items():
        assert hbq._can_gather(bits) == ("matmul path" not in name), name
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            assert torch.equal(hbq.dequantize(bits, dtype), _matmul_reference(bits, dtype)), (name, dtype)
        expected = (bits.to(torch.int64) * torch.tensor([8, 4, 2, 1])).sum(-1)
        assert torch.equal(hbq.bits_to_indices(bits), expected), name
    assert torch.equal(hbq.bits_to_indices(every), torch.arange(16))


def test_scratch_buffers_never_alias_the_callers_tensors():
    gen = torch.Generator().manual_seed(1)
    z = torch.rand(64, 16, generator=gen).mul(2).sub(1)
    z_before = z.clone()
    bits = hbq.quantize(z, 4)
    assert torch.equal(z, z_before)
    indices = hbq.bits_to_indices(bits)
    for dtype in (torch.int32, torch.int64):
        own = indices.to(dtype)
        own_before = own.clone()
        assert torch.equal(hbq.indices_to_bits(own, 4), bits)
        assert torch.equal(own, own_before)  # the caller's indices are read, not overwritten
    bits_before = bits.clone()
    hbq.dequantize(bits)
    assert torch.equal(bits, bits_before)


@pytest.mark.parametrize("chunk", [7, 64, hbq._CHUNK])
def test_chunked_cpu_round_trip_equals_the_whole_tensor_path(monkeypatch, chunk):
    """The streamed M = 4 path (CPU, float32) gives the bits and values of the unchunked ops."""
    monkeypatch.setattr(hbq, "_CHUNK", chunk)
    gen = torch.Generator().manual_seed(2)
    n = 3 * chunk + 5  # several chunks and a ragged last one
    z = torch.rand(n, 3, generator=gen).mul(2).sub(1)
    z.view(-1)[: len(EDGES)] = torch.tensor(EDGES)
    z.view(-1)[-2:] = torch.tensor([2.0**-126, -(2.0**-126)])  # tiny values: the strict > of Eq. 2
    assert hbq._can_stream(z, 4)
    bits = hbq.quantize(z, 4)
    whole = hbq._bits_from_indices(hbq._indices_from_features(z, 4), 4)
    assert torch.equal(bits, whole)
    assert hbq._can_stream_bits(bits)
    for b in (bits, bits.bool()):
        values = hbq.dequantize(b)
        assert values.dtype == torch.float32
        assert torch.equal(values, _matmul_reference(b, torch.float32))


@pytest.mark.parametrize("bad", [1.5, -1.0001, float("nan")])
def test_chunked_path_rejects_bad_values_in_a_later_chunk(monkeypatch, bad):
    monkeypatch.setattr(hbq, "_CHUNK", 8)
    z = torch.zeros(40, 1)
    z[-1, 0] = bad
    with pytest.raises(ValueError, match="NaN" if math.isnan(bad) else r"\[-1, 1\].*got values in"):
        hbq.quantize(z, 4)
    bits = torch.zeros(40, 1, 4, dtype=torch.uint8)
    bits[-1, 0, 3] = 2
    with pytest.raises(ValueError, match="only 0 and 1"):
        hbq.dequantize(bits)
