"""tokenizers_visual: pixels <-> HBQ codes (GRN paper Sec. 3.1, Appendix A), usable without unified_grn.

    from tokenizers_visual import HBQTokenizer, HBQTokenizerConfig, hbq

``HBQTokenizerConfig`` is registered with ``transformers.AutoConfig`` (model type
``"hbq_tokenizer"``) and ``HBQTokenizer`` with ``AutoModel``, so a saved tokenizer folder loads with
``AutoModel.from_pretrained(folder)`` once this package is imported.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel

from tokenizers_visual import hbq
from tokenizers_visual.modeling_hbq import (
    HBQ_TOKENIZER_PRESETS,
    HBQCodes,
    HBQTokenizer,
    HBQTokenizerConfig,
    HBQTokenizerOutput,
)

__all__ = [
    "HBQ_TOKENIZER_PRESETS",
    "HBQCodes",
    "HBQTokenizer",
    "HBQTokenizerConfig",
    "HBQTokenizerOutput",
    "hbq",
]

AutoConfig.register(HBQTokenizerConfig.model_type, HBQTokenizerConfig, exist_ok=True)
AutoModel.register(HBQTokenizerConfig, HBQTokenizer, exist_ok=True)
