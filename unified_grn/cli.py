"""The ``grn`` command line.

Subcommands (each registered by its own ``_register_*`` function, run by its own ``_cmd_*``):

- ``grn make-data shapes|moving-shapes|shapes-chat --out DIR --n N --seed S [--size 64]
  [--num-frames 9] [--test-fraction F] [--overwrite] [--quiet]``: write a procedural data set
  (``datasets`` imagefolder / videofolder / JSON-lines conversations with PNGs) with a ``train``
  split, and a held-out ``test`` split when ``--test-fraction`` > 0 (``N`` is the total over
  both splits).

``main(argv)`` returns the exit status: 0 on success, 2 on bad input (with a one-line message on
stderr, never a traceback). Run it as ``grn …`` or ``python -m unified_grn.cli …``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

WORLDS = ("shapes", "moving-shapes", "shapes-chat")


class UsageError(Exception):
    """Bad input found after parsing; reported as ``grn <cmd>: error: …`` with exit status 2."""


# ----------------------------------------------------------------------------- argument types


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _image_size(text: str) -> int:
    from unified_grn.data.shapes import MIN_IMAGE_SIZE

    value = _positive_int(text)
    if value < MIN_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be >= {MIN_IMAGE_SIZE} px, got {value}")
    return value


def _num_frames(text: str) -> int:
    value = _positive_int(text)
    if value < 5 or (value - 1) % 4:
        raise argparse.ArgumentTypeError(f"must be 1 + 4k with k >= 1 (5, 9, 13, ...), got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


# ----------------------------------------------------------------------------- make-data


def _register_make_data(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "make-data",
        help="write a procedural data set (shapes images, moving-shapes videos, shapes-chat conversations)",
        description="Write a procedural data set as a datasets imagefolder / videofolder / json folder.",
    )
    p.add_argument("world", choices=WORLDS, help="which world to write")
    p.add_argument("--out", required=True, help="output folder (gets train/ and maybe test/)")
    p.add_argument("--n", type=_positive_int, required=True, help="number of samples over all splits")
    p.add_argument(
        "--seed", type=int, default=0, help="random seed (sample i depends only on seed, split, i)"
    )
    p.add_argument("--size", type=_image_size, default=64, help="image / frame size in pixels (default 64)")
    p.add_argument(
        "--num-frames", type=_num_frames, default=None, help="moving-shapes only: 1 + 4k (default 9)"
    )
    p.add_argument(
        "--test-fraction", type=_fraction, default=0.0, help="fraction held out as test/ (default 0)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing train/ and test/ folders")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_make_data)


def _cmd_make_data(args: argparse.Namespace) -> int:
    from unified_grn.data.moving_shapes import DEFAULT_NUM_FRAMES, write_moving_shapes_dataset
    from unified_grn.data.shapes import split_sizes, write_shapes_dataset
    from unified_grn.data.shapes_chat import write_shapes_chat_dataset

    if args.world != "moving-shapes" and args.num_frames is not None:
        raise UsageError("--num-frames applies to moving-shapes only")
    try:
        split_sizes(args.n, args.test_fraction)
    except ValueError as err:
        raise UsageError(str(err)) from None
    common = dict(seed=args.seed, size=args.size, test_fraction=args.test_fraction, overwrite=args.overwrite)
    try:
        if args.world == "shapes":
            sizes = write_shapes_dataset(args.out, args.n, progress=not args.quiet, **common)
            what = f"{args.size}x{args.size} images"
        elif args.world == "shapes-chat":
            sizes = write_shapes_chat_dataset(args.out, args.n, progress=not args.quiet, **common)
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


# ----------------------------------------------------------------------------- entry point

_REGISTRARS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_register_make_data,)


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
