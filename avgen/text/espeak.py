"""libespeak-ng from the `espeakng-loader` wheel: phonemizer's backend and phone timings.

No system espeak-ng is needed: both phonemizer and our timing reader load the shared
library and voice data that ship inside the wheel.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from avgen.constants import SAMPLE_RATE
from avgen.errors import AvgenError

VOICE = "en-us"

# espeak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7


def library_paths() -> tuple[str, str]:
    """(shared library, voice data directory) inside the espeakng-loader wheel."""
    try:
        import espeakng_loader
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise AvgenError("espeakng-loader is not installed: pip install espeakng-loader") from exc
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


@lru_cache(maxsize=1)
def phonemizer_backend():
    """phonemizer's EspeakBackend (en-us, with stress) on the bundled libespeak-ng.

    Cached: creating it initialises espeak, which costs ~50 ms.
    """
    library, data = library_paths()
    # phonemizer reads the data path from the environment when it loads the library.
    os.environ["ESPEAK_DATA_PATH"] = data
    from phonemizer.backend import EspeakBackend
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    EspeakWrapper.set_library(library)
    return EspeakBackend(
        VOICE, with_stress=True, language_switch="remove-flags", preserve_punctuation=False
    )


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass(frozen=True)
class PhoneTiming:
    """One phone of espeak's own synthesis: `phone` in IPA with stress ('' for a pause),
    `start`/`end` in samples at 22050 Hz."""

    phone: str
    start: int
    end: int


class EspeakTimer:
    """Reads espeak-ng's phoneme events while it synthesises text (audio is discarded).

    espeak-ng carries waveform state (pitch flutter) from one synthesis to the next in
    static variables that even espeak_Initialize does not reset, so a phrase's timing
    would depend on what was timed before it. Each call therefore loads the library
    afresh and unloads it after (~2 ms): a phrase always gets the same durations.
    Unloading only happens when nothing else holds the library (phonemizer keeps the
    wheel's file loaded), so the timer loads its own private copy of the file.
    """

    def __init__(self) -> None:
        import shutil
        import tempfile

        library, self._data = library_paths()
        self._tmpdir = tempfile.TemporaryDirectory(prefix="avgen-espeak-")
        self._library = str(Path(self._tmpdir.name) / Path(library).name)
        shutil.copyfile(library, self._library)
        self._lock = threading.Lock()
        self._events: list[tuple[int, str]] = []
        self._samples = 0
        self._callback = _CALLBACK(self._on_audio)  # kept alive: C holds the pointer

    def _on_audio(self, wav, num_samples, events) -> int:
        self._samples += num_samples
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_PHONEME:
                phone = events[i].id.string.decode("utf-8", errors="replace")
                self._events.append((events[i].sample, phone))
            i += 1
        return 0

    def _synthesise(self, data: bytes) -> None:
        import _ctypes

        lib = ctypes.CDLL(self._library)
        try:
            rate = lib.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data.encode(),
                _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT)
            if rate != SAMPLE_RATE:
                raise AvgenError(f"libespeak-ng initialised at {rate} Hz, expected {SAMPLE_RATE}")
            if lib.espeak_SetVoiceByName(VOICE.encode()) != 0:
                raise AvgenError(f"libespeak-ng has no voice {VOICE!r} in {self._data}")
            lib.espeak_SetSynthCallback(self._callback)
            status = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                      None, None)
            lib.espeak_Synchronize()
            if status != 0:
                raise AvgenError(f"libespeak-ng failed (status {status}) on {data!r}")
        finally:
            lib.espeak_Terminate()
            _ctypes.dlclose(lib._handle)

    def timings(self, text: str) -> list[PhoneTiming]:
        """Phones of `text` in order with their sample spans; pauses have phone ''."""
        with self._lock:
            self._events, self._samples = [], 0
            self._synthesise(text.encode("utf-8"))
            events, total = self._events, self._samples
        out: list[PhoneTiming] = []
        for k, (start, phone) in enumerate(events):
            end = events[k + 1][0] if k + 1 < len(events) else total
            out.append(PhoneTiming(phone, start, max(start, end)))
        return out


@lru_cache(maxsize=1)
def espeak_timer() -> EspeakTimer:
    return EspeakTimer()
