"""``scripts/reproduce_paper.py``: the quick profile runs every row end to end, writes a valid table
(only between its markers), resumes instead of redoing finished work, and lists missing rows as pending."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from _reproduce_paper_plan import DATASETS, PROFILES, all_rows  # noqa: E402
from _reproduce_paper_table import BEGIN, END, SECTIONS, render, write_section  # noqa: E402
from _reproduce_paper_units import Attempts  # noqa: E402

from unified_grn.data.real import find_fashion_mnist  # noqa: E402

HAS_FMNIST = find_fashion_mnist() is not None and (ROOT / "data" / "fashion-mnist" / "train").is_dir()


def _run(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "scripts/reproduce_paper.py", "--profile", "quick", "--out-dir", str(tmp / "out"),
        "--results", str(tmp / "RESULTS.md"), "--figures-dir", str(tmp / "fig"), *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_quick_profile_end_to_end_and_resume(tmp_path):
    (tmp_path / "RESULTS.md").write_text("# Results\n\nkept above\n")
    _run(tmp_path)
    out, rows = tmp_path / "out", all_rows()
    for name, row in rows.items():
        if row.dataset == "fmnist" and not HAS_FMNIST:
            assert "Fashion-MNIST absent" in (out / name / "skipped.txt").read_text()
            continue
        result = json.loads((out / name / "result.json").read_text())
        assert result["profile"] == "quick" and result.get("wall_time_s", 0) >= 0
    refine = json.loads((out / "shapes_refine" / "result.json").read_text())
    assert refine["n"] == PROFILES["quick"].n_eval and refine["grid_points"] == 2
    assert 0.0 <= refine["metrics"]["accuracy"] <= 1.0 and refine["mean_steps"] == PROFILES["quick"].num_steps
    mask = json.loads((out / "shapes_mask_equal" / "result.json").read_text())
    assert mask["setting"] == {**refine["setting"], "refine_mode": "mask"}
    entropy = json.loads((out / "shapes_entropy_k600" / "result.json").read_text())
    assert entropy["setting"]["schedule"] == "entropy" and entropy["setting"]["entropy_k"] == 600.0
    assert sum(entropy["steps_hist"].values()) == entropy["n"]
    assert Image.open(tmp_path / "fig" / "reproduce_paper_fig9_shapes.png").size == (640, 360)
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.startswith("# Results\n\nkept above\n") and text.count(BEGIN) == 1 and text.count(END) == 1
    assert "quick profile, not a result" in text and "pending" not in text
    assert "FID 185.62, IS 4.3" in text  # the paper's number beside ours (Table 7, Mask at equal settings)

    # Rerun: every unit is complete, nothing is redone; a lost model record resumes its checkpoint.
    stamps = {p: p.stat().st_mtime for p in out.glob("*/result.json")}
    (out / "shapes_confidence" / "result.json").unlink()
    (out / "models" / "shapes_bit" / "train.json").unlink()
    proc = _run(tmp_path, "--only", "shapes_refine,shapes_confidence")
    assert "=== shapes_refine" not in proc.stderr and "=== shapes_confidence" in proc.stderr
    assert "--resume" in json.loads((out / "models" / "shapes_bit" / "train.json").read_text())["command"]
    assert all(p.stat().st_mtime == t for p, t in stamps.items() if p.exists() and "confidence" not in str(p))
    assert (out / "shapes_confidence" / "result.json").exists()


def test_table_lists_every_row_as_pending_before_anything_ran(tmp_path):
    profile, rows = PROFILES["full"], all_rows()
    text = render(rows, tmp_path, profile, "python scripts/reproduce_paper.py", tmp_path / "RESULTS.md")
    assert text.startswith(BEGIN) and text.endswith(END)
    for name in rows:
        if name != "hbq_rounds":
            assert f"`{name}`" in text
    entries = sum(len(kinds) for _, kinds in SECTIONS) * len(DATASETS)  # a row may answer several tables
    assert text.count("| pending |") == entries + 4  # + the four trained models
    assert "Row `hbq_rounds`: pending." in text and "not a result" not in text


def test_write_section_replaces_only_between_markers(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_section(f"{BEGIN}\nfirst\n{END}", path)
    path.write_text(path.read_text() + "\n## Later section\n\nkept\n")
    write_section(f"{BEGIN}\nsecond\n{END}", path)
    text = path.read_text()
    assert "second" in text and "first" not in text and text.endswith("## Later section\n\nkept\n")


def test_attempts_count_an_interrupted_attempt_up_to_its_last_progress(tmp_path):
    attempts = Attempts(tmp_path)
    attempts.path.write_text(json.dumps([{"start": 100.0, "end": 130.0}, {"start": 200.0, "end": None}]))
    assert attempts.total() == 30.0
    assert attempts.total(last_progress=250.0) == 80.0
    attempts.start(last_progress=240.0)  # resuming closes the interrupted attempt at its last checkpoint
    assert 70.0 <= attempts.finish() < 75.0  # 30 s + 40 s + the (instant) new attempt
    old = [{"start": 0.0, "end": None}, {"start": 10.0, "end": 15.0}]  # never closed: up to the next start
    attempts.path.write_text(json.dumps(old))
    assert attempts.total() == 15.0
