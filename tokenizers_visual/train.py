"""Standalone trainer of the HBQ visual tokenizer (GRN paper Sec. 3.1 and 4.1; losses and the
official recipe's weights in :mod:`tokenizers_visual.losses`).

    python -m tokenizers_visual.train --config configs/tokenizer/tiny.yaml [key=value ...] [--resume]
    deepspeed --num_gpus 2 --module tokenizers_visual.train --config ... run.zero_stage=2
    torchrun --nproc_per_node 2 -m tokenizers_visual.train --config ... run.zero_stage=2

Configuration is the typed :class:`TrainTokenizerConfig`: YAML sections ``model / data / loss /
optim / run`` and dotted ``key=value`` overrides, type-checked (:mod:`.train_config`); the resolved
config is saved as ``<output_dir>/config.yaml``. Data: local image / video folders through
``datasets`` (:mod:`.train_data`); unreadable files are skipped, counted and logged.

Outputs in ``run.output_dir``: ``config.yaml``, ``metrics.jsonl``, ``checkpoints/step_N/`` (atomic,
with a ``latest`` pointer), ``eval.json`` (PSNR / SSIM / LPIPS on the held-out split),
``reconstructions.png`` (originals above reconstructions; ``reconstructions.gif`` for videos) and
``final/`` (``HBQTokenizer.from_pretrained``-loadable; EMA weights when EMA is on).

Distributed: under the ``deepspeed`` launcher (or torchrun) the tokenizer runs in a DeepSpeed
engine, ZeRO stage 0 (DDP-style data parallel), 1 or 2. ZeRO-3 is refused: the adaptive GAN
weight takes a gradient with respect to the decoder's last layer, which ZeRO-3 partitions. The
discriminator is a plain torch optimizer outside the engine; its gradients are averaged across
ranks with an all-reduce before its step.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .dist_utils import close_distributed, exit_process
from .losses import TokenizerLoss
from .lpips import UNCALIBRATED_NOTE, build_lpips
from .metrics import psnr, ssim
from .modeling_hbq import HBQTokenizer, HBQTokenizerConfig
from .train_checkpoint import atomic_write_text, barrier, latest_checkpoint, load_checkpoint, save_checkpoint
from .train_config import ConfigError, TrainTokenizerConfig, check_config, load_config, save_config
from .train_data import (
    FolderSource,
    MixedBatches,
    SkipCounter,
    load_folder_splits,
    save_reconstructions,
)
from .train_optim import build_tokenizer, lr_lambda, param_groups

logger = logging.getLogger(__name__)


class GeneratorObjective(torch.nn.Module):
    """Tokenizer forward + generator loss as one module: the call a DeepSpeed engine wraps.

    The adaptive GAN weight calls ``torch.autograd.grad`` on the decoder's last layer. DeepSpeed
    (0.19) hooks the *outputs* of ``engine(...)`` to drive its backward bookkeeping, so any
    autograd pass through them (``autograd.grad`` included) would start a gradient reduction.
    Inside ``forward`` those hooks do not exist yet. The loss module is kept out of the module
    tree: the discriminator has its own optimizer and must not be managed by the engine.
    """

    def __init__(self, model: HBQTokenizer, loss_fn: TokenizerLoss) -> None:
        super().__init__()
        self.model = model
        self._loss = (loss_fn,)  # a tuple hides it from .parameters() / .state_dict()

    def forward(self, pixels: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        reconstruction = self.model(pixels).reconstruction
        last = self.model.last_decoder_layer
        loss, logs = self._loss[0].generator_loss(pixels, reconstruction, step, last_layer=last)
        return loss, reconstruction.detach(), logs


@dataclass
class Trainer:
    """Everything a step, a checkpoint or the evaluation touches."""

    cfg: TrainTokenizerConfig
    model: HBQTokenizer
    objective: GeneratorObjective
    loss_fn: TokenizerLoss
    optimizer: torch.optim.Optimizer
    scheduler: Any
    d_optimizer: torch.optim.Optimizer | None
    ema: dict[str, torch.Tensor] | None
    data: MixedBatches
    held_out: dict[str, FolderSource]
    skipped: SkipCounter
    device: torch.device
    engine: Any = None  # a DeepSpeed engine when distributed
    rank: int = 0
    world: int = 1
    step: int = 0

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.run.output_dir)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# ----------------------------------------------------------------------------------------- setup


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def init_distributed(local_rank: int | None) -> tuple[int, int, torch.device, bool]:
    """``(rank, world, device, distributed)``. Distributed when launched by deepspeed or torchrun."""
    distributed = local_rank is not None or int(os.environ.get("WORLD_SIZE", "1")) > 1
    local_rank = int(os.environ.get("LOCAL_RANK", local_rank or 0))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if not distributed:
        return 0, 1, device, False
    import deepspeed
    import deepspeed.ops

    if cuda:
        torch.cuda.set_device(device)
    else:  # skip the JIT build of the shared-memory comm op (~100 s); gloo does the work
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), device, True


def build_data(cfg: TrainTokenizerConfig, rank: int, world: int, skipped: SkipCounter):
    """Training batches (sharded by rank) and held-out sources, per modality."""
    train, held_out = {}, {}
    for modality, folder in (("image", cfg.data.image_dir), ("video", cfg.data.video_dir)):
        if folder is None:
            continue
        train_ds, test_ds = load_folder_splits(folder, modality, cfg.data.test_fraction, cfg.run.seed)
        train[modality] = FolderSource(train_ds, modality, cfg.data, cfg.run.seed, skipped, rank, world)
        if test_ds is not None:
            held_out[modality] = FolderSource(test_ds, modality, cfg.data, cfg.run.seed, skipped)
    return MixedBatches(train, cfg.data.image_fraction, cfg.run.seed), held_out


def _deepspeed_engine(cfg: TrainTokenizerConfig, model: torch.nn.Module):
    import deepspeed

    ds_config = {
        "train_micro_batch_size_per_gpu": cfg.data.batch_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": cfg.optim.grad_clip,
        "zero_optimization": {"stage": cfg.run.zero_stage},
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": cfg.optim.lr,
                "betas": cfg.optim.betas,
                "weight_decay": cfg.optim.weight_decay,
                "torch_adam": not torch.cuda.is_available(),  # no JIT build of fused_adam on CPU
            },
        },
        "steps_per_print": 10**9,
    }
    scheduler = lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.optim, cfg.run.max_steps))  # noqa: E731
    engine, optimizer, _, lr_scheduler = deepspeed.initialize(
        model=model,
        model_parameters=param_groups(model, cfg.optim.weight_decay),
        config=ds_config,
        lr_scheduler=scheduler,
    )
    return engine, optimizer, lr_scheduler


def setup(cfg: TrainTokenizerConfig, local_rank: int | None = None) -> Trainer:
    """Build model, loss, optimizers and data (the same on every rank: every RNG is seeded)."""
    m = cfg.model
    if m.init_from is not None:
        model_cfg = HBQTokenizerConfig.from_pretrained(m.init_from)
    else:
        model_cfg = HBQTokenizerConfig.from_preset(m.preset, **m.overrides)
    check_config(cfg, model_cfg)
    rank, world, device, distributed = init_distributed(local_rank)
    seed_everything(cfg.run.seed)
    model = build_tokenizer(model_cfg, m.init_from, m.freeze_encoder).to(device)
    loss_fn = TokenizerLoss(cfg.loss).to(device)
    objective = GeneratorObjective(model, loss_fn)
    betas = tuple(cfg.optim.betas)
    engine = None
    if distributed:
        engine, optimizer, scheduler = _deepspeed_engine(cfg, objective)
    else:
        groups = param_groups(model, cfg.optim.weight_decay)
        optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=betas)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.optim, cfg.run.max_steps))
    d_optimizer = None
    if loss_fn.discriminator is not None:
        d_lr = cfg.optim.lr * cfg.loss.disc_lr_mult
        d_groups = param_groups(loss_fn.discriminator, cfg.optim.weight_decay)
        d_optimizer = torch.optim.AdamW(d_groups, lr=d_lr, betas=betas)
    ema = None
    if cfg.optim.ema_decay is not None:
        ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    skipped = SkipCounter()
    data, held_out = build_data(cfg, rank, world, skipped)
    return Trainer(
        cfg,
        model,
        objective,
        loss_fn,
        optimizer,
        scheduler,
        d_optimizer,
        ema,
        data,
        held_out,
        skipped,
        device,
        engine,
        rank,
        world,
    )


# ----------------------------------------------------------------------------------------- steps


def _generator_update(tr: Trainer, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """One tokenizer step; returns the (graph-free) reconstruction for the discriminator."""
    forward = tr.engine if tr.engine is not None else tr.objective
    loss, reconstruction, logs = forward(pixels, tr.step)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite tokenizer loss at step {tr.step}: {logs}")
    if tr.engine is not None:
        tr.engine.backward(loss)
        tr.engine.step()  # clips, steps the optimizer and the lr schedule, zeroes grads
    else:
        tr.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        logs["grad_norm"] = torch.nn.utils.clip_grad_norm_(
            tr.model.parameters(), tr.cfg.optim.grad_clip
        ).item()
        tr.optimizer.step()
        tr.scheduler.step()
    return reconstruction, logs


def _discriminator_update(
    tr: Trainer, pixels: torch.Tensor, reconstruction: torch.Tensor
) -> dict[str, float]:
    if tr.d_optimizer is None or not tr.loss_fn.gan_active(tr.step):
        return {}
    d_loss, logs = tr.loss_fn.discriminator_loss(pixels, reconstruction, tr.step)
    tr.d_optimizer.zero_grad(set_to_none=True)
    d_loss.backward()
    if tr.world > 1:  # the discriminator lives outside the engine: average its grads by hand
        for p in tr.loss_fn.discriminator.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(tr.world)
    torch.nn.utils.clip_grad_norm_(tr.loss_fn.discriminator.parameters(), tr.cfg.optim.grad_clip)
    tr.d_optimizer.step()
    return logs


@torch.no_grad()
def _ema_update(tr: Trainer) -> None:
    if tr.ema is None:
        return
    decay = tr.cfg.optim.ema_decay
    for name, value in tr.model.state_dict().items():
        if value.is_floating_point():
            tr.ema[name].lerp_(value, 1.0 - decay)
        else:
            tr.ema[name].copy_(value)


def train_step(tr: Trainer) -> dict[str, Any]:
    """Fetch a batch, update the tokenizer, its EMA and the discriminator; advance the step."""
    modality, pixels = tr.data.next_batch(tr.step)
    pixels = pixels.to(tr.device)
    tr.model.train()
    lr = tr.scheduler.get_last_lr()[0]  # the lr this step uses (the schedule advances in the update)
    reconstruction, logs = _generator_update(tr, pixels)
    _ema_update(tr)
    logs.update(_discriminator_update(tr, pixels, reconstruction))
    tr.step += 1
    logs.update({"step": tr.step, "modality": modality, "batch": pixels.shape[0], "lr": lr})
    return logs


# ----------------------------------------------------------------------------------------- evaluation


def _eval_model(tr: Trainer) -> tuple[HBQTokenizer, str]:
    """The weights to evaluate and save: the EMA copy when EMA is on."""
    if tr.ema is None:
        return tr.model, "model"
    model = copy.deepcopy(tr.model)
    model.load_state_dict(tr.ema)
    return model, "ema"


@torch.no_grad()
def _reconstruct(
    model: HBQTokenizer, pixels: torch.Tensor, batch_size: int, device: torch.device
) -> torch.Tensor:
    outs = [model(chunk.to(device)).reconstruction.clamp(-1, 1).cpu() for chunk in pixels.split(batch_size)]
    return torch.cat(outs)


@torch.no_grad()
def evaluate(tr: Trainer) -> dict[str, Any]:
    """PSNR / SSIM / LPIPS on the held-out split (rank 0); writes ``eval.json`` and reconstruction grids."""
    model, weights = _eval_model(tr)
    model.eval()
    lpips_fn = None
    if tr.cfg.run.eval_lpips:
        lpips_fn = tr.loss_fn.lpips
        if lpips_fn is None:  # perceptual weight 0: build it for the evaluation only
            lpips_fn = build_lpips(tr.cfg.loss.lpips_backbone).to(tr.device)
    results: dict[str, Any] = {"step": tr.step, "weights": weights, "value_range": [-1.0, 1.0]}
    for modality, source in tr.held_out.items():
        pixels = source.eval_samples(tr.cfg.data.eval_samples)
        if pixels is None:
            continue
        recon = _reconstruct(model, pixels, tr.cfg.run.eval_batch_size, tr.device)
        scores = {"num_samples": pixels.shape[0]}
        scores["psnr"] = psnr(recon, pixels, (-1.0, 1.0)).mean().item()
        scores["ssim"] = ssim(recon, pixels, (-1.0, 1.0)).mean().item()
        if lpips_fn is not None:
            dists = [
                lpips_fn(a.to(tr.device), b.to(tr.device)).cpu()
                for a, b in zip(recon.split(16), pixels.split(16))
            ]
            scores["lpips"] = torch.cat(dists).mean().item()
        results[modality] = scores
        n = tr.cfg.run.num_reconstructions
        png = tr.out_dir / "reconstructions.png" if modality == "image" or "image" not in results else None
        gif = tr.out_dir / "reconstructions.gif" if modality == "video" else None
        save_reconstructions(pixels[:n], recon[:n], png, gif)
        note = "" if lpips_fn is None or lpips_fn.is_calibrated else f" ({UNCALIBRATED_NOTE})"
        logger.info("eval %s (%d samples): %s%s", modality, pixels.shape[0], _fmt(scores), note)
    if not tr.held_out:
        logger.warning("no held-out split (no test/ folder and data.test_fraction=0): nothing evaluated")
    if lpips_fn is not None:
        results["lpips_calibrated"] = bool(lpips_fn.is_calibrated)
        results["lpips_note"] = None if lpips_fn.is_calibrated else UNCALIBRATED_NOTE
    results["skipped_unreadable"] = len(tr.skipped)
    atomic_write_text(tr.out_dir / "eval.json", json.dumps(results, indent=2) + "\n")
    return results


def _fmt(scores: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if k != "num_samples")


def save_final(tr: Trainer) -> Path:
    """``final/``: the tokenizer (EMA weights when EMA is on), loadable with ``HBQTokenizer.from_pretrained``."""
    model, _ = _eval_model(tr)
    path = tr.out_dir / "final"
    model.save_pretrained(path)
    logger.info("saved the tokenizer to %s", path)
    return path


# ----------------------------------------------------------------------------------------- loop


def _log_metrics(tr: Trainer, logs: dict[str, Any], start: float) -> None:
    logs = {**logs, "time_s": round(time.monotonic() - start, 3), "skipped_unreadable": len(tr.skipped)}
    with open(tr.out_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(logs) + "\n")


def _time_up(tr: Trainer, start: float) -> bool:
    """Whether ``max_time_s`` has passed; with several ranks, rank 0's clock decides for all."""
    budget = tr.cfg.run.max_time_s
    if budget is None:
        return False
    flag = torch.tensor([float(time.monotonic() - start >= budget)], device=tr.device)
    if tr.world > 1:
        dist.broadcast(flag, src=0)
    if flag.item():
        logger.info("time budget of %.0f s reached at step %d", budget, tr.step)
    return bool(flag.item())


