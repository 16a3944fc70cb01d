"""Dialogue timeline and per-frame tokens (`avgen tokens`).

A script becomes a timeline on the model clock (86.13 fps): turns one after another
with gaps, each turn a run of phonemes (silence for pauses and laughs) with frame
durations, plus the cues. From the timeline each person gets per-frame token ids and
`token_logits (T, V)`; the person who is not speaking has silence.

Durations come from a `DurationSource`, which times a whole stretch of speech (the
phrases of one `Speech` segment) at once, so a phrase's timing can depend on its
neighbours. `LearnedDurations` (the default, `--durations learned`) is the trained
text-to-tokens model (`avgen.model.text_to_tokens`): it predicts phone and pause lengths
and its token decoder writes the per-frame `token_logits` (soft posteriors) of the
frames it times. `EspeakDurations` (the baseline, `--durations espeak`) reads
libespeak-ng's own phoneme timing events and punctuation pause table; its
`token_logits` are label-smoothed one-hot tokens.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from avgen import formats
from avgen.constants import FRAMES_PER_SECOND, NUM_PEOPLE
from avgen.errors import AvgenError, ConfigError, FormatError, InputError
from avgen.limits import MAX_FRAMES, MAX_SECONDS
from avgen.text.script import Cue, Dialogue, Pause, Speech
from avgen.text.symbols import NUM_SYMBOLS, SILENCE_ID, SYMBOLS, SYMBOLS_VERSION, phones_to_ids
from avgen.text.phrases import Phrase, to_phrases

LISTENER_NAME = "(listener)"
# label smoothing of one-hot tokens: the form the joint model is trained on, which every
# token source (decoder, CTC) is brought to
TOKEN_SMOOTHING = 0.01


@dataclass(frozen=True)
class SegmentTiming:
    """Timing of the phrases of one stretch of speech, in frames at rate 1: for each
    phrase the length of each phone, (len(phones),) float > 0, and of the silence after
    it (0 after the last phrase; the timeline owns the silence between turns)."""

    phone_frames: tuple[np.ndarray, ...]
    pause_frames: tuple[float, ...]


class DurationSource(Protocol):
    name: str

    def segment(self, phrases: Sequence[Phrase]) -> SegmentTiming:
        """Timing of `phrases` (one stretch of speech, in order)."""


class TokenDecoder(Protocol):
    """A duration source that can also write soft tokens for the frames it timed."""

    def decode(self, phrases: Sequence[Phrase], entry_frames: np.ndarray) -> np.ndarray:
        """Log-probabilities (sum(entry_frames), V) given the whole frames the timeline
        gave each entry: each phone symbol, then each pause (as placed, rate applied)."""


class EspeakDurations:
    """Phone durations from espeak-ng's own synthesis of the phrase, pauses from the
    punctuation table `avgen.text.PAUSES` (the baseline)."""

    name = "espeak"
    # A phone espeak did not emit (rare phonemizer/espeak disagreement) gets this long.
    fallback_frames = 0.08 * FRAMES_PER_SECOND

    def __init__(self) -> None:
        from avgen.text.espeak import espeak_timer

        self._timer = espeak_timer()

    def durations(self, phrase: Phrase) -> np.ndarray:
        timings = self._timer.timings(phrase.text + phrase.punctuation)
        spoken = [k for k, t in enumerate(timings) if t.phone]
        if not spoken:
            return np.full(len(phrase.phones), self.fallback_frames)
        # A pause inside the phrase (espeak breaks long phrases) stays with the phone
        # before it; the silence before the first and after the last phone is ours to set.
        inner = timings[spoken[0]:spoken[-1] + 1]
        names, spans = [], []
        for t in inner:
            if t.phone:
                names.append(t.phone)
                spans.append(t.end - t.start)
            else:
                spans[-1] += t.end - t.start
        frames_per_sample = FRAMES_PER_SECOND / 22050.0
        espeak_frames = np.asarray(spans, dtype=np.float64) * frames_per_sample
        out = np.full(len(phrase.phones), np.nan)
        matcher = difflib.SequenceMatcher(a=list(phrase.phones), b=names, autojunk=False)
        for tag, a0, a1, b0, b1 in matcher.get_opcodes():
            if tag == "equal":
                out[a0:a1] = espeak_frames[b0:b1]
            elif a1 > a0:  # replaced/inserted phones share the time espeak spent there
                total = espeak_frames[b0:b1].sum()
                out[a0:a1] = total / (a1 - a0) if total > 0 else self.fallback_frames
        return np.maximum(out, 1.0)

    def segment(self, phrases: Sequence[Phrase]) -> SegmentTiming:
        return SegmentTiming(tuple(self.durations(p) for p in phrases),
                             tuple(p.pause_after * FRAMES_PER_SECOND for p in phrases))


DEFAULT_WEIGHTS = "text-to-tokens"


class LearnedDurations:
    """The trained text-to-tokens model: durations from its duration predictor, soft
    per-frame tokens from its token decoder. `checkpoint` defaults to the shipped
    weights (`avgen weights path text-to-tokens`); `seed` drives the flow decoder's noise."""

    name = "learned"

    def __init__(self, checkpoint: str | Path | None = None, seed: int = 0) -> None:
        from avgen.model.text_to_tokens import load_checkpoint
        from avgen.weights import Weights

        path = Path(checkpoint) if checkpoint is not None else Weights().path(DEFAULT_WEIGHTS)
        self.model = load_checkpoint(path)
        self.checkpoint = path
        self.seed = seed

    def with_seed(self, seed: int) -> LearnedDurations:
        """The same loaded model with another decoder seed (a batch loads it once)."""
        import copy

        other = copy.copy(self)  # shares the model: it is only read
        other.seed = seed
        return other

    def _entries(self, phrases: Sequence[Phrase]):
        from avgen.model.text_to_tokens import phrases_to_entries

        return phrases_to_entries(phrases)

    def segment(self, phrases: Sequence[Phrase]) -> SegmentTiming:
        entries = self._entries(phrases)
        frames = self.model.predict_durations(entries)
        is_phone = entries.phone_of >= 0
        # a phone the symbol table split (`ææ`) gets the sum of its pieces back
        per_phone = np.bincount(entries.phone_of[is_phone], weights=frames[is_phone],
                                minlength=sum(len(p.phones) for p in phrases))
        bounds = np.cumsum([0, *(len(p.phones) for p in phrases)])
        pauses = np.zeros(len(phrases))
        pauses[entries.phrase_of[~is_phone]] = frames[~is_phone]
        return SegmentTiming(tuple(per_phone[a:b] for a, b in zip(bounds, bounds[1:])),
                             tuple(float(x) for x in pauses))

    def decode(self, phrases: Sequence[Phrase], entry_frames: np.ndarray) -> np.ndarray:
        entries = self._entries(phrases)
        if len(entry_frames) != len(entries):
            raise AvgenError(f"timeline placed {len(entry_frames)} entries, the model "
                             f"has {len(entries)} for {phrases[0].text!r}")
        return self.model.decode(entries, entry_frames, seed=self.seed)


