"""Captions of the ``shapes`` world: ``format_caption`` writes, ``parse_caption`` reads, the grammar in
``unified_grn.data.shapes`` (its module docstring). Split from ``shapes`` so that module stays about
the scenes; ``from unified_grn.data.shapes import parse_caption`` still works."""

from __future__ import annotations

import re

from unified_grn.data.shapes import COLORS, COUNT_WORDS, POSITIONS, RELATIONS, SHAPES, CaptionSpec, Group

__all__ = ["format_caption", "parse_caption"]


def _noun_phrase(g: Group) -> str:
    if g.count == 1:
        return f"{'an' if g.color[0] in 'aeiou' else 'a'} {g.color} {g.shape}"
    return f"{COUNT_WORDS[g.count]} {g.color} {g.shape}s"


def format_caption(spec: CaptionSpec) -> str:
    """Write a caption from its structured form (the grammar in the module docstring)."""
    text = _noun_phrase(spec.groups[0])
    if spec.relation is not None:
        return f"{text} {RELATIONS[spec.relation]} {_noun_phrase(spec.groups[1])}"
    if spec.position is not None:
        return f"{text} {POSITIONS[spec.position]}"
    return text


_GROUP_RE = r"(a|an|two|three|four) ({c}) ({s})(s?)".format(c="|".join(COLORS), s="|".join(SHAPES))
_CAPTION_RE = re.compile(
    r"^{g}(?: ({r}) {g}| ({p}))?$".format(
        g=_GROUP_RE, r="|".join(RELATIONS.values()), p="|".join(POSITIONS.values())
    )
)
_WORD_COUNTS = {"a": 1, "an": 1, **{w: n for n, w in COUNT_WORDS.items()}}


def _parse_group(word: str, color: str, shape: str, plural: str, text: str) -> Group:
    g = Group(_WORD_COUNTS[word], color, shape)
    if (g.count > 1) != bool(plural) or _noun_phrase(g) != f"{word} {color} {shape}{plural}":
        raise ValueError(f"caption {text!r}: count word {word!r} does not agree with {color} {shape}{plural}")
    return g


def parse_caption(text: str) -> CaptionSpec:
    """Parse a caption of the shapes grammar back to its ``CaptionSpec``.

    Case, surrounding whitespace, repeated spaces and a final full stop are tolerated. Anything
    else outside the grammar raises ``ValueError``.
    """
    norm = " ".join(text.strip().lower().rstrip(".").split())
    m = _CAPTION_RE.match(norm)
    if m is None:
        raise ValueError(f"caption {text!r} is not in the shapes grammar (see unified_grn.data.shapes)")
    first = _parse_group(*m.group(1, 2, 3, 4), text)
    if m.group(5) is not None:
        second = _parse_group(*m.group(6, 7, 8, 9), text)
        relation = {v: k for k, v in RELATIONS.items()}[m.group(5)]
        if (first.color, first.shape) == (second.color, second.shape):
            raise ValueError(f"caption {text!r}: a relation needs two different (colour, shape) groups")
        return CaptionSpec((first, second), relation=relation)
    position = None if m.group(10) is None else {v: k for k, v in POSITIONS.items()}[m.group(10)]
    return CaptionSpec((first,), position=position)
