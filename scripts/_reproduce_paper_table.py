"""The ``docs/RESULTS.md`` section of ``scripts/reproduce_paper.py``: every row, done or pending.

The section is rebuilt from the units' JSON records after every unit, so the document always holds
a valid table of whatever is finished; rows not yet run are listed as pending, failed or skipped
rows with their reason. Only the text between the markers is replaced.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from _reproduce_paper_plan import DATASETS, FIG9_PAPER, HBQ_PAPER_PSNR, PAPER, Profile, Row

__all__ = ["BEGIN", "END", "render", "write_section"]

BEGIN, END = "<!-- reproduce_paper:begin -->", "<!-- reproduce_paper:end -->"
HEADING = "## The paper's ablations at toy scale (Fig. 5, Tables 6, 7, 10, 11, Fig. 9)"
SECTIONS = (  # (title, row kinds in order)
    ("Table 6: predict bits vs predict indices (each tuned by the same grid search)", ("bit", "ind")),
    ("Table 7: refine vs mask (MaskGIT-style, a chosen sub-token stays fixed)", ("refine", "mask_equal", "mask_tuned")),
    ("Table 10: random vs confidence selection (at the refine row's settings)", ("random", "confidence")),
    ("Table 11: complexity-aware (entropy) steps", ("fixed", "entropy_k400", "entropy_k600", "entropy_k800", "entropy_kfit")),
)  # fmt: skip
LABELS = {
    "bit": "GRN_bit", "ind": "GRN_ind", "refine": "Refine (tuned)", "mask_equal": "Mask, Refine's settings",
    "mask_tuned": "Mask (tuned)", "random": "Random", "confidence": "Confidence", "fixed": "fixed T steps",
    "entropy_k400": "entropy k 400", "entropy_k600": "entropy k 600", "entropy_k800": "entropy k 800",
    "entropy_kfit": "entropy k fitted",
}  # fmt: skip


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _status(folder: Path) -> str:
    for name in ("failed", "skipped"):
        if (folder / f"{name}.txt").exists():
            return f"{name}: {(folder / f'{name}.txt').read_text().strip()}"
    return "pending"


def _decoding(s: dict) -> str:
    lo, hi = s["guidance_interval"]
    text = f"CFG {s['guidance_scale']:g} [{lo:g},{hi:g}] τ {s['temperature']:g}"
    if s["schedule"] == "entropy":
        text += f", k {s['entropy_k']:.1f}, b {s['entropy_b']:.1f}"
    return text


def _metric(ds: str, res: dict) -> str:
    m = res["metrics"]
    if DATASETS[ds].metric == "accuracy":
        return f"{m['accuracy']:.3f} (colour {m['color_accuracy']:.3f}, shape {m['shape_accuracy']:.3f})"
    return f"FD_C {m['fd_c']:.2f} (class acc {m['classifier_accuracy']:.3f})"


def _reference(ds: str, out_dir: Path, n: int) -> str:
    ref = _read(out_dir / f"reference_{ds}_n{n}.json")
    if ref is None:
        return f"reference skipped: {_skipped(out_dir, ds)}" if _skipped(out_dir, ds) else "reference pending"
    if DATASETS[ds].metric == "accuracy":
        return f"real test images score {ref['accuracy']:.3f} at N = {n}"
    line = f"real train vs test FD_C at the same N = {n}: **{ref['fd_c']:.2f}**"
    others = ref.get("references") or {}
    if others:
        line += "; references at the same N: " + ", ".join(f"{k} {v:.2f}" for k, v in others.items())
    return line


#: The paper's direction of each comparison against the first row of its table (GRN-B FIDs).
PAPER_DIRECTION = {
    "ind": "better (3.56 vs 3.63; L: worse)", "mask_equal": "worse", "mask_tuned": "worse",
    "confidence": "worse", "entropy_k400": "slightly worse", "entropy_k600": "slightly worse",
    "entropy_k800": "slightly worse", "entropy_kfit": "",
}  # fmt: skip


def _versus(ds: str, res: dict, base: dict | None) -> str:
    """Our difference to the first row of the table (positive = better), with 2 SE for accuracies."""
    if base is None or res["row"] == base["row"]:
        return "(baseline)"
    m, b = res["metrics"], base["metrics"]
    if DATASETS[ds].metric == "accuracy":
        p, q = m["accuracy"], b["accuracy"]
        se = (p * (1 - p) / res["n"] + q * (1 - q) / base["n"]) ** 0.5
        delta, clear = p - q, abs(p - q) > 2 * se
        text = f"{delta:+.3f} (2 SE {2 * se:.3f})"
    else:
        delta, clear = b["fd_c"] - m["fd_c"], True
        text = f"FD_C {m['fd_c'] - b['fd_c']:+.2f}"
    verdict = ("better" if delta > 0 else "worse") if clear else "no clear difference"
    return f"{text}: {verdict}"


def _wall(folder: Path, record: dict) -> float:
    """Total seconds of a unit over all its attempts (``attempts.json``), else its record's."""
    from _reproduce_paper_units import Attempts

    return Attempts(folder).total() if (folder / "attempts.json").exists() else record["wall_time_s"]


