"""Grow a trained GRN deeper without changing what it computes (block expansion).

Not part of the GRN paper: this is the block expansion of LLaMA Pro (Wu et al., 2024, §3.1),
used here to give a trained model more capacity and keep training it. New decoder blocks are
copies of the block before them with their residual-branch output projections (attention
``o_proj`` and MLP ``down_proj`` for the llama family) set to zero. A pre-norm block then adds
exactly zero to the residual stream, so the expanded model's text logits and GRN bit logits
are bit-identical to the original's at the start, and training moves on from there (the zeroed
projections get gradients at once; the rest of the new block from the next step).

:func:`expand_depth` works in place on any backbone whose decoder keeps its blocks in a
``layers`` ModuleList (llama, mistral, qwen2/3, ...); ``grn expand-depth SRC --out DST
--new-layers N`` is the command-line form. Train the result with ``model.init_from=DST``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["OUTPUT_PROJECTIONS", "expand_depth", "insertion_points"]

logger = logging.getLogger(__name__)

# Linear layers that write a block's residual branches, by architecture family:
# llama / mistral / qwen (o_proj, down_proj), gpt2 (c_proj), opt / bart (out_proj, fc2),
# gpt-neox / falcon (dense, dense_4h_to_h).
OUTPUT_PROJECTIONS: tuple[str, ...] = ("o_proj", "down_proj", "c_proj", "out_proj", "fc2", "dense_4h_to_h")


def insertion_points(num_layers: int, num_new_layers: int) -> list[int]:
    """The original block after which each new block goes, spread evenly (LLaMA Pro's groups):
    block ``i`` of ``num_layers`` is followed by a copy when it ends one of ``num_new_layers``
    equal groups. Returned sorted; a block may repeat when more new blocks than old are asked for."""
    if num_layers < 1:
        raise ValueError(f"the backbone has {num_layers} decoder layers; there is nothing to copy")
    if num_new_layers < 1:
        raise ValueError(f"num_new_layers must be >= 1, got {num_new_layers}")
    # group g covers blocks [g*L/P, (g+1)*L/P); its copy follows its last block, ceil((g+1)L/P) - 1
    return [-(-(g + 1) * num_layers // num_new_layers) - 1 for g in range(num_new_layers)]


def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    decoder = model.language_model if hasattr(model, "language_model") else model
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(
            f"cannot find the decoder blocks of {type(decoder).__name__} (no `layers` ModuleList); "
            "block expansion supports llama-style backbones (llama, mistral, qwen2/3, ...)"
        )
    return layers


def _configs(model: nn.Module) -> list:
    """The backbone configs that count decoder layers: a GRN's ``text_config`` and its backbone's own
    ``config`` (one object or two), or a bare decoder's ``config``."""
    found = []
    grn_config = getattr(model, "config", None)
    for cfg in (
        getattr(grn_config, "text_config", None),
        getattr(getattr(model, "backbone", None), "config", None),
        grn_config,
    ):
        if cfg is not None and hasattr(cfg, "num_hidden_layers") and all(cfg is not f for f in found):
            found.append(cfg)
    return found


def _zero_output_projections(block: nn.Module, names: Sequence[str]) -> list[str]:
    zeroed = []
    for name, module in block.named_modules():
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in names:
            with torch.no_grad():
                module.weight.zero_()
                if module.bias is not None:
                    module.bias.zero_()
            zeroed.append(name)
    return zeroed


def _renumber(layers: nn.ModuleList) -> None:
    """Every ``layer_idx`` attribute (the attention's KV-cache slot) = the block's new position."""
    for idx, block in enumerate(layers):
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = idx


def expand_depth(
    model: nn.Module, num_new_layers: int, output_projections: Sequence[str] = OUTPUT_PROJECTIONS
) -> list[int]:
    """Insert ``num_new_layers`` zero-output copies of decoder blocks into ``model``'s backbone.

    ``model`` is a :class:`~unified_grn.GRNForConditionalGeneration` (or a bare HF decoder with a
    ``layers`` list). The config's ``num_hidden_layers`` (and ``layer_types``, where the backbone
    has one) follow. Returns the new blocks' positions in the expanded stack. Each copy must
    contain at least two of ``output_projections`` (one per residual branch), else nothing is
    changed and a ``ValueError`` names the block type.
    """
    layers = _decoder_layers(model)
    old = list(layers)
    after = insertion_points(len(old), num_new_layers)
    new_blocks: dict[int, list[nn.Module]] = {}
    for src in after:
        block = copy.deepcopy(old[src])
        zeroed = _zero_output_projections(block, output_projections)
        if len(zeroed) < 2:
            raise ValueError(
                f"found {zeroed or 'no'} output projections in a {type(block).__name__}; a block has two "
                f"residual branches to zero. Pass output_projections= with its Linear names "
                f"(tried {list(output_projections)})"
            )
        new_blocks.setdefault(src, []).append(block)
    configs = _configs(model)
    old_types = getattr(configs[0], "layer_types", None)
    stack, sources, positions = [], [], []  # new stack, each block's original index, new blocks' places
    for i, block in enumerate(old):
        for module in (block, *new_blocks.get(i, [])):
            if module is not block:
                positions.append(len(stack))
            stack.append(module)
            sources.append(i)
    del layers[:]  # refill in place: the parent keeps the same ModuleList
    layers.extend(stack)
    _renumber(layers)
    for cfg in configs:
        cfg.num_hidden_layers = len(stack)
        if old_types:
            cfg.layer_types = [old_types[i] for i in sources]  # a copy takes its source's type
    logger.info("block expansion: %d -> %d decoder layers (new at %s)", len(old), len(stack), positions)
    return positions
