"""The chain's commands, script to MP4: tokens, generate, vocode, render, track, synth,
and phonemize (how the text frontend reads a line)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from avgen.cli.common import (Crop, CropOption, Device, Fps, Gap, JointCheckpoint, Layout,
                              LayoutOption, Precision, PrecisionChoice, Rate, Seed, Size,
                              Solver, SolverChoice, Steps, Sway, Temperature, Vocoder,
                              VocoderChoice, VoiceGuidance, Voices, err, split_refs,
                              user_errors)
from avgen.constants import FRAMES_PER_SECOND, SAMPLE_RATE
from avgen.errors import InputError
from avgen.face.frames import VideoConfig
from avgen.outputs import check_output
from avgen.pipeline import GenerateConfig, MotionStyle, SynthConfig
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
    rate: Rate = TimelineConfig.rate,
    gap: Gap = TimelineConfig.turn_gap,
    json_path: Optional[str] = typer.Option(
        None, "--json", help="Also write word and phoneme timings (seconds, per turn) as "
                             "JSON to this file ('-': stdout)."),
) -> None:
    """Turn a dialogue script into a timeline and per-frame phoneme tokens.

    Writes the turns (speaker, start/end frame, text, phonemes with frame durations),
    cues and pauses, and for each person token_logits (T, V) on the 86.13 fps model
    clock. Errors in the script name file and line; exit code 2, nothing written.
    """
    from avgen.text.script import read_script
    from avgen.text.timeline import (EspeakDurations, LearnedDurations, build_timeline,
                                     save_timeline)

    from avgen.limits import SEED, check_range

    config = TimelineConfig(rate=rate, turn_gap=gap)
    check_range(seed, SEED, "--seed", integer=True)
    if checkpoint is not None and durations != DurationChoice.learned:
        raise InputError("--checkpoint goes with --durations learned")
    if output is None:
        output = "-" if script == "-" else Path(script).name.split(".")[0] + ".tokens.npz"
    check_output(output, (".npz",), inputs=[script], stdout=True)
    if json_path is not None:
        check_output(json_path, (".json",), inputs=[script, output], stdout=True,
                     option="--json")
    if json_path == "-" and output == "-":
        raise InputError("--json - and -o - would both write stdout; send one to a file")
    dialogue = read_script(script)
    if durations == DurationChoice.learned:
        source = LearnedDurations(checkpoint, seed=seed)
    else:
        source = EspeakDurations()
    timeline = build_timeline(dialogue, source, config)
    save_timeline(output, timeline)
    if json_path is not None:
        import json

        from avgen.formats import atomic_write_bytes
        from avgen.text.timeline import timings

        text = json.dumps(timings(timeline), indent=1, ensure_ascii=False)
        atomic_write_bytes(json_path, (text + "\n").encode("utf-8"))
    _print_timeline_summary(timeline, output)


@user_errors
def check(
    script: Optional[str] = typer.Argument(None, help="Dialogue script to check; '-' reads "
                                           "stdin."),
    text: Optional[str] = typer.Option(None, "--text", help="Check this script text instead "
                                       "of a file (\\n between turns)."),
    json_report: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check a script without loading any model: every problem of every line (not only
    the first), and what each line will say after normalisation. Exit code 2 if there
    is any problem."""
    import json

    from avgen.check import check_script
    from avgen.text.script import read_script_text

    if (script is None) == (text is None):
        raise InputError("give a script file ('-' for stdin) or --text")
    if text is not None:
        source, content = "--text", text.replace("\\n", "\n")
    else:
        content, source = read_script_text(script)
    report = check_script(content, source)
    if json_report:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
    else:
        for line in report.lines:
            mark = "  " if line.error is None else "! "
            typer.echo(f"{mark}{line.line:>4} {line.speaker}: {line.spoken}")
        for problem in report.problems:
            err.print(f"[bold red]error:[/] {problem}", markup=True, highlight=False)
        people = ", ".join(report.names) or "nobody"
        summary = (f"{source}: {len(report.lines)} lines for {people}; "
                   + (f"{len(report.problems)} problem{'s' * (len(report.problems) != 1)}"
                      if report.problems else "no problems"))
        err.print(summary, markup=False)
    if not report.ok:
        raise typer.Exit(2)


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
    voice_guidance: VoiceGuidance = GenerateConfig.voice_guidance,
    sway: Sway = GenerateConfig.sway,
    seed: Seed = GenerateConfig.seed,
    device: Device = GenerateConfig.device,
    precision: Precision = PrecisionChoice(GenerateConfig.precision),
) -> None:
    """Generate speech (log-mel) and motion (head pose, expressions) for both people of a
    dialogue with the joint audio-visual flow model: the speaker talks, the listener
    reacts. Output is on the 86.13 fps model clock; vocode and render it next."""
    from avgen import formats
    from avgen.pipeline import check_voices, generate as run_generate, load_av_model
    from avgen.text.timeline import load_timeline

    files, refs = split_refs(inputs, ref, "a tokens file")
    if len(files) != 1:
        raise InputError(f"expected one tokens file, got {len(files)}: {' '.join(files)}")
    tokens_file = files[0]
    if refs and len(refs) != 2:
        raise InputError(f"--ref takes one photo per person (2), got {len(refs)}")
    config = GenerateConfig(steps=steps, solver=solver.value, seed=seed,
                            voices=tuple(voice) if voice else None,
                            device=device, temperature=temperature,
                            voice_guidance=voice_guidance, sway=sway,
                            precision=precision.value)
    check_output(output, (".npz",), inputs=[tokens_file, *refs], stdout=True)
    if config.voices:
        check_voices(config.voices, checkpoint)
    timeline = load_timeline(tokens_file)
    model, normalizer = load_av_model(checkpoint, device)
    if config.voices is None and refs:
        from dataclasses import replace

        from avgen.speaker import choose_voices, model_voices

        choices = choose_voices(timeline.names, refs, model_voices(model.config))
        config = replace(config, voices=tuple(c.voice for c in choices))
        for name, choice in zip(list(timeline.names) + ["(listener)"], choices):
            err.print(f"voice {choice.describe(name)}", markup=False)
    from avgen.progress import for_stream

    with for_stream().stage("joint model", model.sampling_work(timeline.num_frames, steps),
                            "frame-steps") as update:
        arrays = run_generate(timeline, model, normalizer, config, on_step=update)
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

    check_output(output, (".wav",), inputs=[mel], stdout=True)
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
    crop: CropOption = Crop(VideoConfig.crop),
    frames: Optional[str] = typer.Option(None, "--frames", help="Also write every frame "
                                         "as PNG into this folder (for inspection)."),
) -> None:
    """Render talking/listening faces: warp each reference photo so its face follows the
    motion (head pose + expressions), fill open mouths, close lids on blinks, and write one
    MP4 with both whole photos side by side (or stacked, or one MP4 per person; or the
    square face crops with --crop face)."""
    from avgen.face.frames import output_paths, render_video

    config = VideoConfig(fps=fps, size=size, layout=layout.value, crop=crop.value)
    if output == "-":
        raise InputError("an MP4 cannot be streamed to stdout; give a file name", "-o")
    check_output(output, (".mp4",), inputs=[*inputs, *ref, audio])
    motions, refs = split_refs(inputs, ref, "a motion file", people=None)
    if len(motions) != 1:
        raise InputError(f"expected one motion file (.npz or '-'), got {len(motions)}: "
                         f"{' '.join(motions)}", "render")
    motion = motions[0]
    count = render_video(motion, refs, output, audio=audio, config=config, frames_dir=frames)
    written = ", ".join(map(str, output_paths(output, config.layout, len(refs))))
    err.print(f"{written}: {count} frames at {fps:g} fps ({count / fps:.2f} s)")


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

    check_output(output, (".npz",), inputs=[video, ref], stdout=True)
    motion = track_video(video, ref=ref)
    save_motion(output, motion)
    err.print(f"{output}: {motion.num_frames} frames "
              f"({motion.num_frames / FRAMES_PER_SECOND:.2f} s) of head pose + expression")


