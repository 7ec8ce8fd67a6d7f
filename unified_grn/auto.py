"""Registration of GRN with transformers' Auto classes, and ``AutoModelForGRN``.

After ``import unified_grn``: ``AutoConfig`` knows ``model_type="grn"``, ``AutoModel`` and
``AutoModelForGRN`` map ``GRNConfig`` to ``GRNForConditionalGeneration``, and ``AutoProcessor``
maps it to ``GRNProcessor`` -- so ``AutoModelForGRN.from_pretrained(folder)`` needs no
``trust_remote_code``. (Pattern checked on transformers 5.23, research/env_feasibility.md Sec. 6.)
"""

from __future__ import annotations

from collections import OrderedDict

from transformers import AutoConfig, AutoModel, AutoProcessor
from transformers.models.auto.auto_factory import _BaseAutoModelClass, _LazyAutoMapping, auto_class_update
from transformers.models.auto.configuration_auto import CONFIG_MAPPING, CONFIG_MAPPING_NAMES

from unified_grn.configuration_grn import GRNConfig
from unified_grn.modeling_grn import GRNForConditionalGeneration
from unified_grn.processing_grn import GRNProcessor

__all__ = ["AutoModelForGRN", "register_auto_classes"]


class AutoModelForGRN(_BaseAutoModelClass):
    # The mapping must be an OrderedDict: register() sets an attribute on it.
    _model_mapping = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())


AutoModelForGRN = auto_class_update(AutoModelForGRN, head_doc="GRN visual generation and text")


def register_auto_classes() -> None:
    """Register GRN with AutoConfig / AutoModel / AutoModelForGRN / AutoProcessor (idempotent)."""
    if GRNConfig.model_type not in CONFIG_MAPPING:
        AutoConfig.register(GRNConfig.model_type, GRNConfig)
    AutoModel.register(GRNConfig, GRNForConditionalGeneration, exist_ok=True)
    AutoModelForGRN.register(GRNConfig, GRNForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(GRNConfig, GRNProcessor, exist_ok=True)
