"""Text frontend: English normalisation, phrase splitting and phonemisation.

`normalize` turns written English into speakable words (numbers, money, ordinals, times,
abbreviations); `to_phrases` splits at punctuation (each break becomes silence of a
length set by the punctuation) and phonemises every phrase with espeak-ng (en-us, with
stress) through phonemizer.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import unicodedata
from dataclasses import dataclass

from avgen import numbers, readings
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


@dataclass(frozen=True)
class Phrase:
    """A stretch of speech between punctuation breaks.

    text: the normalised words; punctuation: the mark that ended it ('' at the end of a
    turn); phones: IPA phones with stress; pause_after: seconds of silence that follow;
    word_sizes: phones per word as espeak groups them (it joins some function words,
    "of the"), summing to len(phones).
    """

    text: str
    punctuation: str
    phones: tuple[str, ...]
    pause_after: float
    word_sizes: tuple[int, ...] = ()

    def words(self) -> list[tuple[str, ...]]:
        sizes = self.word_sizes or (len(self.phones),)
        bounds = [0, *itertools.accumulate(sizes)]
        return [self.phones[a:b] for a, b in zip(bounds, bounds[1:])]


def split_phrases(normalized: str) -> list[tuple[str, str]]:
    """'Hi, you. Ok' -> [('Hi', ','), ('you', '.'), ('Ok', '')]; empty phrases dropped."""
    pieces = re.split(r"([,;:.!?…—]+)", normalized)
    out: list[tuple[str, str]] = []
    for k in range(0, len(pieces), 2):
        words = pieces[k].strip(" -'")
        marks = pieces[k + 1] if k + 1 < len(pieces) else ""
        if words:
            out.append((words, marks))
        elif out and marks:  # "Wait...!" keeps the strongest break
            prev_words, prev_marks = out[-1]
            out[-1] = (prev_words, prev_marks + marks)
    return out


def _pause_for(marks: str) -> float:
    return max((PAUSES.get(m, 0.0) for m in marks), default=0.0)


def phonemize_words(texts: list[str]) -> list[list[tuple[str, ...]]]:
    """Phones of each word of each text (one phonemizer call for the whole list)."""
    from phonemizer.separator import Separator

    from avgen.espeak import phonemizer_backend

    if not texts:
        return []
    lines = phonemizer_backend().phonemize(
        list(texts), separator=Separator(phone=" ", word="|", syllable=None), strip=True,
        njobs=1)
    return [[tuple(word.split()) for word in line.split("|") if word.strip()] for line in lines]


def phonemize(texts: list[str]) -> list[tuple[str, ...]]:
    """Phones for each text (one phonemizer call for the whole list)."""
    return [tuple(p for word in words for p in word) for words in phonemize_words(texts)]


def to_phrases(text: str, source: str | None = None, line: int | None = None) -> list[Phrase]:
    """Normalise, split and phonemise `text`. The last phrase has pause_after 0 (the
    silence after a turn belongs to the dialogue timeline, not the turn)."""
    normalized = normalize(text)
    check_speakable(normalized, source, line)
    split = split_phrases(normalized)
    word_lists = phonemize_words([words for words, _ in split])
    phrases = []
    for (words, marks), phone_words in zip(split, word_lists):
        phones = tuple(p for word in phone_words for p in word)
        if not phones:
            raise InputError(f"the phonemizer produced nothing for {words!r}", source, line)
        phrases.append(Phrase(words, marks, phones, _pause_for(marks),
                              tuple(len(w) for w in phone_words)))
    if phrases:
        phrases[-1] = dataclasses.replace(phrases[-1], pause_after=0.0)
    return phrases
