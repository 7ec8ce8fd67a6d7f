"""``grn export-tokens`` / ``grn decode-tokens``: round trips through the CLI, exit status 2 with a
one-line error on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from tokenizers_visual.modeling_hbq import HBQTokenizer, HBQTokenizerConfig
from unified_grn.cli import main
from unified_grn.data.moving_shapes import make_moving_shapes_example, read_video, write_video
from unified_grn.data.shapes import write_shapes_dataset

ROOT = Path(__file__).resolve().parents[2]


def _save_hbq(path: Path, seed: int = 0, **overrides) -> Path:
    torch.manual_seed(seed)
    HBQTokenizer(HBQTokenizerConfig.from_preset("hbq-tiny", **overrides)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """An HBQ tokenizer, a GRN-style model folder around it, a BPE tokenizer, and 2 images + 1 video."""
    root = tmp_path_factory.mktemp("cli_export")
    hbq = _save_hbq(root / "hbq")
    _save_hbq(root / "grn" / "visual_tokenizer")
    (root / "grn" / "config.json").write_text(json.dumps({"model_type": "grn"}))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=280, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["a red circle", "two blue squares"] * 4, trainer=trainer)
    PreTrainedTokenizerFast(tokenizer_object=bpe).save_pretrained(root / "llm")
    write_shapes_dataset(root / "media", 2, seed=0, size=32)
    write_video(make_moving_shapes_example(0, 0, 32, 5)["video"], root / "media" / "clip.mp4")
    return {"root": root, "hbq": hbq, "grn": root / "grn", "llm": root / "llm", "media": root / "media"}


def test_export_and_decode_round_trip(setup, tmp_path, capsys):
    out = tmp_path / "tokens"
    args = ["export-tokens", str(setup["media"]), "--out", str(out), "--model", str(setup["grn"])]
    llm = ["--llm-tokenizer", str(setup["llm"]), "--bits-per-token", "4"]
    assert main([*args, *llm, "--batch-size", "2", "--quiet"]) == 0
    assert (
        "exported 2 images + 1 videos (0 unreadable skipped); LLM token ids (4 bits/token)"
        in capsys.readouterr().out
    )
    assert (out / "llm_tokenizer" / "visual_token_layout.json").is_file()
    decode = ["decode-tokens", str(out), "--model", str(setup["hbq"]), "--quiet"]
    assert main([*decode, "--out", str(tmp_path / "a")]) == 0
    assert "decoded 3 items from codes" in capsys.readouterr().out
    assert (
        main([*decode, "--out", str(tmp_path / "b"), "--ids-column", "input_ids", "--video-format", "gif"])
        == 0
    )
    assert "from token ids (input_ids)" in capsys.readouterr().out
    a, b = sorted((tmp_path / "a").iterdir()), sorted((tmp_path / "b").iterdir())
    assert [p.suffix for p in a] == [".mp4", ".png", ".png"] and [p.suffix for p in b] == [
        ".gif",
        ".png",
        ".png",
    ]
    for x, y in zip(a[1:], b[1:]):  # codes and token ids decode to the same pixels
        assert np.array_equal(np.asarray(Image.open(x)), np.asarray(Image.open(y)))
    assert read_video(a[0]).shape == (5, 32, 32, 3)
    assert main([*args, "--size", "16x24", "--overwrite", "--quiet"]) == 0  # codes only, resized
    capsys.readouterr()
    manifest = json.loads((out / "visual_tokens.json").read_text())
    assert manifest["size"] == [16, 24] and manifest["llm"] is None


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


def test_bad_input_exits_2_with_one_line(setup, tmp_path, capsys):
    base = ["--out", str(tmp_path / "o"), "--model", str(setup["hbq"])]
    cases = [
        (["export-tokens", str(tmp_path / "missing"), *base], "is not a folder"),
        (["export-tokens", str(setup["media"]), *base, "--bits-per-token", "8"], "needs --llm-tokenizer"),
        (["export-tokens", str(setup["media"]), *base, "--bits-per-token", "5"], "invalid choice"),
        (
            ["export-tokens", str(setup["media"]), *base, "--llm-tokenizer", str(tmp_path)],
            "could not load an HF tokenizer",
        ),
        (
            ["export-tokens", str(setup["media"]), "--out", str(tmp_path / "o"), "--model", str(tmp_path)],
            "neither an HBQ",
        ),
        (["export-tokens", str(setup["media"]), *base, "--size", "20"], "spatial stride 8"),
        (["export-tokens", str(setup["media"]), *base, "--size", "axb"], "expected a whole number"),
        (["decode-tokens", str(setup["media"]), *base], "not an export folder"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in _error(capsys), argv


def test_incompatible_tokenizers_exit_2(setup, tmp_path, capsys):
    odd = _save_hbq(tmp_path / "odd", latent_channels=3)  # C*M = 12: only 4 bits per token fit
    args = ["export-tokens", str(setup["media"]), "--out", str(tmp_path / "o"), "--model", str(odd)]
    assert main([*args, "--llm-tokenizer", str(setup["llm"]), "--bits-per-token", "8", "--quiet"]) == 2
    assert "C*M = 3*4 = 12 bits" in _error(capsys) and not (tmp_path / "o").exists()
    out = tmp_path / "tokens"
    export = [
        "export-tokens",
        str(setup["media"]),
        "--out",
        str(out),
        "--model",
        str(setup["hbq"]),
        "--quiet",
    ]
    assert main(export) == 0 and main(export) == 2
    assert "--overwrite" in _error(capsys)
    other = _save_hbq(tmp_path / "other", seed=3)
    decode = ["decode-tokens", str(out), "--out", str(tmp_path / "d"), "--quiet"]
    assert main([*decode, "--model", str(odd)]) == 2
    assert "C=16, M=4" in (line := _error(capsys)) and "C=3, M=4" in line and str(odd) in line
    assert main([*decode, "--model", str(other)]) == 2
    assert "other weights" in _error(capsys)
    assert main([*decode, "--model", str(setup["hbq"]), "--ids-column", "input_ids"]) == 2
    assert "no 'input_ids' column" in _error(capsys)
    assert main([*decode, "--model", str(setup["hbq"]), "--llm-tokenizer", str(setup["llm"])]) == 2
    assert "needs --ids-column" in _error(capsys)


def test_module_entry_point_reports_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "unified_grn.cli",
        "decode-tokens",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
    ]
    proc = subprocess.run([*cmd, "--model", str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"grn decode-tokens: error: {tmp_path} is neither an HBQ tokenizer folder (config.json with model_type "
        f"'hbq_tokenizer') nor a GRN model folder with visual_tokenizer/."
    ]
