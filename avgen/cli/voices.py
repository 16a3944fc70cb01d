"""`avgen voices`: the voices of the joint model, and which one each person would get."""

from __future__ import annotations

from typing import Optional

import typer

from avgen.cli.common import JointCheckpoint, err, user_errors
from avgen.errors import InputError


@user_errors
def voices(
    ref: Optional[list[str]] = typer.Option(None, "--ref", help="Two face photos, first speaker "
                                            "first: show the voice each would get."),
    script: Optional[str] = typer.Option(None, "--script", help="A script: its speaker names "
                                         "and '# voices:' line take part in the choice."),
    photos: Optional[list[str]] = typer.Argument(None, help="The second --ref photo (click "
                                                 "gives --ref one value).", hidden=True),
    checkpoint: JointCheckpoint = None,
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the voices of the joint model (gender, accent, F0 median of its teacher
    audio and, where the checkpoint measured it, of the model's own speech); with
    `--ref A B` (and `--script`), which voice each person would get and why.

    The choice is attribute matching: the speaker's name (a common first name), else the
    face's apparent gender, narrowed by apparent age; a face keeps its voice across
    dialogues and the two people always differ. `--voice` on synth/generate overrides it."""
    import json

    from avgen.pipeline import load_av_model
    from avgen.speaker import choose_voices, model_voices

    refs = list(ref or []) + list(photos or [])
    if refs and len(refs) != 2:
        raise InputError(f"--ref takes one photo per person (2), got {len(refs)}")
    if photos and not ref:
        raise InputError(f"unexpected argument {photos[0]!r} (photos go after --ref)")
    dialogue = None
    if script is not None:
        from avgen.text.script import read_script

        dialogue = read_script(script)
    model, _ = load_av_model(checkpoint)
    infos = model_voices(model.config)
    rows = [{"voice": v.name, "gender": v.gender or "?", "accent": v.accent or "?",
             "f0_median_hz": v.f0_median, "f0_spoken_hz": v.f0_spoken or None}
            for v in infos]
    choices = []
    if refs:
        from avgen.face.landmarks import read_image

        for path in refs:
            read_image(path)  # a clear error for a missing or unreadable photo
        names = dialogue.names if dialogue else ()
        picked = choose_voices(names, refs, infos, directives=dialogue.voice_directives()
                               if dialogue else None)
        labels = list(names) + [f"person {k + 1}" for k in range(len(names), 2)]
        choices = [{"person": label, "photo": path, "voice": c.voice, "why": c.reason}
                   for label, path, c in zip(labels, refs, picked)]
    if json_output:
        typer.echo(json.dumps({"voices": rows, "choices": choices}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False, soft_wrap=True)
    table = Table("voice", "gender", "accent", "F0 median (Hz)", "as spoken (Hz)", box=None)
    for r in rows:
        spoken = "-" if r["f0_spoken_hz"] is None else f"{r['f0_spoken_hz']:.0f}"
        table.add_row(r["voice"], r["gender"], r["accent"], f"{r['f0_median_hz']:.0f}", spoken)
    out.print(table)
    for c in choices:
        out.print(f"{c['person']} ({c['photo']}): {c['voice']} ({c['why']})", markup=False)
    err.print(f"{len(rows)} voices", markup=False)
