"""`avgen eval`: metrics of generated `.av.npz` files, against a reference when given.

A report is a plain dict (JSON-ready, format "avgen.eval/1"):

    {"format", "generated": [paths], "reference", "tokens", "num_frames",
     "num_people", "regions": how speech regions were found, "config": {...},
     "metrics": {key: {"label", "group", "p0", "p1", "overall", "reference"?, "note"?}},
     "samples": [{"path", "metrics": {key: {...}}}]}

"metrics" holds, for per-sample metrics, the mean over the generated files of each cell
(defined cells only), and the set metrics (diversity) computed across them. A cell is a
float or None (undefined: no events, too few frames...). Metric groups are functions
`group(inputs, config) -> {key: cell dict}`: audio metrics (MCD, WER) slot in by adding a
group to SAMPLE_GROUPS (per generated file) or SET_GROUPS (across files).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from avgen import formats
from avgen.constants import FRAMES_PER_SECOND
from avgen.errors import FormatError, InputError
from avgen.metrics import motion as m

REPORT_FORMAT = "avgen.eval/1"


@dataclass(frozen=True)
class AvFile:
    """One loaded `avgen.av/1` file; expression (T, E) columns in `expression_names`."""

    path: str
    arrays: dict
    expression_names: tuple[str, ...]

    @property
    def num_frames(self) -> int:
        return int(self.arrays["num_frames"])

    @property
    def num_people(self) -> int:
        return int(self.arrays["num_people"])

    def mel(self, person: int) -> np.ndarray:
        return self.arrays[f"p{person}/mel"].astype(np.float64)

    def head_pose(self, person: int) -> np.ndarray:
        return self.arrays[f"p{person}/head_pose"].astype(np.float64)

    def expression(self, person: int) -> np.ndarray:
        return self.arrays[f"p{person}/expression"].astype(np.float64)

    def coefficient(self, person: int, name: str) -> np.ndarray:
        return self.expression(person)[:, self.expression_names.index(name)]


def load_av(path: str) -> AvFile:
    arrays = formats.load(path, formats.AV)
    names = tuple(str(n) for n in arrays["expression_names"])
    for needed in ("lips_close", "smile_left"):
        if needed not in names:
            raise FormatError(f"expression_names lack {needed!r}", str(path))
    for key, value in arrays.items():
        if key.startswith("p") and "/" in key and not np.all(np.isfinite(value)):
            raise FormatError(f"{key} holds NaN or infinite values", str(path))
    return AvFile(str(path), arrays, names)


def _align(candidate: AvFile, reference: AvFile) -> AvFile:
    """Check that `candidate` is for the same input as `reference` and reorder its
    expression columns to the reference's names."""
    if candidate.num_people != reference.num_people:
        raise InputError(f"has {candidate.num_people} people, {reference.path} has "
                         f"{reference.num_people}", candidate.path)
    if candidate.num_frames != reference.num_frames:
        raise InputError(f"has {candidate.num_frames} frames, {reference.path} has "
                         f"{reference.num_frames}; compare files made from the same tokens",
                         candidate.path)
    missing = [n for n in reference.expression_names if n not in candidate.expression_names]
    if missing:
        raise InputError(f"lacks expression coefficients {', '.join(missing)} that "
                         f"{reference.path} has", candidate.path)
    order = [candidate.expression_names.index(n) for n in reference.expression_names]
    arrays = dict(candidate.arrays)
    for p in range(candidate.num_people):
        arrays[f"p{p}/expression"] = candidate.arrays[f"p{p}/expression"][:, order]
    return AvFile(candidate.path, arrays, reference.expression_names)


@dataclass(frozen=True)
class Inputs:
    """Everything a metric group sees. speaking[p] (T,) bool: person p's speech region;
    bilabial[p] (T,) bool from the tokens, or None without tokens."""

    sample: AvFile | None  # the generated file a per-sample group scores
    samples: tuple[AvFile, ...]
    reference: AvFile | None
    speaking: tuple[np.ndarray, ...]
    bilabial: tuple[np.ndarray, ...] | None

    @property
    def num_people(self) -> int:
        return len(self.speaking)

    def listening(self, person: int) -> np.ndarray:
        """Frames where `person` is silent and the partner speaks."""
        if self.num_people < 2:
            return np.zeros_like(self.speaking[person])
        return ~self.speaking[person] & self.speaking[1 - person]


