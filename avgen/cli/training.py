"""`avgen train ...`: build the teacher corpus and train the models.

Loaded only when `avgen train` runs (see `avgen.cli.TrainingCommands`): the trainers'
configs, whose defaults the options read, import torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from avgen.audio.vocos import VocosConfig
from avgen.cli.common import err, user_errors
from avgen.errors import InputError
from avgen.limits import ATTENTION_WINDOW
from avgen.model.av_flow import AVFlowConfig
from avgen.train import av as av_trainer, tokens as tokens_trainer, vocoder as vocoder_trainer
from avgen.train.corpus import CorpusConfig

app = typer.Typer()


@app.command("corpus")
@user_errors
def train_corpus(
    root: Path = typer.Argument(..., help="Corpus folder (created; an existing one is resumed)."),
    sentences: int = typer.Option(CorpusConfig.num_sentences, min=4, help="Sentences to "
                                  "synthesise (one voice each; 6400 gives about 5.5 hours of "
                                  "speech)."),
    seed: int = typer.Option(CorpusConfig.seed, help="Seed for sentences, voices, dialogues "
                             "and motion."),
    voices: str = typer.Option(",".join(CorpusConfig.voices), help="Teacher voices, "
                               "comma-separated, used in turn: heart, heart-low (hibari, "
                               "default); joe (piper extra); the Kokoro voices (kokoro extra; "
                               "'kokoro16' = the 16 of the shipped model; English ones need "
                               "AVGEN_KOKORO_VOICES, see README)."),
    jobs: int = typer.Option(1, min=1, help="Worker processes for the speech (one thread each)."),
    shard_size: int = typer.Option(CorpusConfig.shard_size, min=1, help="Utterances per shard "
                                   "(the unit of resuming and of parallel work)."),
    first_utterance: int = typer.Option(0, min=0, help="Build the shards from this utterance "
                                        "on first, then the ones before it (a corpus grown "
                                        "past what a model trained on gets its new part "
                                        "first)."),
    speech_only: bool = typer.Option(False, "--speech-only", help="Stop after the speech "
                                     "(stage 1); a later run without it adds features and "
                                     "dialogues."),
) -> None:
    """Build the teacher corpus: speech (hibari teacher voices, exact phoneme durations),
    log-mel features, dyadic dialogues with procedural teacher motion.

    Needs the **teachers** extra (`pip install 'avgen[teachers]'`). Resumable: finished
    shards are kept, so re-running continues where a run stopped. Deterministic for a seed.
    """
    from tqdm import tqdm

    from avgen.train import corpus
    from avgen.train.dialogues import DialogueConfig, build_dialogues

    from avgen.train.teachers import KOKORO_CORPUS_VOICES

    names = tuple(v.strip() for v in voices.split(",") if v.strip())
    if names == ("kokoro16",):
        names = KOKORO_CORPUS_VOICES
    config = corpus.CorpusConfig(num_sentences=sentences, seed=seed, voices=names,
                                 shard_size=shard_size)
    corpus.check_resumable(root, config)
    root.mkdir(parents=True, exist_ok=True)
    try:
        with tqdm(total=config.num_utterances, desc="speech", unit="utt",
                  file=sys.stderr) as bar:
            corpus.build_utterances(root, config, progress=bar.update, jobs=jobs,
                                    first=first_utterance)
        if speech_only:
            return
        with tqdm(total=config.num_utterances, desc="features", unit="utt",
                  file=sys.stderr) as bar:
            corpus.build_features(root, progress=bar.update)
        corpus.build_voice_table(root)
        with tqdm(desc="dialogues", unit="dlg", file=sys.stderr) as bar:
            build_dialogues(root, DialogueConfig(seed=seed), progress=bar.update)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP
        # every shard is written whole, so what is finished stays: say so
        err.print(f"interrupted; the finished shards are kept in {root}; run the same "
                  "command to resume")
        raise typer.Exit(getattr(exc, "exit_code", 130)) from None
    err.print(corpus.summary(root))


@app.command("snapshot")
@user_errors
def train_snapshot(
    source: Path = typer.Argument(..., help="A teacher corpus folder (finished or still "
                                  "being built)."),
    target: Path = typer.Argument(..., help="New folder for the snapshot."),
    shards: Optional[str] = typer.Option(None, help="Shard numbers to take, e.g. "
                                         "'0-17,121-200' (default: every finished one)."),
) -> None:
    """A training folder from a corpus's finished speech shards, so `avgen train av` can
    start on a corpus still being built, or on a part of it.

    The shards and their audio are hard-linked (copied across file systems) into the new
    folder; features, voice table and dialogues are built there from what it holds.

    Held-out utterances stay held out. On any error nothing is left behind."""
    from tqdm import tqdm

    from avgen.train import corpus
    from avgen.train.snapshot import parse_shard_ranges, plan, snapshot

    wanted = parse_shard_ranges(shards) if shards is not None else None
    plan(source, target, wanted)  # a bad request fails before any progress bar
    with tqdm(desc="features", unit="utt", file=sys.stderr) as bar:
        count = snapshot(source, target, wanted, progress=bar.update)
    err.print(f"{count} utterances in {target}")
    err.print(corpus.summary(target))


_VOCODER = vocoder_trainer.TrainConfig
_VOCOS = VocosConfig


@app.command("vocoder")
@user_errors
def train_vocoder(
    audio: list[Path] = typer.Argument(..., help="Folders of 22050 Hz .wav/.flac files "
                                                 "(searched recursively)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Run folder: "
                                          "checkpoint (vocoder.safetensors), optimizer state "
                                          "and train.log. Running again with the same folder "
                                          "resumes."),
    out: Optional[Path] = typer.Option(None, "--out", hidden=True,
                                       help="Old name of -o/--output."),
    heldout: Optional[Path] = typer.Option(None, help="File listing audio paths (relative to "
                                           "AUDIO) to keep out of training; used to validate."),
    steps: int = typer.Option(_VOCODER.steps, min=1, help="Total steps of the learning-rate "
                              "schedule."),
    batch_size: int = typer.Option(_VOCODER.batch_size, min=1),
    segment_frames: int = typer.Option(_VOCODER.segment_frames, min=8, help="Crop length in "
                                       "mel frames."),
    lr: float = typer.Option(_VOCODER.lr, min=0.0),
    mel_weight: float = typer.Option(_VOCODER.mel_weight, min=0.0, help="Weight of the mel L1 "
                                     "loss (the multi-resolution STFT loss has weight 1)."),
    comb_weight: float = typer.Option(_VOCODER.comb_weight, min=0.0, help="Weight of the "
                                      "frame-rate comb loss, which lowers the faint buzz at "
                                      "multiples of 86 Hz at some cost in MCD (0: off)."),
    dim: int = typer.Option(_VOCOS.dim, min=8, help="Backbone width (new runs only)."),
    layers: int = typer.Option(_VOCOS.num_layers, min=1, help="ConvNeXt blocks (new runs "
                               "only)."),
    magnitude_prior: bool = typer.Option(_VOCOS.magnitude_prior, help="Start the magnitude "
                                         "from the mel's pseudo-inverse (new runs only)."),
    seed: int = typer.Option(_VOCODER.seed, help="Seeds initialisation and the batch order."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start a new run from this "
                                        "checkpoint's weights, its schedule from step 0 "
                                        "(fine-tuning; e.g. 'avgen weights path vocoder')."),
) -> None:
    """Train (or resume) the small Vocos-style vocoder: mel (B, 80, T) -> wave (B, T*256)."""
    if output is not None and out is not None and output != out:
        raise InputError("give the run folder once, with -o/--output")
    out = output or out
    if out is None:
        raise InputError("give the run folder with -o/--output")
    config = vocoder_trainer.TrainConfig(steps=steps, batch_size=batch_size,
                                         segment_frames=segment_frames, lr=lr,
                                         mel_weight=mel_weight, comb_weight=comb_weight,
                                         seed=seed)
    model = VocosConfig(dim=dim, intermediate_dim=3 * dim, num_layers=layers,
                        magnitude_prior=magnitude_prior)
    if init is not None and not init.is_file():
        raise InputError("no such checkpoint", str(init))
    try:
        path = vocoder_trainer.train(audio, out, config, model, heldout=heldout,
                                     threads=threads, init=init)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP
        # unlike other commands, training has saved its state: say so
        err.print(f"interrupted; checkpoint saved in {out}; run the same command to resume")
        raise typer.Exit(getattr(exc, "exit_code", 130)) from None
    typer.echo(str(path))


_TOKENS = tokens_trainer.TrainConfig


@app.command("tokens")
@user_errors
def train_tokens(
    data: Path = typer.Argument(..., help="A teacher corpus folder (exact durations) or a folder "
                                "of NAME.wav (22050 Hz) + NAME.txt recordings (aligned by MAS)."),
    output: Path = typer.Option(..., "-o", "--output", help="Run folder: state.safetensors, "
                                "text_to_tokens.safetensors, train.log; an existing run resumes."),
    steps: int = typer.Option(_TOKENS.steps, min=1, help="Optimiser steps in all (a resumed "
                              "run continues to this many)."),
    batch_size: int = typer.Option(_TOKENS.batch_size, min=1, help="Utterances per step."),
    seed: int = typer.Option(_TOKENS.seed, help="Seed for initialisation and batches."),
    align: bool = typer.Option(_TOKENS.align, help="Use Monotonic Alignment Search durations "
                               "even where the data has exact ones."),
    threads: int = typer.Option(_TOKENS.threads, min=1, help="torch CPU threads."),
    init: Optional[Path] = typer.Option(None, help="Start a new run from this checkpoint "
                                        "(e.g. the shipped one: 'avgen weights path "
                                        "text-to-tokens') to fine-tune on recordings."),
) -> None:
    """Train the text-to-tokens model (phoneme encoder, duration predictor, token decoder).

    Held-out utterances are never trained on; their figures go to train.log. Resumable and
    deterministic for a seed. The result loads with `avgen tokens --checkpoint`.
    """
    from tqdm import tqdm

    trainer = tokens_trainer
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


_AV = av_trainer.TrainConfig


@app.command("av")
@user_errors
def train_av(
    corpus_root: Path = typer.Argument(..., help="Teacher corpus folder ('avgen train corpus')."),
    run_dir: Path = typer.Option(..., "-o", "--output", help="Run folder: checkpoint, log; an "
                                 "existing run is resumed."),
    steps: int = typer.Option(_AV.steps, min=1, help="Total optimizer steps (the learning-rate "
                              "schedule's length)."),
    stop_at: int = typer.Option(_AV.stop_at, min=0, help="Stop at this step with a checkpoint "
                                "(0: at --steps); run again with the same --steps to go on. "
                                "Equal-budget ablations, runs spread over sessions."),
    batch_size: int = typer.Option(_AV.batch_size, min=1, help="Global batch: under torchrun "
                                   "it is split evenly over the processes (a multiple of their "
                                   "number)."),
    frames: int = typer.Option(_AV.frames, min=16, help="Window length in frames (86.13 per "
                               "second)."),
    d_model: int = typer.Option(AVFlowConfig.d_model, min=16),
    blocks: int = typer.Option(AVFlowConfig.n_blocks, min=1),
    heads: int = typer.Option(AVFlowConfig.n_heads, min=1),
    ff_kernel: int = typer.Option(AVFlowConfig.ff_kernel, min=1, help="Frames seen by the "
                                  "feed-forward's first layer (1: plain MLP)."),
    fusion: str = typer.Option(AVFlowConfig.fusion, help="How audio and motion streams meet: "
                               "highway (default), or the ablations separate, shared, "
                               "cascaded."),
    motion_window_past: Optional[int] = typer.Option(
        AVFlowConfig.motion_window_past, min=ATTENTION_WINDOW[0], max=ATTENTION_WINDOW[1],
        help="Frames the visual stream's attention sees back (default: as the audio "
        "stream's, 7). Also applies over an --init checkpoint (no weights change)."),
    seed: int = typer.Option(_AV.seed),
    threads: int = typer.Option(_AV.threads, help="torch threads (0: default)."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda if available)."),
    learning_rate: float = typer.Option(_AV.learning_rate, min=0.0, help="Peak learning rate."),
    warmup_steps: int = typer.Option(_AV.warmup_steps, min=0, help="Linear warm-up steps."),
    listen_weight: float = typer.Option(_AV.listen_weight, min=0.0, help="Weight of the motion "
                                        "loss on listening frames (> 1: livelier listeners)."),
    motion_loss: str = typer.Option(_AV.motion_loss, help="l1 or l2: the motion streams' "
                                    "loss; l2 learns chance events (a listener's smile) that "
                                    "l1 averages away."),
    time_sway: float = typer.Option(_AV.time_sway, help="Spacing of the flow times trained "
                                    "on (-1 to 1): below 0 more often near the noise, where "
                                    "the sampler settles whether a listener nods or smiles; "
                                    "0 uniform."),
    precision: str = typer.Option("auto", help="auto (bfloat16 autocast where the hardware "
                                  "does it natively: GPUs, CPUs with AMX/AVX-512 bf16), "
                                  "bfloat16 or float32."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start a new run from this "
                                        "checkpoint's weights and normaliser (fine-tuning, "
                                        "e.g. on 'avgen prepare' shards); its model config "
                                        "wins but for --motion-window-past. Voices it "
                                        "lacks start as copies of its first; a corpus "
                                        "with style vectors (voices.json) replaces its "
                                        "voices with them."),
) -> None:
    """Train (or resume) the joint audio-visual flow model on a teacher corpus or on an
    'avgen prepare' folder. Checkpoints every 500 steps to RUN/av-latest.safetensors;
    progress in RUN/train.log.

    Data-parallel: `torchrun --nproc_per_node=N -m avgen train av CORPUS -o RUN` (gloo on
    CPU, nccl on GPU); the result equals one process with the same --batch-size."""
    from tqdm import tqdm

    from avgen.train.distributed import Ranks

    model_config = AVFlowConfig(d_model=d_model, n_blocks=blocks, n_heads=heads,
                                ff_kernel=ff_kernel, fusion=fusion,
                                motion_window_past=motion_window_past)
    config = av_trainer.TrainConfig(steps=steps, batch_size=batch_size, frames=frames,
                                    seed=seed, threads=threads, stop_at=stop_at,
                                    learning_rate=learning_rate, listen_weight=listen_weight,
                                    motion_loss=motion_loss, time_sway=time_sway,
                                    warmup_steps=warmup_steps,
                                    bf16=av_trainer.use_bf16(precision, device))
    if init is not None and not init.is_file():
        raise InputError("no such checkpoint", str(init))
    main = Ranks.from_env().main
    with tqdm(total=config.last_step, desc="train av", unit="step",
              file=sys.stderr, disable=not main) as bar:  # one bar, rank 0's
        def progress(n, loss):
            bar.update(n)
            if loss is not None:
                bar.set_postfix(loss=f"{loss:.3f}")
        path = av_trainer.train(corpus_root, run_dir, model_config, config, device, progress,
                                log=lambda m: err.print(m), init=init)
    if main:
        err.print(f"checkpoint: {path}")
