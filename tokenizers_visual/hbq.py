"""Hierarchical Binary Quantization (HBQ).

GRN paper (Han et al., 2026, arXiv 2604.13030), Sec. 3.1, Eq. 1-3 and Appendix A, Alg. 1.

A feature ``F`` in [-1, 1] (the tokenizer applies ``tanh`` before this module) is quantized in
``M`` rounds against a binary tree of bucket centres:

    c_1 = 0,   q_i = [F > c_i],   c_{i+1} = c_i + delta(q_i) * 2^-i,   delta(q) = 2q - 1

and reconstructed by Eq. 3, ``F_hat = sum_i delta(q_i) * 2^-i``. Bits are ordered coarse -> fine
(round 1 first), so keeping the first ``m`` rounds gives ``|F - F_hat_m| <= 2^-m`` (Fig. 3). The
``M`` bits of one value are equivalent to one index in ``[0, 2^M)`` with the coarsest bit as the
most significant; that index is the bucket of ``F`` among ``2^M`` uniform buckets of [-1, 1]
(a value exactly on a bucket edge goes to the lower bucket, because Eq. 2 uses a strict ``>``).

Every function here is pure, works on any leading shape, and keeps the input's device:

    quantize(z, M)        (..., C)        float  -> (..., C, M) uint8
    dequantize(bits)      (..., C, M)     uint8  -> (..., C)    float
    bits_to_indices(bits) (..., C, M)     uint8  -> (..., C)    int64
    indices_to_bits(i, M) (..., C)        int64  -> (..., C, M) uint8
    quantize_ste(z, M)    (..., C)        float  -> ((..., C) float with identity gradient, bits)
"""

from __future__ import annotations

import math
import sys

import torch

__all__ = [
    "MAX_ROUNDS",
    "bits_to_indices",
    "dequantize",
    "indices_to_bits",
    "indices_to_values",
    "quantize",
    "quantize_ste",
]

# 2^-M must stay well above the float32 resolution near 1 (2^-24) for the bound to hold exactly.
MAX_ROUNDS = 16


def _check_rounds(rounds: int) -> int:
    if isinstance(rounds, bool) or not isinstance(rounds, int):
        raise ValueError(f"rounds must be an int in [1, {MAX_ROUNDS}], got {rounds!r}.")
    if not 1 <= rounds <= MAX_ROUNDS:
        raise ValueError(f"rounds must be in [1, {MAX_ROUNDS}], got {rounds}.")
    return rounds


def _check_features(z: torch.Tensor) -> None:
    if not torch.is_tensor(z) or not z.is_floating_point():
        kind = z.dtype if torch.is_tensor(z) else type(z).__name__
        raise ValueError(f"HBQ expects a floating-point tensor in [-1, 1] (apply tanh first), got {kind}.")
    if z.numel() == 0:
        return
    lo, hi = (v.item() for v in torch.aminmax(z))  # one pass; NaN propagates into both
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError("HBQ input contains NaN; check the encoder output before quantizing.")
    if lo < -1.0 or hi > 1.0:
        raise ValueError(
            f"HBQ input must lie in [-1, 1] (apply tanh first), got values in [{lo:.4g}, {hi:.4g}]."
        )


def _check_bits(bits: torch.Tensor) -> None:
    if not torch.is_tensor(bits) or bits.dim() < 2:
        raise ValueError("HBQ bits must be a tensor of shape (..., C, M) holding 0/1 values.")
    if bits.is_floating_point() or bits.is_complex():
        raise ValueError(
            f"HBQ bits must be an integer or bool tensor of 0/1 values, got {bits.dtype}; "
            "use bits.to(torch.uint8) after thresholding."
        )
    if bits.numel() and (bits.max() > 1 or (bits.dtype.is_signed and bits.min() < 0)):
        raise ValueError("HBQ bits must hold only 0 and 1.")
    _check_rounds(bits.shape[-1])


def _indices_from_features(z: torch.Tensor, rounds: int) -> torch.Tensor:
    """Bucket index of each value, int32; equal to the recursion of Eq. 1-2 (tested against it).

    ``t = z * 2^(M-1)`` is exact in any float dtype (a power-of-two scale), so ``ceil(t)`` sees
    the exact value: a tiny positive ``z`` lands in the upper half and ``z = 0`` in the lower one,
    as the strict ``>`` of Eq. 2 demands. ``(z + 1) * 2^(M-1)`` would round ``1 + tiny`` to 1.
    The shift and clamp stay in float (integers below 2^17, exact) on the one scratch buffer:
    each fresh buffer of a large tensor costs page faults that dwarf the arithmetic on CPU.
    """
    half = 2 ** (rounds - 1)
    t = z * half if z.dtype in (torch.float32, torch.float64) else z.to(torch.float32).mul_(half)
    t.ceil_().add_(half - 1).clamp_(0, 2 * half - 1)
    return t.to(torch.int32)