@dataclass(frozen=True)
class TimelineConfig:
    """Timing choices, in seconds unless said otherwise. `rate` > 1 speaks faster."""

    lead_in: float = 0.25
    turn_gap: float = 0.35
    tail: float = 0.5
    rate: float = 1.0
    cue_seconds: dict = field(default_factory=lambda: {"laughs": 0.9, "nods": 0.7,
                                                       "smiles": 1.2})

    def __post_init__(self) -> None:
        from avgen.limits import GAP, RATE, check_range

        check_range(self.rate, RATE, "--rate", name="rate")
        check_range(self.turn_gap, GAP, "--gap", name="turn gap", unit="s")


@dataclass(frozen=True)
class TimedTurn:
    person: int
    line: int
    text: str
    start_frame: int
    end_frame: int
    phoneme_start: int  # index into Timeline.phoneme_ids
    phoneme_count: int


@dataclass(frozen=True)
class TimedWord:
    """One word as spoken: `text` is its normalised form ("twenty-four" for "24"); the
    phonemizer joins some function words to their neighbour ("of the"), which then
    share one entry. Frames are [start_frame, end_frame) on the model clock."""

    turn: int
    text: str
    start_frame: int
    end_frame: int
    phonemes: tuple[str, ...]


@dataclass(frozen=True)
class TimedCue:
    kind: str  # laughs | nods | smiles | pause
    person: int
    start_frame: int
    duration: int
    turn: int


