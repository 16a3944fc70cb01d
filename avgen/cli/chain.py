"""The chain's commands, script to MP4: tokens, generate, vocode, render, track, synth,
and phonemize (how the text frontend reads a line)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from avgen.cli.common import (Device, Fps, JointCheckpoint, Layout, LayoutOption, Seed, Size,
                              Solver, SolverChoice, Steps, Temperature, Vocoder,
                              VocoderChoice, Voices, err,
                              split_refs, user_errors)
from avgen.constants import FRAMES_PER_SECOND, SAMPLE_RATE
from avgen.errors import InputError
from avgen.face.render import VideoConfig
from avgen.pipeline import GenerateConfig, SynthConfig
from avgen.text.timeline import TimelineConfig


class DurationChoice(str, enum.Enum):
    learned = "learned"
    espeak = "espeak"


@user_errors
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
    seed: int = typer.Option(GenerateConfig.seed, help="Seed for the token decoder's "
                             "sampling noise (the flow decoder; the direct head is "
                             "deterministic anyway)."),
    rate: float = typer.Option(TimelineConfig.rate,
                               help="Speaking rate (0.25 to 4); 1.2 is 20% faster."),
    gap: float = typer.Option(TimelineConfig.turn_gap,
                              help="Silence between turns, seconds (0 to 10)."),
) -> None:
    """Turn a dialogue script into a timeline and per-frame phoneme tokens.

    Writes the turns (speaker, start/end frame, text, phonemes with frame durations),
    cues and pauses, and for each person token_logits (T, V) on the 86.13 fps model
    clock. Errors in the script name file and line; exit code 2, nothing written.
    """
    from avgen.text.script import read_script
    from avgen.text.timeline import EspeakDurations, LearnedDurations, build_timeline, save_timeline

    config = TimelineConfig(rate=rate, turn_gap=gap)
    if checkpoint is not None and durations != DurationChoice.learned:
        raise InputError("--checkpoint goes with --durations learned")
    dialogue = read_script(script)
    if output is None:
        output = "-" if script == "-" else Path(script).name.split(".")[0] + ".tokens.npz"
    if durations == DurationChoice.learned:
        source = LearnedDurations(checkpoint, seed=seed)
    else:
        source = EspeakDurations()
    timeline = build_timeline(dialogue, source, config)
    save_timeline(output, timeline)
    _print_timeline_summary(timeline, output)


def _print_timeline_summary(timeline, output: str) -> None:
    table = Table(title=f"{output}: {timeline.num_frames} frames, "
                        f"{timeline.num_frames / FRAMES_PER_SECOND:.2f} s", title_justify="left")
    for column in ("line", "speaker", "start s", "end s", "phonemes", "text"):
        table.add_column(column, overflow="fold")
    for turn in timeline.turns:
        table.add_row(str(turn.line), timeline.names[turn.person],
                      f"{turn.start_frame / FRAMES_PER_SECOND:.2f}",
                      f"{turn.end_frame / FRAMES_PER_SECOND:.2f}",
                      str(turn.phoneme_count), turn.text)
    err.print(table)


@user_errors
def generate(
    inputs: list[str] = typer.Argument(..., help="Tokens file from 'avgen tokens' "
                                       "(avgen.tokens/1); '-' reads stdin."),
    ref: Optional[list[str]] = typer.Option(None, "--ref", help="The two face photos, first "
                                            "speaker first: each face speaks with its own "
                                            "voice (the one 'avgen synth' gives it)."),
    output: str = typer.Option(..., "-o", "--output", help="avgen.av/1 file to write (mel and "
                               "motion for both people); '-' writes stdout."),
    checkpoint: JointCheckpoint = None,
    voice: Voices = None,
    steps: Steps = GenerateConfig.steps,
    solver: Solver = SolverChoice(GenerateConfig.solver),
    temperature: Temperature = GenerateConfig.temperature,
    seed: Seed = GenerateConfig.seed,
    device: Device = GenerateConfig.device,
) -> None:
    """Generate speech (log-mel) and motion (head pose, expressions) for both people of a
    dialogue with the joint audio-visual flow model: the speaker talks, the listener
    reacts. Output is on the 86.13 fps model clock; vocode and render it next."""
    from avgen import formats
    from avgen.pipeline import generate as run_generate, load_av_model
    from avgen.text.timeline import load_timeline

    tokens_file, refs = split_refs(inputs, ref)
    if refs and len(refs) != 2:
        raise InputError(f"--ref takes one photo per person (2), got {len(refs)}")
    config = GenerateConfig(steps=steps, solver=solver.value, seed=seed,
                            voices=tuple(voice) if voice else None,
                            device=device, temperature=temperature)
    timeline = load_timeline(tokens_file)
    model, normalizer = load_av_model(checkpoint, device)
    if config.voices is None and refs:
        from dataclasses import replace

        from avgen.speaker import voices_for_faces

        config = replace(config, voices=tuple(voices_for_faces(refs, model.config.voices)))
    arrays = run_generate(timeline, model, normalizer, config)
    formats.save(output, formats.AV, arrays)
    err.print(f"{output}: {timeline.num_frames} frames for {', '.join(timeline.names)}")


@user_errors
def vocode(
    mel: str = typer.Argument(..., help="An avgen.av/1 .npz (every person's p{i}/mel) or a "
                                        "bare .npy log-mel (T, 80); '-' reads stdin."),
    output: str = typer.Option(..., "-o", "--output", help="WAV file to write (22050 Hz, "
                               "16-bit); '-' writes stdout."),
    vocoder: Vocoder = VocoderChoice(SynthConfig.vocoder),
    checkpoint: Optional[Path] = typer.Option(None, help="Use this checkpoint instead of the "
                                              "registered one (vocos: .safetensors; bigvgan: "
                                              "folder with config.json)."),
    split: bool = typer.Option(False, help="One channel per person instead of their mix."),
    iterations: int = typer.Option(32, min=1, help="Griffin-Lim iterations."),
    seed: int = typer.Option(0, help="Griffin-Lim's initial phase."),
    device: Device = GenerateConfig.device,
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
    seconds = len(audio) / SAMPLE_RATE
    err.print(f"{output}: {seconds:.2f} s, {len(mels)} {'person' if len(mels) == 1 else 'people'}"
              f", vocoder {vocoder.value}")


@user_errors
def render(
    inputs: list[str] = typer.Argument(..., help="Motion to render: an avgen.av/1 or "
                                       "avgen.motion/1 .npz ('-' reads stdin)."),
    ref: list[str] = typer.Option(..., "--ref", help="Reference face photo, one per person "
                                  "in the file's order: --ref a.png b.png (or --ref a.png "
                                  "--ref b.png)."),
    output: str = typer.Option(..., "-o", "--output", help="MP4 to write (H.264/AAC, yuv420p)."),
    audio: Optional[str] = typer.Option(None, "--audio", help="Audio to mux in (e.g. the "
                                        "output of avgen vocode)."),
    fps: Fps = VideoConfig.fps,
    size: Size = VideoConfig.size,
    layout: LayoutOption = Layout(VideoConfig.layout),
    frames: Optional[str] = typer.Option(None, "--frames", help="Also write every frame "
                                         "as PNG into this folder (for inspection)."),
) -> None:
    """Render talking/listening faces: warp each reference photo so its face follows the
    motion (head pose + expressions), fill open mouths, close lids on blinks, and write one
    MP4 with both people side by side (or stacked)."""
    from avgen.face.render import render_video

    if output == "-":
        raise InputError("an MP4 cannot be streamed to stdout; give a file name", "-o")
    # `--ref a.png b.png` leaves b.png among the positional arguments next to the motion
    # file; the motion file is the .npz (or '-').
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


@user_errors
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


@user_errors
def synth(
    inputs: Optional[list[str]] = typer.Argument(None, help="Dialogue script ('NAME: words' "
                                                 "per line); not with --batch."),
    ref: Optional[list[str]] = typer.Option(None, "--ref", help="Two face photos, first speaker "
                                            "first: --ref a.png b.png (or --ref a.png --ref "
                                            "b.png); not with --batch."),
    output: str = typer.Option(..., "-o", "--output", help="MP4 to write ('-': standard "
                               "output, with --stream); with --batch, the folder for every "
                               "job's MP4 and the results file."),
    stream: bool = typer.Option(False, "--stream", help="Write a fragmented MP4 while the "
                                "dialogue is generated, playable as it grows: '-o -' pipes "
                                "it to a player (avgen synth ... --stream -o - | ffplay -); "
                                "a file is written as FILE.part and renamed when complete. "
                                "Same pictures and sound as without --stream."),
    batch: Optional[Path] = typer.Option(None, "--batch", help="Jobs file (JSON Lines, one job "
                                         "per line; see above): synthesise every job with the "
                                         "models loaded once."),
    shard: str = typer.Option("0/1", "--shard", help="With --batch: run only shard K of N "
                              "(0-based, 0 <= K < N): the lines L with (L - 1) mod N == K."),
    results: Optional[Path] = typer.Option(None, "--results", help="With --batch: results JSON "
                                           "Lines to append to (default OUTDIR/results.jsonl, "
                                           "or results.shard-K-of-N.jsonl with --shard)."),
    checkpoint: JointCheckpoint = None,
    voice: Voices = None,
    steps: Steps = GenerateConfig.steps,
    solver: Solver = SolverChoice(GenerateConfig.solver),
    temperature: Temperature = GenerateConfig.temperature,
    seed: Seed = GenerateConfig.seed,
    vocoder: Vocoder = VocoderChoice(SynthConfig.vocoder),
    fps: Fps = SynthConfig.fps,
    size: Size = SynthConfig.size,
    layout: LayoutOption = Layout(SynthConfig.layout),
    device: Device = GenerateConfig.device,
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
    from avgen.pipeline import Synthesizer, synth as run_synth

    config = SynthConfig(generate=GenerateConfig(steps=steps, solver=solver.value, seed=seed,
                                                 device=device,
                                                 voices=tuple(voice) if voice else None,
                                                 temperature=temperature),
                         vocoder=vocoder.value, fps=fps, size=size, layout=layout.value)
    if batch is not None:
        from avgen.batch import Shard, run_batch

        if inputs or ref:
            raise InputError("--batch takes scripts and photos from the jobs file; give no "
                             "script or --ref")
        if stream:
            raise InputError("--stream makes one video; it does not go with --batch")
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
    script, refs = split_refs(inputs, ref)
    if output == "-" and not stream:
        raise InputError("an MP4 on standard output must be streamed: add --stream", "-o")
    count = run_synth(script, refs, output, checkpoint, config,
                      log=lambda stage: err.print(f"[dim]{stage}…[/]", markup=True),
                      stream=stream)
    where = "standard output" if output == "-" else output
    err.print(f"{where}: {count} frames at {fps:g} fps ({count / fps:.2f} s)")


@user_errors
def phonemize(text: str = typer.Argument(..., help="English text to normalise and phonemise."),
              ) -> None:
    """Show how the text frontend reads TEXT: normalised words, phonemes, pauses."""
    from avgen.text.symbols import phones_to_ids
    from avgen.text.normalize import normalize
    from avgen.text.phrases import to_phrases

    typer.echo(normalize(text))
    for phrase in to_phrases(text, "<text>"):
        phones_to_ids(phrase.phones, "<text>")  # same check the timeline applies
        pause = f"  (pause {phrase.pause_after:g} s)" if phrase.pause_after else ""
        typer.echo(" ".join(phrase.phones) + pause)
