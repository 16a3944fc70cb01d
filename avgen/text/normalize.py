"""English normalisation: written text -> the words a phonemizer reads correctly
(numbers, money, ordinals, times, abbreviations, symbols; number words in
`avgen.text.numbers`), and the check that what is left can be spoken."""

from __future__ import annotations

import re
import unicodedata

from avgen.text import numbers, readings
from avgen.errors import InputError

# Seconds of silence a punctuation mark puts after its phrase.
PAUSES = {",": 0.15, ";": 0.25, ":": 0.25, ".": 0.35, "!": 0.35, "?": 0.35, "…": 0.45,
          "—": 0.3}

_ABBREVIATIONS = {
    "Mr.": "mister", "Mrs.": "missus", "Ms.": "miz", "Dr.": "doctor", "Prof.": "professor",
    "Jr.": "junior", "Sr.": "senior", "St.": "saint", "Mt.": "mount", "Capt.": "captain",
    "Lt.": "lieutenant", "Gen.": "general", "Sgt.": "sergeant", "vs.": "versus",
    "etc.": "et cetera", "e.g.": "for example", "i.e.": "that is", "approx.": "approximately",
    "a.m.": "a m", "p.m.": "p m", "Inc.": "incorporated", "Ltd.": "limited", "Co.": "company",
}
_ABBREVIATION_RE = re.compile(
    r"(?<![\w.])(" + "|".join(re.escape(a) for a in sorted(_ABBREVIATIONS, key=len, reverse=True))
    + r")(?!\w)"
)
_TRANSLATE = str.maketrans({
    "‘": "'", "’": "'", "ʼ": "'", "“": '"', "”": '"', "„": '"', "«": '"', "»": '"',
    "–": "—", "\u00a0": " ", "\t": " ",
})
# Formatting marks that carry no sound.
_SILENT_MARKS = re.compile(r"[\"*_()\[\]]")
_SPEAKABLE_SYMBOLS = {"&": " and ", "+": " plus ", "@": " at ", "=": " equals ", "%": " percent "}

_NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?"
_SCALE_WORDS = r"(?:\s+(thousand|million|billion|trillion))?"


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def _money(m: re.Match) -> str:
    symbol, amount, scale = m.group(1), m.group(2).replace(",", ""), m.group(3)
    if scale:
        unit = numbers.money(symbol, "2").split()[-1]  # plural unit name
        spoken = numbers.decimal(amount) if "." in amount else numbers.cardinal(int(amount))
        return f"{spoken} {scale} {unit}"
    return numbers.money(symbol, amount)


def _time(m: re.Match) -> str:
    hours, minutes, suffix = int(m.group(1)), int(m.group(2)), m.group(3)
    spoken = numbers.cardinal(hours)
    if minutes == 0:
        spoken += "" if suffix else " o'clock"
    elif minutes < 10:
        spoken += " oh " + numbers.cardinal(minutes)
    else:
        spoken += " " + numbers.cardinal(minutes)
    if suffix:
        spoken += " " + " ".join(suffix.lower().replace(".", "").strip())
    return spoken


_ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50}


def _roman(m: re.Match) -> str:
    """'Mark II' -> 'Mark two' (espeak alone says 'Mark roman two')."""
    value = 0
    digits = [_ROMAN[c] for c in m.group(2)]
    for k, d in enumerate(digits):
        value += -d if k + 1 < len(digits) and digits[k + 1] > d else d
    return f"{m.group(1)} {numbers.cardinal(value)}"


def _spell_number(text: str, years: bool = True) -> str:
    """'3.14' -> decimal, '1,000' -> cardinal, '1984' -> year (when `years`)."""
    if "." in text:
        return numbers.decimal(text.replace(",", ""))
    value = _int(text)
    if years and "," not in text and len(text) == 4 and 1100 <= value <= 2099:
        return numbers.year(value)
    return numbers.cardinal(value)


def normalize(text: str) -> str:
    """Written English -> words a phonemizer reads correctly.

    >>> normalize("Dr. Smith paid $3.50 on the 2nd, at 10:30 in 1984.")
    'doctor Smith paid three dollars and fifty cents on the second, at ten thirty in nineteen eighty-four.'
    """
    text = unicodedata.normalize("NFKC", text).translate(_TRANSLATE)
    text = readings.expand_addresses(text)  # before '.' and '/' mean anything else
    text = text.replace("...", "…")
    text = _ABBREVIATION_RE.sub(lambda m: _ABBREVIATIONS[m.group(1)], text)
    text = re.sub(r"([$£€])\s?(" + _NUMBER + r")" + _SCALE_WORDS, _money, text)
    text = re.sub(r"(" + _NUMBER + r")\s?%",
                  lambda m: _spell_number(m.group(1), years=False) + " percent", text)
    text = readings.expand_dates(text)
    text = readings.expand_phone_numbers(text)
    text = readings.expand_decades(text)
    text = readings.expand_units(text)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: numbers.ordinal(int(m.group(1))), text)
    text = re.sub(r"\b(\d{1,2}):(\d{2})(\s?[ap]\.?m\.?)?(?!\d)", _time, text, flags=re.I)
    text = readings.expand_scores(text)
    text = readings.expand_regnal_numerals(text)
    text = re.sub(r"\b([A-Z][a-z]+) ((?:XL|L?X{0,3})(?:IX|IV|V?I{0,3}))\b(?!')",
                  lambda m: _roman(m) if len(m.group(2)) >= 2 else m.group(0), text)
    text = re.sub(r"(?<![\w.])-(?=\d)", "minus ", text)
    text = re.sub(r"#(?=\d)", "number ", text)
    text = re.sub(_NUMBER, lambda m: _spell_number(m.group(0)), text)
    for symbol, words in _SPEAKABLE_SYMBOLS.items():
        text = text.replace(symbol, words)
    text = _SILENT_MARKS.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def check_speakable(text: str, source: str | None = None, line: int | None = None) -> None:
    """Raise InputError for characters the English phonemizer can't read."""
    for char in text:
        if char.isalpha():
            if not unicodedata.name(char, "").startswith("LATIN"):
                raise InputError(
                    f"cannot phonemize {char!r} ({unicodedata.name(char, 'unknown')}): "
                    "only English text in Latin letters is supported", source, line)
        elif not (char.isspace() or char in "'-" or char in PAUSES):
            raise InputError(f"cannot speak the character {char!r}; remove it or spell it out",
                             source, line)