@dataclass(frozen=True)
class Timeline:
    """Everything `avgen tokens` writes. Phoneme arrays are (M,) over all turns."""

    names: tuple[str, ...]
    num_frames: int
    turns: tuple[TimedTurn, ...]
    phoneme_ids: np.ndarray
    phoneme_starts: np.ndarray
    phoneme_durations: np.ndarray
    cues: tuple[TimedCue, ...]
    durations_source: str
    # (T, V) log-probabilities per person when a token decoder wrote them (or a file
    # held them); None: label-smoothed one-hot tokens of the hard timeline.
    logits: tuple[np.ndarray, ...] | None = None
    # word timings, known when the timeline is built (not stored in tokens files)
    words: tuple[TimedWord, ...] = ()
    # (turn index, start frame, end frame) of every phrase, in order (also not stored)
    phrases: tuple[tuple[int, int, int], ...] = ()
    # (person, first frame, (n, V) log-probabilities) of every span a token decoder wrote:
    # held per span, not as (T, V) arrays, so a long dialogue's tokens stay small (the
    # silences between them are made when asked for; see `token_window`)
    decoded: tuple[tuple[int, int, np.ndarray], ...] = ()

    def turn_phonemes(self, index: int) -> list[str]:
        turn = self.turns[index]
        ids = self.phoneme_ids[turn.phoneme_start:turn.phoneme_start + turn.phoneme_count]
        return [SYMBOLS[i] for i in ids]

    def token_ids(self, person: int) -> np.ndarray:
        """(T,) symbol id per frame; silence wherever `person` is not speaking."""
        return self._frame_ids[person].astype(np.int64)

    @functools.cached_property
    def _frame_ids(self) -> tuple[np.ndarray, ...]:
        """Per person, (T,) int16 symbol ids per frame (made once: `token_window` reads
        them window by window)."""
        return tuple(self._person_ids(p).astype(np.int16) for p in range(NUM_PEOPLE))

    def _person_ids(self, person: int) -> np.ndarray:
        ids = np.full(self.num_frames, SILENCE_ID, dtype=np.int64)
        for turn in self.turns:
            if turn.person != person:
                continue
            span = slice(turn.phoneme_start, turn.phoneme_start + turn.phoneme_count)
            for sid, start, dur in zip(self.phoneme_ids[span], self.phoneme_starts[span],
                                       self.phoneme_durations[span]):
                ids[start:start + dur] = sid
        return ids

    def token_logits(self, person: int, smoothing: float = TOKEN_SMOOTHING) -> np.ndarray:
        """(T, V) log-probabilities of label-smoothed one-hot tokens: the baseline's hard
        timing written in the soft-posterior interface the models consume; the decoder's
        posteriors where a token decoder wrote them."""
        return self.token_window(person, 0, self.num_frames, smoothing)

    def token_window(self, person: int, start: int, end: int,
                     smoothing: float = TOKEN_SMOOTHING) -> np.ndarray:
        """`token_logits(person)[start:end]` (end - start, V), made for that window alone:
        what the joint model reads chunk by chunk, so a long dialogue never needs its
        whole (T, V) tokens at once."""
        start, end = max(0, start), min(self.num_frames, end)
        if self.logits is not None:
            return self.logits[person][start:end]
        window = one_hot_log_probs(self._frame_ids[person][start:end], smoothing)
        for owner, first, block in self.decoded:
            lo, hi = max(start, first), min(end, first + len(block))
            if owner == person and lo < hi:
                window[lo - start:hi - start] = block[lo - first:hi - first]
        return window

    def to_arrays(self) -> dict[str, np.ndarray]:
        s = formats.string_array
        turns, cues = self.turns, self.cues
        arrays = {
            "num_people": np.array(NUM_PEOPLE),
            "num_frames": np.array(self.num_frames),
            "names": s(self.names),
            "symbols": s(SYMBOLS),
            "symbols_version": np.array(SYMBOLS_VERSION),
            "durations_source": np.array(self.durations_source),
            "turns/person": np.array([t.person for t in turns], np.int64),
            "turns/line": np.array([t.line for t in turns], np.int64),
            "turns/text": s(t.text for t in turns),
            "turns/phonemes": s(" ".join(self.turn_phonemes(k)) for k in range(len(turns))),
            "turns/start_frame": np.array([t.start_frame for t in turns], np.int64),
            "turns/end_frame": np.array([t.end_frame for t in turns], np.int64),
            "turns/phoneme_start": np.array([t.phoneme_start for t in turns], np.int64),
            "turns/phoneme_count": np.array([t.phoneme_count for t in turns], np.int64),
            "phonemes/symbol_id": self.phoneme_ids.astype(np.int64),
            "phonemes/start_frame": self.phoneme_starts.astype(np.int64),
            "phonemes/duration": self.phoneme_durations.astype(np.int64),
            "cues/kind": s(c.kind for c in cues),
            "cues/person": np.array([c.person for c in cues], np.int64),
            "cues/start_frame": np.array([c.start_frame for c in cues], np.int64),
            "cues/duration": np.array([c.duration for c in cues], np.int64),
            "cues/turn": np.array([c.turn for c in cues], np.int64),
        }
        for person in range(NUM_PEOPLE):
            arrays[f"p{person}/token_ids"] = self.token_ids(person)
            arrays[f"p{person}/token_logits"] = self.token_logits(person)
        return arrays

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], source: str = "<tokens>") -> Timeline:
        if str(a["symbols_version"]) != SYMBOLS_VERSION:
            raise FormatError(f"made with symbol table {a['symbols_version']}, this avgen uses "
                              f"{SYMBOLS_VERSION}; regenerate it with 'avgen tokens'", source)
        if tuple(str(x) for x in a["symbols"]) != SYMBOLS:
            raise FormatError(f"its symbols differ from this avgen's table {SYMBOLS_VERSION} "
                              "although the version names agree (a modified avgen wrote "
                              "it); regenerate it with 'avgen tokens'", source)
        turns = tuple(
            TimedTurn(int(p), int(ln), str(tx), int(s0), int(s1), int(ps), int(pc))
            for p, ln, tx, s0, s1, ps, pc in zip(
                a["turns/person"], a["turns/line"], a["turns/text"], a["turns/start_frame"],
                a["turns/end_frame"], a["turns/phoneme_start"], a["turns/phoneme_count"]))
        cues = tuple(TimedCue(str(k), int(p), int(s0), int(d), int(t)) for k, p, s0, d, t in zip(
            a["cues/kind"], a["cues/person"], a["cues/start_frame"], a["cues/duration"],
            a["cues/turn"]))
        logits = tuple(a[f"p{i}/token_logits"].astype(np.float32) for i in range(NUM_PEOPLE))
        return cls(tuple(str(n) for n in a["names"]), int(a["num_frames"]), turns,
                   a["phonemes/symbol_id"].astype(np.int64),
                   a["phonemes/start_frame"].astype(np.int64),
                   a["phonemes/duration"].astype(np.int64), cues, str(a["durations_source"]),
                   logits)