def train(tr: Trainer) -> None:
    """Step until ``max_steps`` or ``max_time_s``; checkpoint every ``checkpoint_every`` steps and at the end."""
    run = tr.cfg.run
    start = time.monotonic()
    bar = tqdm(
        total=run.max_steps, initial=tr.step, disable=not (run.progress and tr.is_main), desc="tokenizer"
    )
    saved_at = tr.step
    while tr.step < run.max_steps and not _time_up(tr, start):
        logs = train_step(tr)
        bar.update(1)
        bar.set_postfix(loss=f"{logs['loss/total']:.4f}", refresh=False)
        if tr.is_main and (tr.step % run.log_every == 0 or tr.step == 1):
            _log_metrics(tr, logs, start)
        if run.checkpoint_every > 0 and tr.step % run.checkpoint_every == 0:
            save_checkpoint(tr)
            saved_at = tr.step
    bar.close()
    if saved_at != tr.step:
        save_checkpoint(tr)
    if len(tr.skipped):
        logger.warning("skipped %d unreadable samples", len(tr.skipped))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tokenizers_visual.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--config", help="YAML file (configs/tokenizer/*.yaml); defaults are used for missing keys"
    )
    parser.add_argument("--resume", action="store_true", help="continue from <output_dir>/checkpoints/latest")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. optim.lr=1e-3"
    )
    return parser.parse_intermixed_args(argv)


def _configure_process(cfg: TrainTokenizerConfig) -> None:
    """Process-wide settings, made only by the command-line entry point."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if cfg.run.num_threads is not None:
        torch.set_num_threads(cfg.run.num_threads)
    if not torch.cuda.is_available():  # DeepSpeed (imported by transformers too) warns otherwise
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Train, evaluate on the held-out split and save ``final/``; returns the ``eval.json`` content on rank 0."""
    args = parse_args(argv)
    cfg = load_config(TrainTokenizerConfig, args.config, args.overrides)
    _configure_process(cfg)
    tr = setup(cfg, args.local_rank)
    if not tr.is_main:  # one voice in the log
        logging.getLogger().setLevel(logging.WARNING)
    if tr.is_main:
        tr.out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, tr.out_dir / "config.yaml")
    checkpoint = latest_checkpoint(tr.out_dir) if args.resume else None
    if args.resume and checkpoint is None:
        logger.warning("--resume: no checkpoint in %s, starting from scratch", tr.out_dir)
    if checkpoint is not None:
        load_checkpoint(tr, checkpoint)
    try:
        train(tr)
        results = None
        if tr.is_main:
            results = evaluate(tr)
            save_final(tr)
        barrier(tr)
    finally:
        close_distributed()
    return results


if __name__ == "__main__":
    try:
        main()
    except ConfigError as err:
        logger.error("config error: %s", err)
        sys.exit(2)
    exit_process(0, distributed="WORLD_SIZE" in os.environ)  # set by the launchers
