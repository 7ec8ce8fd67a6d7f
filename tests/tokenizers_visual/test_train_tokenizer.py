"""The standalone tokenizer trainer (python -m tokenizers_visual.train) on tiny local folders."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tokenizers_visual.modeling_hbq import HBQTokenizer
from tokenizers_visual.train import main
from tokenizers_visual.train_config import ConfigError, TrainTokenizerConfig, check_config, load_config

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tokenizer" / "tiny.yaml")


def _image(rng: np.random.Generator, size: int = 32) -> Image.Image:
    arr = np.full((size, size, 3), 220, dtype=np.uint8)
    x, y = rng.integers(0, size - 12, 2)
    arr[y : y + 12, x : x + 12] = rng.integers(0, 255, 3)
    return Image.fromarray(arr)


def _write_images(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        _image(rng).save(folder / f"{i:03d}.png")
        lines.append(json.dumps({"file_name": f"{i:03d}.png", "text": "a square"}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")


def _write_video(path: Path, frames: int, seed: int, size: int = 32) -> None:
    import av

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            arr = np.asarray(_image(rng, size))
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.roll(arr, t, axis=1), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    _write_images(root / "train", 12, seed=0)
    _write_images(root / "test", 4, seed=1)
    return root


def _args(out: Path, image_dir: Path | None, *extra: str) -> list[str]:
    return [
        "--config",
        TINY,
        f"data.image_dir={image_dir}" if image_dir is not None else "data.image_dir=null",
        f"run.output_dir={out}",
        "data.resolution=16",
        "data.batch_size=4",
        "run.max_time_s=null",
        "run.progress=false",
        "run.eval_lpips=false",
        "loss.disc_start_step=1",
        "optim.warmup_steps=2",
        *extra,
    ]


def test_end_to_end_writes_every_output(tmp_path, image_dir):
    out = tmp_path / "run"
    args = _args(out, image_dir, "run.max_steps=4", "run.checkpoint_every=2", "run.eval_lpips=true")
    results = main(args)
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logs and all(np.isfinite(entry["loss/total"]) for entry in logs)
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_00000004"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step_00000004"]
    saved = json.loads((out / "eval.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["image"]["num_samples"] == 4 and np.isfinite(saved["image"]["psnr"])
    assert (
        0 < saved["image"]["lpips"]
        and saved["lpips_calibrated"] is False
        and "not comparable" in saved["lpips_note"]
    )
    grid = Image.open(out / "reconstructions.png")
    assert grid.size == (4 * 18 + 2, 2 * 16 + 6)  # 4 samples per row, originals above reconstructions
    model = HBQTokenizer.from_pretrained(out / "final")
    trained = torch.load(out / "checkpoints" / "step_00000004" / "model.pt", weights_only=True)["model"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, trained[name]), name
    again = load_config(TrainTokenizerConfig, out / "config.yaml")
    assert again.run.max_steps == 4 and again.data.resolution == 16


def test_resume_is_bit_identical(tmp_path, image_dir):
    common = ("run.checkpoint_every=100", "optim.ema_decay=0.9")
    main(_args(tmp_path / "straight", image_dir, "run.max_steps=4", *common))
    main(_args(tmp_path / "split", image_dir, "run.max_steps=2", *common))
    main([*_args(tmp_path / "split", image_dir, "run.max_steps=4", *common), "--resume"])
    for name in ("model.pt", "trainer.pt"):
        a = torch.load(tmp_path / "straight/checkpoints/step_00000004" / name, weights_only=True)
        b = torch.load(tmp_path / "split/checkpoints/step_00000004" / name, weights_only=True)
        _assert_same(a, b, name)


def _assert_same(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def test_corrupt_files_are_skipped_and_counted(tmp_path, caplog):
    root = tmp_path / "images"
    _write_images(root / "train", 6, seed=0)
    (root / "train" / "garbage.png").write_bytes(b"this is not a png")
    good = (root / "train" / "000.png").read_bytes()
    (root / "train" / "truncated.png").write_bytes(good[: len(good) // 2])
    with open(root / "train" / "metadata.jsonl", "a") as f:  # imagefolder drops files metadata does not list
        f.write(
            "".join(
                json.dumps({"file_name": n, "text": "bad"}) + "\n" for n in ("garbage.png", "truncated.png")
            )
        )
    with caplog.at_level(logging.WARNING):
        results = main(_args(tmp_path / "run", root, "run.max_steps=3", "data.test_fraction=0.25"))
    assert results["skipped_unreadable"] >= 1
    summary = [r.message for r in caplog.records if r.message.startswith("skipped ")]
    assert summary and summary[-1] == f"skipped {results['skipped_unreadable']} unreadable samples"
    assert "image" in results  # held out from train by test_fraction, since there is no test/ split


def test_joint_image_video_training_with_a_corrupt_mp4(tmp_path, image_dir, caplog):
    videos = tmp_path / "videos" / "train"
    videos.mkdir(parents=True)
    for i in range(4):
        _write_video(videos / f"{i}.mp4", frames=12, seed=i)
    _write_video(videos / "short.mp4", frames=3, seed=9)
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage")
    out = tmp_path / "run"
    args = _args(
        out, image_dir, f"data.video_dir={videos.parent}", "data.num_frames=5", "data.video_batch_size=2"
    )
    with caplog.at_level(logging.WARNING):
        results = main([*args, "run.max_steps=6", "data.image_fraction=0.5", "data.test_fraction=0.34"])
    modalities = {json.loads(line)["modality"] for line in (out / "metrics.jsonl").read_text().splitlines()}
    assert modalities <= {"image", "video"} and "video" in results and "image" in results
    assert (out / "reconstructions.gif").is_file() and (out / "reconstructions.png").is_file()
    assert Image.open(out / "reconstructions.gif").n_frames == 5
    assert any("broken.mp4" in r.message or "short.mp4" in r.message for r in caplog.records)


def test_config_overrides_are_type_checked():
    cfg = load_config(
        TrainTokenizerConfig, TINY, ["optim.lr=1e-3", "optim.betas=[0.5, 0.9]", "run.max_time_s=null"]
    )
    assert cfg.optim.lr == 1e-3 and cfg.optim.betas == [0.5, 0.9] and cfg.run.max_time_s is None
    cfg = load_config(
        TrainTokenizerConfig, TINY, ["loss.adaptive_gan_weight=false", "model.overrides.rounds=6"]
    )
    assert cfg.loss.adaptive_gan_weight is False and cfg.model.overrides == {"rounds": 6}
    with pytest.raises(ConfigError, match=r"unknown key 'optim.lrr'.*optim\.lr"):
        load_config(TrainTokenizerConfig, TINY, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"unknown key 'nope.x'.*'run'"):
        load_config(TrainTokenizerConfig, TINY, ["nope.x=1"])
    with pytest.raises(ConfigError, match=r"run\.max_steps: expected int, got 'many'"):
        load_config(TrainTokenizerConfig, TINY, ["run.max_steps=many"])
    with pytest.raises(ConfigError, match=r"run\.progress: expected bool"):
        load_config(TrainTokenizerConfig, TINY, ["run.progress=3"])
    with pytest.raises(ConfigError, match=r"run\.zero_stage: 4 is not one of \[0, 1, 2, 3\]"):
        load_config(TrainTokenizerConfig, TINY, ["run.zero_stage=4"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(TrainTokenizerConfig, TINY, ["optim.lr"])
    with pytest.raises(ConfigError, match="has no sub-keys"):
        load_config(TrainTokenizerConfig, TINY, ["optim.lr.x=1"])


def test_yaml_typos_are_caught(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"optim": {"learning_rate": 1.0}}))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['optim.learning_rate'\]; valid keys"):
        load_config(TrainTokenizerConfig, path)


def test_zero3_and_bad_sizes_are_refused():
    from tokenizers_visual.modeling_hbq import HBQTokenizerConfig

    model_cfg = HBQTokenizerConfig.from_preset("hbq-tiny")
    with pytest.raises(ConfigError, match="ZeRO-3 partitions"):
        check_config(load_config(TrainTokenizerConfig, TINY, ["run.zero_stage=3"]), model_cfg)
    with pytest.raises(ConfigError, match="multiple of the spatial stride 8"):
        check_config(load_config(TrainTokenizerConfig, TINY, ["data.resolution=20"]), model_cfg)
    with pytest.raises(ConfigError, match="1 \\+ 4k"):
        check_config(
            load_config(TrainTokenizerConfig, TINY, ["data.video_dir=x", "data.num_frames=4"]), model_cfg
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_deepspeed_zero2(tmp_path, image_dir):
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (pip install -e '.[train]')")
    out = tmp_path / "ds"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
    ]
    cmd += ["-m", "tokenizers_visual.train", *_args(out, image_dir, "run.max_steps=3", "run.zero_stage=2")]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "terminate called" not in proc.stderr  # a rank that kept its process group died at exit
    ckpt = out / "checkpoints" / "step_00000003"
    assert (ckpt / "engine").is_dir() and (ckpt / "rank0.pt").is_file() and (ckpt / "rank1.pt").is_file()
    assert json.loads((out / "eval.json").read_text())["image"]["num_samples"] == 4
    HBQTokenizer.from_pretrained(out / "final")
    shutil.rmtree(out)


def test_main_destroys_its_process_group(tmp_path, image_dir):
    """Left to interpreter teardown, gloo's threads SIGABRT a finished rank now and then (a fresh
    interpreter: DeepSpeed keeps its groups in module state across in-process runs)."""
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (pip install -e '.[train]')")
    out = tmp_path / "one-rank"
    code = (
        "import sys\n"
        "import torch.distributed as dist\n"
        "from tokenizers_visual.dist_utils import exit_process\n"
        "from tokenizers_visual.train import main\n"
        "main(sys.argv[1:])\n"
        "print('initialized after main:', dist.is_initialized())\n"
        "exit_process(0, distributed=True)\n"
    )
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0", "WORLD_SIZE": "1"}
    env = {**os.environ, **env, "LOCAL_RANK": "0", "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", code, *_args(out, image_dir, "run.max_steps=1", "run.zero_stage=2")]
    proc = subprocess.run(
        [*cmd, "--local_rank", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "initialized after main: False" in proc.stdout and (out / "final").is_dir()
