"""Joint audio-visual flow model: shapes, windowed attention, highways, training, checkpoints."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from avgen.constants import EXPRESSION_NAMES
from avgen.model.av_flow import (MOTION_DIM, AVFlow, AVFlowConfig, step_times, sway_times,
                                  window_mask)
from avgen.face.rotations import euler_to_quaternion

TINY = AVFlowConfig(d_model=32, n_blocks=2, n_heads=2, ff_mult=2)


def inputs(batch=2, length=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.log_softmax(torch.randn(batch, length, TINY.num_symbols, generator=g), -1)
    return dict(mel_t=torch.randn(batch, length, 80, generator=g),
                motion_t=torch.randn(batch, length, MOTION_DIM, generator=g),
                t=torch.rand(batch, generator=g), tokens=tokens, partner_tokens=tokens.flip(0),
                partner_motion=torch.randn(batch, length, MOTION_DIM, generator=g),
                voice=torch.tensor([0, 1][:batch]))


def randomise(model):
    """Give zero-initialised layers (adaLN-zero, heads, highways) random weights."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def test_window_mask():
    mask = window_mask(12, past=7, future=2)
    assert mask[5].nonzero().flatten().tolist() == list(range(0, 8))
    assert mask[9].nonzero().flatten().tolist() == list(range(2, 12))


def test_local_attention_equals_masked_attention():
    from avgen.model.av_flow import local_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 25, 8, generator=g) for _ in range(3))
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=window_mask(25, 7, 2))
    assert torch.allclose(local_attention(q, k, v, 7, 2), expected, atol=1e-5)


def test_shapes_and_zero_init():
    torch.manual_seed(0)
    model = AVFlow(TINY)
    v_mel, v_motion = model(**inputs())
    assert v_mel.shape == (2, 40, 80) and v_motion.shape == (2, 40, MOTION_DIM)
    assert torch.count_nonzero(v_mel) == 0  # adaLN-zero output layers start at zero


