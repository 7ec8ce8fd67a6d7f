"""unified_grn: Generative Refinement Networks as a unified token model."""
