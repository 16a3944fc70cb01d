"""The text frontend: from a dialogue script to phonemes on the model clock.

`script` parses dialogue scripts; `normalize` (with `numbers`) turns written English into
speakable words; `phrases` splits them at punctuation and phonemises them through
`espeak`; `symbols` is the versioned phoneme table every model shares; `timeline` lays
the turns out on the 86.13 fps clock with per-frame tokens.
"""