def one_hot_log_probs(ids: np.ndarray, smoothing: float = TOKEN_SMOOTHING) -> np.ndarray:
    """(T,) symbol ids -> (T, V) log-probabilities of label-smoothed one-hot tokens."""
    probs = np.full((len(ids), NUM_SYMBOLS), smoothing / NUM_SYMBOLS, np.float32)
    probs[np.arange(len(ids)), ids] += 1.0 - smoothing
    return np.log(probs)


def floor_log_probs(log_probs: np.ndarray, smoothing: float = TOKEN_SMOOTHING) -> np.ndarray:
    """(T, V) token log-probabilities from any source, floored the way the joint model's
    training tokens are (`one_hot_log_probs`: no symbol below smoothing / V) and
    renormalised. Idempotent on `one_hot_log_probs` output. A decoder's confident
    posteriors put -35 where training put -9.6, which the model has never seen."""
    x = np.asarray(log_probs, np.float64)
    probs = np.exp(x - x.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    probs = np.maximum(probs, smoothing / x.shape[1])
    return np.log(probs / probs.sum(1, keepdims=True)).astype(np.float32)


class _Cursor:
    """Places phonemes on whole frames while keeping fractional time, so rounding never
    accumulates drift; every phoneme gets at least one frame."""

    def __init__(self, start: int) -> None:
        self.time = float(start)
        self.ids: list[int] = []
        self.starts: list[int] = []
        self.durations: list[int] = []

    @property
    def frame(self) -> int:
        # half up, not Python's half-to-even: after a phone stretched to one frame,
        # time sits at end - 0.5 and must round to `end`, or the next phone overlaps it
        return math.floor(self.time + 0.5)

    def add(self, symbol: int, frames: float) -> tuple[int, int]:
        """Place `symbol` for `frames`; returns its whole-frame span (start, end)."""
        start = self.frame
        end = max(math.floor(self.time + frames + 0.5), start + 1)
        self.time = max(self.time + frames, end - 0.5)
        if self.ids and symbol == SILENCE_ID and self.ids[-1] == SILENCE_ID:
            self.durations[-1] += end - start  # one run of silence, not many
        else:
            self.ids.append(symbol)
            self.starts.append(start)
            self.durations.append(end - start)
        return start, end


def build_timeline(dialogue: Dialogue, durations: DurationSource,
                   config: TimelineConfig = TimelineConfig()) -> Timeline:
    """Lay the dialogue's turns out on the model clock."""
    fps = FRAMES_PER_SECOND
    names = dialogue.names + (LISTENER_NAME,) * (NUM_PEOPLE - len(dialogue.names))
    cursor = _Cursor(int(round(config.lead_in * fps)))
    turns: list[TimedTurn] = []
    cues: list[TimedCue] = []
    decoder = getattr(durations, "decode", None)
    decoded: list[tuple[int, int, np.ndarray]] = []  # (person, start frame, (n, V))
    words: list[TimedWord] = []
    phrase_spans: list[tuple[int, int, int]] = []
    for index, turn in enumerate(dialogue.turns):
        if index:
            cursor.time = turns[-1].end_frame + config.turn_gap * fps
        turn_start = cursor.frame
        first_phoneme = len(cursor.ids)
        turn_end = turn_start
        for segment in turn.segments:
            if isinstance(segment, Speech):
                phrases = to_phrases(segment.text, dialogue.source, turn.line)
                timing = durations.segment(phrases)
                spans: list[tuple[int, int]] = []
                for phrase, phone_frames, pause in zip(phrases, timing.phone_frames,
                                                       timing.pause_frames):
                    phone_spans = []
                    for phone, length in zip(phrase.phones, phone_frames / config.rate):
                        # a phone the table splits (`ææ`) shares its duration
                        ids = phones_to_ids([phone], dialogue.source, turn.line)
                        for sid in ids:
                            spans.append(cursor.add(sid, float(length) / len(ids)))
                        phone_spans.append((spans[-len(ids)][0], spans[-1][1]))
                    for text, a, b in word_spans(phrase):
                        words.append(TimedWord(index, text, phone_spans[a][0],
                                               phone_spans[b - 1][1], phrase.phones[a:b]))
                    phrase_spans.append((index, phone_spans[0][0], phone_spans[-1][1]))
                    if pause > 0:
                        spans.append(cursor.add(SILENCE_ID, pause / config.rate))
                if decoder is not None and spans:
                    logits = decoder(phrases, np.array([b - a for a, b in spans], np.int64))
                    decoded.append((turn.person, spans[0][0], logits))
            elif isinstance(segment, Pause):
                start = cursor.frame
                cursor.add(SILENCE_ID, segment.seconds * fps)
                cues.append(TimedCue("pause", turn.person, start, cursor.frame - start, index))
            elif isinstance(segment, Cue):
                length = max(1, int(round(config.cue_seconds[segment.kind] * fps)))
                start = cursor.frame
                cues.append(TimedCue(segment.kind, turn.person, start, length, index))
                if segment.kind == "laughs":  # a laugh takes the speaker's time
                    cursor.add(SILENCE_ID, length)
                turn_end = max(turn_end, start + length)
        turn_end = max(turn_end, cursor.frame)
        if turn_end > MAX_FRAMES:
            # checked turn by turn, so a script of hours stops here, not after the model
            # has laid out (and held in memory) every frame of it
            raise InputError(f"the dialogue reaches {turn_end / fps / 60:.1f} minutes by "
                             f"this turn; the limit is {MAX_SECONDS / 60:g} minutes: split "
                             "the script into several dialogues", dialogue.source, turn.line)
        turns.append(TimedTurn(turn.person, turn.line, turn.text, turn_start, turn_end,
                               first_phoneme, len(cursor.ids) - first_phoneme))
    num_frames = turns[-1].end_frame + int(round(config.tail * fps))
    timeline = Timeline(names, num_frames, tuple(turns), np.array(cursor.ids, np.int64),
                        np.array(cursor.starts, np.int64),
                        np.array(cursor.durations, np.int64), tuple(cues), durations.name,
                        words=tuple(words), phrases=tuple(phrase_spans))
    if decoder is None:
        return timeline
    # Silence (between turns, pauses, laughs, the listener) keeps the smoothed one-hot.
    return dataclasses.replace(timeline, decoded=tuple(
        (person, start, np.asarray(block, np.float32)) for person, start, block in decoded))


def word_spans(phrase: Phrase) -> list[tuple[str, int, int]]:
    """(written word(s), first phone, end phone) for each of the phonemizer's words in
    `phrase`. Where espeak joined or split words, the written words are matched to its
    groups by each word's own phone count (one extra phonemizer call)."""
    groups = list(phrase.word_sizes or (len(phrase.phones),))
    texts = phrase.text.split()
    bounds = [0, *itertools.accumulate(groups)]
    if len(texts) == len(groups) or not texts:
        labels = texts or [phrase.text] * len(groups)
        return [(t, a, b) for t, a, b in zip(labels, bounds, bounds[1:])]
    from avgen.text.phrases import phonemize

    sizes = [len(p) for p in phonemize(texts)]
    if len(texts) > len(groups):  # joined: partition the words over the groups
        blocks = _partition(sizes, groups)
        return [(" ".join(texts[i:j]), bounds[k], bounds[k + 1])
                for k, (i, j) in enumerate(blocks)]
    blocks = _partition(groups, sizes)  # split: partition the groups over the words
    return [(texts[k], bounds[i], bounds[j]) for k, (i, j) in enumerate(blocks)]


def _partition(items: list[int], targets: list[int]) -> list[tuple[int, int]]:
    """Split `items` into len(targets) non-empty runs [i, j) whose sums are closest to
    `targets` (least total absolute difference), by dynamic programming."""
    n, m = len(items), len(targets)
    prefix = [0, *itertools.accumulate(items)]
    inf = float("inf")
    cost = [[inf] * (n + 1) for _ in range(m + 1)]
    back = [[0] * (n + 1) for _ in range(m + 1)]
    cost[0][0] = 0.0
    for k in range(1, m + 1):
        for j in range(k, n - (m - k) + 1):
            for i in range(k - 1, j):
                c = cost[k - 1][i] + abs(prefix[j] - prefix[i] - targets[k - 1])
                if c < cost[k][j]:
                    cost[k][j], back[k][j] = c, i
    runs, j = [], n
    for k in range(m, 0, -1):
        i = back[k][j]
        runs.append((i, j))
        j = i
    return runs[::-1]


def timings(timeline: Timeline) -> dict:
    """Word and phoneme timings in seconds, per turn (what `avgen tokens --json` writes).
    Words need a freshly built timeline (tokens files keep phonemes, not words)."""
    fps = FRAMES_PER_SECOND

    def seconds(frame) -> float:
        return round(float(frame) / fps, 3)

    turns = []
    for index, turn in enumerate(timeline.turns):
        span = slice(turn.phoneme_start, turn.phoneme_start + turn.phoneme_count)
        phonemes = [{"phoneme": SYMBOLS[int(sid)], "start": seconds(start),
                     "end": seconds(start + dur)}
                    for sid, start, dur in zip(timeline.phoneme_ids[span],
                                               timeline.phoneme_starts[span],
                                               timeline.phoneme_durations[span])]
        words = [{"word": w.text, "start": seconds(w.start_frame), "end": seconds(w.end_frame),
                  "phonemes": list(w.phonemes)}
                 for w in timeline.words if w.turn == index]
        turns.append({"line": turn.line, "speaker": timeline.names[turn.person],
                      "text": turn.text, "start": seconds(turn.start_frame),
                      "end": seconds(turn.end_frame), "words": words, "phonemes": phonemes})
    return {"names": list(timeline.names), "frames_per_second": fps,
            "seconds": seconds(timeline.num_frames), "silence": SYMBOLS[SILENCE_ID],
            "turns": turns}


def save_timeline(path, timeline: Timeline) -> None:
    formats.save(path, formats.TOKENS, timeline.to_arrays())


def load_timeline(path) -> Timeline:
    return Timeline.from_arrays(formats.load(path, formats.TOKENS), str(path))
