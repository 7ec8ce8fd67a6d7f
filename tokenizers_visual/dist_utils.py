"""Process-group teardown for the trainers (``tokenizers_visual.train`` and ``scripts/train.py``).

Left to interpreter teardown, a gloo process group can kill a rank whose work is done: its worker
threads still hold ``Work`` objects (with tensors) from asynchronous collectives, ZeRO-3's parameter
gathers among them, and destroying those while the interpreter finalises aborts the process
("terminate called without an active exception", SIGABRT; pytorch/pytorch#190489). A launcher then
reports the finished run as failed. The trainers therefore destroy the group themselves and, after a
distributed run, leave without interpreter finalisation once every log line is flushed.
"""

from __future__ import annotations

import logging
import os
import sys

import torch.distributed as dist

__all__ = ["close_distributed", "exit_process"]


def close_distributed() -> bool:
    """Destroy the default process group if there is one; returns whether there was."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.destroy_process_group()
    return True


def exit_process(code: int, distributed: bool) -> None:
    """``sys.exit(code)``; after a distributed run, flush the logs and streams and ``os._exit`` instead.

    Everything the run writes (checkpoints, metrics, the export) is closed before this is called, so
    skipping the interpreter's finalisation loses nothing but the chance to abort in it.
    """
    if not distributed:
        sys.exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
