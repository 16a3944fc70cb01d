"""Audio: BigVGAN-compatible log-mel, and the vocoders (mel (B, 80, T) -> wave (B, T*256)).

The vocoders' names live here, not in `avgen.audio.vocoder`, so that checking a
configuration does not import torch."""

VOCODERS = ("vocos", "griffinlim", "bigvgan")
DEFAULT_VOCODER = "vocos"
