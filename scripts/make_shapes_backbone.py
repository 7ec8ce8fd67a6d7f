"""Make the shipped model's starting backbone: a text tokenizer trained on the shapes worlds and a
freshly initialised llama-family causal LM that reads it.

The embedded default (``checkpoints/grn-shapes``) is a GRN on an ordinary Hugging Face causal LM
(Sec. 3.3: the backbone reads the prompt in context). No pretrained LM can be downloaded here, so
this script writes a local backbone folder that ``GRNForConditionalGeneration.from_backbone`` (and
``scripts/train.py`` with ``model.backbone=DIR``) takes like any other: ``config.json``, safetensors
weights and a ``tokenizers`` byte-level BPE trained on every string of the shapes / moving-shapes /
shapes-chat worlds (``unified_grn.data.corpus``). A caption such as "a red circle above a blue
square" is 7 tokens instead of 32 bytes.

    python scripts/make_shapes_backbone.py --out outputs/shapes-backbone --seed 0
    python scripts/make_shapes_backbone.py --out outputs/twemoji-backbone --captions-from data/twemoji

With ``--captions-from DIR`` the BPE is trained on the captions of a data folder's train split instead
(the Twemoji names for the real-data text-to-image grid of docs/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from unified_grn.data.corpus import folder_texts, shapes_world_texts
from unified_grn.text_tokenizer import train_bpe_tokenizer

logger = logging.getLogger("make_shapes_backbone")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("outputs/shapes-backbone"))
    p.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary (bytes + specials + merges)")
    p.add_argument("--hidden-size", type=int, default=192)
    p.add_argument("--intermediate-size", type=int, default=512)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--max-positions", type=int, default=512)
    p.add_argument(
        "--corpus", type=int, nargs=3, default=[4000, 1000, 2000], metavar=("IMAGES", "VIDEOS", "CHATS")
    )
    p.add_argument(
        "--captions-from",
        type=Path,
        default=None,
        metavar="DIR",
        help="train the BPE on the captions of this data folder (e.g. data/twemoji) instead of the shapes worlds",
    )
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def build_backbone(args: argparse.Namespace, vocab_size: int, special_ids: dict[str, int]):
    """A randomly initialised ``LlamaForCausalLM`` (seeded) of the requested size."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=args.max_positions,
        tie_word_embeddings=False,
        **special_ids,
    )
    torch.manual_seed(args.seed)
    return AutoModelForCausalLM.from_config(config)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.captions_from is not None:
        texts = list(folder_texts(args.captions_from))
    else:
        texts = list(shapes_world_texts(*args.corpus, seed=args.seed))
    tokenizer = train_bpe_tokenizer(texts, args.vocab_size)
    logger.info("trained a byte-level BPE on %d texts: %d tokens", len(texts), len(tokenizer))
    special_ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    model = build_backbone(args, len(tokenizer), special_ids)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    params = sum(p.numel() for p in model.parameters())
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "make_backbone.json").write_text(json.dumps({**record, "parameters": params}, indent=2))
    logger.info("wrote %s: llama, %.2fM parameters, vocabulary %d", args.out, params / 1e6, len(tokenizer))


if __name__ == "__main__":
    main()