def _script_from(inputs: list[str], text: Optional[str]):
    """The dialogue of `synth`: one script file ('-' for stdin) or --text."""
    from avgen.text.script import parse_script, read_script

    if text is not None:
        if inputs:
            raise InputError(f"give a script file or --text, not both (got {inputs[0]})")
        # a shell passes "A: hi\\nB: hello" with a backslash-n: that is a line break too
        return parse_script(text.replace("\\n", "\n"), "--text")
    if len(inputs) != 1:
        raise InputError("give one dialogue script (a file, '-' for stdin, or --text), got "
                         + (f"{len(inputs)}: {' '.join(inputs)}" if inputs else "none"))
    return read_script(inputs[0])


def _report(result, wall: float) -> dict:
    """The final report: output, the MP4s written (one per person with --layout single),
    video length, wall time, real-time factor (wall / video)."""
    return {"output": result.output, "videos": result.videos,
            "video_seconds": round(result.seconds, 3),
            "wall_seconds": round(wall, 3),
            "real_time_factor": round(wall / result.seconds, 3) if result.seconds else None,
            "frames": result.frames, "voices": list(result.voices), "files": result.files}


@user_errors
def synth(
    inputs: Optional[list[str]] = typer.Argument(None, help="Dialogue script ('NAME: words' "
                                                 "per line; '-' reads stdin); not with "
                                                 "--text or --batch."),
    ref: Optional[list[str]] = typer.Option(None, "--ref", help="Two face photos, first speaker "
                                            "first: --ref a.png b.png (or --ref a.png --ref "
                                            "b.png), before or after the script; not with "
                                            "--batch."),
    output: str = typer.Option(..., "-o", "--output", help="MP4 to write ('-': standard "
                               "output, with --stream); with --batch, the folder for every "
                               "job's MP4 and the results file."),
    stream: bool = typer.Option(False, "--stream", help="Write a fragmented MP4 while the "
                                "dialogue is generated, playable as it grows: '-o -' pipes "
                                "it to a player (avgen synth ... --stream -o - | ffplay -); "
                                "a file is written as FILE.part and renamed when complete. "
                                "Same pictures and sound as without --stream."),
    text: Optional[str] = typer.Option(None, "--text", help="The script inline instead of a "
                                       "file: --text \"A: Hi.\\nB: Hello.\" (\\n or a "
                                       "real line break between turns)."),
    rate: Rate = SynthConfig.rate,
    gap: Gap = SynthConfig.turn_gap,
    head_scale: float = typer.Option(MotionStyle.head_scale, "--head-scale",
                                     help="Scale of head motion: 0.5 halves nods and turns, "
                                     "0 keeps the head still (0 to 3)."),
    expression_scale: float = typer.Option(MotionStyle.expression_scale, "--expression-scale",
                                           help="Scale of mouth, brow and smile movement; "
                                           "blinks stay whole (0 to 3)."),
    still: bool = typer.Option(MotionStyle.still, "--still", help="No head motion: the head "
                               "keeps the photo's pose while the face talks and reacts."),
    keep: Optional[str] = typer.Option(None, "--keep", help="Also keep the side outputs in "
                                       "this folder (created): the tokens, the av file, the "
                                       "mixed WAV and one WAV per person, named after the "
                                       "MP4."),
    subtitles: Optional[str] = typer.Option(None, "--subtitles", help="Also write subtitles, "
                                            "one cue per sentence: out.srt or out.vtt."),
    json_report: bool = typer.Option(False, "--json", help="Print the final report as one "
                                     "JSON object on stdout (on stderr with -o -)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress on stderr; errors "
                               "and the final report only."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Also say which voices "
                                 "were chosen and how long each stage took."),
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
    voice_guidance: VoiceGuidance = GenerateConfig.voice_guidance,
    sway: Sway = GenerateConfig.sway,
    seed: Seed = GenerateConfig.seed,
    vocoder: Vocoder = VocoderChoice(SynthConfig.vocoder),
    fps: Fps = SynthConfig.fps,
    size: Size = SynthConfig.size,
    layout: LayoutOption = Layout(SynthConfig.layout),
    crop: CropOption = Crop(SynthConfig.crop),
    device: Device = GenerateConfig.device,
    precision: Precision = PrecisionChoice(GenerateConfig.precision),
) -> None:
    """The whole chain: a dialogue script and two face photos in, one MP4 out, in which
    both people speak their lines and the listener reacts.

    At the end one line goes to stdout (to stderr with -o -, where stdout carries the
    video): the MP4, the video's length, the wall time and the real-time factor (wall
    time / video length; below 1 is faster than real time).
    Progress goes to stderr: bars on a terminal, a few plain lines in a log.

    **Batch:** `avgen synth --batch jobs.jsonl -o outdir/ [--shard K/N]`. One JSON object
    per line: exactly one of `"script": "file.txt"`, `"text": "A: Hi\\nB: Hello"` or
    `"turns": [["A", "Hi"], ["B", "Hello"]]`; `"refs": ["a.png", "b.png"]`; optional
    `"output": "name.mp4"` (default job-LLLLL.mp4, L = line number), `"seed"`, `"steps"`,
    `"voices": ["af_bella", "bm_george"]`, `"rate"`, `"gap"`, `"crop"`, `"layout"` (unset: the
    options above). Relative paths are relative to the jobs file. Jobs whose MP4 is already
    complete are skipped (re-run to resume); a bad line or failing job is recorded and the
    rest still run. Each job appends {line, output, status: ok|skipped|error, seconds,
    error} to the results file. Exit code 1 if any job failed (after all ran)."""
    import json
    import sys
    import time

    from avgen import progress as reporters
    from avgen.pipeline import Synthesizer

    started = time.perf_counter()
    if quiet and verbose:
        raise InputError("--quiet and --verbose contradict each other")
    style = MotionStyle(head_scale=head_scale, expression_scale=expression_scale, still=still)
    config = SynthConfig(generate=GenerateConfig(steps=steps, solver=solver.value, seed=seed,
                                                 device=device,
                                                 voices=tuple(voice) if voice else None,
                                                 temperature=temperature, style=style,
                                                 voice_guidance=voice_guidance, sway=sway,
                                                 precision=precision.value),
                         vocoder=vocoder.value, fps=fps, size=size, layout=layout.value,
                         crop=crop.value, rate=rate, turn_gap=gap)
    if batch is not None:
        from avgen.batch import Shard, run_batch

        if inputs or ref or text is not None:
            raise InputError("--batch takes scripts and photos from the jobs file; give no "
                             "script or --ref (nor --text)")
        if keep is not None or subtitles is not None:
            raise InputError("--keep and --subtitles are for one dialogue, not --batch")
        if stream:
            raise InputError("--stream makes one video; it does not go with --batch")
        part = Shard.parse(shard)
        if Path(output).exists() and not Path(output).is_dir():
            raise InputError("with --batch, -o names a folder", output)
        if Path(output).is_dir():
            from avgen.outputs import check_writable, sweep_stale

            check_writable(output)
            sweep_stale(output)  # temp files of an earlier run that was killed outright
        with Synthesizer(checkpoint, config) as synthesizer:
            summary = run_batch(batch, output, synthesizer, part, results,
                                progress=not quiet)
        err.print(f"{summary.jobs} jobs (shard {part}): {summary.ok} ok, {summary.skipped} "
                  f"skipped, {summary.errors} failed; results in {summary.results}")
        if summary.errors:
            raise typer.Exit(1)
        return
    if shard != "0/1" or results is not None:
        raise InputError("--shard and --results go with --batch")
    if output == "-" and not stream:
        raise InputError("an MP4 on standard output must be streamed: add --stream", "-o")
    scripts, refs = split_refs(inputs, ref, "a dialogue script")
    dialogue = _script_from(scripts, text)
    if config.generate.voices:
        from avgen.pipeline import check_voices

        check_voices(config.generate.voices, checkpoint)
    progress = reporters.for_stream(sys.stderr, quiet=quiet, verbose=verbose)
    with Synthesizer(checkpoint, config) as synthesizer:
        result = synthesizer.synth(dialogue, refs, output, keep=keep, subtitles=subtitles,
                                   progress=progress, stream=stream)
    report = _report(result, time.perf_counter() - started)
    to_stderr = output == "-"  # stdout carries the video
    if json_report:
        typer.echo(json.dumps(report, ensure_ascii=False), err=to_stderr)
    else:
        where = "standard output" if to_stderr else ", ".join(report["videos"])
        typer.echo(f"{where}: {report['video_seconds']:.2f} s of video in "
                   f"{report['wall_seconds']:.1f} s, real-time factor "
                   f"{report['real_time_factor']:.2f}", err=to_stderr)


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
