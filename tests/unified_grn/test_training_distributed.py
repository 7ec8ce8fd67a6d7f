"""scripts/train.py under launchers (gloo on CPU): 2-process ZeRO-3, equal losses across backends, exact resume.

Tolerance of the backend comparison: per-step losses of plain PyTorch, ZeRO-2 and ZeRO-3 (one
process, same seed, fp32) agree to 1e-4 absolute over 4 steps; they start from identical weights
(one seeded init pass in every mode) and see identical data and corruption draws, so only the
order of floating-point reductions differs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from unified_grn import AutoModelForGRN
from unified_grn.cli import main as grn
from unified_grn.collator import GRNCollator, GRNSample
from unified_grn.training.checkpoint import latest_checkpoint
from unified_grn.training.export import checkpoint_state_dict

pytestmark = pytest.mark.slow
pytest.importorskip("deepspeed", reason="DeepSpeed is in the train / dev extras")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "scripts" / "train.py")
COMMON = ["--config", str(ROOT / "configs" / "train" / "tiny.yaml"), "run.progress=false"]
ENV = {
    **os.environ,
    "DS_ACCELERATOR": "cpu",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _python(*args: str) -> list[str]:
    return [sys.executable, SCRIPT, *COMMON, *args]


def _check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def _run(cmd: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _same(a, b) -> bool:
    """Nested dicts / lists of tensors and numbers, compared exactly."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _forward_loss(model) -> float:
    codes = torch.randint(0, 16, (1, 4, 4, 16), generator=torch.Generator().manual_seed(0))
    batch = GRNCollator.from_model(model, seed=0)([GRNSample.text_to_image("two red circles", codes)])
    with torch.no_grad():
        return float(model(**batch.as_dict(), generator=torch.Generator().manual_seed(0)).loss)


def test_two_process_zero3_trains_resumes_and_exports(tmp_path):
    out = tmp_path / "run"
    deepspeed = Path(sys.executable).with_name("deepspeed")
    launcher = [str(deepspeed), "--num_gpus", "2", "--master_port", str(_free_port()), SCRIPT]
    first = ["--deepspeed", "zero3", f"output_dir={out}", "max_steps=4", "run.checkpoint_every=2"]
    _check(_run([*launcher, *COMMON, *first, "run.export_final=false"]))
    step4 = latest_checkpoint(out)
    assert step4.name == "step_00000004"
    assert {p.name for p in step4.iterdir()} >= {"engine", "rank0.pt", "rank1.pt", "trainer.pt"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    torchrun += ["--master_port", str(_free_port()), SCRIPT, *COMMON, *first[:3], "max_steps=6", "--resume"]
    proc = _run(torchrun)
    _check(proc)
    assert "resumed from" in proc.stderr and "step_00000004 at step 4" in proc.stderr
    assert "terminate called" not in proc.stderr  # a rank that kept its process group died at exit
    rows = _rows(out)
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert (rows[-1]["loss"] + rows[-2]["loss"]) / 2 < rows[0]["loss"]
    assert grn(["export-checkpoint", str(out), "--out", str(tmp_path / "export")]) == 0
    model = AutoModelForGRN.from_pretrained(tmp_path / "export").eval()
    final = AutoModelForGRN.from_pretrained(out / "final").eval()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), final.state_dict().values()))
    assert _forward_loss(model) == pytest.approx(_forward_loss(final)) and _forward_loss(model) < 10
    _try_generate(model)


def test_train_main_destroys_its_process_group(tmp_path):
    """Left to interpreter teardown, gloo's threads SIGABRT a finished rank now and then.

    In a fresh interpreter: DeepSpeed keeps its groups in module state, so a second in-process
    initialisation after a destroyed group fails (a test worker may have run one already).
    """
    code = (
        "import importlib.util, sys\n"
        "import torch.distributed as dist\n"
        f"spec = importlib.util.spec_from_file_location('train_script', {SCRIPT!r})\n"
        "script = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(script)\n"
        "code = script.main(sys.argv[1:])\n"
        "print('initialized after main:', dist.is_initialized())\n"
        "script.exit_process(code, distributed=True)\n"
    )
    args = ["--deepspeed", "zero2", f"output_dir={tmp_path}", "max_steps=1", "run.export_final=false"]
    proc = _run([sys.executable, "-c", code, *COMMON, *args])
    _check(proc)
    assert "initialized after main: False" in proc.stdout
    assert [r["step"] for r in _rows(tmp_path)] == [1]


def _try_generate(model) -> None:
    """``generate`` is written concurrently (unified_grn/generation.py): call it when it exists."""
    import inspect

    generate = getattr(model, "generate", None)
    if generate is None or "modality" not in inspect.signature(generate).parameters:
        return
    out = model.generate("two red circles", modality="image", num_steps=2, seed=0, progress_bar=False)
    assert len(out.images) == 1 and out.images[0].size == (32, 32)


def test_plain_zero2_and_zero3_reach_the_same_loss_and_zero3_resumes_exactly(tmp_path):
    args = ["max_steps=4", "run.checkpoint_every=2", "run.export_final=false"]
    procs = {
        name: subprocess.Popen(
            _python(*flags, f"output_dir={tmp_path / name}", *args),
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, flags in (("zero3", ["--deepspeed", "zero3"]), ("zero2", ["--deepspeed", "zero2"]))
    }
    _check(_run(_python(f"output_dir={tmp_path / 'plain'}", *args)))
    for proc in procs.values():
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stdout[-2000:] + stderr[-6000:]
    losses = {name: [r["loss"] for r in _rows(tmp_path / name)] for name in ("plain", "zero2", "zero3")}
    assert losses["zero3"][-1] < losses["zero3"][0]
    for name in ("plain", "zero2"):
        assert losses[name] == pytest.approx(losses["zero3"], abs=1e-4), losses
    # ZeRO-3 resume: back to the step-2 checkpoint, train to 4 again: bit-identical weights.
    resumed = tmp_path / "zero3-resumed"
    shutil.copytree(tmp_path / "zero3", resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_00000004")
    (resumed / "checkpoints" / "latest").write_text("step_00000002\n")
    _check(_run(_python("--deepspeed", "zero3", f"output_dir={resumed}", *args, "--resume")))
    a, _ = checkpoint_state_dict(latest_checkpoint(tmp_path / "zero3"))
    b, _ = checkpoint_state_dict(latest_checkpoint(resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigkill_then_resume_reaches_bit_identical_weights(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    common = ["run.checkpoint_every=3", "run.export_final=false", "data.i2v_share=0.5"]
    victim = subprocess.Popen(
        _python(f"output_dir={killed}", "max_steps=500", *common),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    reference = subprocess.Popen(
        _python(f"output_dir={full}", "max_steps=8", *common),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while latest_checkpoint(killed) is None and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    k = int(latest_checkpoint(killed).name.split("_")[1])
    assert k < 8, f"the killed run got to step {k} before the kill"
    stdout, stderr = reference.communicate(timeout=240)
    assert reference.returncode == 0, stderr[-5000:]
    _check(_run(_python(f"output_dir={killed}", "max_steps=8", *common, "--resume")))
    a = torch.load(latest_checkpoint(full) / "model.pt", weights_only=True)
    b = torch.load(latest_checkpoint(killed) / "model.pt", weights_only=True)
    assert all(torch.equal(a["model"][n], b["model"][n]) for n in a["model"])
    assert _same(a["optimizer"], b["optimizer"]) and a["scheduler"] == b["scheduler"]
    assert [r["loss"] for r in _rows(full)] == [r["loss"] for r in _rows(killed)]
