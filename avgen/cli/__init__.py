"""The `avgen` command line, by audience: `chain` (script to MP4, one command per stage),
`tools` (weights, eval, prepare) and `training` (`avgen train ...`). Each command parses
its options, lets the configs check them, and calls library functions usable from Python.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from avgen import __version__
from avgen.cli import chain, tools, voices
from avgen.cli.common import TYPER_SETTINGS, OneLineErrors

app = typer.Typer(
    cls=OneLineErrors,
    help="avgen: a written two-person dialogue + two face photos -> one talking MP4.\n\n"
         "Each stage is its own command and file arguments take '-' for stdin/stdout, "
         "so stages compose in shell pipelines.",
    add_completion=True, pretty_exceptions_enable=False, **TYPER_SETTINGS)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"avgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


for command in (chain.tokens, chain.check, chain.phonemize, chain.render, chain.track):
    app.command()(command)
app.command("eval")(tools.evaluate)
for command in (chain.synth, chain.generate, chain.vocode):
    app.command()(command)
app.command("voices")(voices.voices)
app.command("prepare")(tools.prepare)
app.add_typer(tools.weights_app, name="weights")


class TrainingCommands(TyperGroup):
    """`avgen train`'s commands, built on first use: their defaults come from the
    trainers' configs, which import torch, and no other command should wait for that."""

    def _load(self) -> None:
        if not self.commands:
            from avgen.cli import training

            self.commands.update(typer.main.get_command(training.app).commands)

    def list_commands(self, ctx):
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        self._load()
        return super().get_command(ctx, name)


app.add_typer(typer.Typer(cls=TrainingCommands, **TYPER_SETTINGS), name="train",
              help="Research side: build the teacher corpus, train the models.")


def main() -> None:
    from avgen.heap import retain_freed_memory
    from avgen.outputs import install_signal_handlers

    install_signal_handlers()  # SIGTERM/SIGHUP clean up like Ctrl-C
    retain_freed_memory()  # frames are made and dropped many times a second
    try:
        app(prog_name="avgen")
    finally:
        # Python's last garbage collection on the way out walks every object torch made
        # (0.2-0.3 s of each command); by now the work is written and its temp files are
        # handled by exit hooks and finalizers, which still run
        import gc

        gc.freeze()
