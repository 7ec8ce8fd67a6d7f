"""Small helpers shared by unified_grn modules (optional-dependency probes)."""
