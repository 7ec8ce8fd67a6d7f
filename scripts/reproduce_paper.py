"""The GRN paper's ablations at toy scale, one command: Fig. 5, Tables 6, 7, 10, 11 and Fig. 9.

    python scripts/reproduce_paper.py --profile full            # hours on one CPU core at most
    python scripts/reproduce_paper.py --profile quick --out-dir /tmp/rp --results /tmp/R.md
    python scripts/reproduce_paper.py --only fmnist_refine,fmnist_mask_equal
    python scripts/reproduce_paper.py --table-only               # rewrite the table, run nothing

Rows (``_reproduce_paper_plan.py``), each a folder ``OUT/<row>/`` with ``result.json`` when done:

- ``hbq_rounds``: HBQ rounds vs reconstruction (``scripts/exp_hbq_rounds.py``, Fig. 5);
- per dataset (``shapes``: C2I checker accuracy; ``fmnist``: FD_C at N with the real-vs-real
  FD_C at the same N): ``refine`` (GRN_bit, grid-searched decoding), ``ind`` (GRN_ind, its own
  search, Table 6), ``mask_equal`` / ``mask_tuned`` (Table 7), ``confidence`` (Table 10) and
  ``entropy_k400 / k600 / k800 / kfit`` (Table 11; the k 600 row draws the Fig. 9 histogram).

Decoding rows share one trained model per dataset and variant (``OUT/models/<dataset>_<variant>``,
trained with ``scripts/train.py``); the paper's Table 7 mask rows and Table 10 are decoding
changes of one model too. Resumable: finished units are skipped, interrupted training continues
with ``--resume``. After every unit the section of ``--results`` between the
``reproduce_paper`` markers is rewritten, done rows with their numbers and wall time, the rest as
pending, failed or skipped (a missing data set skips its rows with the reason).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import traceback
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _reproduce_paper_plan import DATASETS, PROFILES, Row, all_rows  # noqa: E402
from _reproduce_paper_table import render, write_section  # noqa: E402
from _reproduce_paper_units import ROOT, run_decoding_row, run_hbq_row  # noqa: E402

logger = logging.getLogger("reproduce_paper")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--only", default=None, help="comma-separated row names (their needs run too)")
    parser.add_argument("--out-dir", type=Path, default=None, help="default runs/reproduce_paper[_quick]")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "RESULTS.md")
    parser.add_argument("--figures-dir", type=Path, default=None, help="default: next to --results")
    parser.add_argument(
        "--table-only", action="store_true", help="rewrite the table from what exists; run nothing"
    )
    parser.add_argument(
        "--shapes-data", type=Path, default=Path("data/shapes"), help="tokenizer images (Fig. 5)"
    )
    args = parser.parse_args(argv)
    args.argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--table-only"]
    suffix = "" if args.profile == "full" else f"_{args.profile}"
    args.out_dir = (args.out_dir or ROOT / "runs" / f"reproduce_paper{suffix}").resolve()
    args.results = args.results.resolve()
    args.figures_dir = (args.figures_dir or args.results.parent).resolve()
    return args


def missing_data(row: Row) -> str | None:
    """Why a row cannot run on this machine (its data set is absent), or None."""
    if row.dataset == "fmnist":
        from unified_grn.data.real import find_fashion_mnist

        folder = ROOT / DATASETS["fmnist"].source["path"]
        if find_fashion_mnist() is None or not (folder / "train").is_dir():
            return (
                "Fashion-MNIST absent: bash scripts/install_real_data.sh && "
                f"grn make-data-real fashion-mnist --out {DATASETS['fmnist'].source['path']}"
            )
    return None


class Runner:
    """Runs rows in order (needs first), records failures, rewrites the table after each."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.profile = args, PROFILES[args.profile]
        self.rows = all_rows()
        self.command = shlex.join(["python", "scripts/reproduce_paper.py", *args.argv])

    def folder(self, name: str) -> Path:
        return self.args.out_dir / name

    def done(self, name: str) -> bool:
        return (self.folder(name) / "result.json").exists()

    def write_table(self) -> None:
        text = render(self.rows, self.args.out_dir, self.profile, self.command, self.args.results)
        write_section(text, self.args.results)

    def run(self, name: str) -> bool:
        """Run ``name`` after its needs; True when it has a result."""
        if self.done(name):
            return True
        row, folder = self.rows[name], self.folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        for marker in ("failed.txt", "skipped.txt"):
            (folder / marker).unlink(missing_ok=True)
        reason = missing_data(row)
        if reason is None and not all(self.run(need) for need in row.needs):
            reason = f"needs {', '.join(row.needs)}, which has no result"
        if reason is not None:
            (folder / "skipped.txt").write_text(reason + "\n")
            logger.warning("%s skipped: %s", name, reason)
            return False
        logger.info("=== %s", name)
        try:
            if row.kind == "hbq_rounds":
                result = run_hbq_row(folder, self.profile, self.args.shapes_data)
            else:
                result = run_decoding_row(row, folder, self.args.out_dir, self.profile, self.args.figures_dir)
        except Exception as err:  # one row's failure leaves the others running; the table says why
            logger.error("%s failed:\n%s", name, traceback.format_exc())
            (folder / "failed.txt").write_text(f"{type(err).__name__}: {err}".splitlines()[0] + "\n")
            self.write_table()
            return False
        result["profile"] = self.profile.name
        (folder / "result.json").write_text(json.dumps(result, indent=1))
        logger.info("%s done: %s", name, json.dumps(result.get("metrics", result.get("rounds"))))
        self.write_table()
        return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    runner = Runner(args)
    names = list(runner.rows) if args.only is None else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in runner.rows]
    if unknown:
        logger.error("unknown rows %s; known: %s", unknown, ", ".join(runner.rows))
        return 2
    runner.write_table()
    if args.table_only:
        return 0
    ok = [runner.run(name) for name in names]
    runner.write_table()
    logger.info("%d of %d rows have results; table in %s", sum(ok), len(ok), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
