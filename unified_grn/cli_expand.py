"""``grn expand-depth`` and ``grn expand-width``: grow a saved GRN without changing its outputs
(``unified_grn.training.expansion`` and ``unified_grn.training.width_expansion``; registered by
``unified_grn.cli``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from unified_grn.cli_common import UsageError, positive_int

__all__ = ["register_expand_depth", "register_expand_width"]


def _add_io(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", help="a save_pretrained GRN folder (e.g. checkpoints/grn-shapes)")
    p.add_argument("--out", required=True, help="output model folder")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def _load(args: argparse.Namespace):
    from unified_grn.modeling_grn import GRNForConditionalGeneration

    src, out = Path(args.model_dir), Path(args.out)
    if not (src / "config.json").is_file():
        raise UsageError(f"{src} is not a saved GRN folder (no config.json); pass a save_pretrained folder")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UsageError(f"{out} is not empty; pass --overwrite to replace it")
    return GRNForConditionalGeneration.from_pretrained(src), src, out


def register_expand_depth(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "expand-depth",
        help="grow a saved GRN deeper without changing its outputs (block expansion)",
        description="Insert zero-output copies of decoder blocks (LLaMA Pro block expansion) into a "
        "save_pretrained GRN folder and save the result with its tokenizers; train it further with "
        "scripts/train.py model.init_from=OUT (unified_grn.training.expansion).",
    )
    _add_io(p)
    p.add_argument("--new-layers", type=positive_int, required=True, help="decoder blocks to add")
    p.set_defaults(func=_cmd_expand_depth)


def _cmd_expand_depth(args: argparse.Namespace) -> int:
    from unified_grn.training.expansion import expand_depth

    model, src, out = _load(args)
    before = model.config.text_config.num_hidden_layers
    try:
        positions = expand_depth(model, args.new_layers)
    except ValueError as err:
        raise UsageError(str(err)) from None
    model.save_pretrained(out)
    print(  # noqa: T201 - the CLI's one summary line
        f"expanded {src} from {before} to {model.config.text_config.num_hidden_layers} decoder layers "
        f"(new blocks at {positions}) into {out}"
    )
    return 0


def register_expand_width(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "expand-width",
        help="grow a saved GRN wider without changing its outputs (zero-output new units)",
        description="Widen the backbone's residual stream, MLP and attention heads of a save_pretrained "
        "GRN folder (new units write zeros, RMSNorm rescaled) and save the result with its tokenizers; "
        "train it further with scripts/train.py model.init_from=OUT (unified_grn.training.width_expansion). "
        "Give at least one width; the others are kept.",
    )
    _add_io(p)
    p.add_argument("--hidden-size", type=positive_int, help="new residual width (d)")
    p.add_argument("--intermediate-size", type=positive_int, help="new MLP width")
    p.add_argument("--num-heads", type=positive_int, help="new number of attention heads (head_dim is kept)")
    p.add_argument("--num-kv-heads", type=positive_int, help="new number of key/value heads")
    p.add_argument("--seed", type=int, default=0, help="seed of the new units' random rows / columns")
    p.set_defaults(func=_cmd_expand_width)


def _cmd_expand_width(args: argparse.Namespace) -> int:
    from unified_grn.training.width_expansion import expand_width

    model, src, out = _load(args)
    before = sum(p.numel() for p in model.parameters())
    try:
        widened = expand_width(
            model, args.hidden_size, args.intermediate_size, args.num_heads, args.num_kv_heads, seed=args.seed
        )
    except ValueError as err:
        raise UsageError(str(err)) from None
    widened.save_pretrained(out)
    t = widened.config.text_config
    print(  # noqa: T201 - the CLI's one summary line
        f"widened {src} to hidden {t.hidden_size}, MLP {t.intermediate_size}, {t.num_attention_heads} heads "
        f"({before / 1e6:.2f}M -> {sum(p.numel() for p in widened.parameters()) / 1e6:.2f}M parameters) into {out}"
    )
    return 0
