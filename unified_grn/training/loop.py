"""The training loop: setup from a :class:`~unified_grn.training.plan.TrainPlan`, the step, the run.

One **step** is one optimizer update over ``data.batch_size`` samples (``accumulation``
micro-batches per rank). A micro-batch whose loss is NaN or inf on any rank is skipped on every
rank (no backward, no update, logged); after ``run.max_nan_steps`` of them in a row the run saves a
checkpoint and stops with :class:`NonFiniteLossError`. Weights, data position and every random
draw are checkpointed, so ``resume`` continues bit-identically at the same world size.

Outputs in ``run.output_dir``: ``config.yaml`` (resolved), ``deepspeed.json`` (resolved, DeepSpeed
runs), ``model/`` (config + tokenizers, no weights: what export re-attaches), ``metrics.jsonl``
(step, loss, visual_loss, text_loss, lr, grad_norm, tokens_per_s, samples, peak memory, data
counters), ``checkpoints/`` and ``final/`` (``run.export_final``). tqdm shows progress on rank 0;
wandb / tensorboard receive the same rows when requested and installed.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from unified_grn.collator import GRNCollator
from unified_grn.data.mixture import DataMixture
from unified_grn.loading import save_extras
from unified_grn.training import engine as eng
from unified_grn.training.batches import BatchStream, TrainBatch, block_pt_laws, corrupt_for_training
from unified_grn.training.checkpoint import backend_name, latest_checkpoint, load_checkpoint, save_checkpoint
from unified_grn.training.config import TrainConfig, save_config
from unified_grn.training.metrics import MetricsWriter, peak_memory_mb
from unified_grn.training.plan import TrainPlan

__all__ = ["NonFiniteLossError", "Trainer", "run_training", "setup_trainer", "train", "train_step"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """``run.max_nan_steps`` non-finite losses in a row; a checkpoint was saved before raising."""


@dataclass
class Trainer:
    """Everything a step, a checkpoint or a log row touches."""

    cfg: TrainConfig
    plan: TrainPlan
    model: torch.nn.Module
    optimizer: Any
    scheduler: Any
    stream: BatchStream
    generator: torch.Generator
    device: torch.device
    precision: eng.Precision
    engine: Any = None
    ema: eng.EMA | None = None
    rank: int = 0
    world: int = 1
    distributed: bool = False
    step: int = 0
    nan_streak: int = 0
    skipped_steps: int = 0
    tokens_seen: int = 0
    samples_seen: int = 0
    window: dict[str, float] = field(default_factory=dict)

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.run.output_dir)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str:
        return backend_name(self.plan.zero_stage)


# ----------------------------------------------------------------------------- setup


def _derived_seed(seed: int, rank: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, rank, stream]).generate_state(1)[0])


def _device(distributed: bool, local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank if distributed else 0)
    return torch.device("cpu")


def _resolved_deepspeed(plan: TrainPlan, world: int, precision: eng.Precision, device: torch.device):
    if plan.deepspeed_config is None:
        return None
    return eng.resolve_deepspeed_config(
        plan.deepspeed_config,
        plan.cfg,
        plan.micro_batch_size,
        plan.accumulation,
        world,
        plan.grn_config.hidden_size,
        precision,
        device.type == "cuda",
    )


def _build_stream(plan: TrainPlan, model, visual_tokenizer, rank: int, world: int) -> BatchStream:
    cfg = plan.cfg
    mixture = DataMixture(
        plan.sources,
        plan.weights,
        seed=cfg.run.seed,
        rank=rank,
        world_size=world,
        max_consecutive_skips=cfg.data.max_consecutive_skips,
        group_size=cfg.data.batch_size if cfg.data.group_by_source else 1,
    )
    return BatchStream(
        mixture,
        GRNCollator.from_model(model, seed=_derived_seed(cfg.run.seed, rank, 1)),
        visual_tokenizer,
        plan.micro_batch_size,
        cfg.data.i2v_share,
        cfg.run.seed,
        class_token_id=model.vocab.class_token_id,
        eos_token_id=model.text_tokenizer.eos_token_id,
    )


def setup_trainer(plan: TrainPlan, distributed: bool = False, local_rank: int = 0) -> Trainer:
    """Model, optimizer / engine, data stream and generators of this rank (seeded)."""
    cfg = plan.cfg
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if world != plan.world_size:
        raise RuntimeError(f"the plan was made for {plan.world_size} processes, the group has {world}")
    device = _device(distributed, local_rank)
    precision = eng.choose_precision(cfg.run.precision, device)
    ds_config = _resolved_deepspeed(plan, world, precision, device)
    visual_tokenizer = plan.visual_tokenizer.to(device)
    zero3 = ds_config if plan.zero_stage == 3 else None
    attn = cfg.model.attn_implementation or _default_attn()
    model = eng.build_model(cfg, visual_tokenizer, attn, zero3, rank)
    groups = eng.param_groups(model, cfg.optim, cfg.model.backbone_lr)
    engine = None
    if ds_config is not None:
        engine, optimizer, scheduler = eng.deepspeed_initialize(
            model, groups, ds_config, cfg.optim, cfg.run.max_steps
        )
        logger.info("DeepSpeed ZeRO-%d engine, %d process(es)", plan.zero_stage, world)
    else:
        model = model.to(device)
        optimizer, scheduler = eng.build_optimizer(model, groups, cfg.optim, cfg.run.max_steps)
    ema = eng.EMA(model, cfg.optim.ema_decay) if cfg.optim.ema_decay is not None and rank == 0 else None
    stream = _build_stream(plan, model, visual_tokenizer, rank, world)
    generator = torch.Generator().manual_seed(_derived_seed(cfg.run.seed, rank, 2))
    tr = Trainer(cfg, plan, model, optimizer, scheduler, stream, generator, device, precision)
    tr.engine, tr.ema, tr.rank, tr.world, tr.distributed = engine, ema, rank, world, distributed
    if ds_config is not None and tr.is_main:
        _write_json(tr.out_dir / "deepspeed.json", ds_config)
    return tr


def _default_attn() -> str:
    from unified_grn.utils.import_utils import default_attn_implementation

    return default_attn_implementation()


def _write_json(path: Path, data: dict) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


# ----------------------------------------------------------------------------- the step


def _all_finite(tr: Trainer, loss: torch.Tensor) -> bool:
    flag = torch.isfinite(loss.detach()).float().reshape(1).cpu()
    if tr.distributed:
        flag = flag.to(tr.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def _forward(tr: Trainer, tb: TrainBatch):
    batch = tb.batch.to(tr.device)
    kwargs = batch.as_dict()
    module = tr.engine if tr.engine is not None else tr.model
    pt_laws = block_pt_laws(tr.model.config, batch, tb.tasks)
    if bool(tb.clean_first.any()) or pt_laws is not None:
        inputs, kept = corrupt_for_training(
            tr.model.config, tr.model.vocab, batch, tb.clean_first.to(tr.device), tr.generator, pt_laws
        )
        kwargs.update(visual_inputs=inputs, kept_fraction=kept)
    autocast = tr.engine is None and tr.precision.bf16
    with torch.autocast(tr.device.type, dtype=torch.bfloat16, enabled=autocast):
        return module(**kwargs, generator=tr.generator)


def _record(tr: Trainer, out, tb: TrainBatch) -> None:
    w = tr.window
    for key in ("loss", "visual_loss", "text_loss"):
        value = getattr(out, key)
        if value is not None:
            w[f"{key}_sum"] = w.get(f"{key}_sum", 0.0) + float(value.detach())
            w[f"{key}_n"] = w.get(f"{key}_n", 0.0) + 1.0
    w["tokens"] = w.get("tokens", 0.0) + tb.num_tokens
    w["samples"] = w.get("samples", 0.0) + tb.batch.input_ids.shape[0]


def _optimizer_step(tr: Trainer) -> float | None:
    """Clip, update, schedule (plain; DeepSpeed did it in ``engine.step``). Returns the grad norm."""
    if tr.engine is not None:
        norm = tr.engine.get_global_grad_norm()
        return None if norm is None else float(norm)
    params = [p for p in tr.model.parameters() if p.requires_grad]
    clip = tr.cfg.optim.grad_clip if tr.cfg.optim.grad_clip > 0 else math.inf
    norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
    if math.isfinite(norm):
        tr.optimizer.step()
        tr.scheduler.step()
    tr.optimizer.zero_grad(set_to_none=True)
    return norm


def train_step(tr: Trainer) -> None:
    """One optimizer step (``accumulation`` good micro-batches); skips non-finite ones."""
    tr.window["lr"] = tr.scheduler.get_last_lr()[0]  # the lr this step uses (logged with its row)
    done = 0
    while done < tr.plan.accumulation:
        tb = tr.stream.next_batch()
        out = _forward(tr, tb)
        if not _all_finite(tr, out.loss):
            _skip(tr, tb)
            continue
        tr.nan_streak = 0
        if tr.engine is not None:
            tr.engine.backward(out.loss)
            tr.engine.step()
        else:
            (out.loss / tr.plan.accumulation).backward()
        done += 1
        _record(tr, out, tb)
    norm = _optimizer_step(tr)
    if norm is not None:
        tr.window["grad_norm"] = norm
    if tr.ema is not None:
        tr.ema.update(tr.model)
    tr.step += 1


def _skip(tr: Trainer, tb: TrainBatch) -> None:
    tr.nan_streak += 1
    tr.skipped_steps += 1
    logger.warning(
        "non-finite loss at step %d (tasks %s): micro-batch skipped (%d in a row, limit %d)",
        tr.step + 1,
        tb.tasks,
        tr.nan_streak,
        tr.cfg.run.max_nan_steps,
    )
    if tr.nan_streak >= tr.cfg.run.max_nan_steps:
        raise NonFiniteLossError(
            f"{tr.nan_streak} non-finite losses in a row at step {tr.step + 1}: training stopped. The "
            f"weights are those of step {tr.step} (skipped batches never updated them). Lower optim.lr, "
            "raise optim.warmup_steps or check the data, then continue with --resume."
        )


# ----------------------------------------------------------------------------- logging


def _log_row(tr: Trainer) -> dict[str, Any] | None:
    """Averages over the window (all ranks), rates, counters; resets the window. Collective."""
    w, keys = tr.window, ["loss", "visual_loss", "text_loss"]
    values = [w.get(f"{k}_{s}", 0.0) for k in keys for s in ("sum", "n")]
    values += [w.get("tokens", 0.0), w.get("samples", 0.0)]
    totals = torch.tensor(values, dtype=torch.float64)
    if tr.distributed:
        totals = totals.to(tr.device)
        dist.all_reduce(totals)
        totals = totals.cpu()
    t = totals.tolist()
    row: dict[str, Any] = {"step": tr.step}
    for i, key in enumerate(keys):
        row[key] = t[2 * i] / t[2 * i + 1] if t[2 * i + 1] else None
    tr.tokens_seen += int(t[6])
    row["lr"] = w.get("lr", tr.scheduler.get_last_lr()[0])
    row["grad_norm"] = w.get("grad_norm")
    elapsed = w.get("time", 0.0)  # this rank's time in train_step since the last row
    row["tokens_per_s"] = t[6] / elapsed if elapsed > 0 else None
    tr.samples_seen = tr.step * tr.cfg.data.batch_size  # exact: every step has batch_size samples
    row.update(samples=tr.samples_seen, tokens=tr.tokens_seen, skipped_steps=tr.skipped_steps)
    row["peak_memory_mb"] = peak_memory_mb(tr.device)
    row.update(tr.stream.counters())
    tr.window = {}
    return row if tr.is_main else None


def _should_log(tr: Trainer) -> bool:
    return tr.step % tr.cfg.run.log_every == 0 or tr.step == 1 or tr.step == tr.cfg.run.max_steps


# ----------------------------------------------------------------------------- the run


def train(tr: Trainer, writer: MetricsWriter) -> None:
    """Step to ``run.max_steps``; checkpoint every ``run.checkpoint_every`` steps and at the end."""
    run = tr.cfg.run
    bar = tqdm(total=run.max_steps, initial=tr.step, disable=not (run.progress and tr.is_main), desc="train")
    saved_at = tr.step
    try:
        while tr.step < run.max_steps:
            start = time.perf_counter()
            train_step(tr)
            tr.window["time"] = tr.window.get("time", 0.0) + time.perf_counter() - start
            bar.update(1)
            if _should_log(tr):
                row = _log_row(tr)
                if row is not None:
                    writer.write(row)
                    bar.set_postfix(
                        loss=f"{row['loss']:.4f}" if row["loss"] is not None else "-", refresh=False
                    )
            if run.checkpoint_every and tr.step % run.checkpoint_every == 0:
                save_checkpoint(tr)
                saved_at = tr.step
    except NonFiniteLossError as err:
        path = save_checkpoint(tr)
        raise NonFiniteLossError(f"{err} Checkpoint: {path}") from None
    finally:
        bar.close()
    if saved_at != tr.step:
        save_checkpoint(tr)


def _write_run_files(tr: Trainer) -> None:
    """``config.yaml`` and ``model/`` (config + tokenizers, no weights) on rank 0."""
    tr.out_dir.mkdir(parents=True, exist_ok=True)
    save_config(tr.cfg, tr.out_dir / "config.yaml")
    folder = tr.out_dir / "model"
    tr.model.config.save_pretrained(folder)
    save_extras(tr.model, folder)


def run_training(
    plan: TrainPlan, distributed: bool = False, local_rank: int = 0, resume: bool = False
) -> Trainer:
    """Set up, optionally resume, train and (``run.export_final``) export ``final/``. Returns the trainer."""
    tr = setup_trainer(plan, distributed, local_rank)
    if tr.is_main:
        _write_run_files(tr)
    checkpoint = latest_checkpoint(tr.out_dir) if resume else None
    if resume and checkpoint is None:
        logger.warning("--resume: no checkpoint in %s; starting from step 0", tr.out_dir)
    if checkpoint is not None:
        load_checkpoint(tr, checkpoint)
    writer = MetricsWriter(tr.out_dir, tr.cfg, enabled=tr.is_main, resume_step=tr.step if resume else None)
    try:
        train(tr, writer)
    finally:
        writer.close()
    if tr.cfg.run.export_final:
        if tr.is_main:
            from unified_grn.training.export import export_checkpoint

            export_checkpoint(tr.out_dir, tr.out_dir / "final")
        if tr.distributed:
            dist.barrier()
    return tr
