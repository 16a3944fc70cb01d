import json

import numpy as np
import pytest
import torch

from avgen.audio.bigvgan import (BigVGAN, BigVGANConfig, UpSample1d, fold_weight_norm,
                                 kaiser_sinc_filter, load_bigvgan)
from avgen.audio.griffinlim import GriffinLim
from avgen.audio.mel import MelSpectrogram, log_mel
from avgen.audio.vocoder import load_vocoder, read_mels, vocode
from avgen.audio.vocos import ISTFT, Vocos, VocosConfig, load_checkpoint, save_checkpoint
from avgen.constants import HOP_LENGTH, N_FFT, N_MELS
from avgen.errors import FormatError, InputError, WeightsError
from test_audio_mel import speechlike

TINY_VOCOS = VocosConfig(dim=16, intermediate_dim=32, num_layers=2)
TINY_BIGVGAN = BigVGANConfig(upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8),
                             upsample_initial_channel=32, resblock_kernel_sizes=(3, 5),
                             resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)))


def test_istft_inverts_the_bigvgan_framed_stft():
    x = torch.randn(2, HOP_LENGTH * 40)
    pad = (N_FFT - HOP_LENGTH) // 2
    padded = torch.nn.functional.pad(x[:, None], (pad, pad), mode="reflect")[:, 0]
    spec = torch.stft(padded, N_FFT, HOP_LENGTH, N_FFT, torch.hann_window(N_FFT),
                      center=False, return_complex=True)
    assert spec.shape[-1] == 40
    assert torch.allclose(ISTFT(N_FFT, HOP_LENGTH)(spec), x, atol=1e-5)


@pytest.mark.parametrize("frames", [1, 7, 64])
def test_vocos_shapes(frames):
    torch.manual_seed(0)
    model = Vocos(TINY_VOCOS).eval()
    with torch.no_grad():
        wave = model(torch.randn(3, N_MELS, frames) - 5)
    assert wave.shape == (3, frames * HOP_LENGTH)
    assert torch.isfinite(wave).all()


def test_vocos_is_deterministic_under_a_seed():
    torch.manual_seed(1)
    a = Vocos(TINY_VOCOS).state_dict()
    torch.manual_seed(1)
    b = Vocos(TINY_VOCOS).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_vocos_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Vocos(TINY_VOCOS).eval()
    path = tmp_path / "v.safetensors"
    save_checkpoint(model, path, extra={"step": 7})
    loaded = load_checkpoint(path)
    assert loaded.config == TINY_VOCOS
    mel = torch.randn(1, N_MELS, 20)
    with torch.no_grad():
        assert torch.equal(model(mel), loaded(mel))
    assert [p.name for p in tmp_path.iterdir()] == ["v.safetensors"]


def test_vocos_checkpoint_errors(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="junk.safetensors: not a readable"):
        load_checkpoint(junk)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(WeightsError, match="not an avgen.vocos/1 checkpoint"):
        load_checkpoint(foreign)


def test_shipped_vocoder_loads_and_vocodes_speech_shape():
    model = load_vocoder("vocos")
    mel = log_mel(speechlike(0.5)).T
    wave = vocode(model, mel)
    assert wave.shape == (mel.shape[0] * HOP_LENGTH,) and wave.dtype == np.float32
    assert np.isfinite(wave).all()


def test_shipped_vocoder_reproduces_the_spectrum_it_is_given():
    """The mel of the vocoded teacher speech (the fixture's hibari "heart" sentence) is the
    mel it was made from: mean |log-mel difference| 0.135 today (Griffin-Lim's 32
    iterations: 0.120), while the same architecture untrained gives 1.46-1.50 (seeds 0-2)
    even with its magnitude prior, its phases being noise."""
    from avgen.audio.io import read_audio
    from conftest import REPO

    mel = log_mel(read_audio(REPO / "tests" / "data" / "speech.flac")).T

    def error(model):
        again = log_mel(vocode(model, mel)).T
        return float(np.abs(again - mel[:len(again)]).mean())

    shipped = load_vocoder("vocos")
    assert error(shipped) < 0.4
    torch.manual_seed(0)
    assert error(Vocos(shipped.config).eval()) > 0.8  # the check tells trained from not


def test_chunked_vocoding_matches_one_pass_away_from_the_seams():
    torch.manual_seed(0)
    model = Vocos(TINY_VOCOS).eval()
    mel = log_mel(speechlike(2.0)).T
    whole = vocode(model, mel)
    chunked = vocode(model, mel, chunk_frames=64)
    assert chunked.shape == whole.shape
    # receptive field is a few frames; far from seams the two agree exactly
    assert np.allclose(whole[:40 * HOP_LENGTH], chunked[:40 * HOP_LENGTH], atol=1e-5)


