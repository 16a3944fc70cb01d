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


@train_app.command("corpus")
@_user_errors
def train_corpus(
    root: Path = typer.Argument(..., help="Corpus folder (created; an existing one is resumed)."),
    sentences: int = typer.Option(6400, min=4, help="Sentences to synthesise (one voice each; "
                                  "6400 gives about 5.5 hours of speech)."),
    seed: int = typer.Option(0, help="Seed for sentences, voices, dialogues and motion."),
) -> None:
    """Build the teacher corpus: speech (hibari teacher voices, exact phoneme durations),
    log-mel features, dyadic dialogues with procedural teacher motion.

    Needs the **teachers** extra (`pip install 'avgen[teachers]'`). Resumable: finished
    shards are kept, so re-running continues where a run stopped. Deterministic for a seed.
    """
    from tqdm import tqdm

    from avgen.train import corpus

    config = corpus.CorpusConfig(num_sentences=sentences, seed=seed)
    config_file = root / "config.json"
    if config_file.exists():
        import json

        existing = json.loads(config_file.read_text())
        if existing.get("num_sentences") != sentences or existing.get("seed") != seed:
            raise InputError(f"holds a corpus of {existing.get('num_sentences')} sentences, "
                             f"seed {existing.get('seed')}; use another folder", str(root))
    root.mkdir(parents=True, exist_ok=True)
    for stage, run in (("speech", corpus.build_utterances), ("features", corpus.build_features)):
        with tqdm(total=sentences, desc=stage, unit="utt", file=sys.stderr) as bar:
            if stage == "speech":
                run(root, config, progress=bar.update)
            else:
                run(root, progress=bar.update)
    with tqdm(desc="dialogues", unit="dlg", file=sys.stderr) as bar:
        corpus.build_dialogues(root, corpus.DialogueConfig(seed=seed), progress=bar.update)
    err.print(corpus.summary(root))


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


def main() -> None:
    app(prog_name="avgen")
