"""The backbone's KV-cache argument across transformers 5.x releases.

transformers 5.2x renamed the cache argument and output field of its models from
``past_key_values`` to ``cache`` (the old name warns, and goes in 5.40). Every call that hands the
prompt cache (GRN paper Sec. 3.2, Alg. 1: the prompt runs once, the visual block runs against it)
to the backbone goes through :func:`cache_kwargs`, which uses the name the backbone's ``forward``
declares, and reads the cache back with :func:`output_cache`; so the project runs on releases
before and after the rename without a warning.
"""

from __future__ import annotations

import inspect
from functools import cache as memoize
from typing import Any

import torch

__all__ = ["cache_kwargs", "output_cache"]


@memoize
def _cache_argument(forward_owner: type) -> str:
    parameters = inspect.signature(forward_owner.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def cache_kwargs(backbone: torch.nn.Module, kv_cache: Any) -> dict[str, Any]:
    """``{name: kv_cache}`` under the name ``backbone.forward`` takes (``cache`` or ``past_key_values``)."""
    return {_cache_argument(type(backbone)): kv_cache}


def output_cache(output: Any) -> Any:
    """The KV cache of a backbone output (its ``cache`` field, or ``past_key_values`` before the rename)."""
    kv_cache = output.get("cache") if hasattr(output, "get") else getattr(output, "cache", None)
    return kv_cache if kv_cache is not None else output.past_key_values
