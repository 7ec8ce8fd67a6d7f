"""Grow a trained GRN wider without changing what it computes (function-preserving widening).

Not part of the GRN paper: this is Net2Net-style growth (Chen et al., 2016) with zero-initialised
outputs, as in bert2BERT / LiGO-style width growth, written for pre-norm llama-family backbones and
GRN's own modules. It pairs with :mod:`unified_grn.training.expansion` (depth).

What grows, and why the outputs stay the same:

* **The residual stream** ``d -> d'``. Everything that *writes* it (token embeddings, the HBQ input
  rows, the 3D position and ``p_t`` embeddings, attention ``o_proj``, MLP ``down_proj``) gets zero
  rows for the new dimensions, so they stay exactly zero. RMSNorm divides by the root mean square
  over all ``d'`` dimensions, which the zeros shrink by ``sqrt(d / d')``: its old weights are scaled
  by that factor to cancel it. Everything that *reads* the stream (``q/k/v``, ``gate/up``, ``lm_head``,
  the HBQ head) gets small random columns, so the new dimensions get gradients from the first step.
* **Attention heads** ``H -> H'`` (and key/value heads ``KV -> KV'``), ``head_dim`` fixed. New heads
  have random ``q/k/v`` rows and zero ``o_proj`` columns. Old query heads keep their key/value head:
  with ``g = H / KV`` and ``g' = H' / KV'`` (``g' >= g``), old head ``i`` moves to ``(i // g) * g' + i % g``.
* **MLP width** ``f -> f'``: random ``gate/up`` rows, zero ``down_proj`` columns.
* **The ``p_t`` MLP's middle layer** follows ``d'`` with random rows in and zero columns out.

RMSNorm's ``eps`` is scaled by ``d / d'`` too (it is added to that shrunk mean square), so the
widened model's text and bit logits equal the original's up to float rounding (qwen3 only: its
per-head q/k norms share that eps and see no zeros, so they move by about 1e-5 relative). ``grn expand-width SRC --out DST --hidden-size ...``
is the command-line form; train the result with ``scripts/train.py model.init_from=DST``.
"""

from __future__ import annotations

import copy
import logging
import math
import re
from dataclasses import dataclass

import torch
from einops import rearrange

__all__ = ["SUPPORTED_FAMILIES", "WidthPlan", "expand_width"]

logger = logging.getLogger(__name__)

#: backbones whose layout and norms the rules below know: pre-norm RMSNorm, unscaled embeddings
SUPPORTED_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
_NORMS = re.compile(r"(input_layernorm|post_attention_layernorm|model\.norm)\.weight$")


