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
    if torch.isnan(z).any():
        raise ValueError("HBQ input contains NaN; check the encoder output before quantizing.")
    lo, hi = z.min().item(), z.max().item()
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
    if bits.numel() and ((bits != 0) & (bits != 1)).any():
        raise ValueError("HBQ bits must hold only 0 and 1.")
    _check_rounds(bits.shape[-1])


def _round_steps(rounds: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``2^-i`` for rounds i = 1..M, shape (M,)."""
    exponents = torch.arange(1, rounds + 1, device=device, dtype=torch.float64)
    return torch.pow(2.0, -exponents).to(dtype)


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
    _check_features(z)
    # The recursion of Eq. 1-2 equals bucketing into 2^M uniform bins with a strict ">" at the
    # edges; computing it in float64 makes every centre c_i exact (they are dyadic rationals).
    centre = torch.zeros_like(z, dtype=torch.float64)
    z64 = z.to(torch.float64)
    bits = []
    for step in _round_steps(rounds, z.device, torch.float64).tolist():
        bit = z64 > centre
        bits.append(bit)
        centre = centre + torch.where(bit, step, -step)
    return torch.stack(bits, dim=-1).to(torch.uint8)  # (..., C, M)


def dequantize(bits: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Reconstruct features from HBQ bits (Eq. 3).

    Args:
        bits: ``(..., C, M)`` tensor of 0/1 values (uint8, bool or any integer dtype).
        dtype: the float dtype of the result.

    Returns:
        ``(..., C)`` values ``sum_i (2 q_i - 1) 2^-i`` on ``bits``' device.
    """
    _check_bits(bits)
    steps = _round_steps(bits.shape[-1], bits.device, torch.float64)
    signs = bits.to(torch.float64) * 2.0 - 1.0  # (..., C, M) in {-1, +1}
    return (signs * steps).sum(dim=-1).to(dtype)


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
    rounds = bits.shape[-1]
    weights = torch.pow(2, torch.arange(rounds - 1, -1, -1, device=bits.device, dtype=torch.int64))
    return (bits.to(torch.int64) * weights).sum(dim=-1)


def indices_to_bits(indices: torch.Tensor, rounds: int) -> torch.Tensor:
    """``(..., C)`` indices in [0, 2^M) -> ``(..., C, M)`` uint8 bits, coarse -> fine."""
    _check_rounds(rounds)
    if not torch.is_tensor(indices) or indices.is_floating_point() or indices.dtype == torch.bool:
        raise ValueError("HBQ indices must be an integer tensor of shape (..., C).")
    if indices.numel() and (indices.min() < 0 or indices.max() >= 2**rounds):
        raise ValueError(
            f"HBQ indices must lie in [0, {2**rounds}) for rounds={rounds}, "
            f"got values in [{indices.min().item()}, {indices.max().item()}]."
        )
    shifts = torch.arange(rounds - 1, -1, -1, device=indices.device, dtype=torch.int64)
    return ((indices.to(torch.int64).unsqueeze(-1) >> shifts) & 1).to(torch.uint8)


def indices_to_values(indices: torch.Tensor, rounds: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Dequantized value of each index: the centre ``-1 + (2 i + 1) / 2^M`` of bucket ``i``."""
    return dequantize(indices_to_bits(indices, rounds), dtype=dtype)
