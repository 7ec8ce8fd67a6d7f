"""Training checkpoints: atomic writes, a ``latest`` pointer that never names half a checkpoint, exact resume.

``<output_dir>/checkpoints/step_N/`` holds

* ``engine/`` (DeepSpeed: ``engine.save_checkpoint(dir, tag="engine")``, written by every rank;
  ``zero_to_fp32`` consolidates it) or ``model.pt`` (plain: model, optimizer and lr schedule);
* ``trainer.pt`` (rank 0): step, world size, backend, counters; ``ema.pt`` when EMA is on;
* ``rank{r}.pt`` (every rank): the data position (mixture state, condition-drop generator), the
  corruption generator and the torch / numpy / python RNG states.

A checkpoint is written into ``.tmp-step_N`` and renamed into place; only then is ``latest``
replaced (atomically, :func:`tokenizers_visual.train_checkpoint.atomic_write_text`). A kill at any
moment leaves ``latest`` naming a complete checkpoint. Saving the same step twice (a stop after a
run of non-finite losses) writes ``step_N.1`` rather than replacing a folder ``latest`` may name.
Everything is read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from tokenizers_visual.train_checkpoint import (
    atomic_write_text,
    latest_checkpoint,
    rng_state,
    set_rng_state,
)

if TYPE_CHECKING:
    from unified_grn.training.loop import Trainer

__all__ = [
    "ENGINE_TAG",
    "backend_name",
    "check_resume",
    "find_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)
ENGINE_TAG = "engine"


def _barrier(tr: Trainer) -> None:
    if tr.distributed:
        dist.barrier()


def _free_name(root: Path, step: int) -> str:
    name = f"step_{step:08d}"
    k = 0
    while (root / (name if k == 0 else f"{name}.{k}")).exists():
        k += 1
    return name if k == 0 else f"{name}.{k}"


def _broadcast_name(tr: Trainer, name: str) -> str:
    if not tr.distributed:
        return name
    box = [name]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _trainer_state(tr: Trainer) -> dict[str, Any]:
    return {
        "step": tr.step,
        "world": tr.world,
        "backend": tr.backend,
        "nan_streak": tr.nan_streak,
        "skipped_steps": tr.skipped_steps,
        "tokens_seen": tr.tokens_seen,
        "samples_seen": tr.samples_seen,
    }


def save_checkpoint(tr: Trainer) -> Path:
    """Write a checkpoint of step ``tr.step`` (collective under DeepSpeed) and point ``latest`` at it."""
    root = tr.out_dir / "checkpoints"
    name = _broadcast_name(tr, _free_name(root, tr.step) if tr.is_main else "")
    final, tmp = root / name, root / f".tmp-{name}"
    if tr.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier(tr)
    if tr.engine is not None:
        tr.engine.save_checkpoint(str(tmp), tag=ENGINE_TAG)
    elif tr.is_main:
        state = {
            "model": tr.model.state_dict(),
            "optimizer": tr.optimizer.state_dict(),
            "scheduler": tr.scheduler.state_dict(),
        }
        torch.save(state, tmp / "model.pt")
    local = {"data": tr.stream.state_dict(), "rng": rng_state(), "generator": tr.generator.get_state()}
    torch.save(local, tmp / f"rank{tr.rank}.pt")
    if tr.is_main:
        torch.save(_trainer_state(tr), tmp / "trainer.pt")
        if tr.ema is not None:
            torch.save(tr.ema.state_dict(), tmp / "ema.pt")
    _barrier(tr)
    if tr.is_main:
        os.replace(tmp, final)
        atomic_write_text(root / "latest", name + "\n")
        _prune(root, keep=tr.cfg.run.keep_checkpoints, current=name)
        logger.info("saved checkpoint %s", final)
    _barrier(tr)
    return final


def _prune(root: Path, keep: int, current: str) -> None:
    done = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in done[:-keep]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)
    for tmp in root.glob(".tmp-*"):  # left by a killed run
        if tmp.name != f".tmp-{current}":
            shutil.rmtree(tmp, ignore_errors=True)


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a run folder (its ``latest``) or a checkpoint folder itself."""
    path = Path(path)
    if (path / "trainer.pt").is_file():
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise FileNotFoundError(f"{path} is neither a checkpoint (no trainer.pt) nor a run folder with one")
    return found


