"""The `avgen` command line: parses and validates, then calls library functions."""

from __future__ import annotations

import enum
import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from avgen import __version__
from avgen.constants import DEFAULT_TEMPERATURE, FRAMES_PER_SECOND
from avgen.errors import AvgenError, InputError

app = typer.Typer(
    help="avgen: a written two-person dialogue + two face photos -> one talking MP4.\n\n"
         "Each stage is its own command and file arguments take '-' for stdin/stdout, "
         "so stages compose in shell pipelines.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)
weights_app = typer.Typer(
    help="The checkpoints avgen knows (weights.toml): list, verify, locate, fetch.",
    no_args_is_help=True, rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(weights_app, name="weights")
train_app = typer.Typer(
    help="Research side: build the teacher corpus, train the models.",
    no_args_is_help=True, rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(train_app, name="train")

err = Console(stderr=True, highlight=False, soft_wrap=True)


def _user_errors(command):
    """Print an AvgenError as one line on stderr and exit with its code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except AvgenError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted; nothing was written")
            raise typer.Exit(130) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"avgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


class DurationChoice(str, enum.Enum):
    learned = "learned"
    espeak = "espeak"


@app.command()
@_user_errors
def tokens(
    script: str = typer.Argument(..., help="Dialogue script (UTF-8, 'NAME: words' per line); "
                                           "'-' reads stdin."),
    output: Optional[str] = typer.Option(
        None, "-o", "--output",
        help="Tokens file to write (avgen.tokens/1 .npz); '-' writes stdout. "
             "Default: SCRIPT's name with .tokens.npz in the current folder."),
    durations: DurationChoice = typer.Option(
        DurationChoice.learned, help="Where phoneme durations and tokens come from. "
        "'learned': the trained text-to-tokens model (soft token posteriors from its "
        "decoder); 'espeak': libespeak-ng's own phoneme timing and a punctuation pause "
        "table, with one-hot tokens (the baseline)."),
    checkpoint: Optional[Path] = typer.Option(
        None, help="Text-to-tokens checkpoint (.safetensors from 'avgen train tokens') "
        "instead of the shipped weights; only with --durations learned."),
    seed: int = typer.Option(0, help="Seed for the token decoder's sampling noise (the "
                             "flow decoder; the direct head is deterministic anyway)."),
    rate: float = typer.Option(1.0, min=0.25, max=4.0,
                               help="Speaking rate; 1.2 is 20% faster."),
    gap: float = typer.Option(0.35, min=0.0, max=10.0, help="Silence between turns, seconds."),
) -> None:
    """Turn a dialogue script into a timeline and per-frame phoneme tokens.

    Writes the turns (speaker, start/end frame, text, phonemes with frame durations),
    cues and pauses, and for each person token_logits (T, V) on the 86.13 fps model
    clock. Errors in the script name file and line; exit code 2, nothing written.
    """
    from avgen.script import read_script
    from avgen.tokens import (EspeakDurations, LearnedDurations, TimelineConfig,
                              build_timeline, save_timeline)

    if checkpoint is not None and durations != DurationChoice.learned:
        raise InputError("--checkpoint goes with --durations learned")
    dialogue = read_script(script)
    if output is None:
        output = "-" if script == "-" else Path(script).name.split(".")[0] + ".tokens.npz"
    if durations == DurationChoice.learned:
        source = LearnedDurations(checkpoint, seed=seed)
    else:
        source = EspeakDurations()
    timeline = build_timeline(dialogue, source, TimelineConfig(rate=rate, turn_gap=gap))
    save_timeline(output, timeline)
    _print_timeline_summary(timeline, output)


def _print_timeline_summary(timeline, output: str) -> None:
    table = Table(title=f"{output}: {timeline.num_frames} frames, "
                        f"{timeline.num_frames / FRAMES_PER_SECOND:.2f} s", title_justify="left")
    for column in ("line", "speaker", "start s", "end s", "phonemes", "text"):
        table.add_column(column, overflow="fold")
    for k, turn in enumerate(timeline.turns):
        table.add_row(str(turn.line), timeline.names[turn.person],
                      f"{turn.start_frame / FRAMES_PER_SECOND:.2f}",
                      f"{turn.end_frame / FRAMES_PER_SECOND:.2f}",
                      str(turn.phoneme_count), turn.text)
    err.print(table)


@app.command()
@_user_errors
def phonemize(text: str = typer.Argument(..., help="English text to normalise and phonemise."),
              ) -> None:
    """Show how the text frontend reads TEXT: normalised words, phonemes, pauses."""
    from avgen.symbols import phones_to_ids
    from avgen.text import normalize, to_phrases

    typer.echo(normalize(text))
    for phrase in to_phrases(text, "<text>"):
        phones_to_ids(phrase.phones, "<text>")  # same check the timeline applies
        pause = f"  (pause {phrase.pause_after:g} s)" if phrase.pause_after else ""
        typer.echo(" ".join(phrase.phones) + pause)


def _registry():
    from avgen.weights import Weights

    return Weights()


@weights_app.command("list")
@_user_errors
def weights_list() -> None:
    """List registered weights: component, size, licence, source, and whether present."""
    registry = _registry()
    if not registry.entries:
        err.print(f"no weights registered yet in {registry.registry_path}")
        return
    table = Table()
    for column in ("name", "component", "size MB", "licence", "source", "status"):
        table.add_column(column)
    for name, entry in sorted(registry.entries.items()):
        table.add_row(name, entry.component, f"{entry.size / 1e6:.1f}", entry.licence,
                      entry.source, registry.status(name))
    Console().print(table)


@weights_app.command("verify")
@_user_errors
def weights_verify(names: Optional[list[str]] = typer.Argument(
        None, help="Entries to check (default: all).")) -> None:
    """Check sha256 and size of weights files. Exit 3 if a builtin or named entry is
    missing or any file is corrupt; fetchable entries not yet fetched are only reported."""
    registry = _registry()
    chosen = names or sorted(registry.entries)
    failed = 0
    for name in chosen:
        entry = registry.entry(name)
        state = registry.status(name)
        bad = state == "corrupt" or (state == "missing" and (entry.builtin or names))
        failed += bool(bad)
        note = "" if state == "ok" else f" ({registry.location(name)})"
        typer.echo(f"{name}: {state}{note}")
    if failed:
        err.print(f"[bold red]error:[/] {failed} of {len(chosen)} weights failed verification",
                  markup=True)
        raise typer.Exit(3)


@weights_app.command("path")
@_user_errors
def weights_path(name: str = typer.Argument(..., help="Registered weights name.")) -> None:
    """Print the verified path of a weights file (exit 3 if missing or corrupt)."""
    typer.echo(str(_registry().path(name)))


@weights_app.command("fetch")
@_user_errors
def weights_fetch(name: str = typer.Argument(..., help="Registered weights name.")) -> None:
    """Download a URL-sourced weights file into the cache ($AVGEN_CACHE_DIR), verified.
    The only command that uses the network."""
    from tqdm import tqdm

    registry = _registry()
    entry = registry.entry(name)
    with tqdm(total=entry.size, unit="B", unit_scale=True, desc=name, file=sys.stderr) as bar:
        path = registry.fetch(name, progress=bar.update)
    typer.echo(str(path))


@train_app.command("corpus")
@_user_errors
def train_corpus(
    root: Path = typer.Argument(..., help="Corpus folder (created; an existing one is resumed)."),
    sentences: int = typer.Option(6400, min=4, help="Sentences to synthesise (one voice each; "
                                  "6400 gives about 5.5 hours of speech)."),
    seed: int = typer.Option(0, help="Seed for sentences, voices, dialogues and motion."),
    voices: str = typer.Option("heart,heart-low", help="Teacher voices, comma-separated, used "
                               "in turn: heart, heart-low (hibari, default); joe (piper "
                               "extra); jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro, "
                               "jm_kumo (kokoro extra)."),
) -> None:
    """Build the teacher corpus: speech (hibari teacher voices, exact phoneme durations),
    log-mel features, dyadic dialogues with procedural teacher motion.

    Needs the **teachers** extra (`pip install 'avgen[teachers]'`). Resumable: finished
    shards are kept, so re-running continues where a run stopped. Deterministic for a seed.
    """
    from tqdm import tqdm

    from avgen.train import corpus

    from avgen.train.teachers import VOICES

    names = tuple(v.strip() for v in voices.split(",") if v.strip())
    unknown = [v for v in names if v not in VOICES]
    if unknown or len(set(names)) < 2:
        raise InputError(f"--voices needs at least two of {', '.join(VOICES)}; got {voices!r}")
    config = corpus.CorpusConfig(num_sentences=sentences, seed=seed, voices=names)
    config_file = root / "config.json"
    if config_file.exists():
        import json

        existing = json.loads(config_file.read_text())
        if (existing.get("num_sentences") != sentences or existing.get("seed") != seed
                or tuple(existing.get("voices", ())) != names):
            raise InputError(f"holds a corpus of {existing.get('num_sentences')} sentences, "
                             f"seed {existing.get('seed')}, voices "
                             f"{','.join(existing.get('voices', ()))}; use another folder",
                             str(root))
    root.mkdir(parents=True, exist_ok=True)
    with tqdm(total=config.num_utterances, desc="speech", unit="utt", file=sys.stderr) as bar:
        corpus.build_utterances(root, config, progress=bar.update)
    with tqdm(total=config.num_utterances, desc="features", unit="utt", file=sys.stderr) as bar:
        corpus.build_features(root, progress=bar.update)
    with tqdm(desc="dialogues", unit="dlg", file=sys.stderr) as bar:
        corpus.build_dialogues(root, corpus.DialogueConfig(seed=seed), progress=bar.update)
    err.print(corpus.summary(root))


# -- face: render and track (issue 3) -------------------------------------------------------
class Layout(str, enum.Enum):
    side_by_side = "side-by-side"
    stacked = "stacked"


@app.command()
@_user_errors
def render(
    inputs: list[str] = typer.Argument(..., help="Motion to render: an avgen.av/1 or "
                                       "avgen.motion/1 .npz ('-' reads stdin)."),
    ref: list[str] = typer.Option(..., "--ref", help="Reference face photo, one per person "
                                  "in the file's order: --ref a.png b.png (or --ref a.png "
                                  "--ref b.png)."),
    output: str = typer.Option(..., "-o", "--output", help="MP4 to write (H.264/AAC, yuv420p)."),
    audio: Optional[str] = typer.Option(None, "--audio", help="Audio to mux in (e.g. the "
                                        "output of avgen vocode)."),
    fps: float = typer.Option(25.0, "--fps", help="Video frame rate; motion is resampled "
                              "from the 86.13 fps model clock."),
    size: int = typer.Option(512, "--size", help="Face size in pixels (square, even)."),
    layout: Layout = typer.Option(Layout.side_by_side, "--layout",
                                  help="How two people are composed."),
    frames: Optional[str] = typer.Option(None, "--frames", help="Also write every frame "
                                         "as PNG into this folder (for inspection)."),
) -> None:
    """Render talking/listening faces: warp each reference photo so its face follows the
    motion (head pose + expressions), fill open mouths, close lids on blinks, and write one
    MP4 with both people side by side (or stacked)."""
    from avgen.errors import InputError
    from avgen.face.frames import VideoConfig, render_video

    if output == "-":
        raise InputError("an MP4 cannot be streamed to stdout; give a file name", "-o")
    # `--ref a.png b.png`: click gives --ref one value, so b.png arrives as a positional
    # argument next to the motion file; the motion file is the .npz (or '-').
    motions = [a for a in inputs if a == "-" or a.lower().endswith(".npz")]
    if len(motions) != 1:
        raise InputError(f"expected one motion file (.npz or '-'), got {len(motions)}: "
                         f"{' '.join(inputs)}", "render")
    motion = motions[0]
    refs = list(ref) + [a for a in inputs if a is not motion]
    count = render_video(motion, refs, output, audio=audio,
                         config=VideoConfig(fps=fps, size=size, layout=layout.value),
                         frames_dir=frames)
    err.print(f"{output}: {count} frames at {fps:g} fps ({count / fps:.2f} s)")


@app.command()
@_user_errors
def track(
    video: str = typer.Argument(..., help="Video of one face (any format ffmpeg reads)."),
    output: str = typer.Option(..., "-o", "--output", help="Motion file to write "
                               "(avgen.motion/1 .npz on the 86.13 fps clock); '-' for stdout."),
    ref: Optional[str] = typer.Option(None, "--ref", help="Neutral photo of the same person "
                                      "(the reference `avgen render` used). Default: the "
                                      "video's own most neutral frame."),
) -> None:
    """Recover head pose + expression coefficients from a video of one face (the inverse
    of `avgen render`), smoothed over time, on the model clock."""
    from avgen.face.motion import save_motion
    from avgen.face.track import track_video

    motion = track_video(video, ref=ref)
    save_motion(output, motion)
    err.print(f"{output}: {motion.num_frames} frames "
              f"({motion.num_frames / FRAMES_PER_SECOND:.2f} s) of head pose + expression")


@app.command("eval")
@_user_errors
def eval_(
    generated: list[str] = typer.Argument(
        ..., help="Generated avgen.av/1 files; several samples for the same input give "
                  "the diversity metrics (Div_h, Div_e)."),
    reference: Optional[str] = typer.Option(
        None, "--reference", "-r", help="Reference (teacher) avgen.av/1 file for the same "
        "input: needed for lip-closure F1 and FDe."),
    tokens: Optional[str] = typer.Option(
        None, "--tokens", help="Tokens file of the input: speech regions and p/b/m "
        "intervals come from it instead of the reference's mel and lips_close."),
    json_path: Optional[str] = typer.Option(
        None, "--json", help="Also write the report as JSON ('-' = stdout; the table then "
                             "goes to stderr)."),
) -> None:
    """Measure generated audio-visual files: lip-closure F1, FDe, Div_h/Div_e,
    BC_h/BC_e and listener behaviour, per person and overall.

    Prints a table; `--json PATH` writes the full report (per file, per person).
    Files must be for the same input (same frames and people). Definitions:
    `avgen/metrics/motion.py`.
    """
    import json

    from avgen.formats import atomic_write_bytes
    from avgen.metrics.evaluate import evaluate, table_rows

    if json_path not in (None, "-") and not Path(json_path).parent.is_dir():
        raise InputError("output folder does not exist", str(Path(json_path).parent))
    report = evaluate(generated, reference, tokens)
    columns, rows = table_rows(report)
    files = len(report["generated"])
    table = Table(title=f"{report['num_frames']} frames; speech regions from "
                        f"{report['regions']}"
                        + (f"; per-file metrics are the mean of {files} files" if files > 1
                           else ""), title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    (err if json_path == "-" else Console(highlight=False)).print(table)
    if json_path is not None:
        text = json.dumps(report, indent=1, ensure_ascii=False, allow_nan=False)
        atomic_write_bytes(json_path, (text + "\n").encode())


@train_app.command("av")
@_user_errors
def train_av(
    corpus_root: Path = typer.Argument(..., help="Teacher corpus folder ('avgen train corpus')."),
    run_dir: Path = typer.Option(..., "-o", "--output", help="Run folder: checkpoint, log; an "
                                 "existing run is resumed."),
    steps: int = typer.Option(20000, min=1, help="Total optimizer steps (the learning-rate "
                              "schedule's length)."),
    stop_at: int = typer.Option(0, min=0, help="Stop at this step with a checkpoint (0: at "
                                "--steps); run again with the same --steps to go on. "
                                "Equal-budget ablations, runs spread over sessions."),
    batch_size: int = typer.Option(8, min=1, help="Global batch: under torchrun it is split "
                                   "evenly over the processes (a multiple of their number)."),
    frames: int = typer.Option(300, min=16, help="Window length in frames (86.13 per second)."),
    d_model: int = typer.Option(256, min=16), blocks: int = typer.Option(4, min=1),
    heads: int = typer.Option(4, min=1),
    ff_kernel: int = typer.Option(3, min=1, help="Frames seen by the feed-forward's first "
                                  "layer (1: plain MLP)."),
    fusion: str = typer.Option("highway", help="How audio and motion streams meet: highway "
                               "(default), or the ablations separate, shared, cascaded."),
    seed: int = typer.Option(0), threads: int = typer.Option(0, help="torch threads (0: default)."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda if available)."),
    precision: str = typer.Option("auto", help="auto (bfloat16 autocast where the hardware "
                                  "has it: GPUs, CPUs with AMX/AVX-512 bf16), bf16 or fp32."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start a new run from this "
                                        "checkpoint's weights and normaliser (fine-tuning, "
                                        "e.g. on 'avgen prepare' shards); its model config "
                                        "wins. Voices it lacks start as copies of its first."),
) -> None:
    """Train (or resume) the joint audio-visual flow model on a teacher corpus or on an
    'avgen prepare' folder. Checkpoints every 500 steps to RUN/av-latest.safetensors;
    progress in RUN/train.log.

    Data-parallel: `torchrun --nproc_per_node=N -m avgen train av CORPUS -o RUN` (gloo on
    CPU, nccl on GPU); the result equals one process with the same --batch-size."""
    from tqdm import tqdm

    from avgen.model.av_flow import FUSIONS, AVFlowConfig
    from avgen.train.av import TrainConfig, train
    from avgen.train.distributed import Ranks

    if fusion not in FUSIONS:
        raise InputError(f"--fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    model_config = AVFlowConfig(d_model=d_model, n_blocks=blocks, n_heads=heads,
                                ff_kernel=ff_kernel, fusion=fusion)
    if precision not in ("auto", "bf16", "fp32"):
        raise InputError(f"--precision must be auto, bf16 or fp32, got {precision!r}")
    import torch

    from avgen.train.av import bf16_is_fast

    bf16 = precision == "bf16" or (precision == "auto" and bf16_is_fast(
        device or ("cuda" if torch.cuda.is_available() else "cpu")))
    config = TrainConfig(steps=steps, batch_size=batch_size, frames=frames, seed=seed,
                         threads=threads, bf16=bf16, stop_at=stop_at)
    with tqdm(total=config.last_step, desc="train av", unit="step",
              file=sys.stderr, disable=not Ranks.from_env().main) as bar:  # one bar, rank 0's
        def progress(n, loss):
            bar.update(n)
            if loss is not None:
                bar.set_postfix(loss=f"{loss:.3f}")
        if init is not None and not init.is_file():
            raise InputError("no such checkpoint", str(init))
        path = train(corpus_root, run_dir, model_config, config, device, progress,
                     log=lambda m: err.print(m), init=init)
    if Ranks.from_env().main:
        err.print(f"checkpoint: {path}")


@app.command()
@_user_errors
def synth(
    inputs: Optional[list[str]] = typer.Argument(None, help="Dialogue script ('NAME: words' "
                                                 "per line); not with --batch."),
    ref: Optional[list[str]] = typer.Option(None, "--ref", help="Two face photos, first speaker "
                                            "first: --ref a.png b.png (or --ref a.png --ref "
                                            "b.png); not with --batch."),
    output: str = typer.Option(..., "-o", "--output", help="MP4 to write; with --batch, the "
                               "folder for every job's MP4 and the results file."),
    batch: Optional[Path] = typer.Option(None, "--batch", help="Jobs file (JSON Lines, one job "
                                         "per line; see above): synthesise every job with the "
                                         "models loaded once."),
    shard: str = typer.Option("0/1", "--shard", help="With --batch: run only shard K of N "
                              "(0-based, 0 <= K < N): the lines L with (L - 1) mod N == K."),
    results: Optional[Path] = typer.Option(None, "--results", help="With --batch: results JSON "
                                           "Lines to append to (default OUTDIR/results.jsonl, "
                                           "or results.shard-K-of-N.jsonl with --shard)."),
    checkpoint: Optional[str] = typer.Option(None, help="Joint model checkpoint (default: the "
                                             "registered 'av-flow' weights)."),
    voice: Optional[list[str]] = typer.Option(None, help="Voice per person, twice."),
    steps: int = typer.Option(8, min=1, max=256, help="Euler steps of the flow sampler."),
    temperature: float = typer.Option(DEFAULT_TEMPERATURE, min=0.0, max=2.0,
                                      help="Scale of the speech's starting noise: lower is "
                                      "cleaner and less varied."),
    seed: int = typer.Option(0, help="Noise seed; the same seed gives the same video."),
    vocoder: str = typer.Option("vocos", help="vocos (default), griffinlim or bigvgan."),
    fps: float = typer.Option(25.0, help="Video frame rate."),
    size: int = typer.Option(512, help="Face size in pixels."),
    layout: str = typer.Option("side-by-side", help="side-by-side or stacked."),
    device: str = typer.Option("cpu", help="torch device."),
) -> None:
    """The whole chain: a dialogue script and two face photos in, one MP4 out, in which
    both people speak their lines and the listener reacts.

    **Batch:** `avgen synth --batch jobs.jsonl -o outdir/ [--shard K/N]`. One JSON object
    per line: exactly one of `"script": "file.txt"`, `"text": "A: Hi\\nB: Hello"` or
    `"turns": [["A", "Hi"], ["B", "Hello"]]`; `"refs": ["a.png", "b.png"]`; optional
    `"output": "name.mp4"` (default job-LLLLL.mp4, L = line number), `"seed"`, `"steps"`,
    `"voices": ["heart", "heart-low"]` (unset: the options above). Relative paths are
    relative to the jobs file. Jobs whose MP4 is already complete are skipped (re-run to
    resume); a bad line or failing job is recorded and the rest still run. Each job appends
    {line, output, status: ok|skipped|error, seconds, error} to the results file. Exit code
    1 if any job failed (after all ran)."""
    from avgen.pipeline import GenerateConfig, SynthConfig, Synthesizer, synth as run_synth

    if voice is not None and len(voice) != 2:
        raise InputError(f"--voice takes one voice per person (2), got {len(voice)}")
    if layout not in ("side-by-side", "stacked"):
        raise InputError(f"--layout must be side-by-side or stacked, got {layout!r}")
    config = SynthConfig(generate=GenerateConfig(steps=steps, seed=seed, device=device,
                                                 voices=tuple(voice) if voice else None,
                                                 temperature=temperature),
                         vocoder=vocoder, fps=fps, size=size, layout=layout)
    if batch is not None:
        from avgen.batch import Shard, run_batch

        if inputs or ref:
            raise InputError("--batch takes scripts and photos from the jobs file; give no "
                             "script or --ref")
        part = Shard.parse(shard)
        if Path(output).exists() and not Path(output).is_dir():
            raise InputError("with --batch, -o names a folder", output)
        summary = run_batch(batch, output, Synthesizer(checkpoint, config), part, results)
        err.print(f"{summary.jobs} jobs (shard {part}): {summary.ok} ok, {summary.skipped} "
                  f"skipped, {summary.errors} failed; results in {summary.results}")
        if summary.errors:
            raise typer.Exit(1)
        return
    if shard != "0/1" or results is not None:
        raise InputError("--shard and --results go with --batch")
    if not inputs:
        raise InputError("give a dialogue script (or --batch jobs.jsonl)")
    script, extra = inputs[0], inputs[1:]  # `--ref a.png b.png` leaves b.png positional
    refs = list(ref or []) + extra
    count = run_synth(script, refs, output, checkpoint, config,
                      log=lambda stage: err.print(f"[dim]{stage}…[/]", markup=True))
    err.print(f"{output}: {count} frames at {fps:g} fps ({count / fps:.2f} s)")


# -- joint model: generate (issue 7) -------------------------------------------------------
@app.command()
@_user_errors
def generate(
    inputs: list[str] = typer.Argument(..., help="Tokens file from 'avgen tokens' "
                                       "(avgen.tokens/1); '-' reads stdin."),
    ref: Optional[list[str]] = typer.Option(None, "--ref", help="The two face photos, first "
                                            "speaker first: each face speaks with its own "
                                            "voice (the one 'avgen synth' gives it)."),
    output: str = typer.Option(..., "-o", "--output", help="avgen.av/1 file to write (mel and "
                               "motion for both people); '-' writes stdout."),
    checkpoint: Optional[str] = typer.Option(None, help="Joint model checkpoint (default: the "
                                             "registered 'av-flow' weights)."),
    voice: Optional[list[str]] = typer.Option(None, help="Voice per person, twice: "
                                              "--voice heart --voice heart-low."),
    steps: int = typer.Option(8, min=1, max=256, help="Euler steps of the flow sampler."),
    temperature: float = typer.Option(DEFAULT_TEMPERATURE, min=0.0, max=2.0,
                                      help="Scale of the speech's starting noise: lower is "
                                      "cleaner and less varied."),
    seed: int = typer.Option(0, help="Noise seed; the same seed gives the same output."),
    device: str = typer.Option("cpu", help="torch device, e.g. cpu or cuda."),
) -> None:
    """Generate speech (log-mel) and motion (head pose, expressions) for both people of a
    dialogue with the joint audio-visual flow model: the speaker talks, the listener
    reacts. Output is on the 86.13 fps model clock; vocode and render it next."""
    from avgen import formats
    from avgen.pipeline import GenerateConfig, generate as run_generate, load_av_model
    from avgen.tokens import load_timeline

    tokens_file, extra = inputs[0], inputs[1:]  # `--ref a.png b.png` leaves b.png positional
    refs = list(ref or []) + extra
    if refs and len(refs) != 2:
        raise InputError(f"--ref takes one photo per person (2), got {len(refs)}")
    if voice is not None and len(voice) != 2:
        raise InputError(f"--voice takes one voice per person (2), got {len(voice)}")
    timeline = load_timeline(tokens_file)
    model, normalizer = load_av_model(checkpoint, device)
    if voice is None and refs:
        from avgen.speaker import voices_for_faces

        voice = list(voices_for_faces(refs, model.config.voices))
    arrays = run_generate(timeline, model, normalizer,
                          GenerateConfig(steps=steps, seed=seed,
                                         voices=tuple(voice) if voice else None, device=device,
                                         temperature=temperature))
    formats.save(output, formats.AV, arrays)
    err.print(f"{output}: {timeline.num_frames} frames for {', '.join(timeline.names)}")


# --- audio: vocode, train vocoder (issue 5) -----------------------------------------------

class VocoderChoice(str, enum.Enum):
    vocos = "vocos"
    griffinlim = "griffinlim"
    bigvgan = "bigvgan"


@app.command()
@_user_errors
def vocode(
    mel: str = typer.Argument(..., help="An avgen.av/1 .npz (every person's p{i}/mel) or a "
                                        "bare .npy log-mel (T, 80); '-' reads stdin."),
    output: str = typer.Option(..., "-o", "--output", help="WAV file to write (22050 Hz, "
                               "16-bit); '-' writes stdout."),
    vocoder: VocoderChoice = typer.Option(VocoderChoice.vocos, help="vocos: our small fast "
                                          "default; griffinlim: no weights; bigvgan: NVIDIA's "
                                          "(fetch it first with 'avgen weights fetch')."),
    checkpoint: Optional[Path] = typer.Option(None, help="Use this checkpoint instead of the "
                                              "registered one (vocos: .safetensors; bigvgan: "
                                              "folder with config.json)."),
    split: bool = typer.Option(False, help="One channel per person instead of their mix."),
    iterations: int = typer.Option(32, min=1, help="Griffin-Lim iterations."),
    seed: int = typer.Option(0, help="Griffin-Lim's initial phase."),
    device: str = typer.Option("cpu", help="torch device."),
) -> None:
    """Turn log-mel spectrograms into a waveform: mel (T, 80) -> wave (T * 256) at 22050 Hz.

    With two people in the file their voices are mixed (the listener is silent) or, with
    --split, written as one channel each.
    """
    import numpy as np

    from avgen.audio.io import wav_bytes
    from avgen.audio.vocoder import load_vocoder, read_mels, vocode as run_vocoder
    from avgen.formats import atomic_write_bytes

    mels = read_mels(mel)
    model = load_vocoder(vocoder.value, checkpoint, device, iterations=iterations, seed=seed)
    waves = [run_vocoder(model, m) for m in mels]
    audio = np.stack(waves, axis=1) if split else np.sum(waves, axis=0)
    atomic_write_bytes(output, wav_bytes(audio))
    seconds = len(audio) / 22050
    err.print(f"{output}: {seconds:.2f} s, {len(mels)} {'person' if len(mels) == 1 else 'people'}"
              f", vocoder {vocoder.value}")




@train_app.command("vocoder")
@_user_errors
def train_vocoder(
    audio: list[Path] = typer.Argument(..., help="Folders of 22050 Hz .wav/.flac files "
                                                 "(searched recursively)."),
    out: Path = typer.Option(..., "-o", "--out", help="Run folder: checkpoint "
                             "(vocoder.safetensors), optimizer state and train.log. Running "
                             "again with the same folder resumes."),
    heldout: Optional[Path] = typer.Option(None, help="File listing audio paths (relative to "
                                           "AUDIO) to keep out of training; used to validate."),
    steps: int = typer.Option(20000, min=1, help="Total steps of the learning-rate schedule."),
    batch_size: int = typer.Option(16, min=1),
    segment_frames: int = typer.Option(32, min=8, help="Crop length in mel frames."),
    lr: float = typer.Option(1e-3, min=0.0),
    mel_weight: float = typer.Option(1.0, min=0.0, help="Weight of the mel L1 loss (the "
                                     "multi-resolution STFT loss has weight 1)."),
    dim: int = typer.Option(192, min=8, help="Backbone width (new runs only)."),
    layers: int = typer.Option(6, min=1, help="ConvNeXt blocks (new runs only)."),
    magnitude_prior: bool = typer.Option(True, help="Start the magnitude from the mel's "
                                         "pseudo-inverse (new runs only)."),
    seed: int = typer.Option(0, help="Seeds initialisation and the batch order."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads."),
) -> None:
    """Train (or resume) the small Vocos-style vocoder: mel (B, 80, T) -> wave (B, T*256)."""
    from avgen.audio.vocos import VocosConfig
    from avgen.train.vocoder import TrainConfig, train

    config = TrainConfig(steps=steps, batch_size=batch_size, segment_frames=segment_frames,
                         lr=lr, mel_weight=mel_weight, seed=seed)
    model = VocosConfig(dim=dim, intermediate_dim=3 * dim, num_layers=layers,
                        magnitude_prior=magnitude_prior)
    try:
        path = train(audio, out, config, model, heldout=heldout, threads=threads)
    except KeyboardInterrupt:
        # unlike other commands, training has saved its state: say so
        err.print(f"interrupted; checkpoint saved in {out}; run the same command to resume")
        raise typer.Exit(130) from None
    typer.echo(str(path))


@train_app.command("tokens")
@_user_errors
def train_tokens(
    data: Path = typer.Argument(..., help="A teacher corpus folder (exact durations) or a folder "
                                "of NAME.wav (22050 Hz) + NAME.txt recordings (aligned by MAS)."),
    output: Path = typer.Option(..., "-o", "--output", help="Run folder: state.pt, "
                                "text_to_tokens.safetensors, train.log; an existing run resumes."),
    steps: int = typer.Option(4000, min=1, help="Optimiser steps in all (a resumed run "
                              "continues to this many)."),
    batch_size: int = typer.Option(32, min=1, help="Utterances per step."),
    seed: int = typer.Option(0, help="Seed for initialisation and batches."),
    align: bool = typer.Option(False, help="Use Monotonic Alignment Search durations even "
                               "where the data has exact ones."),
    threads: int = typer.Option(1, min=1, help="torch CPU threads."),
    init: Optional[Path] = typer.Option(None, help="Start a new run from this checkpoint "
                                        "(e.g. the shipped one: 'avgen weights path "
                                        "text-to-tokens') to fine-tune on recordings."),
) -> None:
    """Train the text-to-tokens model (phoneme encoder, duration predictor, token decoder).

    Held-out utterances are never trained on; their figures go to train.log. Resumable and
    deterministic for a seed. The result loads with `avgen tokens --checkpoint`.
    """
    from tqdm import tqdm

    from avgen.train import tokens as trainer

    output.mkdir(parents=True, exist_ok=True)
    if (data / "utterances").is_dir():
        with tqdm(desc="phonemise", unit="utt", file=sys.stderr) as bar:
            items, skipped = trainer.corpus_items(data, output / "entries.npz",
                                                  progress=bar.update)
        if skipped:
            err.print(f"{skipped} utterances skipped: the text frontend no longer gives "
                      "their symbols")
    else:
        with tqdm(desc="recordings", unit="utt", file=sys.stderr) as bar:
            items = trainer.recording_items(data, progress=bar.update)
    config = trainer.TrainConfig(steps=steps, batch_size=batch_size, seed=seed, align=align,
                                 threads=threads)
    with tqdm(total=steps, desc="train tokens", unit="step", file=sys.stderr) as bar:
        path = trainer.train(items, output, config, progress=bar.update, log=bar.write,
                             data_note=f"{data} ({len(items)} utterances)", init=init)
    typer.echo(str(path))


@app.command("prepare")
@_user_errors
def prepare_(
    input_dir: Path = typer.Argument(..., help="Folder of item manifests (*.toml, searched "
                                     "recursively) and their media."),
    output: Path = typer.Option(..., "-o", "--output", help="Shards folder to write (an "
                                "existing one is resumed: unchanged items are kept)."),
    ctc_model: Optional[Path] = typer.Option(None, "--ctc-model", help="Local wav2vec2-style "
                                             "CTC model folder (save_pretrained layout with "
                                             "vocab.json) for people without a transcript; "
                                             "needs the 'prepare' extra. Never downloads."),
    aligner: Optional[Path] = typer.Option(None, "--aligner", help="Text-to-tokens checkpoint "
                                           "whose mel prior aligns transcripts (default: the "
                                           "shipped one)."),
    tolerance: float = typer.Option(0.5, min=0.0, help="Seconds the audio and video of an "
                                    "item may disagree in length (the longer is cut)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Items prepared at once "
                             "(processes)."),
) -> None:
    """Turn your own conversation recordings into training shards for
    'avgen train av SHARDS -o RUN [--init CHECKPOINT]'.

    Each item is one TOML manifest; paths are relative to it. One or two [[person]]
    tables:

    ```
    heldout = false            # optional: a validation item
    [[person]]
    name = "alice"             # required
    voice = "alice"            # optional voice name (default: name)
    video = "talk.mp4"         # required: shows the face
    view = "left"              # full (default) | left | right | top | bottom
    audio = "talk.wav"         # optional (default: the video's audio track)
    channel = 0                # optional channel of audio (default: mix)
    transcript = "alice.txt"   # optional: her words, one turn per line
    [[person]]
    name = "bob"
    video = "talk.mp4"
    view = "right"
    audio = "talk.wav"
    channel = 1
    ```

    Layouts: a video + audio file per person; one side-by-side video + a stereo file
    (views and channels, as above); or one [[person]] (a monologue). Audio at any rate is
    resampled to 22050 Hz. Per person: log-mel, head pose + expressions tracked from the
    video on the 86.13 fps clock, energy voice activity (own channel), and tokens from the
    transcript (aligned by MAS) or else from --ctc-model. Errors name the manifest, person
    and file.
    """
    from avgen.prepare import PrepareConfig, prepare

    config = PrepareConfig(tolerance=tolerance,
                           ctc_model=str(ctc_model) if ctc_model is not None else None,
                           aligner=str(aligner) if aligner is not None else None)
    result = prepare(input_dir, output, config, jobs=jobs)
    minutes = result.frames / FRAMES_PER_SECOND / 60
    err.print(f"{output}: {result.prepared} items prepared, {result.kept} kept; "
              f"{minutes:.1f} min; voices {', '.join(result.voices)}")


def main() -> None:
    app(prog_name="avgen")
