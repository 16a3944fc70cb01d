"""Data-parallel training (torch.distributed, gloo on CPU) equals one process."""

import json

import pytest
import torch

from avgen.errors import InputError
from avgen.model.av_flow import AVFlowConfig
from avgen.train.av import TrainConfig, load_checkpoint, train
from avgen.train.distributed import Ranks

TINY = AVFlowConfig(d_model=32, n_blocks=2, n_heads=2, ff_mult=2)
# A learning rate that moves the weights well past the tolerance within a few steps, so a
# rank training on other examples or noise than its share would show.
CONFIG = TrainConfig(steps=4, batch_size=4, frames=48, learning_rate=3e-3, warmup_steps=1,
                     checkpoint_every=2, log_every=1, seed=5, threads=1)


def _rank(rank, world, rendezvous, corpus, run, config):
    train(corpus, run, TINY, config, device="cpu", log=lambda m: None,
          ranks=Ranks(rank, world, rank, f"file://{rendezvous}"))


def _spawn(world, tmp_path, corpus, run, config):
    torch.multiprocessing.spawn(_rank, args=(world, str(tmp_path / "rendezvous"), str(corpus),
                                             str(run), config), nprocs=world, join=True)


def _weights(path):
    model, normalizer, step, _ = load_checkpoint(path)
    return step, model.state_dict(), normalizer


def test_two_ranks_train_exactly_like_one_process(tiny_corpus, tmp_path):
    root, _ = tiny_corpus
    single = train(root, tmp_path / "single", TINY, CONFIG, device="cpu", log=lambda m: None)
    _spawn(2, tmp_path, root, tmp_path / "ddp", CONFIG)
    step, ddp, ddp_norm = _weights(tmp_path / "ddp" / single.name)
    step_one, one, one_norm = _weights(single)
    assert step == step_one == CONFIG.steps
    assert (ddp_norm.mel_mean == one_norm.mel_mean).all()
    worst = max((ddp[k] - one[k]).abs().max().item() for k in one)
    assert worst < 1e-5, worst
    # and they did train: the weights moved far beyond the tolerance
    init = train(root, tmp_path / "zero", TINY, TrainConfig(**{**CONFIG.__dict__, "steps": 1}),
                 device="cpu", log=lambda m: None)
    moved = max((_weights(init)[1][k] - one[k]).abs().max().item() for k in one)
    assert moved > 1e-3
    # rank 0 alone logged, the whole batch's loss
    logs = [(tmp_path / r / "train.log").read_text().splitlines() for r in ("single", "ddp")]
    assert len(logs[1]) == CONFIG.steps
    for a, b in zip(*logs):
        a, b = json.loads(a), json.loads(b)
        assert a["step"] == b["step"] and abs(a["loss"] - b["loss"]) < 1e-3
    assert (tmp_path / "ddp" / "optimizer.safetensors").exists()


def test_a_rank_on_the_wrong_share_is_caught(tiny_corpus, tmp_path):
    """What the equivalence test guards against: ranks seeded apart (each drawing its own
    examples and noise) train to different weights than one process."""
    root, _ = tiny_corpus
    config = TrainConfig(**{**CONFIG.__dict__, "steps": 2})
    single = train(root, tmp_path / "single", TINY, config, device="cpu", log=lambda m: None)
    half = TrainConfig(**{**config.__dict__, "batch_size": 2})  # one process, half the batch
    other = train(root, tmp_path / "half", TINY, half, device="cpu", log=lambda m: None)
    one, two = _weights(single)[1], _weights(other)[1]
    assert max((one[k] - two[k]).abs().max().item() for k in one) > 1e-4


def test_ranks_split_the_batch_evenly(monkeypatch):
    shares = [Ranks(r, 4).share(8) for r in range(4)]
    assert [(s.start, s.stop) for s in shares] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    with pytest.raises(InputError, match="--batch-size 6 does not split over 4 processes"):
        Ranks(1, 4).share(6)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert Ranks.from_env() == Ranks(1, 2, 1)
    assert Ranks.from_env().device("cuda") == "cuda:1" and Ranks().device("cpu") == "cpu"
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(InputError, match="must be integers"):
        Ranks.from_env()



@pytest.mark.parametrize("fusion", ["separate", "cascaded"])
def test_two_ranks_for_the_other_fusions(tiny_corpus, tmp_path, fusion):
    """Separate streams and the cascaded model (mel as the motion's condition) train
    data-parallel like one process too."""
    from dataclasses import replace

    root, _ = tiny_corpus
    config = TrainConfig(**{**CONFIG.__dict__, "steps": 2})
    model_config = replace(TINY, fusion=fusion)
    single = train(root, tmp_path / "single", model_config, config, device="cpu",
                   log=lambda m: None)
    torch.multiprocessing.spawn(_rank_with, args=(2, str(tmp_path / "rv"), str(root),
                                                  str(tmp_path / "ddp"), config, model_config),
                                nprocs=2, join=True)
    one, two = _weights(single)[1], _weights(tmp_path / "ddp" / single.name)[1]
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-5
    assert load_checkpoint(single)[0].config.fusion == fusion


def _rank_with(rank, world, rendezvous, corpus, run, config, model_config):
    train(corpus, run, model_config, config, device="cpu", log=lambda m: None,
          ranks=Ranks(rank, world, rank, f"file://{rendezvous}"))
