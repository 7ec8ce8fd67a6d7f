"""Shared pieces of the ``grn`` command line (``unified_grn.cli``): the usage error and argument types."""

from __future__ import annotations

import argparse

__all__ = ["UsageError", "first_line", "fraction", "image_size", "num_frames", "positive_int"]


class UsageError(Exception):
    """Bad input found after parsing; reported as ``grn <cmd>: error: …`` with exit status 2."""


# ----------------------------------------------------------------------------- argument types


def first_line(err: Exception) -> str:
    """The one-line message of an error (its type's name when it has no text)."""
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def image_size(text: str) -> int:
    from unified_grn.data.shapes import MIN_IMAGE_SIZE

    value = positive_int(text)
    if value < MIN_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be >= {MIN_IMAGE_SIZE} px, got {value}")
    return value


def num_frames(text: str) -> int:
    value = positive_int(text)
    if value < 5 or (value - 1) % 4:
        raise argparse.ArgumentTypeError(f"must be 1 + 4k with k >= 1 (5, 9, 13, ...), got {value}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value
