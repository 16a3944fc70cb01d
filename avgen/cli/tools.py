"""Tools around the chain: the weights registry, evaluation, and preparing your own
recordings as training data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from avgen.cli.common import TYPER_SETTINGS, err, user_errors
from avgen.constants import FRAMES_PER_SECOND
from avgen.errors import InputError
from avgen.prepare import PrepareConfig

weights_app = typer.Typer(
    help="The checkpoints avgen knows (weights.toml): list, verify, locate, fetch.",
    **TYPER_SETTINGS)


def _registry():
    from avgen.weights import Weights

    return Weights()


@weights_app.command("list")
@user_errors
def weights_list(json_report: bool = typer.Option(False, "--json", help="Print the entries "
                                                  "as a JSON list (one object each).")
                 ) -> None:
    """List registered weights: component, size, licence, source, and whether present.
    Piped (not a terminal), one tab-separated line per entry, names never cut."""
    import json
    import sys

    registry = _registry()
    rows = [{"name": name, "component": entry.component, "size": entry.size,
             "licence": entry.licence, "source": entry.source,
             "status": registry.status(name)}
            for name, entry in sorted(registry.entries.items())]
    if json_report:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not registry.entries:
        err.print(f"no weights registered yet in {registry.registry_path}")
        return
    if not sys.stdout.isatty():
        columns = ("name", "component", "size", "licence", "source", "status")
        typer.echo("\t".join(columns))
        for row in rows:
            typer.echo("\t".join(str(row[c]) for c in columns))
        return
    table = Table()
    for column in ("name", "component", "size MB", "licence", "source", "status"):
        table.add_column(column)
    for name, entry in sorted(registry.entries.items()):
        table.add_row(name, entry.component, f"{entry.size / 1e6:.1f}", entry.licence,
                      entry.source, registry.status(name))
    Console().print(table)


@weights_app.command("verify")
@user_errors
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
@user_errors
def weights_path(name: str = typer.Argument(..., help="Registered weights name.")) -> None:
    """Print the verified path of a weights file (exit 3 if missing or corrupt)."""
    typer.echo(str(_registry().path(name)))


@weights_app.command("fetch")
@user_errors
def weights_fetch(name: str = typer.Argument(..., help="Registered weights name.")) -> None:
    """Download a URL-sourced weights file into the cache ($AVGEN_CACHE_DIR), verified.
    The only command that uses the network."""
    from tqdm import tqdm

    registry = _registry()
    entry = registry.entry(name)
    with tqdm(total=entry.size, unit="B", unit_scale=True, desc=name, file=sys.stderr) as bar:
        path = registry.fetch(name, progress=bar.update)
    typer.echo(str(path))


@user_errors
def evaluate(
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
    from avgen.metrics.evaluate import evaluate as run_evaluate, table_rows

    if json_path not in (None, "-") and not Path(json_path).parent.is_dir():
        raise InputError("output folder does not exist", str(Path(json_path).parent))
    report = run_evaluate(generated, reference, tokens)
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


@user_errors
def prepare(
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
    tolerance: float = typer.Option(PrepareConfig.tolerance, min=0.0, help="Seconds the audio "
                                    "and video of an item may disagree in length (the longer "
                                    "is cut)."),
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
    from avgen.prepare import prepare as run_prepare

    config = PrepareConfig(tolerance=tolerance,
                           ctc_model=str(ctc_model) if ctc_model is not None else None,
                           aligner=str(aligner) if aligner is not None else None)
    result = run_prepare(input_dir, output, config, jobs=jobs)
    minutes = result.frames / FRAMES_PER_SECOND / 60
    err.print(f"{output}: {result.prepared} items prepared, {result.kept} kept; "
              f"{minutes:.1f} min; voices {', '.join(result.voices)}")
