"""tokenizers_visual: pixels <-> HBQ codes (GRN paper Sec. 3.1), usable without unified_grn."""
