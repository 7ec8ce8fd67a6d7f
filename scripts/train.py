"""Train a unified GRN model: one entry point for every way of launching it.

    deepspeed scripts/train.py --config configs/train/NAME.yaml --deepspeed configs/deepspeed/zero3.json
    deepspeed --num_gpus 2 scripts/train.py ...         # CPU machines: --num_gpus N starts N processes
    torchrun --nproc_per_node 2 scripts/train.py --config ... --deepspeed zero2
    python scripts/train.py --config ...                  # one process, plain PyTorch (debugging)
    python scripts/train.py --deepspeed zero3 ...         # one process with a DeepSpeed engine
    deepspeed scripts/train.py                            # the embedded default: GRN-tiny, procedural data

``--deepspeed`` takes a JSON path or a name in ``configs/deepspeed/`` (``zero2``, ``zero3``,
``zero3_offload``); under a launcher without one, ZeRO-3 is used. Overrides are ``key=value``
(``optim.lr=1e-3``), with the aliases ``max_steps=N``, ``output_dir=DIR``, ``seed=S``. ``--resume``
continues from ``output_dir/checkpoints/latest`` (bit-identical at the same world size).

Exit status: 0 done; 2 config error (reported before any process group starts); 3 stopped after
``run.max_nan_steps`` non-finite losses in a row (a checkpoint was saved).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import warnings
from pathlib import Path

import torch

from tokenizers_visual.dist_utils import close_distributed, exit_process
from unified_grn.training import (
    ConfigError,
    NonFiniteLossError,
    load_train_config,
    plan_run,
    read_deepspeed_config,
    run_training,
)
from unified_grn.training.checkpoint import backend_name, check_resume

logger = logging.getLogger("train")
DEEPSPEED_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "deepspeed"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/train.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML (configs/train/*.yaml); default: GRN-tiny on procedural data")
    parser.add_argument("--deepspeed", help="DeepSpeed JSON path or zero2 / zero3 / zero3_offload")
    parser.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoints/latest")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. max_steps=5 optim.lr=1e-3")
    return parser.parse_intermixed_args(argv)


def deepspeed_path(name: str | None, launched: bool) -> Path | None:
    """The DeepSpeed JSON to use: a path, a name in configs/deepspeed/, ZeRO-3 under a launcher, or None."""
    if name is None:
        return DEEPSPEED_CONFIGS / "zero3.json" if launched else None
    named = DEEPSPEED_CONFIGS / f"{name}.json"
    return named if not name.endswith(".json") and named.is_file() else Path(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(launched: bool) -> int:
    """Start the process group (the only call of ``deepspeed.init_distributed``); returns the local rank.

    Without a launcher it is a group of one on a free local port. On CPU the shared-memory comm
    op, which would compile for about 100 s, is left off: gloo does the work.
    """
    import deepspeed
    import deepspeed.ops

    if not launched:
        env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0", "WORLD_SIZE": "1"}
        for key, value in {**env, "LOCAL_RANK": "0"}.items():
            os.environ.setdefault(key, value)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    else:
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
    return local_rank


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "datasets", "DeepSpeed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # DeepSpeed 0.19 calls collectives torch 2.13 renamed: one warning per call, every step.
    warnings.filterwarnings(
        "ignore", message=r".*torch\.distributed\.\w+` is deprecated", category=FutureWarning
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _setup_logging()
    launched = args.local_rank is not None or "LOCAL_RANK" in os.environ
    world = int(os.environ.get("WORLD_SIZE", "1")) if launched else 1
    rank = int(os.environ.get("RANK", "0")) if launched else 0
    if rank != 0:  # one voice in the log
        logging.getLogger().setLevel(logging.WARNING)
    try:
        cfg = load_train_config(args.config, args.overrides)
        ds_path = deepspeed_path(args.deepspeed or cfg.run.deepspeed, launched)
        ds_config = read_deepspeed_config(ds_path) if ds_path is not None else None
        plan = plan_run(cfg, world, ds_config)
        if args.resume:
            check_resume(cfg.run.output_dir, world, backend_name(plan.zero_stage))
    except ConfigError as err:
        logger.error("config error: %s", err)
        return 2
    logger.info(
        "%s, %d process(es), batch %d = micro %d x accumulation %d x world %d, %s",
        cfg.model.init_from or cfg.model.backbone or cfg.model.preset,
        world,
        cfg.data.batch_size,
        plan.micro_batch_size,
        plan.accumulation,
        world,
        f"DeepSpeed {ds_path}" if ds_path is not None else "plain PyTorch",
    )
    local_rank = init_distributed(launched) if ds_config is not None else 0
    try:
        tr = run_training(plan, distributed=ds_config is not None, local_rank=local_rank, resume=args.resume)
    except NonFiniteLossError as err:
        logger.error("%s", err)
        return 3
    finally:
        close_distributed()
    if tr.is_main:
        logger.info("done: %d steps in %s", tr.step, tr.out_dir)
    return 0


if __name__ == "__main__":
    exit_process(main(), distributed="WORLD_SIZE" in os.environ)  # set by launchers and init_distributed
