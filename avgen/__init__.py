"""avgen: text-driven two-person audio-visual dialogue synthesis (AV-Flow + TAVID)."""

__version__ = "0.1.0"
