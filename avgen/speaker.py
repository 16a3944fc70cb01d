"""Which trained voice each reference face speaks with.

TAVID learns a speaker mapper from face to voice on real recordings, where faces and
voices come in pairs. Our teacher corpus has no such pairs (a few synthetic voices, two
public-domain portraits), so a learned mapping would only memorise an arbitrary pairing.
What the product needs from the mapper is kept: a face gets the same voice in every
dialogue, and the two people of a dialogue get distinct voices whenever the model has two
(when both faces would get the same voice, the second speaker moves to the next one).
The voice is chosen by a digest of the decoded image pixels (not the file bytes, so
re-saving the same picture losslessly keeps its voice); `--voice` overrides it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from avgen.face.landmarks import read_image


def face_digest(path: str | Path) -> int:
    """Stable integer of an image's decoded RGB pixels and size."""
    image = read_image(path)
    h = hashlib.sha256(f"{image.shape}".encode())
    h.update(image.tobytes())
    return int.from_bytes(h.digest()[:8], "big")


def voices_for_faces(refs: list[str | Path], voices: tuple[str, ...]) -> tuple[str, ...]:
    """One voice of `voices` per face, consistent per face; distinct within the dialogue
    when possible (the second face moves to the next voice on a clash)."""
    digests = [face_digest(ref) for ref in refs]
    chosen = [voices[digest % len(voices)] for digest in digests]
    if len(refs) == 2 and chosen[0] == chosen[1] and len(voices) > 1:
        if digests[0] == digests[1]:
            return tuple(chosen)  # the same face twice: one person, one voice
        chosen[1] = voices[(voices.index(chosen[1]) + 1) % len(voices)]
    return tuple(chosen)
