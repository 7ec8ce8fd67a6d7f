"""What ``scripts/reproduce_paper.py`` runs: profiles, datasets, rows and the paper's numbers.

A *row* is one measured setting (one line of the results table). Rows that compare decoding
choices share one trained model per dataset and variant (a *model* unit); a row may also need
another row's result (``needs``: the mask / confidence / entropy rows decode at the settings the
refine row tuned). Every number quoted from the paper is copied from
``shared/paper/grn_paper.txt`` (Tables 2, 6, 7, 10, 11 and Fig. 9) with its table reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "DATASETS",
    "FIG9_PAPER",
    "HBQ_PAPER_PSNR",
    "PAPER",
    "PROFILES",
    "Dataset",
    "Profile",
    "Row",
    "all_rows",
]

#: HBQ rounds -> PSNR of the paper's joint tokenizer (Table 2; Fig. 5 plots the same trend).
HBQ_PAPER_PSNR = {"2": None, "4": 30.40, "6": 30.98, "8": 31.10, "unquantized": 31.14}

#: Paper numbers per row kind (GRN-B on ImageNet 256 C2I): "CFG, interval, tau -> FID, IS".
PAPER = {
    "refine": "Table 7 Refine: CFG 2.4, [0.44,1], τ 1.23 → FID 3.63, IS 285.5",
    "bit": "Table 6 GRN_bit-B: CFG 2.4, [0.44,1], τ 1.23 → FID 3.63, IS 285.5 (GRN_bit-L: FID 2.47)",
    "ind": "Table 6 GRN_ind-B: CFG 2.4, [0.4,1], τ 1.33 → FID 3.56, IS 280.3 (GRN_ind-L: FID 2.64)",
    "mask_equal": "Table 7 Mask: CFG 2.4, [0.44,1], τ 1.23 → FID 185.62, IS 4.3",
    "mask_tuned": "Table 7 Mask: CFG 8.0, [0.00,1], τ 0.50 → FID 18.13, IS 220.2",
    "random": "Table 10 Random → FID 3.63, IS 285.5",
    "confidence": "Table 10 Confidence → FID 10.64, IS 246.8",
    "fixed": "Table 11 fixed 50 steps (k 0, b 50) → FID 3.63, IS 285.5",
    "entropy_k400": "Table 11 k 400, b -351.5, T 20-50, k·E(H)+b 40 → FID 3.86, IS 283.4",
    "entropy_k600": "Table 11 k 600, b -547.2, T 20-50, k·E(H)+b 40 → FID 3.82, IS 282.0",
    "entropy_k800": "Table 11 k 800, b -743.0, T 20-50, k·E(H)+b 40 → FID 3.87, IS 280.0",
    "entropy_kfit": "(not in the paper: k fitted to this model's entropy spread, same mean)",
}
FIG9_PAPER = (
    "Fig. 9 (GRN_bit-B, k = 600, b = −547, T_min 20, T_max 50, 63K images): steps range from 20 to "
    "50, over 62.7% of samples take fewer than 50, around 200 take the minimum of 20."
)

#: Eq. 9 k of the entropy rows; None = fitted to this model's entropies (k spans T_min..T_max).
ENTROPY_KS = {"entropy_k400": 400.0, "entropy_k600": 600.0, "entropy_k800": 800.0, "entropy_kfit": None}


@dataclass(frozen=True)
class Profile:
    """Sizes of one run of the whole table (``quick``: the pipeline only; ``full``: the results)."""

    name: str
    train_steps: int
    batch_size: int
    checkpoint_every: int
    n_eval: int  # samples per measured row (FD_C / checker N)
    n_tune: int  # samples per grid point of the decoding search
    grid: tuple[tuple[float, tuple[float, float]], ...]  # (CFG scale, CFG interval)
    temperatures: tuple[float, ...]
    num_steps: int  # T (T_max of the entropy schedule)
    min_steps: int  # T_min of the entropy schedule
    hbq_steps: int
    hbq_rounds: str
    hbq_dir: str | None  # None: inside the row folder
    chunk: int = 500  # samples per generate() call
    fmnist_limit: int | None = None  # train on a written subset of this size (None: data/fashion-mnist)
    shapes_limit: int | None = (
        None  # tokenizers on a written shapes folder of this size (None: --shapes-data)
    )


_FULL_GRID = ((1.0, (0.0, 1.0)),) + tuple(
    (w, iv) for w in (2.4, 4.0, 8.0) for iv in ((0.44, 1.0), (0.0, 1.0))
)
PROFILES = {
    "quick": Profile(
        name="quick",
        train_steps=12,
        batch_size=8,
        checkpoint_every=6,
        n_eval=24,
        n_tune=10,
        grid=((2.4, (0.44, 1.0)), (8.0, (0.0, 1.0))),
        temperatures=(1.23,),
        num_steps=10,
        min_steps=8,
        hbq_steps=2,
        hbq_rounds="4,none",
        hbq_dir=None,
        chunk=16,
        fmnist_limit=128,
        shapes_limit=96,
    ),
    "full": Profile(
        name="full",
        train_steps=3000,
        batch_size=32,
        checkpoint_every=500,
        n_eval=2000,
        n_tune=200,
        grid=_FULL_GRID,
        temperatures=(1.23, 0.9, 0.5),
        num_steps=50,
        min_steps=20,
        hbq_steps=2000,
        hbq_rounds="2,4,6,8,none",
        hbq_dir="runs/exp_hbq_rounds",
    ),
}


@dataclass(frozen=True)
class Dataset:
    """A class-to-image world: its data source, tokenizer and metric."""

    name: str
    title: str
    num_classes: int
    source: dict
    metric: str  # "accuracy" (shapes checker, higher is better) or "fd_c" (lower is better)
    tokenizer_candidates: tuple[str, ...]  # trained tokenizer folders, first found is used (full)
    tokenizer_fallback: list[str] = field(default_factory=list)  # command that trains one


DATASETS = {
    "shapes": Dataset(
        name="shapes",
        title="shapes C2I (32 px, 18 classes; C2I checker accuracy, higher is better)",
        num_classes=18,
        source={"kind": "shapes-classes", "size": 32},
        metric="accuracy",
        tokenizer_candidates=("runs/exp_hbq_rounds/M4/final",),
    ),
    "fmnist": Dataset(
        name="fmnist",
        title="Fashion-MNIST C2I (28 px padded to 32, 10 classes; FD_C, lower is better)",
        num_classes=10,
        source={"kind": "classes", "path": "data/fashion-mnist", "size": 32},
        metric="fd_c",
        tokenizer_candidates=(
            "outputs/real_reconstruction/fashion-mnist/final",
            "runs/reproduce_paper/tokenizer_fmnist/final",
        ),
        tokenizer_fallback=[
            "-m",
            "tokenizers_visual.train",
            "--config",
            "configs/tokenizer/fashion_mnist.yaml",
            "run.max_steps=2000",
            "run.output_dir=runs/reproduce_paper/tokenizer_fmnist",
        ],  # fmt: skip
    ),
}


@dataclass(frozen=True)
class Row:
    """One measured setting: ``kind`` says what it decodes (see :data:`PAPER`)."""

    name: str
    dataset: str | None
    kind: str
    model: str | None = None  # "<dataset>_bit" / "<dataset>_ind"
    needs: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()  # paper kinds this row stands for (a row may answer several)


def dataset_rows(ds: str) -> list[Row]:
    """The decoding and variant rows of one dataset (refine first: the others decode at its settings)."""
    ref = f"{ds}_refine"
    rows = [
        Row(ref, ds, "refine", f"{ds}_bit", tables=("bit", "refine", "random", "fixed")),
        Row(f"{ds}_ind", ds, "ind", f"{ds}_ind", tables=("ind",)),
        Row(f"{ds}_mask_equal", ds, "mask_equal", f"{ds}_bit", (ref,), ("mask_equal",)),
        Row(f"{ds}_mask_tuned", ds, "mask_tuned", f"{ds}_bit", tables=("mask_tuned",)),
        Row(f"{ds}_confidence", ds, "confidence", f"{ds}_bit", (ref,), ("confidence",)),
    ]
    rows += [Row(f"{ds}_{kind}", ds, kind, f"{ds}_bit", (ref,), (kind,)) for kind in ENTROPY_KS]
    return rows


def all_rows() -> dict[str, Row]:
    """Every row in run order: the HBQ rounds first (the shapes tokenizer is its M = 4 run)."""
    rows = [Row("hbq_rounds", None, "hbq_rounds")]
    for ds in DATASETS:
        rows += dataset_rows(ds)
    return {r.name: r for r in rows}
