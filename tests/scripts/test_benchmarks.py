"""scripts/bench_*.py --quick, end to end: one JSON report (last stdout line = --out file) with sane values.

Speed targets are not asserted here (they are ratios read from the reports, docs/RESULTS.md); these
tests keep the benchmarks running and check what must hold on any machine: codes identical on
both sides of every equivalence, ratios that are ratios, step counts inside their bounds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(name: str, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{name}.py"), "--quick", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == json.loads(out.read_text())
    return report


@pytest.mark.slow
def test_bench_generate(tmp_path):
    r = _run("bench_generate", tmp_path, "--threads", "1")
    assert r["prefix_cache_identical"] and r["cfg_batch_identical"]
    assert (
        r["sampler_overhead"] >= 1.0 and r["backbone_calls"] == r["steps"] + 1
    )  # prompt once + a call per step
    assert 1.0 < r["prefix_cache_ceiling_measured"] and r["prefix_cache_speedup"]["median"] > 1.0
    assert r["entropy_mean_steps"] <= r["fixed_steps"]
    assert 20 <= r["entropy_mean_steps_fitted"] <= r["fixed_steps"]  # T_min = 20


def test_bench_hbq(tmp_path):
    r = _run("bench_hbq", tmp_path, "--threads", "1")
    assert 0 < r["hbq_copy_fraction"] < 10 and r["encode_images_per_s"] > 0 and r["decode_images_per_s"] > 0


@pytest.mark.slow
def test_bench_model(tmp_path):
    r = _run("bench_model", tmp_path)
    assert set(r["train_step_vs_backbone"]) == {"GRN-tiny", "GRN-shapes"}
    assert all(v > 0 for v in r["train_step_vs_backbone"].values())
    for preset, mem in r["peak_memory_mb"].items():
        assert mem["grn"] > 0 and mem["backbone"] > 0, preset


@pytest.mark.slow
def test_bench_train(tmp_path):
    r = _run("bench_train", tmp_path)
    assert r["train_step_vs_backbone"] > 0 and r["train_step_s"]
    assert set(r["backends"]) == {"plain", "zero2", "zero3"}
    for name, b in r["backends"].items():  # every backend trained: finite loss, tokens flowed
        assert b["tokens_per_s"] > 0 and 0 < b["final_loss"] < 100 and b["peak_memory_mb"] > 0, name
