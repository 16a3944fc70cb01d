"""Audio: BigVGAN-compatible log-mel, and the vocoders (mel (B, 80, T) -> wave (B, T*256))."""