def test_griffin_lim_shape_determinism_and_fidelity():
    wave = speechlike(1.0)
    mel = torch.from_numpy(log_mel(wave))[None]
    out = GriffinLim(iterations=16, seed=3)(mel)
    assert out.shape == (1, mel.shape[-1] * HOP_LENGTH)
    assert torch.equal(out, GriffinLim(iterations=16, seed=3)(mel))
    assert not torch.equal(out, GriffinLim(iterations=16, seed=4)(mel))
    error = lambda w: (MelSpectrogram()(w) - mel).abs().mean().item()  # noqa: E731
    assert error(out) < 0.25
    assert error(GriffinLim(iterations=1, seed=3)(mel)) > error(out)  # iterating helps


def test_kaiser_filter_and_upsampler_keep_dc():
    taps = kaiser_sinc_filter(0.25, 0.3, 12)
    assert taps.shape == (1, 1, 12) and taps.sum().item() == pytest.approx(1.0)
    up = UpSample1d(2)
    out = up(torch.ones(1, 3, 50))
    assert out.shape == (1, 3, 100)
    assert torch.allclose(out, torch.ones_like(out), atol=1e-5)


def _published_layout(model: BigVGAN, folder, parametrize: bool):
    """Save `model` as NVIDIA does: weight-normed convs, {"generator": state_dict} in
    bigvgan_generator.pt, and config.json. Weight norm is applied to a copy here with
    torch's own utilities, so the loader's folding is checked against torch."""
    import copy

    from torch.nn.utils import parametrizations, weight_norm

    normed = copy.deepcopy(model)
    for module in normed.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            if parametrize:
                parametrizations.weight_norm(module)
            else:
                weight_norm(module)
    folder.mkdir()
    torch.save({"generator": normed.state_dict()}, folder / "bigvgan_generator.pt")
    config = model.config.to_dict() | {"batch_size": 32, "segment_size": 65536}
    (folder / "config.json").write_text(json.dumps(config))
    return normed


@pytest.mark.parametrize("parametrize", [False, True])
def test_bigvgan_loads_a_randomly_initialised_checkpoint_in_the_published_layout(
        tmp_path, parametrize):
    torch.manual_seed(0)
    model = BigVGAN(TINY_BIGVGAN).eval()
    normed = _published_layout(model, tmp_path / "ckpt", parametrize).eval()
    keys = set(torch.load(tmp_path / "ckpt" / "bigvgan_generator.pt")["generator"])
    assert ("ups.0.0.weight_v" in keys) != parametrize
    assert "resblocks.0.activations.0.act.beta" in keys
    assert "resblocks.0.activations.0.downsample.lowpass.filter" in keys
    loaded = load_bigvgan(tmp_path / "ckpt")
    mel = torch.randn(2, N_MELS, 6) - 4
    with torch.no_grad():
        expected, got = normed(mel), loaded(mel)
    assert got.shape == (2, 6 * 256)
    assert torch.allclose(expected, got, atol=1e-5)


def test_bigvgan_full_size_has_the_published_parameter_count():
    assert sum(p.numel() for p in BigVGAN().parameters()) == pytest.approx(112.2e6, rel=1e-3)


def test_bigvgan_loader_errors(tmp_path):
    with pytest.raises(WeightsError, match="config.json not found"):
        load_bigvgan(tmp_path)
    torch.manual_seed(0)
    _published_layout(BigVGAN(TINY_BIGVGAN), tmp_path / "ckpt", False)
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config | {"fmax": None}))
    with pytest.raises(WeightsError, match=r"another mel recipe: fmax None \(avgen: 8000"):
        load_bigvgan(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "config.json").write_text(
        json.dumps(config | {"upsample_initial_channel": 64}))
    with pytest.raises(WeightsError, match="weights do not fit config.json"):
        load_bigvgan(tmp_path / "ckpt")


def test_fold_weight_norm_leaves_plain_weights_alone():
    state = {"a.weight": torch.ones(2, 1, 3), "b.weight_g": torch.full((2, 1, 1), 2.0),
             "b.weight_v": torch.ones(2, 1, 4)}
    folded = fold_weight_norm(state)
    assert set(folded) == {"a.weight", "b.weight"}
    assert torch.allclose(folded["b.weight"], torch.ones(2, 1, 4))  # 2 * 1 / sqrt(4)


def test_unknown_vocoder_is_an_input_error():
    with pytest.raises(InputError, match="unknown vocoder 'wavenet'"):
        load_vocoder("wavenet")


def test_read_mels_accepts_time_first_and_channels_first(tmp_path):
    mel = np.random.default_rng(0).normal(size=(30, N_MELS)).astype(np.float32)
    for name, array in (("a.npy", mel), ("b.npy", mel.T), ("c.npy", mel.T[None])):
        np.save(tmp_path / name, array)
        (got,) = read_mels(str(tmp_path / name))
        assert np.array_equal(got, mel)
    np.save(tmp_path / "bad.npy", np.zeros((30, 40)))
    with pytest.raises(FormatError, match=r"bad.npy: mel array has shape \(30, 40\)"):
        read_mels(str(tmp_path / "bad.npy"))
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(FormatError, match="text.npy: not an .npz"):
        read_mels(str(tmp_path / "text.npy"))
