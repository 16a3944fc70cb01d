"""Batch generation: many dialogues from a jobs file, resumable and shardable.

A jobs file is JSON Lines, one job per line (blank lines are ignored):

    {"script": "scripts/intro.txt", "refs": ["alice.png", "bob.png"]}
    {"turns": [["Alice", "Hi there."], ["Bob", "Hello."]], "refs": ["a.png", "b.png"],
     "output": "hello.mp4", "seed": 3, "steps": 16, "voices": ["af_bella", "bm_george"]}
    {"text": "Alice: Hi\\nBob: Hello", "refs": ["a.png", "b.png"]}

Exactly one of `script` (a script file), `text` (script text) or `turns` (a list of
[name, words] pairs) says what is spoken; `refs` names the two photos, first speaker
first. Optional: `output` (a file name ending in .mp4, written into the output folder;
default `job-LLLLL.mp4` from the line number L), `seed`, `steps`, `voices` (two names),
`rate` (speaking rate, 1.2 is 20% faster), `gap` (seconds between turns), `crop` (photo
or face), `layout` (side, stacked or single: one MP4 per person, NAME-1.mp4 and
NAME-2.mp4); unset ones take the command's options. Relative paths are relative to the
jobs file's folder, so a jobs file travels with its inputs.

A job is identified by its line number. Shard K/N (0-based: 0 <= K < N) takes the lines
L with (L - 1) mod N == K, so N processes given 0/N .. N-1/N cover every line exactly
once. A job whose output already exists as a readable MP4 (video and audio streams that
ffmpeg can demux to the end) is skipped, so re-running a batch resumes it; a bad line or
a failing job is recorded and the batch goes on. Each finished job appends one JSON line
to the results file: line, output, status (ok, skipped, error), seconds, error.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from avgen.constants import NUM_PEOPLE
from avgen.errors import AvgenError, InputError
from avgen.face.frames import CROPS, LAYOUTS
from avgen.limits import SEED, STEPS
from avgen.text.script import Dialogue

KEYS = ("script", "text", "turns", "refs", "output", "seed", "steps", "voices", "rate", "gap",
        "crop", "layout")
_OUTPUT_NAME = re.compile(r"^[\w][\w.+-]*\.mp4$")


@dataclass(frozen=True)
class Shard:
    """Part `index` of `count` (0-based): the lines L with (L - 1) mod count == index."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, spec: str) -> Shard:
        """'K/N' with integers 0 <= K < N; InputError otherwise."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
        if not match:
            raise InputError(f"expected K/N (shard K of N, 0-based), got {spec!r}", "--shard")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or index >= count:
            raise InputError(f"{spec!r}: need N >= 1 and 0 <= K < N (shards are 0-based: "
                             f"0/{max(count, 1)} .. {max(count, 1) - 1}/{max(count, 1)})",
                             "--shard")
        return cls(index, count)

    def owns(self, line: int) -> bool:
        return (line - 1) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Job:
    """One line of a jobs file. `script` is a path, or a parsed Dialogue for inline text."""

    line: int
    output: str
    script: str | Dialogue
    refs: tuple[str, ...]
    seed: int | None = None
    steps: int | None = None
    voices: tuple[str, ...] | None = None
    rate: float | None = None
    gap: float | None = None
    crop: str | None = None
    layout: str | None = None


@dataclass(frozen=True)
class BadJob:
    """A line that could not be read as a job; it becomes an error result."""

    line: int
    output: str | None
    error: str


def _fail(where: str, message: str):
    raise InputError(message, where)


def parse_job(raw: str, line: int, jobs_path: Path) -> Job:
    """One JSON line -> Job; InputError naming `jobs_path:line` otherwise."""
    from avgen.text.script import parse_script
    from avgen.text.timeline import TimelineConfig

    where = f"{jobs_path}:{line}"
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as exc:
        _fail(where, f"not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(spec, dict):
        _fail(where, "a job must be a JSON object")
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        _fail(where, f"unknown key {unknown[0]!r}; keys are {', '.join(KEYS)}")
    base = jobs_path.parent

    def path(value) -> str:
        return str(value if Path(value).is_absolute() else base / value)

    given = [k for k in ("script", "text", "turns") if k in spec]
    if len(given) != 1:
        _fail(where, "give exactly one of 'script' (a file), 'text' or 'turns'")
    kind, value = given[0], spec[given[0]]
    if kind == "turns":
        if (not isinstance(value, list) or not value or not all(
                isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) and "\n" not in x
                                                            for x in t) for t in value)):
            _fail(where, "'turns' must be a list of [name, words] pairs of one-line strings")
        value = "\n".join(f"{name}: {words}" for name, words in value)
    if kind == "script":
        if not isinstance(value, str) or not value:
            _fail(where, "'script' must be a file name")
        script = path(value)
    else:
        if not isinstance(value, str):
            _fail(where, f"'{kind}' must be a string")
        script = parse_script(value, f"{where} {kind}")  # errors name the job's line
    refs = spec.get("refs")
    if not (isinstance(refs, list) and len(refs) == NUM_PEOPLE
            and all(isinstance(r, str) and r for r in refs)):
        _fail(where, "'refs' must list two photo files, first speaker first")
    output = spec.get("output", f"job-{line:05d}.mp4")
    if not isinstance(output, str) or not _OUTPUT_NAME.match(output):
        _fail(where, f"'output' must be a plain file name ending in .mp4, got {output!r}")
    seed, steps, voices = spec.get("seed"), spec.get("steps"), spec.get("voices")
    if seed is not None and (type(seed) is not int or not SEED[0] <= seed <= SEED[1]):
        _fail(where, f"'seed' must be an integer from {SEED[0]} to {SEED[1]} (as --seed), "
                     f"got {seed!r}")
    if steps is not None and (type(steps) is not int or not STEPS[0] <= steps <= STEPS[1]):
        _fail(where, f"'steps' must be an integer from {STEPS[0]} to {STEPS[1]}, got {steps!r}")
    if voices is not None:
        if not (isinstance(voices, list) and len(voices) == NUM_PEOPLE
                and all(isinstance(v, str) for v in voices)):
            _fail(where, "'voices' must name two voices, first speaker first")
        voices = tuple(voices)
    rate, gap = spec.get("rate"), spec.get("gap")
    for key, value in (("rate", rate), ("gap", gap)):
        if value is not None and (type(value) not in (int, float)):
            _fail(where, f"'{key}' must be a number, got {value!r}")
    try:  # the ranges live in TimelineConfig
        TimelineConfig(**{k: float(v) for k, v in (("rate", rate), ("turn_gap", gap))
                          if v is not None})
    except InputError as exc:
        _fail(where, exc.reason)
    crop, layout = spec.get("crop"), spec.get("layout")
    for key, value, allowed in (("crop", crop, CROPS), ("layout", layout, LAYOUTS)):
        if value is not None and value not in allowed:
            _fail(where, f"'{key}' must be one of {', '.join(allowed)}, got {value!r}")
    return Job(line, output, script, tuple(path(r) for r in refs), seed, steps, voices,
               None if rate is None else float(rate), None if gap is None else float(gap),
               crop, layout)


def read_jobs(jobs_path: str | Path) -> list[Job | BadJob]:
    """Every non-blank line of a jobs file, as a Job or a BadJob (never raises for a bad
    line; a missing or unreadable file is an InputError). Two jobs writing the same output
    make the later one bad, on every shard alike."""
    jobs_path = Path(jobs_path)
    try:
        text = jobs_path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError("no such jobs file", str(jobs_path)) from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise InputError(f"not a UTF-8 jobs file ({type(exc).__name__})", str(jobs_path)) from None
    jobs: list[Job | BadJob] = []
    owner: dict[str, int] = {}
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            job = parse_job(raw, line, jobs_path)
        except InputError as exc:
            jobs.append(BadJob(line, None, str(exc)))
            continue
        if job.output in owner:
            jobs.append(BadJob(line, job.output, f"{jobs_path}:{line}: output {job.output!r} "
                                                 f"is already written by line {owner[job.output]}"))
            continue
        owner[job.output] = line
        jobs.append(job)
    return jobs


def mp4_is_complete(path: str | Path) -> bool:
    """True if ffmpeg can demux a video and an audio stream of `path` to its end (what a
    finished synth writes); a partial or foreign file is False."""
    import subprocess

    from avgen.video import ffmpeg_exe

    if not Path(path).is_file():
        return False
    from avgen import outputs

    process = outputs.spawn([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path),
                             "-map", "0:v:0", "-map", "0:a:0", "-c", "copy", "-f", "null",
                             "-"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, stderr = process.communicate()
    finally:
        outputs.stop(process)  # also when a signal interrupts the check
    return process.returncode == 0 and not stderr.strip()


class ResultsFile:
    """Appends one JSON line per job. Each record is one `write` on an O_APPEND descriptor,
    then fsync, so records of processes sharing a file do not interleave and a crash loses
    at most the record being written (a torn last line is closed off before appending)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(self._fd).st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    os.write(self._fd, b"\n")

    def write(self, record: dict) -> None:
        os.write(self._fd, (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class BatchSummary:
    ok: int
    skipped: int
    errors: int
    results: Path

    @property
    def jobs(self) -> int:
        return self.ok + self.skipped + self.errors


def default_results(output_dir: Path, shard: Shard) -> Path:
    """results.jsonl, or results.shard-K-of-N.jsonl so shards never share a file."""
    if shard.count == 1:
        return output_dir / "results.jsonl"
    return output_dir / f"results.shard-{shard.index}-of-{shard.count}.jsonl"


def run_job(job: Job, output_dir: Path, synthesizer) -> dict:
    """Synthesise one job unless its output is already complete; a result record."""
    from avgen.face.frames import output_paths

    output = output_dir / job.output
    layout = job.layout or synthesizer.config.layout
    if all(mp4_is_complete(path) for path in output_paths(output, layout, NUM_PEOPLE)):
        return {"status": "skipped"}
    result = synthesizer.synth(job.script, list(job.refs), str(output), seed=job.seed,
                               steps=job.steps, voices=job.voices, rate=job.rate,
                               gap=job.gap, layout=job.layout, crop=job.crop, progress=False)
    return {"status": "ok", "frames": result.frames}


def run_batch(jobs_path: str | Path, output_dir: str | Path, synthesizer,
              shard: Shard = Shard(), results: str | Path | None = None,
              progress: bool = True) -> BatchSummary:
    """Run this shard's jobs of a jobs file into `output_dir` with one `Synthesizer`
    (models loaded once, before the first job). Never stops for a bad job; returns counts.
    Raises only for what no job could survive: no jobs file, no models."""
    from tqdm import tqdm

    output_dir = Path(output_dir)
    jobs = [j for j in read_jobs(jobs_path) if shard.owns(j.line)]
    output_dir.mkdir(parents=True, exist_ok=True)
    results_path = Path(results) if results is not None else default_results(output_dir, shard)
    synthesizer.load()
    counts = {"ok": 0, "skipped": 0, "error": 0}
    # a bar on a terminal; in a log file, one plain line per job instead of a bar's
    # carriage-return updates
    terminal = sys.stderr.isatty()
    with ResultsFile(results_path) as log, tqdm(
            jobs, desc=f"synth {shard}" if shard.count > 1 else "synth", unit="job",
            file=sys.stderr, disable=not (progress and terminal), dynamic_ncols=True) as bar:
        for job in bar:
            started = time.perf_counter()
            if isinstance(job, BadJob):
                record = {"status": "error", "error": job.error}
            else:
                try:
                    record = run_job(job, output_dir, synthesizer)
                except AvgenError as exc:
                    record = {"status": "error", "error": str(exc)}
                except Exception as exc:  # a bug or a resource failure: record it, go on
                    record = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
            where = f"{jobs_path}:{job.line}"
            if record.get("error") and not record["error"].startswith(where):
                record["error"] = f"{where}: {record['error']}"  # every error names its line
            record = {"line": job.line, "output": job.output, **record,
                      "seconds": round(time.perf_counter() - started, 3)}
            log.write(record)
            counts[record["status"]] += 1
            if record["status"] == "error":
                bar.write(f"line {job.line}: error: {record['error']}", file=sys.stderr)
            elif progress and not terminal:
                print(f"line {job.line}: {record['status']} {job.output} "
                      f"({record['seconds']:.1f} s)", file=sys.stderr, flush=True)
            bar.set_postfix(ok=counts["ok"], skipped=counts["skipped"], error=counts["error"])
    return BatchSummary(counts["ok"], counts["skipped"], counts["error"], results_path)
