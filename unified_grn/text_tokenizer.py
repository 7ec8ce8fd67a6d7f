"""A byte-level text tokenizer built offline, for GRN models made from a config alone.

``AutoModelForGRN.from_config(...)`` must give a complete model without any download, so when no
text tokenizer is given the model makes this one with the ``tokenizers`` library: the 256 byte
symbols of GPT-2's byte-level alphabet (no merges, so every UTF-8 byte is one id) and three
specials. Its ids::

    0 .. 255   the bytes (in ``pre_tokenizers.ByteLevel.alphabet()`` order, sorted)
    256        <|bos|>
    257        <|eos|>
    258        <|pad|>

so ``BYTE_VOCAB_SIZE = 259`` is the ``base_vocab_size`` of every preset; GRN's own special tokens
(``unified_grn.vocab``) follow. :func:`train_bpe_tokenizer` learns merges on a corpus (the shipped
model's tokenizer is trained on the shapes worlds' text, ``unified_grn.data.corpus``): the same
byte alphabet and specials, so any string stays encodable, plus one id per frequent word piece. Any Hugging Face tokenizer from a local folder works the same way
through ``GRNForConditionalGeneration.from_backbone``.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from unified_grn.vocab import GRNVocab

__all__ = [
    "BOS_TOKEN",
    "BYTE_VOCAB_SIZE",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "add_grn_special_tokens",
    "build_byte_tokenizer",
    "train_bpe_tokenizer",
]

BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
PAD_TOKEN = "<|pad|>"
BYTE_VOCAB_SIZE = 259


def build_byte_tokenizer() -> PreTrainedTokenizerFast:
    """The byte-level tokenizer above, without GRN's special tokens (``len == BYTE_VOCAB_SIZE``)."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    for token in (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN):
        vocab[token] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([BOS_TOKEN, EOS_TOKEN, PAD_TOKEN])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN
    )


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts`` with the ``tokenizers`` library.

    Its first ids are the three specials (``<|bos|>``, ``<|eos|>``, ``<|pad|>``), then the 256
    byte symbols, then ``vocab_size - 259`` merges learned on ``texts`` (fewer if the corpus has
    fewer distinct pairs). Words are split GPT-2 style (a leading space belongs to the word).
    """
    minimum = BYTE_VOCAB_SIZE
    if vocab_size < minimum:
        raise ValueError(f"vocab_size must be >= {minimum} (256 bytes + 3 specials), got {vocab_size}.")
    tok = Tokenizer(models.BPE(fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS_TOKEN, EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN
    )


def add_grn_special_tokens(tokenizer: PreTrainedTokenizerFast, vocab: GRNVocab) -> PreTrainedTokenizerFast:
    """Add GRN's special tokens to ``tokenizer`` (in place) and check they got ``vocab``'s ids.

    A tokenizer that already holds them (e.g. one saved with a GRN model) is only checked.
    """
    missing = [t for t in vocab.special_tokens if t not in tokenizer.get_vocab()]
    if missing and len(missing) != vocab.num_special_tokens:
        raise ValueError(
            f"the text tokenizer holds only some of GRN's special tokens; missing {missing[:4]}."
        )
    if missing:
        if len(tokenizer) != vocab.base_vocab_size:
            raise ValueError(
                f"the text tokenizer has {len(tokenizer)} tokens but the GRN config expects "
                f"base_vocab_size={vocab.base_vocab_size}; build the model with from_backbone(...) "
                "or pass the tokenizer it was built with."
            )
        tokenizer.add_special_tokens({"additional_special_tokens": vocab.special_tokens})
    ids = tokenizer.convert_tokens_to_ids(vocab.special_tokens)
    expected = list(range(vocab.base_vocab_size, vocab.num_text_ids))
    if ids != expected:
        raise ValueError(
            f"GRN special tokens have ids {ids[:4]}... in the text tokenizer, expected {expected[:4]}... "
            f"(base_vocab_size={vocab.base_vocab_size})."
        )
    if tokenizer.pad_token_id is None:
        # Left padding needs a pad id; pads are masked, so any id works. Prefer EOS, as most LLMs do.
        tokenizer.pad_token = (
            tokenizer.eos_token if tokenizer.eos_token is not None else vocab.special_tokens[1]
        )
    tokenizer.padding_side = "left"
    return tokenizer