def _dataset_tables(ds: str, rows: dict[str, Row], out_dir: Path, profile: Profile) -> list[str]:
    lines = [f"#### {DATASETS[ds].title}", "", _reference(ds, out_dir, profile.n_eval), ""]
    by_kind = {kind: r for r in rows.values() if r.dataset == ds for kind in r.tables}
    head = "| setting | decoding | ours | mean steps | vs first row (ours; paper) | paper (GRN-B, ImageNet 256) | row | wall (s) |"
    for title, kinds in SECTIONS:
        lines += [f"*{title}*", "", head, "|---|---|---|---|---|---|---|---|"]
        base = _read(out_dir / by_kind[kinds[0]].name / "result.json")
        for kind in kinds:
            row = by_kind[kind]
            res = _read(out_dir / row.name / "result.json")
            paper = PAPER[kind]
            if res is None:
                status = _status(out_dir / row.name)
                lines.append(f"| {LABELS[kind]} | | {status} | | | {paper} | `{row.name}` | |")
                continue
            versus = _versus(ds, res, base)
            versus += f"; paper: {PAPER_DIRECTION[kind]}" if PAPER_DIRECTION.get(kind) else ""
            lines.append(
                f"| {LABELS[kind]} | {_decoding(res['setting'])} | {_metric(ds, res)} | {res['mean_steps']:.1f} "
                f"| {versus} | {paper} | `{row.name}` | {_wall(out_dir / row.name, res):.0f} |"
            )
        lines.append("")
    return lines


def _hbq_table(out_dir: Path) -> list[str]:
    lines = ["#### HBQ rounds vs reconstruction (Fig. 5; the paper's PSNR from Table 2)", ""]
    res = _read(out_dir / "hbq_rounds" / "result.json")
    if res is None:
        return [*lines, f"Row `hbq_rounds`: {_status(out_dir / 'hbq_rounds')}.", ""]
    lines += [
        f"{res['steps']} tokenizer steps per round count, runs in `{res['folder']}` "
        "(reused where `scripts/exp_hbq_rounds.py` already finished them).",
        "",
        "| HBQ rounds M | PSNR (dB) | SSIM | paper PSNR (Table 2, video tokenizer) | wall (s) |",
        "|---|---|---|---|---|",
    ]
    for m, r in res["rounds"].items():
        paper = HBQ_PAPER_PSNR.get(m)
        wall = "" if r["wall_time_s"] is None else f"{r['wall_time_s']:.0f}"
        lines.append(
            f"| {m} | {r['psnr']:.2f} | {r['ssim']:.4f} | {'' if paper is None else paper} | {wall} |"
        )
    return [*lines, ""]


def _models_table(out_dir: Path) -> list[str]:
    from _reproduce_paper_units import model_status

    lines = ["#### Trained models (shared by the decoding rows of their dataset)", ""]
    lines += [
        "| model | tokenizer | steps × batch | final loss | status | wall (s) |",
        "|---|---|---|---|---|---|",
    ]
    for ds in DATASETS:
        for variant in ("bit", "ind"):
            st = model_status(out_dir / "models" / f"{ds}_{variant}")
            if st["status"] == "done":
                loss = "" if st["final_loss"] is None else f"{st['final_loss']:.4f}"
                lines.append(
                    f"| `{ds}_{variant}` | `{st['tokenizer']}` | {st['steps']} × {st['batch_size']} | {loss} "
                    f"| done | {_wall(out_dir / 'models' / f'{ds}_{variant}', st):.0f} |"
                )
            elif st["status"] == "partial":
                lines.append(
                    f"| `{ds}_{variant}` | | | | partial (step {st['step']}) | {st['wall_time_s']:.0f} |"
                )
            elif _skipped(out_dir, ds):
                lines.append(f"| `{ds}_{variant}` | | | | skipped: {_skipped(out_dir, ds)} | |")
            else:
                lines.append(f"| `{ds}_{variant}` | | | | pending | |")
    return [*lines, ""]


def _skipped(out_dir: Path, ds: str) -> str | None:
    """The reason a dataset's rows were skipped (its data is absent), or None."""
    note = out_dir / f"{ds}_refine" / "skipped.txt"
    return note.read_text().strip().splitlines()[0] if note.exists() else None


