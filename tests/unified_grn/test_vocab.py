"""The GRN vocabulary layout (unified_grn/vocab.py): ids, names, the canonical slot order."""

from __future__ import annotations

import pytest
import torch

from tokenizers_visual.hbq import bits_to_indices
from unified_grn.text_tokenizer import BYTE_VOCAB_SIZE, add_grn_special_tokens, build_byte_tokenizer
from unified_grn.visual_embedding import GRNHBQHead, GRNVisualEmbedding
from unified_grn.vocab import GRNVocab, flatten_bits, unflatten_bits


def _vocab(variant: str, c: int = 3, m: int = 2) -> GRNVocab:
    return GRNVocab(
        base_vocab_size=BYTE_VOCAB_SIZE,
        backbone_vocab_size=320,
        num_class_tokens=5,
        variant=variant,
        num_channels=c,
        num_rounds=m,
    )


def test_text_and_special_ids_follow_the_text_ids():
    v = _vocab("bit")
    assert (v.image_start_id, v.image_end_id, v.video_start_id, v.video_end_id) == (259, 260, 261, 262)
    assert v.class_token_id(0) == 263 and v.class_token_id(4) == 267
    assert v.num_text_ids == 268 and v.hbq_offset == 320
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        v.class_token_id(5)


@pytest.mark.parametrize("variant,count", [("bit", 2 * 3 * 2), ("ind", 3 * 4)])
def test_hbq_range_size_and_names_round_trip(variant, count):
    v = _vocab(variant)
    assert v.num_hbq_tokens == count and v.total_vocab_size == 320 + count
    names = v.hbq_token_names()
    assert len(set(names)) == count
    for token_id, name in enumerate(names, start=v.hbq_offset):
        slot, value = v.parse_hbq_id(token_id)
        assert v.hbq_token_name(slot, value) == name
        assert v.parse_hbq_name(name) == (slot, value)
        assert v.hbq_token_id(slot, value) == token_id
    with pytest.raises(ValueError, match="not an HBQ token id"):
        v.parse_hbq_id(v.hbq_offset - 1)


def test_bit_names_are_round_major():
    v = _vocab("bit", c=3, m=2)
    # slot r*C + c: slot 4 = round 1, channel 1.
    assert v.hbq_token_name(4, 1) == "<|hbq_r1_c1_b1|>"
    assert v.hbq_token_id(4, 1) == v.hbq_offset + 4 * 2 + 1
    assert _vocab("ind").hbq_token_name(2, 3) == "<|hbq_c2_v3|>"


def test_flatten_bits_is_round_major_and_inverts():
    bits = torch.randint(0, 2, (5, 3, 2), dtype=torch.uint8)  # (N, C, M)
    flat = flatten_bits(bits)
    for r in range(2):
        for c in range(3):
            assert torch.equal(flat[:, r * 3 + c], bits[:, c, r])
    assert torch.equal(unflatten_bits(flat, 3), bits)


@pytest.mark.parametrize("variant", ["bit", "ind"])
def test_labels_codes_and_token_ids_round_trip(variant):
    v = _vocab(variant)
    bits = torch.randint(0, 2, (2, 4, 3, 2), dtype=torch.uint8)
    labels = v.labels_from_codes(bits)
    assert labels.shape == (2, 4, v.num_slots)
    assert torch.equal(v.bits_from_labels(labels), bits)
    assert torch.equal(v.labels_from_codes(bits_to_indices(bits)), labels)  # indices give the same labels
    ids = v.token_ids_from_labels(labels)
    assert bool(((ids >= v.hbq_offset) & (ids < v.total_vocab_size)).all())
    assert torch.equal(v.labels_from_token_ids(ids), labels)
    if variant == "ind":
        assert torch.equal(labels, bits_to_indices(bits))


def test_codes_with_wrong_channels_or_rounds_name_the_expected_shape():
    v = _vocab("bit", c=3, m=2)
    with pytest.raises(ValueError, match=r"C=3, M=2"):
        v.labels_from_codes(torch.zeros(4, 3, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"C=3"):
        v.labels_from_codes(torch.zeros(4, 5, dtype=torch.long))


@pytest.mark.parametrize("variant", ["bit", "ind"])
def test_embedding_rows_and_logits_use_the_vocabulary_layout(variant):
    v = _vocab(variant)
    labels = v.labels_from_codes(torch.randint(0, 2, (6, 3, 2), dtype=torch.uint8))
    embed = GRNVisualEmbedding(v, hidden_size=8, max_grid=[1, 2, 2], frequency_dim=16)
    one_hot = embed.one_hot(labels, torch.float32)
    rows = v.token_ids_from_labels(labels) - v.hbq_offset  # (N, K) HBQ rows of each position
    expected = torch.zeros_like(one_hot).scatter_(1, rows, 1.0)
    assert torch.equal(one_hot, expected) and bool((one_hot.sum(-1) == v.num_slots).all())
    head = GRNHBQHead(v, hidden_size=8)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.copy_(torch.arange(v.num_hbq_tokens, dtype=torch.float32))
    logits = head(torch.zeros(1, 8))[0]  # (K, classes): logit [k, v] = output row of token (k, v)
    for k in range(v.num_slots):
        for value in range(v.num_classes):
            assert int(logits[k, value]) == v.hbq_token_id(k, value) - v.hbq_offset


def test_special_tokens_are_added_at_their_ids():
    v = _vocab("bit")
    tok = add_grn_special_tokens(build_byte_tokenizer(), v)
    assert tok.convert_tokens_to_ids(v.special_tokens) == list(range(259, 268))
    ids = tok("ab<|image_start|>", add_special_tokens=False)["input_ids"]
    assert ids[-1] == v.image_start_id and tok.decode(ids) == "ab<|image_start|>"
    with pytest.raises(ValueError, match="base_vocab_size=300"):
        add_grn_special_tokens(build_byte_tokenizer(), GRNVocab(300, 320, 0, "bit", 3, 2))
