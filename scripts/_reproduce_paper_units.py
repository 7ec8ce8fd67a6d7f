"""The units of work of ``scripts/reproduce_paper.py``: tokenizers, trained models, measured rows.

Every unit lives in a folder under the output directory and is *complete* when its JSON record
exists (``train.json`` for a model, ``result.json`` for a row). Incomplete training resumes from
its last checkpoint (``scripts/train.py --resume``); the wall time of every attempt is kept in
``attempts.json`` (an interrupted attempt counts up to its last checkpoint), so the reported time
of a unit is what it cost in total.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _reproduce_paper_eval import (
    EVAL_SEED,
    base_setting,
    fit_entropy,
    histogram_png,
    reference,
    sample,
    score,
    tune,
)
from _reproduce_paper_plan import DATASETS, ENTROPY_KS, Dataset, Profile, Row

__all__ = ["Attempts", "ensure_model", "ensure_tokenizer", "run_decoding_row", "run_hbq_row", "run_cmd"]

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("reproduce_paper")


class Attempts:
    """Wall-clock bookkeeping of a unit over interruptions (``attempts.json`` in its folder)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "attempts.json"
        folder.mkdir(parents=True, exist_ok=True)

    def _load(self) -> list[dict]:
        return json.loads(self.path.read_text()) if self.path.exists() else []

    def start(self, last_progress: float | None = None) -> None:
        """Open an attempt; an interrupted one before it is closed at ``last_progress`` (the mtime
        of what it left, e.g. its last checkpoint) when given."""
        attempts = self._load()
        if attempts and attempts[-1]["end"] is None and last_progress is not None:
            attempts[-1]["end"] = max(last_progress, attempts[-1]["start"])
        self.path.write_text(json.dumps([*attempts, {"start": time.time(), "end": None}]))

    def finish(self) -> float:
        attempts = self._load()
        attempts[-1]["end"] = time.time()
        self.path.write_text(json.dumps(attempts))
        return self.total()

    def total(self, last_progress: float | None = None) -> float:
        """Seconds over all attempts. An interrupted attempt ends where it was closed, else at the
        next attempt's start (an upper bound); the running or last one at ``last_progress``."""
        attempts = self._load()
        seconds = 0.0
        for i, a in enumerate(attempts):
            end = a["end"]
            if end is None:
                end = attempts[i + 1]["start"] if i + 1 < len(attempts) else last_progress
            if end is not None and end > a["start"]:
                seconds += end - a["start"]
        return round(seconds, 1)


def run_cmd(args: list[str]) -> None:
    """Run ``python ARGS`` in the repository root with one OpenMP thread; raise on failure."""
    cmd = [sys.executable, *args]
    logger.info("$ %s", shlex.join(cmd))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)


def ensure_tokenizer(ds: Dataset, profile: Profile) -> str | None:
    """The trained tokenizer folder of ``ds`` (full profile; trained if missing), or None (quick:
    an untrained ``hbq-tiny``, the pipeline only)."""
    if profile.name == "quick":
        return None
    for candidate in ds.tokenizer_candidates:
        if (ROOT / candidate / "config.json").exists():
            return candidate
    if not ds.tokenizer_fallback:
        raise FileNotFoundError(f"no tokenizer for {ds.name}: run the hbq_rounds row first")
    run_cmd(ds.tokenizer_fallback)
    return ds.tokenizer_candidates[-1]


def _last_checkpoint_mtime(folder: Path) -> float | None:
    ckpts = sorted((folder / "checkpoints").glob("step_*"))
    return ckpts[-1].stat().st_mtime if ckpts else None


def model_status(folder: Path) -> dict:
    """``train.json`` of a finished model, else what an interrupted run reached so far."""
    if (folder / "train.json").exists():
        return {"status": "done", **json.loads((folder / "train.json").read_text())}
    mtime = _last_checkpoint_mtime(folder)
    if mtime is None:
        return {"status": "pending"}
    step = int(sorted((folder / "checkpoints").glob("step_*"))[-1].name.split("_")[1])
    return {"status": "partial", "step": step, "wall_time_s": Attempts(folder).total(mtime)}


def data_source(ds: Dataset, profile: Profile, out_dir: Path) -> dict:
    """The training source of ``ds``; a profile with ``fmnist_limit`` trains on a small written
    Fashion-MNIST folder (listing the 60k-image folder alone takes minutes)."""
    if ds.name != "fmnist" or profile.fmnist_limit is None:
        return ds.source
    from unified_grn.data.real import write_real_dataset

    folder = out_dir / "data" / f"fashion-mnist-{profile.fmnist_limit}"
    if not (folder / "source.json").exists():
        write_real_dataset("fashion-mnist", folder, limit=profile.fmnist_limit, size=32, overwrite=True)
    return {**ds.source, "path": str(folder)}


def ensure_model(name: str, out_dir: Path, profile: Profile) -> Path:
    """Train (or resume) the model ``<dataset>_<variant>``; returns its ``final/`` folder."""
    folder = out_dir / "models" / name
    if (folder / "train.json").exists():
        return folder / "final"
    ds_name, variant = name.rsplit("_", 1)
    ds = DATASETS[ds_name]
    tokenizer = ensure_tokenizer(ds, profile)
    args = [
        "scripts/train.py", "--config", "configs/train/tiny.yaml",
        f"model.overrides={{num_class_tokens: {ds.num_classes}, variant: {variant}}}",
        f"model.visual_tokenizer={tokenizer or 'null'}", f"data.sources={json.dumps([data_source(ds, profile, out_dir)])}",
        "data.i2v_share=0.0", f"data.batch_size={profile.batch_size}", "optim.lr=1.0e-3",
        f"optim.warmup_steps={min(100, profile.train_steps // 10)}", f"max_steps={profile.train_steps}",
        f"output_dir={folder}", f"run.checkpoint_every={profile.checkpoint_every}", "run.log_every=50",
        "run.progress=false", "seed=0",
    ]  # fmt: skip
    if (folder / "checkpoints" / "latest").exists():
        args.append("--resume")
    attempts = Attempts(folder)
    attempts.start(_last_checkpoint_mtime(folder))
    run_cmd(args)
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
    info = dict(
        dataset=ds_name, variant=variant, tokenizer=tokenizer, steps=profile.train_steps,
        batch_size=profile.batch_size, final_loss=rows[-1]["loss"] if rows else None,
        wall_time_s=attempts.finish(), command=shlex.join(["python", *args]),
    )  # fmt: skip
    (folder / "train.json").write_text(json.dumps(info, indent=1))
    return folder / "final"