def test_generation_streams_with_limited_lookahead():
    torch.manual_seed(0)
    model = randomise(AVFlow(TINY)).eval()
    x = inputs(batch=1, length=60)
    base, _ = model(**x)
    x["tokens"] = x["tokens"].clone()
    x["tokens"][:, 40:] = torch.log_softmax(torch.randn(1, 20, TINY.num_symbols), -1)
    changed, _ = model(**x)
    lookahead = TINY.lookahead
    assert lookahead == (TINY.window_future + TINY.ff_kernel // 2) * TINY.n_blocks
    diff = (changed - base).abs().amax(-1)[0]
    assert diff[:40 - lookahead].max() == 0  # frames far before the change are untouched
    assert diff[40 - lookahead:].max() > 0


@pytest.mark.parametrize("fusion,motion_reaches_audio",
                         [("highway", True), ("shared", True), ("separate", False),
                          ("cascaded", False)])
def test_how_streams_meet(fusion, motion_reaches_audio):
    torch.manual_seed(0)
    x = inputs()
    model = randomise(AVFlow(replace(TINY, fusion=fusion))).eval()
    if fusion == "cascaded":
        x["mel_condition"] = torch.randn(2, 40, 80)
    base_mel, base_motion = model(**x)
    other = dict(x, motion_t=x["motion_t"] + 1.0)  # only the visual stream's input
    changed_mel, _ = model(**other)
    assert bool((changed_mel - base_mel).abs().max() > 1e-6) == motion_reaches_audio
    if fusion == "shared":
        assert model.visual_blocks is model.audio_blocks
    if fusion == "cascaded":  # motion follows the finished mel; the mel alone can run
        _, moved = model(**dict(x, mel_condition=x["mel_condition"] + 1.0))
        assert (moved - base_motion).abs().max() > 1e-6
        alone, none = model(**{k: v for k, v in x.items() if k != "mel_condition"},
                            only="audio")
        assert none is None and torch.allclose(alone, base_mel, atol=1e-6)
        with pytest.raises(ValueError, match="mel_condition"):
            model(**{k: v for k, v in x.items() if k != "mel_condition"})
    if fusion == "highway":
        with pytest.raises(ValueError, match="cannot run alone"):
            model(**x, only="audio")
    with pytest.raises(ValueError, match="fusion must be one of"):
        AVFlowConfig(fusion="sideways")


def test_sampling_is_deterministic_and_shaped():
    torch.manual_seed(0)
    model = randomise(AVFlow(TINY)).eval()
    tokens = inputs()["tokens"]
    a = model.sample_dyad(tokens, torch.tensor([0, 1]), steps=4,
                          generator=torch.Generator().manual_seed(5))
    b = model.sample_dyad(tokens, torch.tensor([0, 1]), steps=4,
                          generator=torch.Generator().manual_seed(5))
    assert a[0].shape == (2, 40, 80) and a[1].shape == (2, 40, MOTION_DIM)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("fusion,motion_window_past", [("highway", None), ("cascaded", None),
                                                       ("highway", 13), ("cascaded", 13)])
def test_chunked_sampling_equals_whole_dialogue_sampling(fusion, motion_window_past):
    """Long dialogues are generated chunk by chunk with bounded memory; with the
    receptive field as context, the result is the whole-dialogue result (also when the
    visual stream looks further back than the audio stream)."""
    torch.manual_seed(0)
    model = randomise(AVFlow(replace(TINY, fusion=fusion,
                                     motion_window_past=motion_window_past))).eval()
    tokens = inputs(length=230)["tokens"]
    voices, steps = torch.tensor([0, 1]), 3

    def sample(chunk=None, tokens=tokens):
        return model.sample_dyad(tokens, voices, steps, torch.Generator().manual_seed(5), chunk)

    whole = sample()
    done = []
    chunked = model.sample_dyad(tokens, voices, steps, torch.Generator().manual_seed(5), 40,
                                progress=done.append)
    assert done == [40] * 5 + [30]
    steps_done = []
    model.sample_dyad(tokens, voices, steps, torch.Generator().manual_seed(5), 40,
                      on_step=steps_done.append)
    stages = 2 if fusion == "cascaded" else 1
    assert steps_done == [n for n in [40] * 5 + [30] for _ in range(steps * stages)]
    assert sum(steps_done) == model.sampling_work(230, steps)
    for a, b in zip(whole, chunked):
        assert torch.allclose(a, b, atol=1e-5)
    # the receptive field is what it claims: a change at frame 150 reaches no further
    back, ahead = model.receptive_field(steps)
    changed_tokens = tokens.clone()
    changed_tokens[:, 150] = changed_tokens[:, 150].flip(-1)
    changed = sample(tokens=changed_tokens)[0]
    moved = (changed - whole[0]).abs().amax(dim=(0, 2)) > 0
    assert moved[150] and not moved[:150 - ahead].any() and not moved[150 + back + 1:].any()


def test_the_visual_window_reaches_further_back_than_the_audio_window():
    """motion_window_past widens what the visual stream sees back, not the audio stream,
    and not what either sees ahead (streaming latency)."""
    torch.manual_seed(0)
    config = replace(TINY, n_blocks=1, ff_kernel=1, fusion="separate", motion_window_past=20)
    model = randomise(AVFlow(config)).eval()
    x = inputs(batch=1, length=60)
    mel, motion = model(**x)
    x["tokens"] = x["tokens"].clone()
    x["tokens"][:, 10] = x["tokens"][:, 10].flip(-1)
    mel_changed, motion_changed = model(**x)
    mel_moved = (mel_changed - mel).abs().amax(-1)[0] > 0
    motion_moved = (motion_changed - motion).abs().amax(-1)[0] > 0
    future = config.window_future
    assert mel_moved[10 - future:10 + config.window_past + 1].all()
    assert not mel_moved[10 + config.window_past + 1:].any()
    assert motion_moved[10 - future:10 + 20 + 1].all() and not motion_moved[10 + 21:].any()
    assert not mel_moved[:10 - future].any() and not motion_moved[:10 - future].any()
    assert config.lookahead == future  # one block, no conv: the window's future alone
    assert model.receptive_field(1) == (20, future)


def test_a_motion_window_the_tied_blocks_cannot_have_is_refused():
    from avgen.errors import ConfigError

    with pytest.raises(ConfigError, match="motion_window_past"):
        replace(TINY, fusion="shared", motion_window_past=TINY.window_past + 1)
    assert replace(TINY, fusion="shared", motion_window_past=TINY.window_past).motion_past \
        == TINY.window_past
    for bad in (-1, 2.5, True, "7", 257):
        with pytest.raises(ConfigError, match="motion_window_past"):
            replace(TINY, motion_window_past=bad)


FAR = AVFlowConfig(d_model=16, n_blocks=2, n_heads=2, ff_mult=1, window_past=3,
                   window_future=2)


def far_reaching(config: AVFlowConfig, gate: float = 100.0, sharpness: float = 30.0):
    """A float64 model whose receptive field is fully used: every block passes what lies
    `window_future` + `ff_kernel // 2` frames ahead on to the current frame with little
    loss. A random model's influence fades within a few frames, so chunking with too
    little context would go unnoticed; this one's does not (measured: an input change 12
    frames ahead, the edge of its 2-step field, still moves the output by 1e-6).

    Attention: constant queries and keys in RoPE's fastest pair (1 rad per frame), the key
    turned back by `window_future` rad, so the scores peak at the farthest future key; values
    and projection are identities. Feed-forward: the conv's last tap (the frame
    `ff_kernel // 2` ahead), identity out. Open gates (`gate`) let the new signal outweigh
    the residual stream."""
    import math

    torch.manual_seed(0)
    model = AVFlow(config).double().eval()
    d, heads = config.d_model, config.n_heads
    half = d // heads // 2
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        q, k = torch.zeros(2 * half), torch.zeros(2 * half)
        q[0] = sharpness
        k[0], k[half] = math.cos(config.window_future), -math.sin(config.window_future)
        eye = torch.eye(d)
        for block in (*model.audio_blocks, *model.visual_blocks):
            block.modulation.weight.zero_()
            modulation = torch.zeros(6, d)
            modulation[2] = modulation[5] = gate  # attention and feed-forward gates
            block.modulation.bias.copy_(modulation.flatten())
            block.qkv.weight.zero_()
            block.qkv.bias.copy_(torch.cat([q.repeat(heads), k.repeat(heads), torch.zeros(d)]))
            block.qkv.weight[2 * d:] = eye
            block.proj.weight.copy_(eye)
            block.proj.bias.zero_()
            block.mlp.inner.weight.zero_()
            block.mlp.inner.bias.zero_()
            block.mlp.inner.weight[:d, :, -1] = eye
            block.mlp.outer.weight.zero_()
            block.mlp.outer.bias.zero_()
            block.mlp.outer.weight[:, :d] = eye
    return model


def test_long_dialogue_in_chunks_equals_one_pass_with_a_far_reaching_model():
    """A dialogue over 512 frames (the windowed-attention path) and over one chunk of the
    pipeline's default size, sampled chunk by chunk with the receptive field as context,
    equals sampling it whole; and this test would notice a context one frame short."""
    from avgen.pipeline import GenerateConfig

    chunk = GenerateConfig().chunk_frames
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # noise and flow times in double, as the model
    try:
        model = far_reaching(FAR)
        g = torch.Generator().manual_seed(0)
        tokens = torch.log_softmax(torch.randn(2, chunk + 250, FAR.num_symbols, generator=g),
                                   -1)
        voices, steps = torch.tensor([0, 1]), 2

        def sample(chunk_frames):
            return model.sample_dyad(tokens, voices, steps, torch.Generator().manual_seed(5),
                                     chunk_frames)

        whole, chunked = sample(None), sample(chunk)
        for a, b in zip(whole, chunked):
            assert (a - b).abs().max() < 1e-10
        field = model.receptive_field  # whatever step count the sampler asks it for
        model.receptive_field = lambda *args: (field(*args)[0], field(*args)[1] - 1)
        short = sample(chunk)
        assert (short[0] - whole[0]).abs().max() > 1e-8
    finally:
        torch.set_default_dtype(default)


@pytest.mark.parametrize("length", [1, 25, 31, 32, 33, 100])
def test_blocked_attention_equals_the_masked_dense_kernel_wherever_the_window_starts(length):
    """The blocks see exactly window_past back and window_future ahead, at every length
    and wherever the dialogue's block grid falls on the window (`first_frame`)."""
    from avgen.model.av_flow import local_attention

    g = torch.Generator().manual_seed(length)
    q, k, v = (torch.randn(2, 3, length, 8, dtype=torch.float64, generator=g)
               for _ in range(3))
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=window_mask(length, 7, 2))
    for first_frame in (0, 1, 17, 31, 32, 1000):
        got = local_attention(q, k, v, 7, 2, first_frame)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() < 1e-12, first_frame


