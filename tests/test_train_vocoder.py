import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile
import torch

from avgen.audio.vocos import VocosConfig, checkpoint_metadata, load_checkpoint
from avgen.errors import InputError
from avgen.train.vocoder import FrameRateCombLoss, TrainConfig, split_files, train
from test_audio_mel import speechlike

TINY = VocosConfig(dim=16, intermediate_dim=32, num_layers=1)


def make_folder(root, rate=22050, count=3):
    (root / "voice" / "nested").mkdir(parents=True)
    for k in range(count):
        sub = root / "voice" / ("nested" if k % 2 else "")
        soundfile.write(sub / f"u{k}.flac" if k else sub / f"u{k}.wav",
                        speechlike(0.6 + 0.1 * k, seed=k), rate)
    (root / "voice" / "notes.txt").write_text("not audio")
    return root


def config(steps):
    return TrainConfig(steps=steps, batch_size=2, segment_frames=8, warmup=2,
                       checkpoint_every=100, validate_every=2, log_every=1, seed=5)


def weights(path):
    return load_checkpoint(path).state_dict()


def test_training_is_deterministic_and_resume_equals_an_uninterrupted_run(tmp_path):
    data = make_folder(tmp_path / "data")
    straight = train(data, tmp_path / "a", config(4), TINY, progress=False, threads=1)
    again = train(data, tmp_path / "b", config(4), TINY, progress=False, threads=1)
    first_half = train(data, tmp_path / "c", config(2), TINY, progress=False, threads=1)
    assert checkpoint_metadata(first_half)["step"] == 2
    resumed = train(data, tmp_path / "c", config(4), TINY, progress=False, threads=1)
    a, b, c = weights(straight), weights(again), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.allclose(a[k], c[k], atol=1e-6) for k in a)
    meta = checkpoint_metadata(resumed)
    assert meta["step"] == 4 and meta["train_files"] == 3
    log = [json.loads(l) for l in (tmp_path / "c" / "train.log").read_text().splitlines()]
    assert [r["event"] for r in log].count("start") == 2
    assert all(np.isfinite(r["loss"]) for r in log if r["event"] == "train")


def test_a_bare_checkpoint_continues_from_its_step(tmp_path):
    data = make_folder(tmp_path / "data")
    train(data, tmp_path / "run", config(2), TINY, progress=False, threads=1)
    (tmp_path / "run" / "state.safetensors").unlink()
    path = train(data, tmp_path / "run", config(3), TINY, progress=False, threads=1)
    assert checkpoint_metadata(path)["step"] == 3
    assert "resume-without-optimizer-state" in (tmp_path / "run" / "train.log").read_text()


def test_init_fine_tunes_from_a_checkpoint_with_its_schedule_from_step_zero(tmp_path):
    data = make_folder(tmp_path / "data")
    start = train(data, tmp_path / "first", config(3), TINY, progress=False, threads=1)
    tuned = train(data, tmp_path / "tuned", replace(config(2), comb_weight=1.0),
                  VocosConfig(), progress=False, threads=1, init=start)
    assert checkpoint_metadata(tuned)["step"] == 2  # its own steps, not the first run's 5
    assert load_checkpoint(tuned).config == TINY  # the checkpoint's architecture wins
    log = [json.loads(l) for l in (tmp_path / "tuned" / "train.log").read_text().splitlines()]
    assert log[0]["event"] == "init" and all("comb" in r for r in log if r["event"] == "train")
    assert not all(torch.equal(a, b) for a, b in zip(weights(start).values(),
                                                     weights(tuned).values()))


def test_comb_loss_sees_a_buzz_at_the_frame_rate_and_nothing_else():
    wave = torch.from_numpy(speechlike(1.0, seed=3)[: 64 * 256]).float()[None]
    clicks = torch.zeros_like(wave)
    clicks[:, ::256] = 0.05  # one click a frame: harmonics of 86.13 Hz
    hum = 0.05 * torch.sin(2 * torch.pi * 130.0 * torch.arange(wave.shape[-1]) / 22050)
    loss = FrameRateCombLoss()
    assert loss(wave, wave) == 0
    assert loss(wave + clicks, wave) > 5 * loss(wave + hum, wave)


def test_loss_goes_down(tmp_path):
    data = make_folder(tmp_path / "data")
    cfg = TrainConfig(steps=16, batch_size=4, segment_frames=16, warmup=2, lr=5e-3,
                      checkpoint_every=100, validate_every=100, log_every=5, seed=0)
    train(data, tmp_path / "run", cfg, TINY, progress=False, threads=1)
    log = [json.loads(l) for l in (tmp_path / "run" / "train.log").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["event"] == "train"]
    assert losses[-1] < 0.8 * losses[0]


def test_other_sample_rates_are_refused_naming_the_file(tmp_path):
    data = make_folder(tmp_path / "data")
    soundfile.write(data / "voice" / "odd.wav", np.zeros(24000, np.float32), 24000)
    with pytest.raises(InputError, match=r"odd.wav: sample rate is 24000 Hz; avgen works "
                                         r"at 22050 Hz"):
        train(data, tmp_path / "run", config(1), TINY, progress=False, threads=1)
    assert not (tmp_path / "run" / "vocoder.safetensors").exists()


def test_heldout_files_never_reach_training(tmp_path):
    data = make_folder(tmp_path / "data")
    listing = tmp_path / "heldout.txt"
    listing.write_text("voice/nested/u1.flac\n\n")
    train_files, valid = split_files([data], listing)
    assert [p.name for p in valid] == ["u1.flac"]
    assert sorted(p.name for p in train_files) == ["u0.wav", "u2.flac"]
    listing.write_text("voice/none.flac\n")
    with pytest.raises(InputError, match="heldout.txt: none of its 1 paths exist"):
        split_files([data], listing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty: no .wav or .flac files found"):
        split_files([empty], None)


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_a_bad_init_checkpoint_is_refused_before_the_run_folder_exists(tmp_path):
    from avgen.errors import WeightsError

    data = make_folder(tmp_path / "data")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError):
        train(data, tmp_path / "run", config(1), TINY, progress=False, threads=1, init=bad)
    assert not (tmp_path / "run").exists()
