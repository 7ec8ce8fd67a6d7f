"""unified_grn: Generative Refinement Networks as a unified token model.

Importing the package registers GRN with transformers' Auto classes (``unified_grn.auto``), so
``AutoModelForGRN.from_pretrained(folder)`` works without ``trust_remote_code``. It imports only
torch, transformers, tokenizers, einops, Pillow and numpy; optional packages (flash-attn,
DeepSpeed, PyAV) are probed in ``unified_grn.utils.import_utils`` and imported where used.
"""

from unified_grn.auto import AutoModelForGRN, register_auto_classes
from unified_grn.collator import GRNBatch, GRNCollator, GRNSample, TextSegment, VisualSegment
from unified_grn.configuration_grn import GRN_PRESETS, GRNConfig, GRNGenerationConfig
from unified_grn.modeling_grn import GRNForConditionalGeneration, GRNOutput, GRNPromptCache
from unified_grn.processing_grn import GRNProcessor
from unified_grn.vocab import GRNVocab

register_auto_classes()

# Chat pulls in the data layer (PyAV, datasets): loaded on first use, so ``import unified_grn`` stays light.
_LAZY = {
    "CHAT_IMAGE_KWARGS": "unified_grn.chat",
    "build_chat_context": "unified_grn.chat",
    "IMAGE_PLACEHOLDER": "unified_grn.chat_format",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unified_grn' has no attribute {name!r}")


__all__ = [
    "CHAT_IMAGE_KWARGS",
    "GRN_PRESETS",
    "IMAGE_PLACEHOLDER",
    "AutoModelForGRN",
    "GRNBatch",
    "GRNCollator",
    "GRNConfig",
    "GRNForConditionalGeneration",
    "GRNGenerationConfig",
    "GRNOutput",
    "GRNProcessor",
    "GRNPromptCache",
    "GRNSample",
    "GRNVocab",
    "TextSegment",
    "VisualSegment",
    "build_chat_context",
]