@torch.no_grad()
def quantize(z: torch.Tensor, rounds: int) -> torch.Tensor:
    """Quantize features in [-1, 1] into ``rounds`` hierarchical bits (Alg. 1).

    Args:
        z: features of shape ``(..., C)``, any float dtype, values in [-1, 1].
        rounds: the number of HBQ rounds ``M`` (1 to 16).

    Returns:
        ``(..., C, M)`` uint8 bits on ``z``'s device, coarse -> fine.
    """
    _check_rounds(rounds)
    if _can_stream(z, rounds):
        return _quantize_streamed(z)
    _check_features(z)
    return _bits_from_indices(_indices_from_features(z, rounds), rounds, owned=True)


def dequantize(bits: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Reconstruct features from HBQ bits (Eq. 3).

    Args:
        bits: ``(..., C, M)`` tensor of 0/1 values (uint8, bool or any integer dtype).
        dtype: the float dtype of the result.

    Returns:
        ``(..., C)`` values ``sum_i (2 q_i - 1) 2^-i`` on ``bits``' device.
    """
    if dtype == torch.float32 and _can_stream_bits(bits):
        return _dequantize_streamed(bits)  # checks the bits chunk by chunk
    _check_bits(bits)
    rounds = bits.shape[-1]
    if _can_gather(bits):
        return _values_from_indices(_gather_indices(bits), rounds, dtype)
    # sum_i (2 q_i - 1) 2^-i = sum_i q_i 2^(1-i) - (1 - 2^-M): a dyadic number with at most M + 1
    # significant bits, so the float32 matmul below is exact for M <= 16.
    work = torch.float64 if dtype == torch.float64 else torch.float32
    weights = _round_weights(rounds, 1, bits.device, work)
    return (bits.to(work) @ weights).sub_(1.0 - 2.0**-rounds).to(dtype)


def _round_weights(rounds: int, top_exponent: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``2^(top_exponent - i)`` for rounds i = 1..M, shape (M,)."""
    exponents = top_exponent - torch.arange(1, rounds + 1, device=device, dtype=torch.float64)
    return torch.pow(2.0, exponents).to(dtype)


def _values_from_indices(indices: torch.Tensor, rounds: int, dtype: torch.dtype) -> torch.Tensor:
    # -1 + (2 idx + 1) 2^-M, exact in float32 for M <= 16 (see dequantize)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    return indices.to(work).mul_(2.0 ** (1 - rounds)).add_(2.0**-rounds - 1.0).to(dtype)


def _indices_from_bits(bits: torch.Tensor) -> torch.Tensor:
    if _can_gather(bits):
        return _gather_indices(bits)
    # a float32 matmul with weights 2^(M-1-r) is exact (integers < 2^16) and much faster on CPU
    # than an integer multiply-and-reduce over a short last dimension
    weights = _round_weights(bits.shape[-1], bits.shape[-1], bits.device, torch.float32)
    return (bits.to(torch.float32) @ weights).to(torch.int32)


def _bits_from_indices(indices: torch.Tensor, rounds: int, owned: bool = False) -> torch.Tensor:
    """``owned``: ``indices`` is a scratch buffer of the caller's, free to be overwritten."""
    if rounds <= _SPREAD_MAX_ROUNDS:
        return _spread_bits(indices, rounds, owned)
    shifts = torch.arange(rounds - 1, -1, -1, device=indices.device, dtype=indices.dtype)
    return ((indices.unsqueeze(-1) >> shifts) & 1).to(torch.uint8)  # (..., C, M)


# Multiplying an M-bit index by sum_k 2^(9k) writes M copies of it 9 bits apart without carries
# (M <= 9); after a right shift by M - 1, bit (M-1-k) of the index sits at bit 8k, i.e. at the
# lowest bit of byte k, and no other bit lands on a byte boundary (M <= 8). The highest bit used is
# 10(M-1), so int32 holds M <= 4 and int64 holds M <= 7. One multiply, shift and mask replace M
# broadcast shift-and-mask passes; the little-endian bytes are then the (..., M) bits.
_SPREAD_MAX_ROUNDS = 7


def _spread_factors(rounds: int) -> tuple[int, int]:
    """The multiplier ``sum_k 2^(9k)`` and the byte mask ``sum_k 2^(8k)`` of the bit spread (above)."""
    return sum(1 << (9 * k) for k in range(rounds)), sum(1 << (8 * k) for k in range(rounds))


def _spread_bits(indices: torch.Tensor, rounds: int, owned: bool = False) -> torch.Tensor:
    lanes, dtype = (4, torch.int32) if rounds <= 4 else (8, torch.int64)
    multiplier, byte_mask = _spread_factors(rounds)
    in_place = owned and indices.dtype == dtype and indices.is_contiguous()
    packed = indices.mul_(multiplier) if in_place else indices.to(dtype).mul(multiplier)
    packed.bitwise_right_shift_(rounds - 1).bitwise_and_(byte_mask)
    if sys.byteorder != "little":
        raise NotImplementedError("HBQ bit spreading assumes a little-endian machine.")
    as_bytes = packed.unsqueeze(-1).view(torch.uint8)  # (..., C, lanes)
    return as_bytes if lanes == rounds else as_bytes[..., :rounds].contiguous()


# The inverse of the spread, for M = 4 (every preset's, and the paper's): the 4 bit bytes of a value
# are one little-endian int32 ``p = sum_k q_k 2^(8k)``. Multiplying by ``sum_k 2^(27 - 9k)`` puts
# q_k at bit 27 - k, i.e. the index (coarsest bit first) in bits 24-27. The cross terms that land
# below bit 24 sit at distinct bits <= 18 (no carry reaches bit 24); those above bit 27 only wrap
# past bit 31, which an int32 multiply drops. One multiply, shift and mask on 4 bytes per value
# replace the widening to 16 bytes of float per value that the matmul path needs.
_GATHER_ROUNDS = 4
_GATHER_MULTIPLIER = sum(1 << (27 - 9 * k) for k in range(_GATHER_ROUNDS))


def _can_gather(bits: torch.Tensor) -> bool:
    return (
        bits.shape[-1] == _GATHER_ROUNDS
        and bits.dtype in (torch.uint8, torch.bool)
        and bits.is_contiguous()
        and bits.storage_offset() % _GATHER_ROUNDS == 0  # the int32 view needs whole words
        and sys.byteorder == "little"
    )


def _gather_indices(bits: torch.Tensor) -> torch.Tensor:
    packed = bits.view(torch.uint8).view(torch.int32).squeeze(-1)  # (..., C, 4) bytes -> (..., C)
    return packed.mul(_GATHER_MULTIPLIER).bitwise_right_shift_(24).bitwise_and_(15)


# On CPU, the M = 4 round trip of a large float32 tensor runs in chunks of ``_CHUNK`` values
# (256 KB of float32): the chain of elementwise ops then works on data that stays in the L2 cache
# instead of streaming the whole tensor through memory once per op, and what is left is one read of
# the input and one write of the output, as for a copy (``scripts/bench_hbq.py``). The chunked ops
# are the unchunked ones, so the results are identical (tested); a GPU, another dtype or M, and
# tensors of one chunk or less keep the whole-tensor path.
_CHUNK = 2**16
# the value of bucket i, -1 + (2 i + 1) / 16, is (2 + (2 i + 1) / 16) - 3: a float in [2, 4) whose
# mantissa is (2 i + 1) << 18, i.e. the exponent bits of 2.0, bit 18, and i at bits 19-22
_VALUE_BITS = 0x40000000 | (1 << 18)


def _can_stream(z: torch.Tensor, rounds: int) -> bool:
    return (
        rounds == _GATHER_ROUNDS
        and torch.is_tensor(z)
        and z.dtype == torch.float32
        and z.device.type == "cpu"
        and z.dim() >= 1
        and z.numel() > _CHUNK  # below one chunk the whole-tensor ops are the same, with less overhead
        and z.is_contiguous()
        and sys.byteorder == "little"
    )


def _can_stream_bits(bits: torch.Tensor) -> bool:
    return (
        torch.is_tensor(bits)
        and bits.dim() >= 2
        and bits.numel() > _GATHER_ROUNDS * _CHUNK
        and bits.device.type == "cpu"
        and _can_gather(bits)
    )


def _quantize_streamed(z: torch.Tensor) -> torch.Tensor:
    """``quantize(z, 4)`` chunk by chunk (see ``_CHUNK``); the checks of ``_check_features`` per chunk."""
    half = 2 ** (_GATHER_ROUNDS - 1)
    out = torch.empty(*z.shape, _GATHER_ROUNDS, dtype=torch.uint8)  # (..., C, 4)
    scratch = torch.empty(min(_CHUNK, z.numel()), dtype=torch.float32)
    multiplier, byte_mask = _spread_factors(_GATHER_ROUNDS)
    words = out.view(torch.int32).reshape(-1)  # one int32 of 4 bit bytes per value
    for values, packed in zip(z.reshape(-1).split(_CHUNK), words.split(_CHUNK)):
        lo, hi = torch.aminmax(values)
        if not (-1.0 <= lo.item() and hi.item() <= 1.0):  # also false for NaN
            _check_features(z)  # raises, naming the whole tensor's range
        t = torch.mul(values, half, out=scratch[: values.numel()])  # exact, as in _indices_from_features
        packed.copy_(t.ceil_())  # ceil(z 2^(M-1)) in [-h, h], as int32
        packed.add_(half - 1).clamp_min_(0).mul_(multiplier)  # the bucket index, spread (_spread_bits)
        packed.bitwise_right_shift_(_GATHER_ROUNDS - 1).bitwise_and_(byte_mask)
    return out


def _dequantize_streamed(bits: torch.Tensor) -> torch.Tensor:
    """``dequantize(bits)`` for M = 4 into float32, chunk by chunk; checks the bits per chunk."""
    out = torch.empty(bits.shape[:-1], dtype=torch.float32)  # (..., C)
    scratch = torch.empty(min(_CHUNK, out.numel()), dtype=torch.int32)
    words = bits.view(torch.uint8).view(torch.int32).reshape(-1)
    raw = bits.view(torch.uint8).reshape(-1)
    for packed, values, chunk_bytes in zip(
        words.split(_CHUNK), out.view(-1).split(_CHUNK), raw.split(4 * _CHUNK)
    ):
        if chunk_bytes.max().item() > 1:
            _check_bits(bits)  # raises
        word = torch.mul(packed, _GATHER_MULTIPLIER, out=scratch[: packed.numel()])  # index at bits 24-27
        word.bitwise_right_shift_(5).bitwise_and_(0xF << 19).bitwise_or_(_VALUE_BITS)  # see _VALUE_BITS
        torch.sub(word.view(torch.float32), 3.0, out=values)
    return out


def quantize_ste(z: torch.Tensor, rounds: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize with a straight-through estimator, for tokenizer training (Sec. 3.1).

    Returns:
        ``(z_hat, bits)``: ``z_hat`` has ``z``'s shape and dtype, the quantized values in the
        forward pass and the identity gradient ``d z_hat / d z = 1`` in the backward pass;
        ``bits`` is ``(..., C, M)`` uint8.
    """
    bits = quantize(z.detach(), rounds)
    z_q = dequantize(bits, dtype=z.dtype)
    return z + (z_q - z).detach(), bits


def bits_to_indices(bits: torch.Tensor) -> torch.Tensor:
    """``(..., C, M)`` bits -> ``(..., C)`` int64 indices in [0, 2^M), coarsest bit = MSB."""
    _check_bits(bits)
    return _indices_from_bits(bits).to(torch.int64)


def indices_to_bits(indices: torch.Tensor, rounds: int) -> torch.Tensor:
    """``(..., C)`` indices in [0, 2^M) -> ``(..., C, M)`` uint8 bits, coarse -> fine."""
    _check_indices(indices, rounds)
    return _bits_from_indices(indices.to(torch.int64), rounds)


def indices_to_values(indices: torch.Tensor, rounds: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Dequantized value of each index: the centre ``-1 + (2 i + 1) / 2^M`` of bucket ``i``."""
    _check_indices(indices, rounds)
    return _values_from_indices(indices, rounds, dtype)


def _check_indices(indices: torch.Tensor, rounds: int) -> None:
    _check_rounds(rounds)
    if not torch.is_tensor(indices) or indices.is_floating_point() or indices.dtype == torch.bool:
        raise ValueError("HBQ indices must be an integer tensor of shape (..., C).")
    if indices.numel() and (indices.min() < 0 or indices.max() >= 2**rounds):
        raise ValueError(
            f"HBQ indices must lie in [0, {2**rounds}) for rounds={rounds}, "
            f"got values in [{indices.min().item()}, {indices.max().item()}]."
        )
