"""Phrases: normalised text split at punctuation (each break becomes silence of a length
set by the punctuation) and phonemised with espeak-ng (en-us, with stress) through
phonemizer. `to_phrases` is the text frontend's whole job in one call."""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass

from avgen.errors import InputError
from avgen.text.normalize import PAUSES, check_speakable, normalize


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

    from avgen.text.espeak import phonemizer_backend

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
