"""Split and folder plumbing shared by the procedural worlds (``shapes``, ``moving-shapes``, ``shapes-chat``).

- ``split_rng(seed, index, split)``: the random stream of one sample,
  ``numpy.random.default_rng([seed, split_id, index])`` with ``SPLITS = {"train": 0, "test": 1}``,
  so a sample depends only on (seed, split, index), never on the size of the data set.
- ``split_sizes(n, test_fraction)``: how ``n`` samples divide into ``train`` and ``test``.
- ``prepare_split_dir(out_dir, split, overwrite)``: an empty ``out_dir/split`` folder.
- ``write_split_folders(...)``: the writer loop every world uses: one folder per split, one
  metadata JSON line per sample, file names ``NNNNNN`` zero-padded to the same width everywhere.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

SPLITS = {"train": 0, "test": 1}


def split_rng(seed: int, index: int, split: str = "train") -> np.random.Generator:
    """The random stream of one sample: depends only on (seed, split, index)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    return np.random.default_rng([seed, SPLITS[split], index])


def split_sizes(n: int, test_fraction: float) -> dict[str, int]:
    """Sizes of the train and (when ``test_fraction`` > 0) test splits of ``n`` samples in total."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    n_test = 0 if test_fraction == 0 else min(n - 1, max(1, round(n * test_fraction)))
    if test_fraction > 0 and n_test == 0:
        raise ValueError(f"n = {n} leaves no room for a test split; use n >= 2")
    return {"train": n - n_test, "test": n_test} if n_test else {"train": n}


def prepare_split_dir(out_dir: Path, split: str, overwrite: bool) -> Path:
    """Create ``out_dir/split``; refuse to mix with an existing non-empty one unless ``overwrite``."""
    path = Path(out_dir) / split
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{path} exists and is not empty (pass overwrite=True / --overwrite)")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def stem_width(n: int) -> int:
    """Digits of the zero-padded file stems of an ``n``-sample data set (at least 6)."""
    return max(6, len(str(n - 1)))


def write_split_folders(
    out_dir: str | Path,
    n: int,
    test_fraction: float,
    write_sample: Callable[[Path, str, int, str], dict],
    metadata_name: str = "metadata.jsonl",
    overwrite: bool = False,
    progress: bool = False,
    desc: str = "data",
) -> dict[str, int]:
    """Write ``out_dir/train`` (and ``out_dir/test``), one metadata line per sample.

    Args:
        write_sample: ``(split_dir, split, index, stem) -> row``; writes the sample's files into
            ``split_dir`` (named from ``stem``, e.g. ``stem + ".png"``) and returns its metadata row.
        metadata_name: the JSON-lines file written in each split folder.

    Returns:
        The split sizes, ``{"train": ..., "test": ...}``.
    """
    sizes = split_sizes(n, test_fraction)
    width = stem_width(n)
    for split, count in sizes.items():
        path = prepare_split_dir(Path(out_dir), split, overwrite)
        with open(path / metadata_name, "w") as meta:
            for i in tqdm(range(count), desc=f"{desc}/{split}", disable=not progress, unit="sample"):
                row = write_sample(path, split, i, f"{i:0{width}d}")
                meta.write(json.dumps(row) + "\n")
        logger.info("wrote %d %s samples to %s", count, desc, path)
    return sizes
