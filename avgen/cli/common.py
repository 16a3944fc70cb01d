"""What every command shares: the error console, the user-error wrapper and the options
that several commands take, declared once as `Annotated` aliases.

An option's default is read from the config dataclass that owns the value
(`GenerateConfig.steps`, `VideoConfig.fps`, ...), and its range is checked there too, so
the command line and Python callers get one default and one check.
"""

from __future__ import annotations

import enum
import functools
from typing import Annotated, Optional

import typer
from rich.console import Console

from avgen.errors import AvgenError

err = Console(stderr=True, highlight=False, soft_wrap=True)

TYPER_SETTINGS = dict(no_args_is_help=True, rich_markup_mode="markdown",
                      context_settings={"help_option_names": ["-h", "--help"]})


def user_errors(command):
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


class Layout(str, enum.Enum):
    side_by_side = "side-by-side"
    stacked = "stacked"


class VocoderChoice(str, enum.Enum):
    vocos = "vocos"
    griffinlim = "griffinlim"
    bigvgan = "bigvgan"


class SolverChoice(str, enum.Enum):
    euler = "euler"
    midpoint = "midpoint"
    heun = "heun"


# -- options of the chain's commands (defaults: GenerateConfig, VideoConfig, SynthConfig) --
Steps = Annotated[int, typer.Option(help="Steps of the flow sampler (1 to 256); each costs "
                                    "one model evaluation (euler) or two (midpoint, heun).")]
Solver = Annotated[SolverChoice, typer.Option(
    help="ODE solver of the flow sampler: euler (first order), midpoint or heun (second "
         "order: fewer steps for the same accuracy).")]
Temperature = Annotated[float, typer.Option(
    help="Scale of the speech's starting noise (0 to 2): lower is cleaner and less varied.")]
Seed = Annotated[int, typer.Option(help="Noise seed; the same seed gives the same output.")]
Device = Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda.")]
JointCheckpoint = Annotated[Optional[str], typer.Option(
    "--checkpoint", help="Joint model checkpoint (default: the registered 'av-flow' weights).")]
Voices = Annotated[Optional[list[str]], typer.Option(
    "--voice", help="Voice per person, twice: --voice heart --voice heart-low.")]
Fps = Annotated[float, typer.Option(
    "--fps", help="Video frame rate; motion is resampled from the 86.13 fps model clock.")]
Size = Annotated[int, typer.Option("--size", help="Face size in pixels (square, even).")]
LayoutOption = Annotated[Layout, typer.Option("--layout", help="How two people are composed.")]
Vocoder = Annotated[VocoderChoice, typer.Option(
    help="vocos: our small fast default; griffinlim: no weights; bigvgan: NVIDIA's (fetch "
         "it first with 'avgen weights fetch').")]


def split_refs(inputs: list[str], ref: Optional[list[str]]) -> tuple[str, list[str]]:
    """`--ref a.png b.png`: click gives --ref one value, so b.png arrives as a positional
    argument after the command's own input; returns (that input, every photo)."""
    return inputs[0], list(ref or []) + inputs[1:]
