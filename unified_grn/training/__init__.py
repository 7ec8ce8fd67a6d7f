"""Training of unified GRN models: ``scripts/train.py`` and ``grn export-checkpoint`` are thin shells over it.

* :mod:`.config`: the typed :class:`TrainConfig` (YAML + type-checked ``key=value`` overrides);
* :mod:`.plan`: every check that needs no process group, and the data sources (:func:`plan_run`);
* :mod:`.engine`: precision, DeepSpeed config resolution, model build (``zero.Init``), optimizer;
* :mod:`.batches`: mixture -> encoded codes -> ``GRNBatch`` micro-batches, image-to-video inputs;
* :mod:`.loop`: the step (non-finite losses skipped), the run, metrics; :mod:`.metrics`;
* :mod:`.checkpoint`: atomic checkpoints and exact resume; :mod:`.export`: checkpoint -> folder.

Importing this package does not import DeepSpeed; nothing here starts a process group.
"""

from unified_grn.training.config import ConfigError, TrainConfig, load_train_config
from unified_grn.training.export import export_checkpoint
from unified_grn.training.loop import NonFiniteLossError, run_training
from unified_grn.training.plan import TrainPlan, plan_run, read_deepspeed_config

__all__ = [
    "ConfigError",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainPlan",
    "export_checkpoint",
    "load_train_config",
    "plan_run",
    "read_deepspeed_config",
    "run_training",
]
