"""The README's two commands, end to end.

The test command must be exactly what ``.ci/run`` runs. The main command is run for real after
its install part (the test environment already has the project installed the same way): ``grn
demo`` on the shipped model, every section scored. The tokenizer command of "What works today"
runs too, with its minute shortened.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e "


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick_start = text.split("## Quick start", 1)[1].split("\n#", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", quick_start, flags=re.S)


def test_readme_has_exactly_two_quick_start_commands_and_ci_runs_the_second():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in c and c.startswith(INSTALL) for c in commands), "each must be one copy-paste line"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == commands[1], "keep .ci/run identical to the README's test command"


@pytest.mark.slow
def test_readme_main_command_runs_the_demo_end_to_end(tmp_path):
    main = _readme_commands()[0]
    # drop the venv + install steps; everything after the HF_* export is the job itself
    job = main.split("export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 && ", 1)[1]
    assert job == "grn demo", job
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = tmp_path / "outputs"
    proc = subprocess.run(
        ["bash", "-c", f"{job} --out {out}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "demo.json").read_text())
    assert {s["status"] for s in summary["sections"].values()} == {"ok"}, summary["sections"]
    page = (out / "index.html").read_text()
    for path in sorted(p for p in out.rglob("*") if p.suffix in (".png", ".gif", ".mp4")):
        assert path.relative_to(out).as_posix() in page, path  # the page shows every file written
    # every section is scored by its checker (the shipped model's held-out scores: MODEL_CARD.md)
    assert 0.0 <= summary["sections"]["t2i"]["report"]["overall"] <= 1.0
    assert (
        (out / "video").is_dir() and any((out / "video").glob("*.mp4")) and any((out / "video").glob("*.gif"))
    )


def test_readme_tokenizer_command_trains_and_writes_reconstructions(tmp_path):
    text = (ROOT / "README.md").read_text()
    job = next(
        line
        for line in text.splitlines()
        if line.startswith("grn make-data shapes --out data/shapes --n 2000")
    )
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    job = job.replace("run.max_time_s=60", "run.max_time_s=20")  # the README's minute, shortened
    proc = subprocess.run(
        ["bash", "-c", job], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = tmp_path / "outputs" / "tokenizer-tiny"
    assert (out / "reconstructions.png").stat().st_size > 1000
    scores = json.loads((out / "eval.json").read_text())["image"]
    # twenty seconds of training on 32 px shapes reconstructs above a flat grey guess (~10 dB)
    assert scores["psnr"] > 12.0, scores
    assert (out / "final" / "config.json").is_file() and (out / "final" / "model.safetensors").is_file()