def backend_name(zero_stage: int | None) -> str:
    """``plain`` or ``deepspeed-zeroN``: what a checkpoint was written by."""
    return "plain" if zero_stage is None else f"deepspeed-zero{zero_stage}"


def _mismatch(path: Path, state: dict[str, Any], world: int, backend: str) -> str | None:
    if state["world"] == world and state["backend"] == backend:
        return None
    return (
        f"{path} was written by {state['world']} process(es) with {state['backend']}; resume with the "
        f"same (now {world} with {backend}), or export it and start a new run from the export "
        "(model.init_from)"
    )


def check_resume(out_dir: str | Path, world: int, backend: str) -> Path | None:
    """The checkpoint ``--resume`` would load, checked against this run's world size and backend.

    Raises:
        ConfigError: the latest checkpoint was written by another world size or backend.
    """
    from unified_grn.training.config import ConfigError

    path = latest_checkpoint(Path(out_dir))
    if path is None:
        return None
    message = _mismatch(
        path, torch.load(path / "trainer.pt", map_location="cpu", weights_only=True), world, backend
    )
    if message is not None:
        raise ConfigError(message)
    return path


def load_checkpoint(tr: Trainer, path: Path) -> None:
    """Restore everything :func:`save_checkpoint` wrote; world size and backend must match."""
    state = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    message = _mismatch(path, state, tr.world, tr.backend)
    if message is not None:
        raise RuntimeError(message)
    configured = list(tr.scheduler.base_lrs)  # this run's optim.lr (and backbone_lr), before loading
    if tr.engine is not None:
        load_path, _ = tr.engine.load_checkpoint(str(path), tag=ENGINE_TAG)
        if load_path is None:
            raise RuntimeError(f"DeepSpeed could not load {path / ENGINE_TAG}")
    else:
        model_state = torch.load(path / "model.pt", map_location=tr.device, weights_only=True)
        tr.model.load_state_dict(model_state["model"])
        tr.optimizer.load_state_dict(model_state["optimizer"])
        tr.scheduler.load_state_dict(model_state["scheduler"])
    if tr.ema is not None:
        tr.ema.load_state_dict(torch.load(path / "ema.pt", map_location="cpu", weights_only=True))
    local = torch.load(path / f"rank{tr.rank}.pt", map_location="cpu", weights_only=True)
    tr.stream.load_state_dict(local["data"])
    tr.generator.set_state(local["generator"])
    set_rng_state(local["rng"])
    tr.step = int(state["step"])
    tr.nan_streak, tr.skipped_steps = int(state["nan_streak"]), int(state["skipped_steps"])
    tr.tokens_seen, tr.samples_seen = int(state["tokens_seen"]), int(state["samples_seen"])
    logger.info("resumed from %s at step %d", path, tr.step)
    _warn_if_lr_ignored(configured, list(tr.scheduler.base_lrs))


def _warn_if_lr_ignored(configured: list[float], restored: list[float]) -> None:
    """A resumed run keeps its checkpoint's base lrs (optimizer + schedule state): say so when the
    config now asks for others, instead of silently training at the old ones."""
    if len(configured) == len(restored) and all(
        abs(a - b) <= 1e-12 * max(abs(a), abs(b)) for a, b in zip(configured, restored)
    ):
        return
    logger.warning(
        "optim.lr / model.backbone_lr of this config (%s) differ from the checkpoint's (%s): a resumed "
        "run keeps the checkpoint's base lrs. Change the lr's shape with optim.lr_schedule / "
        "decay_start / min_lr_ratio, or start a new run from the weights with model.init_from.",
        sorted(set(configured)),
        sorted(set(restored)),
    )
