"""``grn export-tokens`` and ``grn decode-tokens``: visual tokens out to datasets / other LLMs and back
(``unified_grn.export``; registered by ``unified_grn.cli``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unified_grn.cli_common import UsageError, first_line, positive_int

__all__ = ["register_decode_tokens", "register_export_tokens"]


def _pixel_size(text: str) -> int | tuple[int, int]:
    """``N`` (square) or ``HxW``."""
    height, _, width = text.lower().partition("x")
    if not width:
        return positive_int(text)
    return (positive_int(height), positive_int(width))


def register_export_tokens(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-tokens",
        help="write HBQ visual tokens of images / videos as a dataset (optionally as LLM token ids)",
        description="Encode a folder of images / videos (or a saved datasets folder) with an HBQ "
        "tokenizer and write the codes as a datasets Arrow folder (unified_grn.export).",
    )
    p.add_argument("input", help="folder of images / videos, or a folder written by save_to_disk")
    p.add_argument("--out", required=True, help="output folder (datasets.load_from_disk reads it)")
    p.add_argument("--model", required=True, help="HBQ tokenizer folder, or a GRN model folder")
    p.add_argument("--llm-tokenizer", default=None, help="local HF tokenizer to extend with visual tokens")
    p.add_argument(
        "--bits-per-token",
        type=int,
        choices=(4, 8, 16),
        default=None,
        help="with --llm-tokenizer (default 8)",
    )
    p.add_argument("--batch-size", type=positive_int, default=8, help="items per tokenizer call (default 8)")
    p.add_argument(
        "--size", type=_pixel_size, default=None, help="resize + centre-crop to N or HxW px (default: keep)"
    )
    p.add_argument(
        "--max-frames", type=positive_int, default=None, help="keep at most this many video frames"
    )
    p.add_argument("--parquet", action="store_true", help="also write codes.parquet")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_export_tokens)


def _cmd_export_tokens(args: argparse.Namespace) -> int:
    from unified_grn.export import MANIFEST_FILE, export_visual_tokens

    if args.bits_per_token is not None and args.llm_tokenizer is None:
        raise UsageError("--bits-per-token needs --llm-tokenizer")
    try:
        table = export_visual_tokens(
            args.input,
            args.out,
            args.model,
            llm_tokenizer=args.llm_tokenizer,
            bits_per_token=args.bits_per_token,
            batch_size=args.batch_size,
            size=args.size,
            max_frames=args.max_frames,
            parquet=args.parquet,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    except (ValueError, OSError) as err:  # OSError: missing / existing folders, unreadable files
        raise UsageError(first_line(err)) from None
    manifest = json.loads((Path(args.out) / MANIFEST_FILE).read_text())
    llm = (
        f"; LLM token ids ({manifest['llm']['layout']['bits_per_token']} bits/token)"
        if manifest["llm"]
        else ""
    )
    print(  # noqa: T201 - the CLI's one summary line
        f"exported {manifest['num_images']} images + {manifest['num_videos']} videos "
        f"({manifest['num_skipped']} unreadable skipped){llm} to {args.out} ({len(table)} rows)"
    )
    return 0


def register_decode_tokens(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "decode-tokens",
        help="decode exported visual tokens (codes or LLM token ids) back to PNG / mp4 / gif",
        description="Decode the rows of an export folder (grn export-tokens) with its HBQ tokenizer.",
    )
    p.add_argument("export_dir", help="folder written by grn export-tokens")
    p.add_argument("--out", required=True, help="folder for the decoded images / videos")
    p.add_argument("--model", required=True, help="HBQ tokenizer folder, or a GRN model folder")
    p.add_argument(
        "--ids-column", default=None, help="decode LLM token ids from this column (e.g. input_ids)"
    )
    p.add_argument(
        "--llm-tokenizer", default=None, help="extended tokenizer folder (default: EXPORT_DIR/llm_tokenizer)"
    )
    p.add_argument(
        "--video-format", choices=("mp4", "gif"), default="mp4", help="video file format (default mp4)"
    )
    p.add_argument("--batch-size", type=positive_int, default=8, help="items per tokenizer call (default 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_decode_tokens)


def _cmd_decode_tokens(args: argparse.Namespace) -> int:
    from unified_grn.export import decode_visual_tokens

    if args.llm_tokenizer is not None and args.ids_column is None:
        raise UsageError("--llm-tokenizer needs --ids-column")
    try:
        paths = decode_visual_tokens(
            args.export_dir,
            args.out,
            args.model,
            ids_column=args.ids_column,
            layout=args.llm_tokenizer,
            video_format=args.video_format,
            batch_size=args.batch_size,
            progress=not args.quiet,
        )
    except (ValueError, OSError) as err:
        raise UsageError(first_line(err)) from None
    source = f"token ids ({args.ids_column})" if args.ids_column else "codes"
    print(f"decoded {len(paths)} items from {source} to {args.out}")  # noqa: T201 - the CLI's one summary line
    return 0
