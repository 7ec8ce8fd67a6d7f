"""How far apart the shipped tokenizer's codes put two shapes, two colours and two offsets of one object.

Session 14 diagnostic (not a library tool). One object of each colour, shape and size is rendered
at every sub-cell offset of one 8-px latent cell (centre 28 + dx, 28 + dy, dx, dy in 0..7) on one
background, encoded, and the codes compared bit by bit per HBQ round: the number of differing bits
(over the whole 8 x 8 x 16 grid) between two shapes at the same offset, two colours at the same
offset, and the same object moved by k px. Writes JSON next to this file.

    HF_HUB_OFFLINE=1 python docs/results/session14/code_geometry.py
"""

import itertools
import json
import logging
from pathlib import Path

import numpy as np
import torch

from tokenizers_visual import HBQTokenizer
from unified_grn.data.shapes import COLORS, SHAPES, ShapeObject
from unified_grn.data.shapes_render import render_objects

SIZES = (10, 14, 18)
OFFSETS = range(8)
BACKGROUND = (232, 225, 218)


def encode_all(tok: HBQTokenizer) -> torch.Tensor:
    """Round bits (colour, shape, size, dy, dx, H', W', C, M) of every rendered object."""
    items = list(itertools.product(COLORS, SHAPES, SIZES, OFFSETS, OFFSETS))
    images = [
        np.asarray(render_objects([ShapeObject(c, s, 28.0 + dx, 28.0 + dy, float(z))], BACKGROUND, 64))
        for c, s, z, dy, dx in items
    ]
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1  # (N, 3, 64, 64)
    with torch.no_grad():
        bits = torch.cat([tok.encode(chunk).bits[:, 0] for chunk in pixels.split(64)])  # (N, H', W', C, M)
    return bits.reshape(len(COLORS), len(SHAPES), len(SIZES), 8, 8, *bits.shape[1:])


def hamming(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Mean number of differing bits per round, over all leading dims."""
    diff = (a != b).float().flatten(-4, -2).sum(-2)  # (..., M): bits differing per round
    return diff.flatten(0, -2).mean(0).tolist()


def cell_code_overlap(b: torch.Tensor, rounds: int) -> dict[str, float]:
    """How often an object cell's code (first ``rounds`` rounds) also occurs for another shape / colour.

    For each colour and size (shape overlap) or shape and size (colour overlap), the set of codes of
    the cells that differ from the background cell (0, 0), over all offsets; the overlap is the
    fraction of one attribute value's object-cell codes that occur for another value, averaged over
    ordered pairs. A code shared across shapes cannot say the shape by itself.
    """
    codes = b[..., :rounds].flatten(-2)  # (colour, shape, size, dy, dx, H', W', C * rounds)
    key = (codes.long() * (2 ** torch.arange(codes.shape[-1]))).sum(-1)  # (..., H', W') one id per cell
    background = key[..., :1, :1]

    obj = torch.where(key != background, key, torch.full_like(key, -1))  # background cells -> -1

    def overlap(axis: int) -> float:
        per = obj.movedim(axis, 2)  # (other, other, value of the attribute, dy, dx, H', W')
        fracs = []
        for group in per.flatten(0, 1):  # one (colour or shape, size) pair at a time
            sets = [set(cells[cells >= 0].tolist()) for cells in group]
            fracs += [len(x & y) / max(1, len(x)) for x, y in itertools.permutations(sets, 2)]
        return float(np.mean(fracs))

    return {"shape": overlap(1), "colour": overlap(0)}


def main() -> None:
    tok = HBQTokenizer.from_pretrained("checkpoints/grn-shapes/visual_tokenizer").eval()
    torch.set_num_threads(2)
    b = encode_all(tok)  # (colour, shape, size, dy, dx, H', W', C, M)
    shape_pairs = [hamming(b[:, i], b[:, j]) for i, j in itertools.combinations(range(len(SHAPES)), 2)]
    colour_pairs = [hamming(b[i], b[j]) for i, j in itertools.combinations(range(len(COLORS)), 2)]
    out = {
        "what": "mean differing bits per HBQ round over the 8x8x16 grid (1,024 bits per round)",
        "shape_swap": np.mean(shape_pairs, 0).tolist(),
        "colour_swap": np.mean(colour_pairs, 0).tolist(),
        "shift_px": {str(k): hamming(b[..., k:, :, :, :, :], b[..., :-k, :, :, :, :]) for k in (1, 2, 4)},
        "shape_swap_by_size": {
            str(z): np.mean(
                [hamming(b[:, i, n], b[:, j, n]) for i, j in itertools.combinations(range(len(SHAPES)), 2)], 0
            ).tolist()
            for n, z in enumerate(SIZES)
        },
        "shift_1px_by_size": {
            str(z): hamming(b[:, :, n, :, 1:], b[:, :, n, :, :-1]) for n, z in enumerate(SIZES)
        },
    }
    out["cell_code_overlap"] = {f"rounds_1_to_{r}": cell_code_overlap(b, r) for r in (1, 2)}
    path = Path(__file__).with_name("code_geometry.json")
    path.write_text(json.dumps(out, indent=2))
    logging.getLogger(__name__).info("wrote %s\n%s", path, json.dumps(out, indent=2))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
