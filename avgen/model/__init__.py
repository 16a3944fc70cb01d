"""Neural models (torch)."""
