"""``grn make-data`` writes loadable data sets and rejects bad input with exit status 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from unified_grn.cli import main
from unified_grn.data import moving_shapes as ms
from unified_grn.data import shapes as sh

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def test_make_shapes_in_process(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert (
        main(["make-data", "shapes", "--out", str(out), "--n", "10", "--seed", "3", "--test-fraction", "0.2"])
        == 0
    )
    assert "8 train + 2 test" in capsys.readouterr().out
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), cache_dir=str(tmp_path / "cache"))
    assert ds["train"].num_rows == 8 and ds["test"].num_rows == 2
    assert ds["train"][0]["text"] == sh.make_shapes_example(3, 0)["text"]


def test_make_cell_aligned_shapes(tmp_path, capsys):
    out = tmp_path / "aligned"
    assert main(["make-data", "shapes", "--out", str(out), "--n", "6", "--seed", "3", "--cell", "8"]) == 0
    rows = [json.loads(line) for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    scenes = [sh.Scene.from_dict(json.loads(r["scene"])) for r in rows]
    assert [s.caption for s in scenes] == [sh.make_shapes_example(3, i, cell=8)["text"] for i in range(6)]
    assert all(o.cx % 8 == 4 and o.cy % 8 == 4 for s in scenes for o in s.objects)


def test_make_moving_shapes_in_process(tmp_path, capsys):
    out = tmp_path / "moving"
    args = ["make-data", "moving-shapes", "--out", str(out), "--n", "3", "--seed", "1", "--num-frames", "5"]
    assert main([*args, "--size", "32", "--quiet"]) == 0
    assert "3 train 5-frame 32x32 videos" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == [ms.make_moving_shapes_example(1, i, 32, 5)["text"] for i in range(3)]
    assert ms.read_video(out / "train" / rows[0]["file_name"]).shape == (5, 32, 32, 3)
    assert main([*args, "--quiet"]) == 2  # existing folder, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--quiet", "--overwrite"]) == 0


def test_module_entry_point_subprocess(tmp_path):
    out = tmp_path / "s"
    cmd = [
        sys.executable,
        "-m",
        "unified_grn.cli",
        "make-data",
        "shapes",
        "--out",
        str(out),
        "--n",
        "4",
        "--seed",
        "0",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("wrote shapes: 4 train")
    assert len(list((out / "train").glob("*.png"))) == 4


def test_console_script_subprocess(tmp_path):
    exe = shutil.which("grn", path=str(Path(sys.executable).parent)) or shutil.which("grn")
    if exe is None:
        pytest.skip("the `grn` console script is not installed (pip install -e . creates it)")
    out = tmp_path / "v"
    cmd = [exe, "make-data", "moving-shapes", "--out", str(out), "--n", "2", "--seed", "0", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(list((out / "train").glob("*.mp4"))) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["shapes", "--n", "0"], "must be >= 1"),
        (["shapes", "--n", "two"], "whole number"),
        (["cubes", "--n", "3"], "invalid choice"),
        (["shapes", "--n", "3", "--test-fraction", "1"], "[0, 1)"),
        (["shapes", "--n", "3", "--test-fraction", "-0.1"], "[0, 1)"),
        (["shapes", "--n", "1", "--test-fraction", "0.5"], "no room for a test split"),
        (["moving-shapes", "--n", "3", "--num-frames", "8"], "1 + 4k"),
        (["moving-shapes", "--n", "3", "--num-frames", "1"], "1 + 4k"),
        (["shapes", "--n", "3", "--num-frames", "9"], "moving-shapes only"),
        (["shapes", "--n", "3", "--size", "8"], ">= 24"),
        (["shapes", "--n", "3", "--cell", "6"], "divides the image size 64"),
        (["moving-shapes", "--n", "3", "--cell", "8"], "shapes and shapes-chat only"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path, capsys, extra, message):
    assert main(["make-data", *extra, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "usage: grn" in capsys.readouterr().err
    assert main(["--help"]) == 0
