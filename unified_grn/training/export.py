"""Export a training checkpoint (ZeRO-3, ZeRO-2 or plain) to a ``from_pretrained`` folder.

``grn export-checkpoint RUN_DIR --out DIR`` / :func:`export_checkpoint`: the checkpoint's weights
are consolidated (DeepSpeed: ``zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint``, which
reads every rank's partition from disk, so no process group is needed), loaded strictly into a
model built from the run's ``model/config.json``, and saved with ``save_pretrained`` together
with the text tokenizer and the visual tokenizer from the run's ``model/`` folder. The result
loads with ``AutoModelForGRN.from_pretrained(DIR)``. When the run kept an EMA, its weights are
exported by default (``weights="ema"``; ``"model"`` takes the raw weights).

``visual_tokenizer=DIR`` (``--visual-tokenizer``) ships another tokenizer instead of the run's: one
that encodes exactly like it (the same encoding config fields, bit-identical encoder weights; the
decoder may differ, in width too), such as a decoder-only fine-tune (``python -m
tokenizers_visual.train ... model.freeze_encoder=true``). Its codes are the
ones the GRN learned, so only the decoded pixels change; any other tokenizer is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import torch
from transformers import PreTrainedConfig

from tokenizers_visual.modeling_hbq import HBQTokenizer
from unified_grn.configuration_grn import GRNConfig
from unified_grn.loading import load_extras
from unified_grn.modeling_grn import GRNForConditionalGeneration
from unified_grn.training.checkpoint import ENGINE_TAG, find_checkpoint

__all__ = ["checkpoint_state_dict", "export_checkpoint", "same_encoder"]

logger = logging.getLogger(__name__)

_DECODER_ONLY = {"decoder_base_channels"}  # a decoder of another width decodes the same codes


def checkpoint_state_dict(checkpoint: Path, weights: Literal["auto", "ema", "model"] = "auto"):
    """Full fp32 weights of a checkpoint folder: ``(state_dict, which)`` with which = ``ema`` / ``model``."""
    trainer = torch.load(checkpoint / "trainer.pt", map_location="cpu", weights_only=True)
    if trainer["backend"] == "plain":
        state = torch.load(checkpoint / "model.pt", map_location="cpu", weights_only=True)["model"]
    else:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=ENGINE_TAG)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    has_ema = (checkpoint / "ema.pt").is_file()
    if weights == "ema" and not has_ema:
        raise ValueError(f"{checkpoint} has no EMA weights (optim.ema_decay was not set)")
    if weights != "model" and has_ema:
        state.update(torch.load(checkpoint / "ema.pt", map_location="cpu", weights_only=True))
        return state, "ema"
    return state, "model"


def _load_strict(model: GRNForConditionalGeneration, state: dict[str, torch.Tensor]) -> None:
    """Load every weight; only keys tied to another loaded weight may be absent."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(
            f"checkpoint and model disagree: missing {missing[:8]}, unexpected {unexpected[:8]} "
            "(was the run's model/ folder replaced?)"
        )
    model.tie_weights()


def export_checkpoint(
    path: str | Path,
    out_dir: str | Path,
    weights: Literal["auto", "ema", "model"] = "auto",
    overwrite: bool = True,
    visual_tokenizer: str | Path | None = None,
) -> Path:
    """Write a ``from_pretrained`` folder from a run folder (its latest checkpoint) or a checkpoint folder.

    Args:
        path: ``run.output_dir`` of a training run, or one of its ``checkpoints/step_N`` folders.
        out_dir: the folder to write (replaced atomically when ``overwrite``).
        weights: ``auto`` (EMA when the run kept one), ``ema`` or ``model``.
        visual_tokenizer: a tokenizer folder to ship instead of the run's; it must encode like the
            run's (module docstring), else ``ValueError``.

    Returns:
        ``out_dir``.
    """
    from transformers.initialization import no_init_weights

    checkpoint = find_checkpoint(path)
    model_dir = checkpoint.parent.parent / "model"
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} (the run's config + tokenizers) is missing")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass --overwrite)")
    state, which = checkpoint_state_dict(checkpoint, weights)
    with no_init_weights():
        model = GRNForConditionalGeneration(GRNConfig.from_pretrained(model_dir))
    _load_strict(model, state)
    load_extras(model, model_dir)
    if visual_tokenizer is not None:
        model.visual_tokenizer = same_encoder(
            HBQTokenizer.from_pretrained(visual_tokenizer), model.visual_tokenizer
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        model.eval().save_pretrained(staging)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported %s (%s weights) to %s", checkpoint, which, out)
    return out


def _encoding_fields(tokenizer: HBQTokenizer) -> dict:
    """The tokenizer's own config fields, less the decoder's width and the generic
    ``PreTrainedConfig`` bookkeeping (transformers version, dtype, architectures, name)."""
    generic = {f.name for f in dataclasses.fields(PreTrainedConfig)} | {"transformers_version"}
    fields = {f.name for f in dataclasses.fields(type(tokenizer.config))} - generic - _DECODER_ONLY
    return {name: getattr(tokenizer.config, name) for name in sorted(fields)}


def same_encoder(candidate: HBQTokenizer, reference: HBQTokenizer) -> HBQTokenizer:
    """``candidate`` if it emits the same codes as ``reference`` (same encoding config fields,
    bit-identical encoder weights), else ``ValueError`` naming the difference."""
    mine, theirs = _encoding_fields(candidate), _encoding_fields(reference)
    changed = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    if changed:
        raise ValueError(
            f"the visual tokenizer's config differs from the run's in {changed}: its codes would differ"
        )
    a, b = candidate.vae.encoder.state_dict(), reference.vae.encoder.state_dict()
    moved = sorted(k for k in b if k not in a or not torch.equal(a[k], b[k]))
    if moved:
        raise ValueError(
            f"the visual tokenizer's encoder differs from the run's ({len(moved)} tensors, e.g. {moved[0]}): "
            "its codes are not the ones the GRN learned. Ship a decoder-only fine-tune of the run's "
            "tokenizer (tokenizers_visual.train model.init_from=... model.freeze_encoder=true) or retrain."
        )
    return candidate