def run_hbq_row(folder: Path, profile: Profile, data: Path) -> dict:
    """Fig. 5: ``scripts/exp_hbq_rounds.py`` (finished rounds are reused from its folder)."""
    if profile.shapes_limit is not None:
        from unified_grn.data.shapes import write_shapes_dataset

        data = folder / "data" / f"shapes-{profile.shapes_limit}"
        if not (data / "test").exists():
            write_shapes_dataset(data, profile.shapes_limit, seed=0, test_fraction=0.25, overwrite=True)
    if not (ROOT / data / "train").exists() and not any((ROOT / data).glob("*.png")):
        raise FileNotFoundError(f"{data} absent: grn make-data shapes --out {data} --n 2000 --seed 0")
    hbq_dir = ROOT / profile.hbq_dir if profile.hbq_dir else folder / "runs"
    args = [
        "scripts/exp_hbq_rounds.py", "--config", "configs/tokenizer/tiny.yaml", "--data", str(data),
        "--steps", str(profile.hbq_steps), "--rounds", profile.hbq_rounds, "--out-dir", str(hbq_dir),
        "--results", str(folder / "exp_hbq_rounds.md"),
    ]  # fmt: skip
    run_cmd(args)
    rounds = {}
    for name in [("unquantized" if r == "none" else f"M{r}") for r in profile.hbq_rounds.split(",")]:
        ev = json.loads((hbq_dir / name / "eval.json").read_text())
        wall = hbq_dir / name / "wall_time_s.txt"
        rounds[name.lstrip("M")] = dict(
            psnr=ev["image"]["psnr"], ssim=ev["image"]["ssim"],
            wall_time_s=float(wall.read_text()) if wall.exists() else None,
        )  # fmt: skip
    shown = hbq_dir.relative_to(ROOT) if hbq_dir.is_relative_to(ROOT) else hbq_dir
    return dict(rounds=rounds, steps=profile.hbq_steps, folder=str(shown))


def _setting_for(row: Row, model, profile: Profile, metric: str, folder: Path, out_dir: Path):
    """The decoding setting a row measures, and what choosing it found (grid points, entropy fit)."""
    ds = DATASETS[row.dataset]
    base = base_setting(profile)
    if row.kind in ("refine", "ind", "mask_tuned"):
        if row.kind == "mask_tuned":
            base = {**base, "refine_mode": "mask"}
        setting, points = tune(model, profile, metric, ds.num_classes, base, folder / "tune.json")
        return setting, {"grid_points": len(points)}
    refine = json.loads((out_dir / f"{row.dataset}_refine" / "result.json").read_text())["setting"]
    if row.kind == "mask_equal":
        return {**refine, "refine_mode": "mask"}, {}
    if row.kind == "confidence":
        return {**refine, "selection": "confidence"}, {}
    setting, info = fit_entropy(model, profile, ds.num_classes, refine, ENTROPY_KS[row.kind])
    return setting, {"entropy_fit": info}


def run_decoding_row(row: Row, folder: Path, out_dir: Path, profile: Profile, figures: Path) -> dict:
    """Choose the row's setting, sample ``n_eval`` images with it and score them."""
    from unified_grn import AutoModelForGRN

    ds = DATASETS[row.dataset]
    model = AutoModelForGRN.from_pretrained(str(ensure_model(row.model, out_dir, profile))).eval()
    attempts = Attempts(folder)
    tune_file = folder / "tune.json"
    attempts.start(tune_file.stat().st_mtime if tune_file.exists() else None)
    setting, found = _setting_for(row, model, profile, ds.metric, folder, out_dir)
    out = sample(model, setting, profile.n_eval, ds.num_classes, EVAL_SEED, profile.chunk)
    metrics = score(ds.metric, out["images"], out["labels"])
    ref_path = out_dir / f"reference_{ds.name}_n{profile.n_eval}.json"
    if not ref_path.exists():
        ref_path.write_text(json.dumps(reference(ds.metric, profile.n_eval)))
    steps = out["steps"]
    result = dict(
        row=row.name, kind=row.kind, dataset=ds.name, model=row.model, setting=setting, n=profile.n_eval,
        metrics=metrics, reference=json.loads(ref_path.read_text()), mean_steps=float(steps.mean()),
        steps_hist={int(s): int(c) for s, c in zip(*np.unique(steps, return_counts=True))},
        share_below_max=float((steps < profile.num_steps).mean()), **found,
    )  # fmt: skip
    if row.kind == "entropy_k600":
        title = f"steps used, {ds.name}, entropy schedule k={setting['entropy_k']:.0f} (N={len(steps)})"
        png = histogram_png(
            steps,
            profile.min_steps,
            profile.num_steps,
            title,
            figures / f"reproduce_paper_fig9_{ds.name}.png",
        )
        result["histogram"] = str(png)
    result["wall_time_s"] = attempts.finish()
    return result
