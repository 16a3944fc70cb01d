"""Voice per face: consistent for a face, distinct within a dialogue."""

import numpy as np
import pytest

from avgen.errors import InputError
from avgen.speaker import face_digest, voices_for_faces

VOICES = ("heart", "heart-low", "third")


def _png(path, image):
    import cv2

    assert cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1]))
    return path


def test_each_face_keeps_its_voice_and_partners_differ(tmp_path):
    rng = np.random.default_rng(0)
    faces = [_png(tmp_path / f"f{k}.png", rng.integers(0, 255, (40, 30, 3), dtype=np.uint8))
             for k in range(12)]
    for a in faces:
        for b in faces:
            if a == b:
                continue
            first, second = voices_for_faces([a, b], VOICES)
            assert first != second
            # the first speaker's voice depends on that face only
            assert first == voices_for_faces([a, faces[0] if b != faces[0] else faces[1]],
                                             VOICES)[0]
    # faces do not all land on one voice
    assert len({voices_for_faces([f], VOICES)[0] for f in faces}) > 1


def test_digest_is_of_pixels_not_file_bytes(tmp_path):
    import cv2

    image = np.random.default_rng(1).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    a = _png(tmp_path / "a.png", image)
    b = tmp_path / "b.png"
    cv2.imwrite(str(b), np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert a.read_bytes() != b.read_bytes()
    assert face_digest(a) == face_digest(b)
    image[0, 0, 0] ^= 1
    assert face_digest(_png(tmp_path / "c.png", image)) != face_digest(a)


def test_same_face_twice_and_missing_file(tmp_path):
    face = _png(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    first, second = voices_for_faces([face, face], VOICES)
    assert first == second
    with pytest.raises(InputError, match="nope.png"):
        voices_for_faces([face, tmp_path / "nope.png"], VOICES)


def test_photo_facts_are_remembered_until_the_photo_changes(tmp_path, monkeypatch):
    """A batch or a warm Synthesizer asks about the same photos again: the digest (and
    the face model's answer) are worked out once per photo file, and afresh when the
    file changes."""
    import cv2
    import numpy as np

    from avgen.face import landmarks
    from avgen.speaker import face_digest

    reads = []
    real = landmarks.read_image
    monkeypatch.setattr(landmarks, "read_image", lambda p: reads.append(p) or real(p))
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.full((40, 30, 3), 100, np.uint8))
    first = face_digest(photo)
    assert face_digest(photo) == first and len(reads) == 1
    cv2.imwrite(str(photo), np.full((40, 30, 3), 101, np.uint8))
    import os

    os.utime(photo, ns=(os.stat(photo).st_atime_ns, os.stat(photo).st_mtime_ns + 10**9))
    assert face_digest(photo) != first and len(reads) == 2
