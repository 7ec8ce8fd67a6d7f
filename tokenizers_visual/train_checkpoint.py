"""Checkpoints of the tokenizer trainer (:mod:`tokenizers_visual.train`): atomic writes and exact resume.

A checkpoint is a folder ``<output_dir>/checkpoints/step_N/`` holding

* ``model.pt`` (single process: tokenizer, optimizer and lr-schedule states) or ``engine/``
  (DeepSpeed: ``engine.save_checkpoint``, written collectively by every rank);
* ``trainer.pt`` (rank 0): step, discriminator, its optimizer, EMA weights, world size;
* ``rank{r}.pt`` (every rank): data position and the torch / numpy / python RNG states.

It is written into ``.tmp-step_N`` first and moved into place with ``os.replace``; then the
``latest`` pointer file is replaced atomically, so a crash at any moment leaves either the old or
the new checkpoint, never half of one. Everything is loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from .train import Trainer

__all__ = [
    "atomic_write_text",
    "barrier",
    "latest_checkpoint",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

logger = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    """Every global RNG of this process (torch, numpy, python; CUDA when present), for a checkpoint."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved, so a resumed run draws the same numbers."""
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def barrier(tr: Trainer) -> None:
    if tr.world > 1:
        dist.barrier()


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(tr: Trainer) -> Path:
    """Write ``checkpoints/step_N`` atomically (temp dir, then ``os.replace``) and point ``latest`` at it."""
    root = tr.out_dir / "checkpoints"
    name = f"step_{tr.step:08d}"
    final, tmp = root / name, root / f".tmp-{name}"
    if tr.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(tr)
    if tr.engine is not None:
        tr.engine.save_checkpoint(str(tmp), tag="engine")  # collective: model, optimizer, lr schedule
    elif tr.is_main:
        state = {
            "model": tr.model.state_dict(),
            "optimizer": tr.optimizer.state_dict(),
            "scheduler": tr.scheduler.state_dict(),
        }
        torch.save(state, tmp / "model.pt")
    torch.save({"data": tr.data.state_dict(), "rng": rng_state()}, tmp / f"rank{tr.rank}.pt")
    if tr.is_main:
        disc = tr.loss_fn.discriminator
        trainer_state = {
            "step": tr.step,
            "discriminator": disc.state_dict() if disc is not None else None,
            "d_optimizer": tr.d_optimizer.state_dict() if tr.d_optimizer is not None else None,
            "ema": tr.ema,
            "world": tr.world,
        }
        torch.save(trainer_state, tmp / "trainer.pt")
    barrier(tr)
    if tr.is_main:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_text(root / "latest", name + "\n")
        for old in sorted(root.glob("step_*"))[: -max(tr.cfg.run.keep_checkpoints, 1)]:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("saved checkpoint %s", final)
    barrier(tr)
    return final


def latest_checkpoint(out_dir: Path) -> Path | None:
    pointer = out_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if path.is_dir() else None


def load_checkpoint(tr: Trainer, path: Path) -> None:
    """Restore everything :func:`save_checkpoint` wrote; the world size must match."""
    state = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    if state["world"] != tr.world:
        raise RuntimeError(
            f"{path} was written by {state['world']} processes; resume with the same number (now {tr.world})."
        )
    if tr.engine is not None:
        tr.engine.load_checkpoint(str(path), tag="engine")
    else:
        model_state = torch.load(path / "model.pt", map_location=tr.device, weights_only=True)
        tr.model.load_state_dict(model_state["model"])
        tr.optimizer.load_state_dict(model_state["optimizer"])
        tr.scheduler.load_state_dict(model_state["scheduler"])
    if tr.loss_fn.discriminator is not None:
        tr.loss_fn.discriminator.load_state_dict(state["discriminator"])
        tr.d_optimizer.load_state_dict(state["d_optimizer"])
    if tr.ema is not None and state["ema"] is not None:
        tr.ema = {k: v.to(tr.device) for k, v in state["ema"].items()}
    local = torch.load(path / f"rank{tr.rank}.pt", map_location="cpu", weights_only=True)
    tr.data.load_state_dict(local["data"])
    set_rng_state(local["rng"])
    tr.step = int(state["step"])
    logger.info("resumed from %s at step %d", path, tr.step)