def _cell(label: str, group: str, values: dict, **extra) -> dict:
    return {"label": label, "group": group, **{k: _clean(v) for k, v in values.items()},
            **extra}


def _clean(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _mean(values) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


# ----------------------------------------------------------------- per-sample groups

def lip_sync_group(inputs: Inputs, config: m.MetricsConfig) -> dict:
    """Lip-closure F1 / precision / recall per person inside the person's speech region;
    overall pools the event counts of both people."""
    if inputs.reference is None and inputs.bilabial is None:
        return {}
    sample, total = inputs.sample, m.ClosureScore(0, 0, 0, 0)
    cells = {"f1": {}, "precision": {}, "recall": {}}
    for p in range(inputs.num_people):
        reference = m.reference_closure_mask(
            None if inputs.bilabial else inputs.reference.coefficient(p, "lips_close"),
            inputs.bilabial[p] if inputs.bilabial else None, config)
        score = m.lip_closure_score(sample.coefficient(p, "lips_close"), reference,
                                    inputs.speaking[p], config)
        total = total + score
        for key in cells:
            cells[key][f"p{p}"] = getattr(score, key)
    for key in cells:
        cells[key]["overall"] = getattr(total, key)
    source = "tokens p/b/m" if inputs.bilabial else "reference lips_close"
    return {
        "lip_f1": _cell("lip-closure F1", "lip sync", cells["f1"], note=f"vs {source}"),
        "lip_precision": _cell("  precision (events)", "lip sync", cells["precision"]),
        "lip_recall": _cell("  recall (intervals)", "lip sync", cells["recall"]),
    }


def fde_group(inputs: Inputs, config: m.MetricsConfig) -> dict:
    """FDe per person over all frames, speaking frames and listening frames (the same
    frames of generated and reference); overall pools both people's frames."""
    if inputs.reference is None:
        return {}
    out = {}
    for key, label, region_of in (
            ("fde", "FDe", lambda p: np.ones_like(inputs.speaking[p])),
            ("fde_speaking", "  FDe speaking frames", lambda p: inputs.speaking[p]),
            ("fde_listening", "  FDe listening frames", inputs.listening)):
        values, gen_all, ref_all = {}, [], []
        for p in range(inputs.num_people):
            region = region_of(p)
            gen = inputs.sample.expression(p)[region]
            ref = inputs.reference.expression(p)[region]
            values[f"p{p}"] = m.frechet_distance(gen, ref)
            gen_all.append(gen)
            ref_all.append(ref)
        values["overall"] = m.frechet_distance(np.concatenate(gen_all), np.concatenate(ref_all))
        out[key] = _cell(label, "expression", values)
    return out


def beat_group(inputs: Inputs, config: m.MetricsConfig) -> dict:
    """BC_h, BC_e and their chance level per person (own mel, own speech region);
    overall is the mean of the people; "reference" is the same for the reference file."""
    values = {"bc_h": {}, "bc_e": {}, "bc_chance": {}}
    reference_values = {"bc_h": [], "bc_e": [], "bc_chance": []}
    for p in range(inputs.num_people):
        s = inputs.sample
        scores = m.beat_scores(s.mel(p), s.head_pose(p), s.expression(p),
                               inputs.speaking[p], config)
        for key in values:
            values[key][f"p{p}"] = scores[key]
        if inputs.reference is not None:
            r = inputs.reference
            ref_scores = m.beat_scores(r.mel(p), r.head_pose(p), r.expression(p),
                                       inputs.speaking[p], config)
            for key in values:
                reference_values[key].append(ref_scores[key])
    out = {}
    for key, label in (("bc_h", "BC_h (head)"), ("bc_e", "BC_e (expression)"),
                       ("bc_chance", "  BC of random beats (chance)")):
        values[key]["overall"] = _mean(values[key].values())
        extra = {"reference": _clean(_mean(reference_values[key]))} \
            if inputs.reference is not None else {}
        out[key] = _cell(label, "beat consistency", values[key], **extra)
    return out


def listener_group(inputs: Inputs, config: m.MetricsConfig) -> dict:
    """Listening frames (own tokens silent, partner speaking): speech energy, nods and
    smiles. Overall sums the counts and weights rates, fractions and energy by listening
    time; "reference" is the same for the reference file."""
    if inputs.num_people < 2:
        return {}
    minutes = {}
    rows: dict[str, dict] = {"listener_energy": {}, "listener_nods": {},
                             "listener_nods_per_minute": {}, "listener_smiles": {},
                             "listener_smiles_per_minute": {},
                             "listener_smile_fraction": {}}
    ref_rows: dict[str, dict] = {k: {} for k in rows}
    for p in range(2):
        region = inputs.listening(p)
        minutes[p] = region.sum() / FRAMES_PER_SECOND / 60
        for target, files in ((rows, inputs.sample), (ref_rows, inputs.reference)):
            if files is None:
                continue
            nods = m.count_nods(files.head_pose(p), region, config)
            smiles, fraction = m.smile_events(files.coefficient(p, "smile_left"), region, config)
            target["listener_energy"][p] = m.listener_energy(files.mel(p), region)
            target["listener_nods"][p] = nods
            target["listener_nods_per_minute"][p] = nods / minutes[p] if minutes[p] else math.nan
            target["listener_smiles"][p] = smiles
            # with the fraction, it tells long smiles from blips around the threshold
            target["listener_smiles_per_minute"][p] = (smiles / minutes[p] if minutes[p]
                                                       else math.nan)
            target["listener_smile_fraction"][p] = fraction
    total_minutes = sum(minutes.values())

    def overall(key: str, target: dict) -> float:
        per = target[key]
        if key in ("listener_nods", "listener_smiles"):
            return float(sum(per.values()))
        if key in ("listener_nods_per_minute", "listener_smiles_per_minute"):
            counts = target[key.replace("_per_minute", "")]
            return sum(counts.values()) / total_minutes if total_minutes else math.nan
        # weighted by listening time: the mean over both people's listening frames
        weights = {p: minutes[p] for p in per if not math.isnan(per[p]) and minutes[p]}
        if not weights:
            return math.nan
        return float(sum(per[p] * w for p, w in weights.items()) / sum(weights.values()))

    labels = {"listener_energy": "speech energy while listening (nats)",
              "listener_nods": "nods while listening",
              "listener_nods_per_minute": "  nods per minute of listening",
              "listener_smiles": "smiles while listening",
              "listener_smiles_per_minute": "  smiles per minute of listening",
              "listener_smile_fraction": "  fraction of listening smiling"}
    out = {}
    for key, label in labels.items():
        values = {f"p{p}": v for p, v in rows[key].items()}
        values["overall"] = overall(key, rows)
        extra = {}
        if inputs.reference is not None:
            extra["reference"] = _clean(overall(key, ref_rows))
        out[key] = _cell(label, "listener", values, **extra)
    out["listener_energy"]["note"] = "0 = silent; reference column: the reference file"
    return out


# ----------------------------------------------------------------- set groups

def diversity_group(inputs: Inputs, config: m.MetricsConfig) -> dict:
    """Div_h, Div_e per person across all generated files; overall = mean of people."""
    labels = {"div_h": "Div_h (yaw/pitch/roll rad + translation)", "div_e": "Div_e (expression)"}
    if len(inputs.samples) < 2:
        note = "needs >= 2 generated files for the same input"
        return {key: _cell(label, "diversity", {"p0": None, "p1": None, "overall": None},
                           note=note) for key, label in labels.items()}
    out = {}
    for key, features in (("div_h", lambda f, p: m.head_pose_features(f.head_pose(p))),
                          ("div_e", lambda f, p: f.expression(p))):
        values = {}
        for p in range(inputs.num_people):
            values[f"p{p}"] = m.diversity(np.stack([features(f, p) for f in inputs.samples]))
        # every person has T frames and the same dimensions, so the plain mean of the
        # per-person values is the mean over all frames, people and dimensions
        values["overall"] = float(np.mean(list(values.values())))
        out[key] = _cell(labels[key], "diversity", values,
                         note=f"std across {len(inputs.samples)} samples")
    return out


SampleGroup = Callable[[Inputs, m.MetricsConfig], dict]
SAMPLE_GROUPS: list[SampleGroup] = [lip_sync_group, fde_group, beat_group, listener_group]
SET_GROUPS: list[SampleGroup] = [diversity_group]


# ----------------------------------------------------------------- driver

def _regions(reference: AvFile | None, first: AvFile, tokens, num_people: int,
             config: m.MetricsConfig):
    """Speech regions per person: tokens' non-silence frames, else speech activity of the
    reference mel (else of the first generated file's mel)."""
    if tokens is not None:
        masks = [m.token_masks(tokens.token_ids(p)) for p in range(num_people)]
        return (tuple(s for s, _ in masks), tuple(b for _, b in masks),
                "tokens (non-silence phonemes; p/b/m for lip closures)")
    source = reference or first
    return (tuple(m.activity_mask(source.mel(p), config) for p in range(num_people)), None,
            f"mel activity of {source.path}")


def evaluate(generated: list[str], reference: str | None = None, tokens: str | None = None,
             config: m.MetricsConfig = m.MetricsConfig()) -> dict:
    """Load and check every file first (InputError naming the file), then compute."""
    if not generated:
        raise InputError("give at least one generated .av.npz file")
    samples = [load_av(path) for path in generated]
    ref = load_av(reference) if reference is not None else None
    anchor = ref or samples[0]
    samples = [_align(s, anchor) if s is not anchor else s for s in samples]
    timeline = None
    if tokens is not None:
        from avgen.text.timeline import load_timeline

        timeline = load_timeline(tokens)
        if timeline.num_frames != anchor.num_frames:
            raise InputError(f"has {timeline.num_frames} frames, {anchor.path} has "
                             f"{anchor.num_frames}", tokens)
    speaking, bilabial, region_source = _regions(ref, samples[0], timeline, anchor.num_people,
                                                 config)
    base = Inputs(None, tuple(samples), ref, speaking, bilabial)
    per_sample = []
    for sample in samples:
        inputs = dataclasses.replace(base, sample=sample)
        cells: dict = {}
        for group in SAMPLE_GROUPS:
            cells.update(group(inputs, config))
        per_sample.append({"path": sample.path, "metrics": cells})
    summary = _average([s["metrics"] for s in per_sample])
    for group in SET_GROUPS:
        summary.update(group(base, config))
    return {
        "format": REPORT_FORMAT,
        "generated": [s.path for s in samples],
        "reference": reference,
        "tokens": tokens,
        "num_frames": anchor.num_frames,
        "num_people": anchor.num_people,
        "frames_per_second": FRAMES_PER_SECOND,
        "regions": region_source,
        "config": dataclasses.asdict(config),
        "metrics": summary,
        "samples": per_sample,
    }


def _average(per_sample: list[dict]) -> dict:
    """Cell-wise mean over samples of the numeric columns (None where all are None)."""
    out = {}
    for key, first in per_sample[0].items():
        cell = dict(first)
        for column, value in first.items():
            if column in ("label", "group", "note"):
                continue
            cell[column] = _clean(_mean([s[key][column] for s in per_sample
                                         if s[key][column] is not None]))
        out[key] = cell
    return out


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the human-readable table."""
    people = [f"p{p}" for p in range(report["num_people"])]
    has_reference = any("reference" in c for c in report["metrics"].values())
    columns = ["metric", *people, "overall"] + (["reference"] if has_reference else []) + ["note"]
    rows = []
    for cell in report["metrics"].values():
        row = [cell["label"]] + [_format(cell.get(c)) for c in people + ["overall"]]
        if has_reference:
            row.append(_format(cell.get("reference")) if "reference" in cell else "")
        row.append(cell.get("note", ""))
        rows.append(row)
    return columns, rows


def _format(value) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{value:.0f}"
    # float32 inputs leave ~1e-7 residues where the answer is 0: show those as 0
    return f"{value:.3f}" if abs(value) >= 0.001 or abs(value) < 1e-5 else f"{value:.2e}"
