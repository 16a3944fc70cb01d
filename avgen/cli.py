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
from avgen.errors import AvgenError

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
        DurationChoice.espeak, help="Where phoneme durations come from. 'espeak': "
        "libespeak-ng's own phoneme timing (the baseline until the learned predictor ships)."),
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
    from avgen.tokens import EspeakDurations, TimelineConfig, build_timeline, save_timeline

    dialogue = read_script(script)
    if output is None:
        output = "-" if script == "-" else Path(script).name.split(".")[0] + ".tokens.npz"
    source = {DurationChoice.espeak: EspeakDurations}[durations]()
    timeline = build_timeline(dialogue, source, TimelineConfig(rate=rate, turn_gap=gap))
    save_timeline(output, timeline)
    _print_timeline_summary(timeline, output)


def _print_timeline_summary(timeline, output: str) -> None:
    from avgen.constants import FRAMES_PER_SECOND

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


train_app = typer.Typer(
    help="Train avgen's small default models on your own data (research side).",
    no_args_is_help=True, rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(train_app, name="train")


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


def main() -> None:
    app(prog_name="avgen")