def _figures(out_dir: Path, results_path: Path) -> list[str]:
    lines = [f"Fig. 9 counterpart (steps used per sample, the k 600 row). Paper: {FIG9_PAPER}", ""]
    for ds in DATASETS:
        res = _read(out_dir / f"{ds}_entropy_k600" / "result.json")
        if res is None or "histogram" not in res:
            lines.append(
                f"- {ds}: skipped: {_skipped(out_dir, ds)}" if _skipped(out_dir, ds) else f"- {ds}: pending"
            )
            continue
        png = Path(res["histogram"])
        rel = png.relative_to(results_path.parent) if png.is_relative_to(results_path.parent) else png
        below = 100 * res["share_below_max"]
        lines.append(
            f"- {ds}: ![steps used, {ds}]({rel}) mean {res['mean_steps']:.1f} steps, "
            f"{below:.1f}% of samples below T_max, histogram {res['steps_hist']}"
        )
    return [*lines, ""]


NOTES = """How to read it:

- One trained model per dataset and variant; Table 7's mask rows, Table 10 and Table 11 are decoding
  choices of the GRN_bit model (the paper describes Mask as a "mask-based generation pipeline" at
  identical or grid-searched decoding settings, not as another training run). Table 6 trains GRN_bit
  and GRN_ind separately, with identical data, steps and seed.
- "tuned" = the best point of a grid over CFG scale × CFG interval × temperature, on sampling seeds
  disjoint from the measured ones (as the paper's grid searches); Mask at Refine's settings, Confidence
  and the entropy rows decode at the point the Refine row chose.
- Entropy rows: Eq. 9 with the paper's k and b set so the mean step count on the tuning seeds is
  0.8 T_max (the paper: k·E(H)+b = 40 of 50), so b differs from the paper's (our entropies differ);
  "k fitted" spreads the central 90% of this model's entropies over [T_min, T_max].
- FD_C is the Fréchet distance in a Fashion-MNIST classifier's features (`unified_grn.eval.fd`),
  not FID; it shrinks with N, so read it against the real-vs-real FD_C at the same N. Shapes rows
  use the exact C2I checker (`unified_grn.eval.c2i`). The paper's numbers are ImageNet 256 FID / IS
  of GRN-B; only the direction of each comparison can be compared.
- Wall times are seconds on one CPU thread of a 2-core machine shared with other jobs (load 3-5),
  per row excluding the shared model's training, which is listed in its own table.
- A longer run would use GRN-shapes-sized models (8 layers, hidden 256) for 20k+ steps with EMA,
  N = 10,000 samples per row, a finer grid (5 temperatures, CFG 1-8) at N = 1,000, and several
  training seeds per model to put an error bar on each comparison."""


def render(rows: dict[str, Row], out_dir: Path, profile: Profile, command: str, results_path: Path) -> str:
    """The whole marked section: command, notes, and one table per paper table and dataset."""
    shown = out_dir.relative_to(Path.cwd()) if out_dir.is_relative_to(Path.cwd()) else out_dir
    lines = [BEGIN, "", f"Command: `{command}` (profile `{profile.name}`, outputs in `{shown}`).", ""]
    if profile.name == "quick":
        lines += ["**quick profile, not a result**: the pipeline on a few steps and samples only.", ""]
    else:
        launch = f"nohup {command} > runs/reproduce_paper.log 2>&1 &"
        lines += [f"Launched in the background as `{launch}` (rerun it to resume).", ""]
    lines += [
        f"Profile: GRN-tiny-sized models (2-layer llama, hidden 64) trained {profile.train_steps} steps × "
        f"batch {profile.batch_size}; N = {profile.n_eval} samples per row, T = {profile.num_steps} steps "
        f"(entropy: T_min {profile.min_steps}, T_max {profile.num_steps}); tuned rows search "
        f"{len(profile.grid)} CFG settings × {len(profile.temperatures)} temperatures at N = {profile.n_tune}.",
        "",
        *_hbq_table(out_dir),
        *_models_table(out_dir),
    ]
    for ds in DATASETS:
        lines += _dataset_tables(ds, rows, out_dir, profile)
    lines += [*_figures(out_dir, results_path), NOTES, "", END]
    return "\n".join(lines)


def write_section(text: str, path: Path) -> None:
    """Replace the marked section of ``path`` (append it under its heading when absent)."""
    old = path.read_text() if path.exists() else "# Results\n"
    if BEGIN in old and END in old:
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: text, old, flags=re.S)
    else:
        new = old.rstrip() + f"\n\n{HEADING}\n\n{text}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)
