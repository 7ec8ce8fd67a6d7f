"""Metrics of a training run: ``metrics.jsonl`` always; wandb / tensorboard when asked for and installed.

One JSON object per logged step (keys in :mod:`unified_grn.training.loop`). A resumed run drops
the rows after its checkpoint's step first, so the file reads as one uninterrupted run. The
optional writers are never required: a missing package is a warning, not an error.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import resource
import sys
from pathlib import Path
from typing import Any

import torch

from tokenizers_visual.train_checkpoint import atomic_write_text
from unified_grn.training.config import TrainConfig

__all__ = ["MetricsWriter", "peak_memory_mb"]

logger = logging.getLogger(__name__)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocations on a GPU, resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _truncate_after(path: Path, step: int) -> None:
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


class MetricsWriter:
    """Appends rows to ``output_dir/metrics.jsonl`` (rank 0) and mirrors them to optional loggers."""

    def __init__(
        self, out_dir: Path, cfg: TrainConfig, enabled: bool, resume_step: int | None = None
    ) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.jsonl"
        self._tb = self._wandb = None
        if not enabled:
            return
        if resume_step is not None:
            _truncate_after(self.path, resume_step)
        for name in cfg.run.report_to:
            if importlib.util.find_spec(name) is None:  # the packages are named as the choices
                logger.warning("run.report_to includes %s, which is not installed: skipping it", name)
            elif name == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(out_dir) / "tensorboard"))
            else:
                import wandb

                self._wandb = wandb.init(
                    project=os.environ.get("WANDB_PROJECT", "unified_grn"),
                    dir=str(out_dir),
                    config=dataclasses.asdict(cfg),
                    resume="allow",
                )

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        numbers = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}
        if self._tb is not None:
            for key, value in numbers.items():
                self._tb.add_scalar(key, value, row["step"])
        if self._wandb is not None:
            self._wandb.log(numbers, step=row["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
