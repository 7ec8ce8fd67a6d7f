"""Export a training checkpoint (ZeRO-3, ZeRO-2 or plain) to a ``from_pretrained`` folder.

``grn export-checkpoint RUN_DIR --out DIR`` / :func:`export_checkpoint`: the checkpoint's weights
are consolidated (DeepSpeed: ``zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint``, which
reads every rank's partition from disk, so no process group is needed), loaded strictly into a
model built from the run's ``model/config.json``, and saved with ``save_pretrained`` together
with the text tokenizer and the visual tokenizer from the run's ``model/`` folder. The result
loads with ``AutoModelForGRN.from_pretrained(DIR)``. When the run kept an EMA, its weights are
exported by default (``weights="ema"``; ``"model"`` takes the raw weights).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import torch

from unified_grn.configuration_grn import GRNConfig
from unified_grn.loading import load_extras
from unified_grn.modeling_grn import GRNForConditionalGeneration
from unified_grn.training.checkpoint import ENGINE_TAG, find_checkpoint

__all__ = ["checkpoint_state_dict", "export_checkpoint"]

logger = logging.getLogger(__name__)


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
) -> Path:
    """Write a ``from_pretrained`` folder from a run folder (its latest checkpoint) or a checkpoint folder.

    Args:
        path: ``run.output_dir`` of a training run, or one of its ``checkpoints/step_N`` folders.
        out_dir: the folder to write (replaced atomically when ``overwrite``).
        weights: ``auto`` (EMA when the run kept one), ``ema`` or ``model``.

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
