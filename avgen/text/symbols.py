"""The fixed, versioned phoneme symbol table shared by every model.

A symbol is one phone as espeak-ng (en-us) writes it in IPA through phonemizer, with
the stress mark kept on the vowel it belongs to (`ˈoʊ`, `ˌoʊ`, `oʊ` are three symbols):
stress drives prosody, so it must reach the models. Index 0 is silence/blank, which also
fills the frames of the person who is not speaking.

Never reorder or remove symbols: trained checkpoints index into this table. Adding
symbols means a new `SYMBOLS_VERSION`.
"""

from __future__ import annotations

from avgen.errors import InputError

SYMBOLS_VERSION = "avgen.symbols/1"
SILENCE = "_"
PRIMARY_STRESS = "ˈ"
SECONDARY_STRESS = "ˌ"

CONSONANTS = (
    "p", "b", "t", "d", "k", "ɡ", "ʔ", "ɾ",
    "f", "v", "θ", "ð", "s", "z", "ʃ", "ʒ", "h", "x", "ç", "ɬ",
    "tʃ", "dʒ",
    "m", "n", "ŋ", "n̩", "m̩",
    "l", "ɹ", "r", "j", "w",
)

# en-us vowels, diphthongs and r-coloured nuclei as espeak-ng emits them as single phones.
VOWELS = (
    "i", "iː", "ɪ", "e", "eɪ", "ɛ", "æ", "a", "aɪ", "aʊ",
    "ɑ", "ɑː", "ɒ", "ɔ", "ɔː", "ɔɪ", "o", "oʊ", "oː",
    "u", "uː", "ʊ", "ʌ", "ə", "ɐ", "ᵻ", "ɚ", "ɜ", "ɜː",
    "iə", "aɪə", "aɪɚ", "əl",
    "ɑːɹ", "ɔːɹ", "oːɹ", "ɛɹ", "ɪɹ", "ʊɹ",
)

SYMBOLS: tuple[str, ...] = (
    (SILENCE,)
    + CONSONANTS
    + tuple(stress + v for v in VOWELS for stress in ("", PRIMARY_STRESS, SECONDARY_STRESS))
)
SILENCE_ID = 0
NUM_SYMBOLS = len(SYMBOLS)

_ID = {s: i for i, s in enumerate(SYMBOLS)}
assert len(_ID) == NUM_SYMBOLS, "duplicate symbol in the table"


def symbol_id(phone: str) -> int:
    """Id of one phone; KeyError if the table lacks it (see `phones_to_ids`)."""
    return _ID[phone]


def split_phone(phone: str) -> list[str] | None:
    """Split a phone the table lacks into known symbols, or None if it can't be.

    espeak-ng glues repeated letters of nonsense words into one phone (`ææ`); those
    are sequences of known phones, so they are split (greedy longest match, stress
    staying on the first vowel) rather than rejected.
    """
    stress = ""
    if phone[:1] in (PRIMARY_STRESS, SECONDARY_STRESS):
        stress, phone = phone[0], phone[1:]
    pieces: list[str] = []
    rest = phone
    while rest:
        for size in range(min(len(rest), 4), 0, -1):
            head = rest[:size]
            candidate = (stress + head) if (not pieces and stress) else head
            if candidate in _ID and candidate != SILENCE:
                pieces.append(candidate)
                rest = rest[size:]
                break
        else:
            return None
    return pieces


def phones_to_ids(phones: list[str] | tuple[str, ...], source: str | None = None,
                  line: int | None = None) -> list[int]:
    """Map phones to symbol ids. A phone that is neither in the table nor splittable
    into table symbols is an error naming it; nothing is ever dropped silently."""
    ids: list[int] = []
    for phone in phones:
        if phone in _ID:
            ids.append(_ID[phone])
            continue
        pieces = split_phone(phone)
        if pieces is None:
            raise InputError(
                f"phoneme {phone!r} is not in the symbol table {SYMBOLS_VERSION}", source, line
            )
        ids.extend(_ID[p] for p in pieces)
    return ids