def test_a_frame_attends_to_the_same_bits_in_any_window():
    """Chunked sampling equals whole sampling to the bit (what bfloat16 layers after the
    attention need): a frame's result does not depend on where its window starts."""
    from avgen.model.av_flow import local_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 300, 64, generator=g) for _ in range(3))
    whole = local_attention(q, k, v, 7, 2)
    for lo, hi in ((0, 48), (5, 140), (37, 300), (100, 229)):
        part = local_attention(q[:, :, lo:hi], k[:, :, lo:hi], v[:, :, lo:hi], 7, 2, lo)
        inner = slice(7, hi - lo - 2)  # frames whose whole window lies inside the part
        assert torch.equal(part[:, :, inner], whole[:, :, lo:hi][:, :, inner]), (lo, hi)


def test_motion_features_round_trip():
    from avgen.model.features import motion_features, motion_from_features

    rng = np.random.default_rng(0)
    pose = np.zeros((20, 7), np.float32)
    pose[:, :4] = euler_to_quaternion(*(rng.uniform(-0.3, 0.3, (3, 20))))
    pose[:, 4:] = rng.normal(0, 0.02, (20, 3))
    expression = rng.uniform(0, 1, (20, len(EXPRESSION_NAMES))).astype(np.float32)
    back_pose, back_expression = motion_from_features(motion_features(pose, expression))
    assert np.allclose(back_pose, pose, atol=1e-5)
    signed = [EXPRESSION_NAMES.index(n) for n in ("gaze_x", "gaze_y")]
    assert np.allclose(back_expression, expression, atol=1e-6)
    assert back_expression[:, signed].min() >= -1


