"""The README's two commands, end to end.

The test command must be exactly what ``.ci/run`` runs. The main-job command is run for real
after its install part (the test environment already has the project installed the same way):
it makes the shapes data, trains the tiny tokenizer for its minute and writes reconstructions.
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
def test_readme_main_command_runs_end_to_end(tmp_path):
    main = _readme_commands()[0]
    # drop the venv + install steps; everything after the HF_* export is the job itself
    job = main.split("export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 && ", 1)[1]
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        ["bash", "-c", job], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = tmp_path / "outputs" / "tokenizer-tiny"
    assert (out / "reconstructions.png").stat().st_size > 1000
    scores = json.loads((out / "eval.json").read_text())["image"]
    # a minute of training on 32 px shapes reconstructs well above a flat grey guess (~10 dB)
    assert scores["psnr"] > 15.0 and scores["ssim"] > 0.5, scores
    assert (out / "final" / "config.json").is_file() and (out / "final" / "model.safetensors").is_file()
