"""``from_backbone`` under DeepSpeed ZeRO-3: the backbone's embedding arrives partitioned (empty on
every rank), and GRN's visual input scale (``visual_init_std``) must still be the embedding's RMS."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, LlamaConfig

from unified_grn.text_tokenizer import build_byte_tokenizer

pytestmark = pytest.mark.slow
pytest.importorskip("deepspeed", reason="DeepSpeed is in the train / dev extras")

WORKER = Path(__file__).parent / "workers" / "zero3_from_backbone.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_from_backbone_reads_the_embedding_scale_of_a_zero3_partitioned_backbone(tmp_path):
    tokenizer = build_byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    model = AutoModelForCausalLM.from_config(config)
    model.get_input_embeddings().weight.data.mul_(7.0)  # a scale no default init produces
    model.save_pretrained(tmp_path / "backbone")
    tokenizer.save_pretrained(tmp_path / "backbone")
    expected = float(model.get_input_embeddings().weight.detach().pow(2).mean().sqrt())
    out = tmp_path / "record.json"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        str(WORKER),
        str(tmp_path / "backbone"),
        str(out),
    ]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    record = json.loads(out.read_text())
    assert record["partitioned"], "the backbone was not partitioned: the test would not exercise ZeRO-3"
    assert record["finite"]
    assert record["plain_std"] == pytest.approx(expected, rel=1e-5)
    assert record["zero3_std"] == pytest.approx(expected, rel=1e-5)
    assert record["rms_of_partitioned"] == pytest.approx(expected, rel=1e-5)
