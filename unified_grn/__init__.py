"""unified_grn: Generative Refinement Networks as a unified token model.

Importing the package registers GRN with transformers' Auto classes (``unified_grn.auto``), so
``AutoModelForGRN.from_pretrained(folder)`` works without ``trust_remote_code``. It imports only
torch, transformers, tokenizers, einops, Pillow and numpy; optional packages (flash-attn,
DeepSpeed, PyAV) are probed in ``unified_grn.utils.import_utils`` and imported where used.
"""

from unified_grn.auto import AutoModelForGRN, register_auto_classes
from unified_grn.chat import CHAT_IMAGE_KWARGS, build_chat_context
from unified_grn.chat_format import IMAGE_PLACEHOLDER
from unified_grn.collator import GRNBatch, GRNCollator, GRNSample, TextSegment, VisualSegment
from unified_grn.configuration_grn import GRN_PRESETS, GRNConfig, GRNGenerationConfig
from unified_grn.modeling_grn import GRNForConditionalGeneration, GRNOutput, GRNPromptCache
from unified_grn.processing_grn import GRNProcessor
from unified_grn.vocab import GRNVocab

register_auto_classes()

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