def test_training_resumes_and_checkpoints(tiny_corpus, tmp_path):
    """30 steps are too few for the noisy flow-matching loss to show learning (measured:
    3.48 -> 3.37 mean over the first and last 10 steps); test_model_fits_a_batch checks
    that the model learns, on a fixed batch."""
    from avgen.train.av import TrainConfig, load_checkpoint, train

    root, _ = tiny_corpus
    config = TrainConfig(steps=30, batch_size=4, frames=64, learning_rate=3e-3, warmup_steps=5,
                         checkpoint_every=15, log_every=5, seed=3)
    losses = []
    path = train(root, tmp_path / "run", TINY, config, device="cpu",
                 progress=lambda n, loss: losses.append(loss), log=lambda m: None)
    assert len(losses) == 30 and np.isfinite(losses).all()
    model, normalizer, step, _ = load_checkpoint(path)
    assert torch.count_nonzero(model.audio_out.linear.weight) > 0  # it did learn something
    assert step == 30 and model.config == TINY
    assert normalizer.mel_mean.shape == (80,) and normalizer.motion_std.shape == (MOTION_DIM,)
    # resuming to 40 steps continues from 30, not from scratch
    more = []
    train(root, tmp_path / "run", TINY, TrainConfig(**{**config.__dict__, "steps": 40}),
          device="cpu", progress=lambda n, loss: more.append((n, loss)), log=lambda m: None)
    assert more[0] == (30, None)  # the progress bar starts where the run stands
    assert len(more) == 11 and load_checkpoint(path)[2] == 40
    lines = (tmp_path / "run" / "train.log").read_text().splitlines()
    assert len(lines) == 8



def test_stop_at_keeps_the_schedule_and_goes_on_later(tiny_corpus, tmp_path):
    import json

    from avgen.train.av import TrainConfig, _lr, load_checkpoint, train

    root, _ = tiny_corpus
    config = TrainConfig(steps=20, batch_size=2, frames=48, warmup_steps=2, log_every=1,
                         checkpoint_every=100, stop_at=6)
    run = tmp_path / "run"
    path = train(root, run, TINY, config, device="cpu", log=lambda m: None)
    assert load_checkpoint(path)[2] == 6  # checkpointed although 6 is no checkpoint step
    log = [json.loads(line) for line in (run / "train.log").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 7))
    assert log[-1]["lr"] == _lr(6, config) > _lr(19, config)  # mid-schedule, not its end
    more = []
    train(root, run, TINY, replace(config, stop_at=9), device="cpu",
          progress=lambda n, loss: more.append(n), log=lambda m: None)
    assert more == [6, 1, 1, 1] and load_checkpoint(path)[2] == 9
    again = []  # a run already at its stop trains nothing
    train(root, run, TINY, replace(config, stop_at=9), device="cpu",
          progress=lambda n, loss: again.append(n), log=lambda m: None)
    assert again == [9] and load_checkpoint(path)[2] == 9

@pytest.mark.parametrize("ff_kernel,fusion", [(1, "highway"), (3, "highway"), (3, "separate"),
                                              (3, "shared"), (3, "cascaded")])
