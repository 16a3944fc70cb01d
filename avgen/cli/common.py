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
from rich.text import Text

from avgen.errors import AvgenError

from typer import _click as click  # typer >= 0.20 carries its own copy of click

# markup=False: messages hold user text (script lines, file names) that must never be
# read as rich markup ('[/]' would raise); styles are applied with Text instead.
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


def print_error(message: str) -> None:
    err.print(Text.assemble(("error:", "bold red"), " ", str(message)))


class OneLineErrors(typer.core.TyperGroup):
    """Usage errors (a malformed option value, an unknown option) as one `error:` line
    with exit code 2, like every other input error, instead of a multi-line box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            code = exc.exit_code
        except click.ClickException as exc:
            where = exc.ctx.command_path if getattr(exc, "ctx", None) else "avgen"
            print_error(f"{' '.join(exc.format_message().split())} (see '{where} --help')")
            code = exc.exit_code
        except typer.Abort:  # typer >= 0.20 raises its own Abort, older ones click's
            err.print("aborted")
            code = 1
        if not standalone_mode:
            return code
        raise SystemExit(code if isinstance(code, int) else 0)

TYPER_SETTINGS = dict(no_args_is_help=True, rich_markup_mode="markdown",
                      context_settings={"help_option_names": ["-h", "--help"]})


def user_errors(command):
    """Print an AvgenError as one line on stderr and exit with its code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except AvgenError as exc:
            print_error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (avgen.outputs)
            err.print("interrupted; nothing was written")
            raise typer.Exit(getattr(exc, "exit_code", 130)) from None

    return wrapper


class Layout(str, enum.Enum):
    side = "side"
    stacked = "stacked"
    single = "single"


class Crop(str, enum.Enum):
    photo = "photo"
    face = "face"


class VocoderChoice(str, enum.Enum):
    vocos = "vocos"
    griffinlim = "griffinlim"
    bigvgan = "bigvgan"


class PrecisionChoice(str, enum.Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"


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
VoiceGuidance = Annotated[float, typer.Option(
    help="How far each voice is pushed from the model's average voice (0 to 4): 1 is off; "
         "above 1 voices sound more their own and less alike, at the cost of one more pass "
         "of the speech stream a step; too high slurs the words.")]
Sway = Annotated[float, typer.Option(
    help="Spacing of the sampler's steps (-1 to 1): 0 is even; below 0 the first steps "
         "are smaller, which keeps the rarer motions (a listener's nods and smiles) that "
         "even steps average away, at the same cost.")]
Seed = Annotated[int, typer.Option(help="Noise seed; the same seed gives the same output.")]
Device = Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda.")]
Precision = Annotated[PrecisionChoice, typer.Option(
    help="The joint model's arithmetic: auto is bfloat16 where the device does it natively "
         "(about twice as fast on such CPUs), float32 elsewhere; float32 gives the same "
         "output on every CPU.")]
JointCheckpoint = Annotated[Optional[str], typer.Option(
    "--checkpoint", help="Joint model checkpoint (default: the registered 'av-flow' weights).")]
Voices = Annotated[Optional[list[str]], typer.Option(
    "--voice", help="Voice per person, twice: --voice af_bella --voice bm_george; a blend is "
    "NAME+NAME or NAME*WEIGHT+NAME ('avgen voices' lists them). Default: the speaker "
    "mapper's choice from the names, the faces and a '# voices:' script line.")]
Fps = Annotated[float, typer.Option(
    "--fps", help="Video frame rate; motion is resampled from the 86.13 fps model clock.")]
Size = Annotated[int, typer.Option("--size", help="Pixels (even): each photo's height (its "
                                   "width with --layout stacked), or with --crop face the "
                                   "side of each square face.")]
LayoutOption = Annotated[Layout, typer.Option(
    "--layout", help="side: the people side by side at a common height; stacked: one above "
                     "the other at a common width; single: one MP4 per person (OUT-1.mp4, "
                     "OUT-2.mp4, each with the audio).")]
CropOption = Annotated[Crop, typer.Option(
    "--crop", help="photo: each whole photo as given, the face animated in it; face: a "
                   "square crop around each face.")]
Rate = Annotated[float, typer.Option(
    "--rate", help="Speaking rate (0.25 to 4): 1.2 is 20% faster, 0.8 slower.")]
Gap = Annotated[float, typer.Option(
    "--gap", help="Seconds of silence between turns (0 to 10).")]
Vocoder = Annotated[VocoderChoice, typer.Option(
    help="vocos: our small fast default; griffinlim: no weights; bigvgan: NVIDIA's (fetch "
         "it first with 'avgen weights fetch').")]


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".heic")


def _is_image(path: str) -> bool:
    """By suffix, or by content for an existing file without one (a photo named 'face')."""
    from pathlib import Path

    from avgen.text.script import binary_kind

    if path == "-":
        return False
    if Path(path).suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            kind = binary_kind(handle.read(16))
    except OSError:
        return False
    return bool(kind) and "image" in kind


def split_refs(inputs: Optional[list[str]], ref: Optional[list[str]], what: str,
               people: Optional[int] = 2) -> tuple[list[str], list[str]]:
    """(main inputs, photos) from a command's positional arguments and its --ref values.

    Click gives --ref one value per flag, so in `--ref a.png b.png FILE` (or `FILE --ref
    a.png b.png`) the second photo arrives as a positional argument, wherever it stands.
    Photos among the positionals (by suffix, or image content) join --ref, in order; more
    than `people` photos, or a photo without any --ref, means a photo stands where `what`
    belongs: a one-line error."""
    from avgen.errors import InputError

    inputs, refs = list(inputs or []), list(ref or [])
    photos = [a for a in inputs if _is_image(a)]
    main = [a for a in inputs if a not in photos]
    if photos and not refs:
        raise InputError(f"is an image, not {what}; give the photos with --ref: "
                         "--ref a.png b.png", photos[0])
    refs += photos
    if people is not None and len(refs) > people:
        raise InputError(f"{len(refs)} photos for {people} people ({', '.join(refs)}): "
                         f"--ref takes one photo per person, and a photo is not {what}")
    return main, refs
