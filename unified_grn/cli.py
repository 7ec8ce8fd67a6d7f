"""The ``grn`` command line.

Subcommands (each registered by its own ``_register_*`` function, run by its own ``_cmd_*``; the
visual-token commands live in ``unified_grn.cli_tokens``, the shared argument types in
``unified_grn.cli_common``):

- ``grn make-data shapes|moving-shapes|shapes-chat --out DIR --n N --seed S [--size 64] [--cell 8]
  [--num-frames 9] [--test-fraction F] [--overwrite] [--quiet]``: write a procedural data set
  (``datasets`` imagefolder / videofolder / JSON-lines conversations with PNGs) with a ``train``
  split, and a held-out ``test`` split when ``--test-fraction`` > 0 (``N`` is the total over
  both splits).
- ``grn make-data-real fashion-mnist|twemoji --out DIR [--limit N] [--size 32] [--overwrite]
  [--quiet]``: write an installed real data set (``bash scripts/install_real_data.sh``) as an
  imagefolder with ``train`` / ``test`` splits (``unified_grn.data.real``).
- ``grn cache-tokens KIND [PATH] --tokenizer DIR --out DIR [--size 64] [--num-frames 9] [--n N]
  [--batch-size 8] [--overwrite] [--quiet]``: encode a data source once with an HBQ tokenizer and
  store the codes as a token cache (``unified_grn.data.token_cache``) that training reads.
- ``grn export-tokens INPUT --out DIR --model DIR [--llm-tokenizer PATH --bits-per-token 4|8|16]
  [--batch-size 8] [--size N|HxW] [--max-frames N] [--parquet] [--overwrite] [--quiet]``: write
  the HBQ codes of a folder of images / videos (or a saved dataset) as a dataset, optionally with
  LLM token ids and the extended LLM tokenizer (``unified_grn.export``).
- ``grn decode-tokens EXPORT_DIR --out DIR --model DIR [--ids-column COL] [--llm-tokenizer PATH]
  [--video-format mp4|gif] [--batch-size 8] [--quiet]``: decode exported codes or token ids to
  PNG / mp4 / gif files.
- ``grn export-checkpoint RUN_DIR --out DIR [--weights auto|ema|model] [--overwrite]
  [--visual-tokenizer DIR]``: consolidate a training checkpoint (ZeRO-3, ZeRO-2 or plain; the run's latest, or a ``checkpoints/step_N``
  folder) into a ``save_pretrained`` folder that ``AutoModelForGRN.from_pretrained`` loads, with
  the text and visual tokenizers (``unified_grn.training.export``).
- ``grn expand-depth MODEL_DIR --out DIR --new-layers N [--overwrite]``: insert N zero-output
  copies of decoder blocks into a saved GRN (block expansion; the outputs are unchanged until it
  is trained further with ``model.init_from=DIR``; ``unified_grn.training.expansion``).
- ``grn expand-width MODEL_DIR --out DIR [--hidden-size D] [--intermediate-size F] [--num-heads H]
  [--num-kv-heads KV] [--seed S] [--overwrite]``: widen a saved GRN's backbone with zero-output new
  units (the outputs are unchanged until it is trained further; ``unified_grn.training.width_expansion``).
- ``grn chat [--model DIR] [--out DIR] [--seed S] [--num-steps N] [--max-new-tokens N] [--device D]
  [--web --host H --port P]``: chat with a GRN model in the terminal (commands ``/image PATH``,
  ``/reset``, ``/save FILE``, ``/quit``; stdin may be piped) or in a Gradio web UI
  (``unified_grn.chat_cli``, ``unified_grn.chat_web``).
- ``grn demo [--model checkpoints/grn-shapes] [--out outputs] [--seed 0] [--num-steps N] [--quick]
  [--device D]``: text-to-image, class-to-image, text-to-video, image-to-video and chat with a
  model, scored by the ``unified_grn.eval`` checkers, written with ``demo.json`` and a
  self-contained ``index.html`` (``unified_grn.demo``); exit status 1 when a section failed.

``main(argv)`` returns the exit status: 0 on success, 2 on bad input (with a one-line message on
stderr, never a traceback). Run it as ``grn …`` or ``python -m unified_grn.cli …``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from unified_grn.cli_common import UsageError, first_line, fraction, image_size, num_frames, positive_int
from unified_grn.cli_expand import register_expand_depth, register_expand_width
from unified_grn.cli_tokens import register_decode_tokens, register_export_tokens

logger = logging.getLogger(__name__)

WORLDS = ("shapes", "moving-shapes", "shapes-chat")


# ----------------------------------------------------------------------------- make-data


def _register_make_data(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "make-data",
        help="write a procedural data set (shapes images, moving-shapes videos, shapes-chat conversations)",
        description="Write a procedural data set as a datasets imagefolder / videofolder / json folder.",
    )
    p.add_argument("world", choices=WORLDS, help="which world to write")
    p.add_argument("--out", required=True, help="output folder (gets train/ and maybe test/)")
    p.add_argument("--n", type=positive_int, required=True, help="number of samples over all splits")
    p.add_argument(
        "--seed", type=int, default=0, help="random seed (sample i depends only on seed, split, i)"
    )
    p.add_argument("--size", type=image_size, default=64, help="image / frame size in pixels (default 64)")
    p.add_argument(
        "--num-frames", type=num_frames, default=None, help="moving-shapes only: 1 + 4k (default 9)"
    )
    p.add_argument(
        "--test-fraction", type=fraction, default=0.0, help="fraction held out as test/ (default 0)"
    )
    p.add_argument(
        "--cell",
        type=positive_int,
        default=None,
        help="shapes / shapes-chat: centre objects (in chat, the drawn ones) on the cells of a CELL-px grid, "
        "e.g. the visual tokenizer's stride 8 (default: anywhere)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing train/ and test/ folders")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_make_data)


def _cmd_make_data(args: argparse.Namespace) -> int:
    from unified_grn.data.moving_shapes import DEFAULT_NUM_FRAMES, write_moving_shapes_dataset
    from unified_grn.data.shapes import check_cell, split_sizes, write_shapes_dataset
    from unified_grn.data.shapes_chat import write_shapes_chat_dataset

    if args.world != "moving-shapes" and args.num_frames is not None:
        raise UsageError("--num-frames applies to moving-shapes only")
    if args.world == "moving-shapes" and args.cell is not None:
        raise UsageError("--cell applies to shapes and shapes-chat only")
    try:
        split_sizes(args.n, args.test_fraction)
        check_cell(args.cell, args.size)
    except ValueError as err:
        raise UsageError(str(err)) from None
    common = dict(seed=args.seed, size=args.size, test_fraction=args.test_fraction, overwrite=args.overwrite)
    try:
        if args.world == "shapes":
            sizes = write_shapes_dataset(args.out, args.n, progress=not args.quiet, cell=args.cell, **common)
            what = f"{args.size}x{args.size} images"
        elif args.world == "shapes-chat":
            sizes = write_shapes_chat_dataset(
                args.out, args.n, progress=not args.quiet, cell=args.cell, **common
            )
            what = f"conversations with {args.size}x{args.size} images"
        else:
            num_frames = args.num_frames or DEFAULT_NUM_FRAMES
            sizes = write_moving_shapes_dataset(
                args.out, args.n, num_frames=num_frames, progress=not args.quiet, **common
            )
            what = f"{num_frames}-frame {args.size}x{args.size} videos"
    except FileExistsError as err:
        raise UsageError(str(err)) from None
    splits = " + ".join(f"{count} {split}" for split, count in sizes.items())
    print(f"wrote {args.world}: {splits} {what} to {args.out}")  # noqa: T201 - the CLI's one summary line
    return 0


# ----------------------------------------------------------------------------- make-data-real


def _register_make_data_real(subparsers: argparse._SubParsersAction) -> None:
    from unified_grn.data.real import REAL_DATASETS

    p = subparsers.add_parser(
        "make-data-real",
        help="write an installed real data set (fashion-mnist, twemoji) as an imagefolder",
        description="Write Fashion-MNIST (official split, padded to --size) or Twemoji (90/10 split by "
        "base emoji) as a datasets imagefolder with metadata.jsonl (text, label). Install the data "
        "first with `bash scripts/install_real_data.sh`.",
    )
    p.add_argument("name", choices=REAL_DATASETS, help="which data set")
    p.add_argument("--out", required=True, help="output folder (gets train/ and test/)")
    p.add_argument("--limit", type=positive_int, default=None, help="at most N images per split")
    p.add_argument("--size", type=positive_int, default=32, help="fashion-mnist canvas (28: native)")
    p.add_argument("--overwrite", action="store_true", help="replace existing train/ and test/ folders")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_make_data_real)


def _cmd_make_data_real(args: argparse.Namespace) -> int:
    from unified_grn.data.real import write_real_dataset

    try:
        sizes = write_real_dataset(
            args.name, args.out, args.limit, args.size, overwrite=args.overwrite, progress=not args.quiet
        )
    except (FileNotFoundError, FileExistsError, ValueError) as err:  # RealDataMissingError included
        raise UsageError(str(err)) from None
    splits = " + ".join(f"{count} {split}" for split, count in sizes.items())
    print(f"wrote {args.name}: {splits} images to {args.out}")  # noqa: T201 - the CLI's one summary line
    return 0


# ----------------------------------------------------------------------------- cache-tokens


def _register_cache_tokens(subparsers: argparse._SubParsersAction) -> None:
    from unified_grn.data.sources import SOURCE_KINDS

    p = subparsers.add_parser(
        "cache-tokens",
        help="encode a data source once with an HBQ tokenizer and store the codes for training",
        description="Encode every row of a data source with an HBQ tokenizer; write a token cache "
        "(datasets Arrow folder + token_cache.json) that training reads instead of pixels.",
    )
    p.add_argument("kind", choices=[k for k in SOURCE_KINDS if k != "cache"], help="source format")
    p.add_argument("path", nargs="?", default=None, help="data folder or file (not for procedural kinds)")
    p.add_argument("--tokenizer", required=True, help="HBQ tokenizer folder, or a GRN model folder")
    p.add_argument("--out", required=True, help="output cache folder")
    p.add_argument("--split", default="train", help="split to encode (default train)")
    p.add_argument("--size", type=positive_int, default=64, help="image / frame size in pixels (default 64)")
    p.add_argument("--num-frames", type=positive_int, default=9, help="frames per video clip (default 9)")
    p.add_argument("--frame-stride", type=positive_int, default=1, help="take every n-th video frame")
    p.add_argument("--n", type=positive_int, default=None, help="rows to encode (procedural kinds: required)")
    p.add_argument("--seed", type=int, default=0, help="procedural kinds: the world's seed")
    p.add_argument("--text-column", default="text", help="caption / text column (default text)")
    p.add_argument("--label-column", default="label", help="class label column (default label)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="rows per tokenizer call")
    p.add_argument("--overwrite", action="store_true", help="replace an existing cache folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_cache_tokens)


def _cmd_cache_tokens(args: argparse.Namespace) -> int:
    from unified_grn.data.sources import SourceConfig
    from unified_grn.data.token_cache import cache_tokens, load_visual_tokenizer

    try:
        cfg = SourceConfig(
            kind=args.kind,
            path=args.path,
            split=args.split,
            size=args.size,
            num_frames=args.num_frames,
            frame_stride=args.frame_stride,
            num_samples=args.n,
            seed=args.seed,
            text_column=args.text_column,
            label_column=args.label_column,
        )
        tokenizer = load_visual_tokenizer(args.tokenizer)
        cache = cache_tokens(
            cfg,
            tokenizer,
            args.out,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        raise UsageError(str(err)) from None
    skipped = cache.meta["num_skipped"]
    print(  # noqa: T201 - the CLI's one summary line
        f"cached {len(cache)} {cache.task} rows ({skipped} unreadable skipped) with C={cache.num_channels}, "
        f"M={cache.num_rounds} to {args.out}"
    )
    return 0


# ----------------------------------------------------------------------------- export-checkpoint


def _register_export_checkpoint(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-checkpoint",
        help="turn a training checkpoint (ZeRO-3 / ZeRO-2 / plain) into a from_pretrained folder",
        description="Consolidate a training checkpoint into a save_pretrained folder with the text and "
        "visual tokenizers; AutoModelForGRN.from_pretrained(DIR) loads it.",
    )
    p.add_argument(
        "run_dir", help="a training run folder (its latest checkpoint) or a checkpoints/step_N folder"
    )
    p.add_argument("--out", required=True, help="output model folder")
    p.add_argument(
        "--weights",
        choices=("auto", "ema", "model"),
        default="auto",
        help="auto (default): the EMA weights when the run kept them, else the model's",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.add_argument(
        "--visual-tokenizer",
        default=None,
        help="ship this tokenizer folder instead of the run's; it must encode like it "
        "(e.g. a decoder-only fine-tune, model.freeze_encoder=true)",
    )
    p.set_defaults(func=_cmd_export_checkpoint)


def _cmd_export_checkpoint(args: argparse.Namespace) -> int:
    from unified_grn.training.export import export_checkpoint

    try:
        out = export_checkpoint(
            args.run_dir,
            args.out,
            weights=args.weights,
            overwrite=args.overwrite,
            visual_tokenizer=args.visual_tokenizer,
        )
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        raise UsageError(str(err)) from None
    print(f"exported {args.run_dir} to {out}")  # noqa: T201 - the CLI's one summary line
    return 0


# ----------------------------------------------------------------------------- chat


def _register_chat(subparsers: argparse._SubParsersAction) -> None:
    from unified_grn.chat_cli import add_chat_arguments

    p = subparsers.add_parser(
        "chat",
        help="chat with a GRN model in the terminal (or in a browser with --web)",
        description="A multi-turn chat with a GRN model: text and images in, text and images out "
        "(unified_grn.chat_cli; commands /image PATH, /reset, /save FILE, /quit).",
    )
    add_chat_arguments(p)
    p.set_defaults(func=_cmd_chat)


def _cmd_chat(args: argparse.Namespace) -> int:
    from unified_grn.chat_cli import run_chat

    try:
        return run_chat(args)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(first_line(err)) from None


# ----------------------------------------------------------------------------- demo


def _register_demo(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="show every ability of a GRN model, scored, on one web page (OUT/index.html)",
        description="Text-to-image, class-to-image, text-to-video, image-to-video and chat with a GRN "
        "model, scored by the unified_grn.eval checkers; writes the files, demo.json and a "
        "self-contained index.html (unified_grn.demo).",
    )
    p.add_argument("--model", default="checkpoints/grn-shapes", help="GRN model folder (default: shipped)")
    p.add_argument("--out", default="outputs", help="output folder (default outputs)")
    p.add_argument("--seed", type=int, default=0, help="random seed of every sample (default 0)")
    p.add_argument("--num-steps", type=positive_int, default=None, help="refinement steps (default: model)")
    p.add_argument("--quick", action="store_true", help="a fast check: fewer steps, prompts and classes")
    p.add_argument("--device", default=None, help="torch device (default cuda when available, else cpu)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from unified_grn.demo import run_demo

    logging.getLogger("unified_grn.demo").setLevel(logging.INFO)  # the per-section progress log
    try:
        summary = run_demo(args.model, args.out, args.seed, args.num_steps, args.quick, args.device)
    except (ValueError, OSError) as err:  # ModelFolderMissing included; sections report their own
        raise UsageError(first_line(err)) from None
    failed = [s["title"] for s in summary["sections"].values() if s["status"] == "error"]
    print(  # noqa: T201 - the CLI's one summary line
        f"wrote {Path(args.out) / 'index.html'} in {summary['total_wall_s']:.1f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


# ----------------------------------------------------------------------------- entry point

_REGISTRARS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _register_make_data,
    _register_make_data_real,
    _register_cache_tokens,
    register_export_tokens,
    register_decode_tokens,
    _register_export_checkpoint,
    register_expand_depth,
    register_expand_width,
    _register_chat,
    _register_demo,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``grn`` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="grn", description="unified_grn command line")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _REGISTRARS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``grn`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse already printed usage and the error
        return int(exit_.code or 0)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except UsageError as err:
        sys.stderr.write(f"grn {args.command}: error: {err}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