def test_model_fits_a_batch(tiny_corpus, ff_kernel, fusion):
    """With the flow time and noise held fixed, a few dozen steps must fit a batch: the
    gradient reaches every stream."""
    from avgen.train.av_data import DialogueWindows

    root, _ = tiny_corpus
    data = DialogueWindows(root, TINY.voices)
    rng = np.random.default_rng(0)
    batch = data.batch(rng, 4, 48, data.normalizer(rng, 20, 48))
    torch.manual_seed(0)
    model = AVFlow(replace(TINY, ff_kernel=ff_kernel, fusion=fusion))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss():
        return model.loss(batch["mel"], batch["motion"], batch["tokens"],
                          batch["partner_tokens"], batch["partner_motion"], batch["voice"],
                          batch["mask"], torch.Generator().manual_seed(0))

    first = loss()[1]
    for _ in range(250):
        optimizer.zero_grad()
        loss()[0].backward()
        optimizer.step()
    last = loss()[1]
    for stream in ("mel", "head", "face"):
        assert last[stream] < 0.8 * first[stream], stream


def test_bad_checkpoint_is_a_clear_error(tmp_path):
    from avgen.errors import WeightsError
    from avgen.model.av_checkpoint import load_checkpoint

    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="x.safetensors: not a readable safetensors"):
        load_checkpoint(bad)
    with pytest.raises(WeightsError, match="joint audio-visual checkpoint not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    from avgen.model.text_to_tokens import ARCHITECTURE  # a real file of another model
    from avgen.weights import Weights

    with pytest.raises(WeightsError, match=r"not an avgen.av-flow/1 checkpoint"):
        load_checkpoint(Weights().path("text-to-tokens"))
    assert ARCHITECTURE != "avgen.av-flow/1"


def test_half_precision_export_loads_and_generates_alike(tmp_path):
    from avgen.model.av_checkpoint import export_half, load_checkpoint, save_checkpoint
    from avgen.train.av import TrainConfig
    from avgen.model.features import Normalizer

    model = randomise(AVFlow(TINY)).eval()
    normalizer = Normalizer(np.full(80, -6.0, np.float32), np.full(80, 2.0, np.float32),
                            np.zeros(MOTION_DIM, np.float32), np.ones(MOTION_DIM, np.float32))
    full = tmp_path / "full.safetensors"
    save_checkpoint(full, model, normalizer, 7, TrainConfig())
    half = export_half(full, tmp_path / "half.safetensors")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, loaded_normalizer, step, _ = load_checkpoint(half)
    assert step == 7 and loaded.config == TINY
    assert next(loaded.parameters()).dtype == torch.float32
    assert loaded_normalizer.mel_mean.dtype == np.float32
    tokens = inputs()["tokens"]

    def sample(m):
        return m.sample_dyad(tokens, torch.tensor([0, 1]), 4, torch.Generator().manual_seed(0))[0]

    assert (sample(loaded.eval()) - sample(model)).abs().max() < 0.05


def test_shared_fusion_checkpoint_round_trip(tmp_path):
    """Weight-tied blocks are stored once and tied again on load."""
    from avgen.model.av_checkpoint import load_checkpoint, save_checkpoint
    from avgen.train.av import TrainConfig
    from avgen.model.features import Normalizer

    model = randomise(AVFlow(replace(TINY, fusion="shared"))).eval()
    normalizer = Normalizer(np.zeros(80, np.float32), np.ones(80, np.float32),
                            np.zeros(MOTION_DIM, np.float32), np.ones(MOTION_DIM, np.float32))
    save_checkpoint(tmp_path / "s.safetensors", model, normalizer, 3, TrainConfig())
    loaded = load_checkpoint(tmp_path / "s.safetensors")[0].eval()
    assert loaded.visual_blocks is loaded.audio_blocks
    x = inputs()
    for a, b in zip(model(**x), loaded(**x)):
        assert torch.equal(a, b)


def test_bf16_training_runs(tiny_corpus, tmp_path):
    from avgen.train.av import TrainConfig, train

    losses = []
    train(tiny_corpus[0], tmp_path / "run", TINY,
          TrainConfig(steps=4, batch_size=2, frames=48, warmup_steps=1, bf16=True),
          device="cpu", progress=lambda n, loss: losses.append(loss), log=lambda m: None)
    assert len(losses) == 4 and np.isfinite(losses).all()


def test_temperature_scales_only_the_mel_noise():
    torch.manual_seed(0)
    # cascaded: the mel sees nothing of the motion, so only its own noise can move it
    model = randomise(AVFlow(replace(TINY, fusion="cascaded"))).eval()
    tokens = inputs()["tokens"]

    def sample(seed, temperature):
        return model.sample_dyad(tokens, torch.tensor([0, 1]), 3,
                                 torch.Generator().manual_seed(seed), temperature=temperature)

    (mel_a, motion_a), (mel_b, motion_b) = sample(1, 0.0), sample(2, 0.0)
    assert torch.equal(mel_a, mel_b)  # no mel noise: the mel no longer depends on the seed
    assert not torch.equal(motion_a, motion_b)  # the motion keeps its variety
    assert not torch.equal(sample(1, 1.0)[0], mel_a)


def test_bfloat16_sampling_repeats_per_chunking_and_stays_close_to_float32():
    """`precision="bfloat16"` (the default on CPUs that do it natively) runs the matrix
    products in bfloat16: the same seed and chunks give the same bits, close to
    float32's; other chunks differ only by bfloat16's rounding."""
    torch.manual_seed(0)
    model = randomise(AVFlow(TINY)).eval()
    length = 230
    tokens = inputs(length=length)["tokens"]
    voices = torch.tensor([0, 1])

    def sample(precision, chunk=None):
        return model.sample_dyad(tokens, voices, 3, torch.Generator().manual_seed(5), chunk,
                                 precision=precision)

    whole = sample("bfloat16")
    again = sample("bfloat16")
    assert all(torch.equal(a, b) for a, b in zip(whole, again))
    exact = sample("float32")
    for a, b in zip(whole, exact):
        assert not torch.equal(a, b)  # it did run in bfloat16
        assert (a - b).abs().mean() < 0.02 * b.abs().mean()
    for chunk in (48, 71):
        chunked = sample("bfloat16", chunk)
        assert all(torch.equal(a, b) for a, b in zip(chunked, sample("bfloat16", chunk)))
        for a, b in zip(whole, chunked):
            assert (a - b).abs().mean() < 1e-3 * b.abs().mean(), chunk
    with pytest.raises(ValueError, match="precision must be one of"):
        sample("float16")


def test_weights_cast_once_give_the_bits_autocast_gives():
    """`cast_matrix_weights`: the weights bfloat16 autocast would cast at every call,
    cast once; sampling at bfloat16 gives the same bits, with a voice blend too."""
    from avgen.model.av_flow import cast_matrix_weights

    torch.manual_seed(0)
    model = randomise(AVFlow(TINY)).eval()
    tokens = inputs(length=90)["tokens"]
    voices = torch.tensor([[0.3, 0.7], [1.0, 0.0]])  # blends, as the speaker mapper makes

    def sample():
        return model.sample_dyad(tokens, voices, 3, torch.Generator().manual_seed(5), 40,
                                 precision="bfloat16")

    before = sample()
    cast_matrix_weights(model)
    assert model.audio_blocks[0].mlp.inner.weight.dtype == torch.bfloat16
    assert model.voice.table.weight.dtype == torch.float32  # looked up, not multiplied
    after = sample()
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_starting_noise_is_the_same_whichever_windows_are_asked_for():
    from avgen.model.av_flow import StartingNoise

    block = StartingNoise.BLOCK
    length = 2 * block + 100

    def noise(seed):
        return StartingNoise(length, 80, MOTION_DIM, torch.Generator().manual_seed(seed),
                             "cpu", temperature=0.5)

    whole_mel, whole_motion = noise(3).window(0, length)
    assert whole_mel.shape == (2, length, 80) and whole_motion.shape == (2, length, MOTION_DIM)
    # pieces across block edges, asked for in any order, from one source or a fresh one
    source = noise(3)
    for lo, hi in [(block - 5, block + 7), (0, 1), (length - 3, length), (5, 2 * block + 50),
                   (block - 5, block + 7)]:
        mel, motion = source.window(lo, hi)
        assert torch.equal(mel, whole_mel[:, lo:hi])
        assert torch.equal(motion, whole_motion[:, lo:hi])
    assert torch.equal(noise(3).window(block, block + 9)[1], whole_motion[:, block:block + 9])
    # blocks differ from each other and from another seed's; temperature scales the mel only
    assert not torch.equal(whole_mel[:, :block], whole_mel[:, block:2 * block])
    assert not torch.equal(noise(4).window(0, 10)[0], whole_mel[:, :10])
    assert abs(float(whole_mel.std()) - 0.5) < 0.02 and abs(float(whole_motion.std()) - 1) < 0.05
    with pytest.raises(ValueError, match="outside"):
        source.window(0, length + 1)


def test_tokens_made_window_by_window_give_the_same_dialogue():
    """The sampler reads tokens through any object that slices like a tensor (so a long
    dialogue's tokens can be made chunk by chunk): the result is the same."""
    model = randomise(AVFlow(TINY)).eval()
    length = 90
    tokens = inputs(length=length)["tokens"]
    calls = []

    class Windows:
        shape, device = tokens.shape, tokens.device

        def __getitem__(self, index):
            calls.append(index[1])
            return tokens[index].clone()

    def sample(source):
        return model.sample_dyad(source, torch.tensor([0, 1]), 3,
                                 torch.Generator().manual_seed(5), chunk=32)

    mel, motion = sample(tokens)
    lazy_mel, lazy_motion = sample(Windows())
    assert torch.equal(mel, lazy_mel) and torch.equal(motion, lazy_motion)
    assert calls and max(s.stop - s.start for s in calls) < length  # never the whole


def test_voice_guidance_is_classifier_free_guidance_with_the_mean_voice():
    """Without highways the guided mel velocity is exactly v(mean) + w (v(voice) - v(mean)),
    the mean voice being the equal blend of the model's voices; the motion is untouched."""
    torch.manual_seed(0)
    model = randomise(AVFlow(replace(TINY, fusion="separate"))).eval()
    x = inputs()
    v_mel, v_motion = model(**x)
    mean = dict(x, voice=torch.full((2, len(TINY.voices)), 1 / len(TINY.voices)))
    v_mean, _ = model(**mean)
    guided_mel, guided_motion = model(**x, voice_guidance=1.5)
    assert torch.allclose(guided_mel, v_mean + 1.5 * (v_mel - v_mean), atol=1e-5)
    assert torch.allclose(guided_motion, v_motion, atol=1e-6)


def test_voice_guidance_keeps_chunked_equal_to_whole_and_sets_voices_apart():
    torch.manual_seed(0)
    model = randomise(AVFlow(TINY)).eval()  # highways: the mean voice reads the same motion
    x = inputs()
    assert torch.allclose(model(**x, voice_guidance=2.0)[1], model(**x)[1], atol=1e-5)
    tokens = inputs(length=150)["tokens"]

    def sample(voices, guidance, chunk=None):
        return model.sample_dyad(tokens, torch.tensor(voices), 3,
                                 torch.Generator().manual_seed(5), chunk,
                                 voice_guidance=guidance)

    whole, chunked = sample([0, 1], 1.5), sample([0, 1], 1.5, chunk=40)
    for a, b in zip(whole, chunked):
        assert torch.allclose(a, b, atol=1e-5)

    # the same person, same noise, said by the two voices: guidance sets them further apart
    def apart(guidance):
        return (sample([0, 0], guidance)[0][0] - sample([1, 0], guidance)[0][0]).abs().mean()

    assert apart(1.5) > 1.2 * apart(1.0)


@pytest.mark.parametrize("steps", [1, 2, 6, 24])
def test_sway_spaces_the_steps_from_noise_to_data(steps):
    for sway in (-1.0, -0.4, 0.0, 0.5, 1.0):
        times = step_times(steps, sway)
        assert len(times) == steps + 1 and times[0] == 0.0 and times[-1] == 1.0
        assert all(b > a for a, b in zip(times, times[1:])), (steps, sway)
    assert step_times(4, 0.0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    if steps > 1:  # below 0: a smaller first step, where the sampler settles its choices
        assert step_times(steps, -1.0)[1] < 0.6 * step_times(steps, 0.0)[1]
    with pytest.raises(ValueError, match="sway"):
        step_times(steps, 1.5)


@pytest.mark.parametrize("fusion", ["highway", "cascaded"])
def test_sway_keeps_chunked_equal_to_whole_and_changes_the_result(fusion):
    torch.manual_seed(0)
    model = randomise(AVFlow(replace(TINY, fusion=fusion))).eval()
    tokens = inputs(length=150)["tokens"]

    def sample(sway, chunk=None):
        return model.sample_dyad(tokens, torch.tensor([0, 1]), 3,
                                 torch.Generator().manual_seed(5), chunk, sway=sway)

    whole, chunked, even = sample(-1.0), sample(-1.0, chunk=40), sample(0.0)
    for a, b, c in zip(whole, chunked, even):
        assert torch.allclose(a, b, atol=1e-5)
        assert not torch.allclose(a, c, atol=1e-3)


def test_l2_motion_loss_is_the_squared_motion_error_and_leaves_the_mel_loss_alone():
    """An untrained model's velocity is zero (zero-initialised heads), so each stream's
    loss is the mean of its flow target's |x| (l1) or x^2 (l2) over the real frames."""
    torch.manual_seed(0)
    model = AVFlow(TINY)
    x = inputs(length=30)
    mel, motion = torch.randn(2, 30, 80), torch.randn(2, 30, MOTION_DIM)
    mask = torch.ones(2, 30, dtype=torch.bool)
    noise = model.flow_noise(2, 30, "cpu", torch.Generator().manual_seed(3))
    target = motion - (1 - TINY.sigma_min) * noise[2]
    parts = {}
    for kind in ("l1", "l2"):
        _, parts[kind] = model.loss(mel, motion, x["tokens"], x["partner_tokens"],
                                    x["partner_motion"], x["voice"], mask, noise=noise,
                                    motion_loss=kind)
    assert parts["l1"]["head"] == pytest.approx(target[..., :6].abs().mean().item(), rel=1e-5)
    assert parts["l2"]["head"] == pytest.approx(target[..., :6].square().mean().item(), rel=1e-5)
    assert parts["l2"]["face"] == pytest.approx(target[..., 6:].square().mean().item(), rel=1e-5)
    assert parts["l1"]["mel"] == parts["l2"]["mel"]
    with pytest.raises(ValueError):
        model.loss(mel, motion, x["tokens"], x["partner_tokens"], x["partner_motion"],
                   x["voice"], mask, noise=noise, motion_loss="huber")


def test_training_time_sway_draws_flow_times_nearer_the_noise():
    """time_sway respaces the flow times the loss trains on as the sampler's steps are
    spaced; 0 draws them uniformly, exactly as before."""
    from avgen.errors import ConfigError
    from avgen.train.av import TrainConfig

    model = AVFlow(TINY)

    def times(sway, n=20000):
        return model.flow_noise(n, 2, "cpu", torch.Generator().manual_seed(3), sway)[0]

    uniform, swayed = times(0.0), times(-0.5)
    assert torch.equal(uniform, torch.rand(20000, generator=torch.Generator().manual_seed(3)))
    assert 0.0 <= float(swayed.min()) and float(swayed.max()) <= 1.0
    # sway -0.5: u = 0.405 maps to t = 0.3, so 40.5 % of the draws fall below 0.3 (uniform: 30 %)
    assert float((uniform < 0.3).float().mean()) == pytest.approx(0.30, abs=0.01)
    assert float((swayed < 0.3).float().mean()) == pytest.approx(0.405, abs=0.01)
    # the same uniform draws, respaced as the sampler spaces its steps
    grid = torch.arange(5, dtype=torch.float64) / 4
    assert torch.allclose(sway_times(grid, -0.5), torch.tensor(step_times(4, -0.5),
                                                               dtype=torch.float64))
    assert torch.allclose(swayed, sway_times(uniform, -0.5))
    with pytest.raises(ConfigError, match="--time-sway"):
        TrainConfig(time_sway=-1.5)


def test_training_on_what_is_not_a_built_corpus_is_a_clear_error_and_leaves_no_run(tmp_path):
    import json

    from avgen.errors import InputError
    from avgen.train.av import TrainConfig, train

    config = TrainConfig(steps=1, batch_size=2, frames=64)
    with pytest.raises(InputError, match="no config.json"):
        train(tmp_path / "nothing", tmp_path / "run", TINY, config, device="cpu",
              log=lambda m: None)
    assert not (tmp_path / "run").exists()
    unbuilt = tmp_path / "unbuilt"
    unbuilt.mkdir()
    (unbuilt / "config.json").write_text(json.dumps({"voices": ["a", "b"], "seed": 0}))
    with pytest.raises(InputError, match="no utterance shards"):
        train(unbuilt, tmp_path / "run", TINY, config, device="cpu", log=lambda m: None)
    assert not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()  # a folder the user made stays, empty or not
    with pytest.raises(InputError):
        train(unbuilt, tmp_path / "kept", TINY, config, device="cpu", log=lambda m: None)
    assert (tmp_path / "kept").is_dir()