@dataclass(frozen=True)
class WidthPlan:
    """Old and new widths of a llama-family backbone; ``head_dim`` is kept."""

    hidden: tuple[int, int]
    intermediate: tuple[int, int]
    heads: tuple[int, int]
    kv_heads: tuple[int, int]
    head_dim: int

    @classmethod
    def from_config(cls, text_config, hidden=None, intermediate=None, heads=None, kv_heads=None) -> WidthPlan:
        c = text_config
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        old_kv = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        plan = cls(
            hidden=(c.hidden_size, hidden or c.hidden_size),
            intermediate=(c.intermediate_size, intermediate or c.intermediate_size),
            heads=(c.num_attention_heads, heads or c.num_attention_heads),
            kv_heads=(old_kv, kv_heads or old_kv),
            head_dim=head_dim,
        )
        plan.check()
        return plan

    def check(self) -> None:
        for name in ("hidden", "intermediate", "heads", "kv_heads"):
            old, new = getattr(self, name)
            if new < old:
                raise ValueError(f"{name} can only grow: {old} -> {new}; widening never removes units")
        (h, h2), (kv, kv2) = self.heads, self.kv_heads
        if h2 % kv2:
            raise ValueError(f"{h2} attention heads do not split into {kv2} key/value groups; pick a divisor")
        if h2 // kv2 < h // kv:
            raise ValueError(
                f"{h2} heads over {kv2} key/value heads gives groups of {h2 // kv2}, smaller than the "
                f"current {h // kv}: the old query heads would lose their key/value head; add query heads"
            )

    def query_head_index(self) -> torch.Tensor:
        """``(H,)``: where each old query head goes among the ``H'`` new ones."""
        g, g2 = self.heads[0] // self.kv_heads[0], self.heads[1] // self.kv_heads[1]
        return torch.tensor([(i // g) * g2 + i % g for i in range(self.heads[0])])


class _Grower:
    """Builds each new tensor from its old one: old values in place, the rest zero or random."""

    def __init__(self, plan: WidthPlan, std: float, generator: torch.Generator):
        self.plan, self.std, self.generator = plan, std, generator

    def fill(self, new_shape, old: torch.Tensor, random: bool) -> torch.Tensor:
        if random:
            out = torch.randn(new_shape, generator=self.generator) * self.std
            return out.to(old.dtype)
        return old.new_zeros(new_shape)

    def grow(self, old: torch.Tensor, new_shape, random: bool) -> torch.Tensor:
        """Copy ``old`` into the leading corner of a ``new_shape`` tensor filled per ``random``."""
        out = self.fill(new_shape, old, random)
        out[tuple(slice(0, s) for s in old.shape)] = old
        return out

    def heads(self, old: torch.Tensor, new_rows_random: bool, index: torch.Tensor, new_heads: int, dim: int):
        """Move whole heads (``head_dim`` rows along ``dim``) to ``index`` among ``new_heads``."""
        hd = self.plan.head_dim
        moved = old.movedim(dim, 0)
        grouped = rearrange(moved, "(h d) ... -> h d ...", d=hd)  # (H, hd, ...)
        out = self.fill((new_heads, *grouped.shape[1:]), old, new_rows_random)
        out[index] = grouped
        return rearrange(out, "h d ... -> (h d) ...").movedim(0, dim)


_ZERO_COLUMNS = ("embed_tokens.weight", "hbq_rows.weight", "pos_t.weight", "pos_h.weight", "pos_w.weight")
_RANDOM_COLUMNS = ("lm_head.weight", "hbq_head.proj.weight")


def _grow_param(name: str, old: torch.Tensor, new_shape: torch.Size, g: _Grower) -> torch.Tensor:
    """The widened tensor for parameter ``name`` (see the module docstring for each rule)."""
    plan = g.plan
    if tuple(old.shape) == tuple(new_shape):
        return old
    heads = {"q_proj": (plan.query_head_index(), plan.heads[1])}
    heads |= dict.fromkeys(("k_proj", "v_proj"), (torch.arange(plan.kv_heads[0]), plan.kv_heads[1]))
    module, kind = name.rsplit(".", 2)[-2:]
    if module in heads:  # (H * hd, d): whole heads move; new heads and new input columns random
        index, count = heads[module]
        moved = g.heads(old, kind == "weight", index, count, dim=0)
        return g.grow(moved, new_shape, random=True) if kind == "weight" else moved
    if module == "o_proj":  # (d, H * hd): new heads' columns and new rows zero
        moved = (
            g.heads(old, False, plan.query_head_index(), plan.heads[1], dim=1) if kind == "weight" else old
        )
        return g.grow(moved, new_shape, random=False)
    if module in ("gate_proj", "up_proj") or name.endswith("kept_fraction.mlp.0.weight"):
        return g.grow(old, new_shape, random=kind == "weight")  # new units read at random, no bias
    if module == "down_proj" or ".kept_fraction.mlp." in name or name.endswith(_ZERO_COLUMNS):
        return g.grow(old, new_shape, random=False)  # writers of the residual stream: new dims stay 0
    if name.endswith(_RANDOM_COLUMNS):
        return g.grow(old, new_shape, random=True)  # readers: new input columns random
    if _NORMS.search(name):  # RMSNorm over d' dims: undo the sqrt(d / d') the zeros bring
        scale = math.sqrt(plan.hidden[0] / plan.hidden[1])
        out = old.new_full(new_shape, float(old.float().mean()) * scale)
        out[: old.shape[0]] = old * scale
        return out
    raise ValueError(
        f"no widening rule for {name} {tuple(old.shape)} -> {tuple(new_shape)}; expand_width supports "
        "llama-family backbones (llama, mistral, qwen2/3) with GRN's modules"
    )


def _tie(state: dict[str, torch.Tensor], new_state: dict[str, torch.Tensor]) -> None:
    """Tied weights (``tie_word_embeddings``: ``lm_head`` is ``embed_tokens``) get one tensor, the
    writer's: zero new columns, or the embedding would write the new dimensions."""
    groups: dict[int, list[str]] = {}
    for name, tensor in new_state.items():
        groups.setdefault(tensor.data_ptr(), []).append(name)
    for names in groups.values():
        writer = next((n for n in names if n.endswith(_ZERO_COLUMNS)), names[0])
        for name in names:
            state[name] = state[writer]


def expand_width(
    model,
    hidden_size: int | None = None,
    intermediate_size: int | None = None,
    num_attention_heads: int | None = None,
    num_key_value_heads: int | None = None,
    init_std: float | None = None,
    seed: int = 0,
):
    """A wider copy of ``model`` (a :class:`~unified_grn.GRNForConditionalGeneration`) that computes
    the same logits; ``None`` keeps a width. ``init_std`` (default: the backbone's
    ``initializer_range``) scales the random new rows and columns, drawn from ``seed``. The
    tokenizers and the generation config are carried over; ``model`` is left unchanged.
    """
    family = getattr(model.config.text_config, "model_type", None)
    if family not in SUPPORTED_FAMILIES:
        raise ValueError(
            f"expand_width supports {list(SUPPORTED_FAMILIES)} backbones, not {family!r}: others scale their "
            "embeddings or norms differently (gemma: sqrt(d) embeddings, 1 + weight norms), so zero-padding "
            "would change their outputs"
        )
    plan = WidthPlan.from_config(
        model.config.text_config, hidden_size, intermediate_size, num_attention_heads, num_key_value_heads
    )
    if all(old == new for old, new in (plan.hidden, plan.intermediate, plan.heads, plan.kv_heads)):
        raise ValueError(
            "every width equals the model's: pass a larger hidden / intermediate size or more heads"
        )
    config = copy.deepcopy(model.config)
    text = config.text_config
    text.hidden_size, text.intermediate_size = plan.hidden[1], plan.intermediate[1]
    text.num_attention_heads, text.head_dim = plan.heads[1], plan.head_dim
    if hasattr(text, "num_key_value_heads"):
        text.num_key_value_heads = plan.kv_heads[1]
    if getattr(text, "rms_norm_eps", None):  # eps meets a mean square shrunk by d / d': shrink it alike
        text.rms_norm_eps = text.rms_norm_eps * plan.hidden[0] / plan.hidden[1]
    dtype = next(model.parameters()).dtype
    widened = type(model)(
        config,
        text_tokenizer=model.__dict__.get("_text_tokenizer"),
        visual_tokenizer=model.__dict__.get("_visual_tokenizer"),
    )
    widened.generation_config = copy.deepcopy(model.generation_config)
    std = init_std if init_std is not None else getattr(text, "initializer_range", 0.02)
    grower = _Grower(plan, std, torch.Generator().manual_seed(seed))
    old_state, new_state = model.state_dict(), widened.state_dict()
    with torch.no_grad():
        state = {
            name: _grow_param(name, old_state[name].detach().cpu(), t.shape, grower)
            for name, t in new_state.items()
        }
    _tie(state, new_state)
    widened.load_state_dict(state)
    logger.info(
        "width expansion: hidden %d -> %d, MLP %d -> %d, heads %d -> %d (key/value %d -> %d)",
        *plan.hidden,
        *plan.intermediate,
        *plan.heads,
        *plan.kv_heads,
    )
    return widened.to(device=next(model.parameters()).device, dtype=dtype)
