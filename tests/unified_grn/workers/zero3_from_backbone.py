"""Run under ``torchrun --nproc_per_node 2`` (gloo, CPU): ``from_backbone`` with a ZeRO-3-partitioned
backbone must read the same embedding scale as a plain load (tests/unified_grn/test_loading_zero3.py).

argv: BACKBONE_DIR OUT_JSON
"""

from __future__ import annotations

import json
import sys

import deepspeed
import deepspeed.ops
import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM
from transformers.integrations import HfDeepSpeedConfig

from tokenizers_visual.dist_utils import close_distributed, exit_process
from unified_grn import GRNForConditionalGeneration
from unified_grn.loading import embedding_rms


def main() -> None:
    backbone, out = sys.argv[1], sys.argv[2]
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # as scripts/train.py: no 100 s compile
    deepspeed.init_distributed(dist_backend="gloo")
    plain = GRNForConditionalGeneration.from_backbone(backbone, visual_tokenizer="hbq-tiny")
    zero3 = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}}
    keep = HfDeepSpeedConfig(zero3)  # noqa: F841 - transformers reads it through a weakref
    raw = (
        AutoModelForCausalLM.from_pretrained(backbone).get_input_embeddings().weight
    )  # as from_backbone loads it
    model = GRNForConditionalGeneration.from_backbone(backbone, visual_tokenizer="hbq-tiny")
    record = {
        "rank": dist.get_rank(),
        "partitioned": raw.numel() == 0 and getattr(raw, "ds_numel", 0) > 0,
        "plain_std": plain.config.visual_init_std,
        "zero3_std": model.config.visual_init_std,
        "rms_of_partitioned": embedding_rms(raw),
        "finite": bool(torch.isfinite(torch.tensor(model.config.visual_init_std))),
    }
    if dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump(record, f)
    dist.barrier()
    close_distributed()


if __name__ == "__main__":
    main()
    exit_process(0, distributed=True)  # as the trainers: no interpreter teardown under gloo
