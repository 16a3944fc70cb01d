"""Voices: specs and blends, the speaker mapper, script voice lines, style-vector models."""

import numpy as np
import pytest
import torch

from avgen.errors import InputError
from avgen.model.av_flow import AVFlow, AVFlowConfig
from avgen.text.script import parse_script
from avgen.speaker import (FaceAttributes, VoiceInfo, choose_voices, name_gender, parse_voice,
                           voice_weights)

VOICES = (VoiceInfo("af_a", "female", "US", 220.0), VoiceInfo("af_b", "female", "US", 190.0),
          VoiceInfo("bf_c", "female", "GB", 205.0), VoiceInfo("bf_d", "female", "GB", 175.0),
          VoiceInfo("am_e", "male", "US", 110.0), VoiceInfo("am_f", "male", "US", 130.0),
          VoiceInfo("bm_g", "male", "GB", 100.0), VoiceInfo("bm_h", "male", "GB", 120.0))
NAMES = tuple(v.name for v in VOICES)


def test_parse_voice_names_blends_and_weights():
    assert parse_voice("af_a", NAMES) == {"af_a": 1.0}
    assert parse_voice("af_a+am_e", NAMES) == {"af_a": 0.5, "am_e": 0.5}
    assert parse_voice("af_a*3 + am_e", NAMES) == pytest.approx({"af_a": 0.75, "am_e": 0.25})
    weights = voice_weights(["af_a", "af_a+bm_g"], NAMES)
    assert weights.shape == (2, len(NAMES)) and np.allclose(weights.sum(1), 1)


@pytest.mark.parametrize("spec", ["nobody", "af_a+", "af_a*0", "af_a*-1", "", "af_a**2"])
def test_parse_voice_rejects_with_the_known_voices(spec):
    with pytest.raises(InputError) as info:
        parse_voice(spec, NAMES, "--voice")
    assert "--voice" in str(info.value)


def test_name_gender_from_the_name_list():
    assert name_gender("GRACE")[0] == "female"
    assert name_gender("John Smith")[0] == "male"
    assert name_gender("Zorblax") is None
    assert name_gender("Jordan") is None or name_gender("Jordan")[1] >= 0.8  # ambiguous names


def _photos(tmp_path, count=2):
    import cv2

    paths = []
    for k in range(count):
        image = np.full((64, 64, 3), (40 * (k + 1)) % 256, np.uint8)
        image[10 + k:20 + k, 10:30] = 255  # distinct pixels -> distinct digests
        path = tmp_path / f"face{k}.png"
        cv2.imwrite(str(path), image)
        paths.append(str(path))
    return paths


def test_name_wins_over_a_confident_face(tmp_path):
    refs = _photos(tmp_path)
    faces = [FaceAttributes("female", 0.93, 30), FaceAttributes("male", 0.96, 80)]
    choices = choose_voices(("EILEEN", "GRACE"), refs, VOICES, faces=faces)
    genders = {v.name: v.gender for v in VOICES}
    assert [genders[c.voice] for c in choices] == ["female", "female"]
    assert choices[0].voice != choices[1].voice
    assert "name: female" in choices[1].reason and "face: male 0.96, age 80" in choices[1].reason
    # old -> the lower-pitched half of the matching voices
    assert choices[1].voice in ("af_b", "bf_d") or "moved" in choices[1].reason


def test_face_decides_when_the_name_does_not(tmp_path):
    refs = _photos(tmp_path)
    faces = [FaceAttributes("male", 0.9, 40), FaceAttributes("female", 0.55, 40)]
    choices = choose_voices(("S1", "S2"), refs, VOICES, faces=faces)
    assert choices[0].voice.startswith(("am_", "bm_"))
    assert choices[1].voice != choices[0].voice  # unsure face: any voice, but not the same


def test_a_face_keeps_its_voice_across_dialogues(tmp_path):
    refs = _photos(tmp_path, 3)
    faces = {r: FaceAttributes("female", 0.9, 35) for r in refs}
    first = choose_voices(("ANN", "BOB"), [refs[0], refs[1]], VOICES,
                          faces=[faces[refs[0]], faces[refs[1]]])
    second = choose_voices(("ANN", "CAROL"), [refs[0], refs[2]], VOICES,
                           faces=[faces[refs[0]], faces[refs[2]]])
    assert first[0].voice == second[0].voice


def test_explicit_and_script_voices_win(tmp_path):
    refs = _photos(tmp_path)
    assert [c.voice for c in choose_voices(("A", "B"), refs, VOICES,
                                           explicit=("bm_g", "af_a+am_e"))] == ["bm_g", "af_a+am_e"]
    dialogue = parse_script("# voices: GRACE=bf_c, eileen=am_f\nEILEEN: Hi.\nGRACE: Hello.\n")
    choices = choose_voices(dialogue.names, refs, VOICES, directives=dialogue.voice_directives(),
                            faces=[None, None])
    assert [c.voice for c in choices] == ["am_f", "bf_c"]
    with pytest.raises(InputError):
        choose_voices(("A", "B"), refs, VOICES, explicit=("af_a", "nobody"))


@pytest.mark.parametrize("text,message", [
    ("# voices: GRACE\nGRACE: Hi.\n", "NAME=VOICE"),
    ("# voices: BOB=af_a\nGRACE: Hi.\n", "no line"),
])
def test_script_voice_line_errors_name_the_line(text, message):
    with pytest.raises(InputError) as info:
        parse_script(text, "s.txt")
    assert "s.txt:1" in str(info.value) and message in str(info.value)


def _style_model():
    config = AVFlowConfig(d_model=32, n_blocks=1, n_heads=2, voices=("x", "y", "z"),
                          voice_dim=8, voice_info=(("female", "US", 200.0),) * 3)
    torch.manual_seed(0)
    model = AVFlow(config)
    with torch.no_grad():
        model.voice.table.copy_(torch.randn(3, 8))
        torch.nn.init.normal_(model.voice.proj[-1].weight)
    return model


def test_blend_weights_equal_ids_and_mix_between_voices():
    voice = _style_model().voice
    ids = torch.tensor([0, 2])
    one_hot = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    assert torch.allclose(voice(ids), voice(one_hot), atol=1e-6)
    half = voice(torch.tensor([[0.5, 0.5, 0.0]]))
    a, b = voice(torch.tensor([0])), voice(torch.tensor([1]))
    assert (half - a).norm() > 0 and (half - b).norm() > 0
    assert (half - a).norm() < (a - b).norm() and (half - b).norm() < (a - b).norm()


def test_style_model_checkpoint_round_trip(tmp_path):
    from avgen.model.av_checkpoint import load_checkpoint, save_checkpoint
    from avgen.train.av import TrainConfig
    from avgen.model.features import Normalizer

    model = _style_model()
    normalizer = Normalizer(np.zeros(80, np.float32), np.ones(80, np.float32),
                            np.zeros(model.config.motion_dim, np.float32),
                            np.ones(model.config.motion_dim, np.float32))
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, normalizer, 3, TrainConfig())
    loaded, _, step, _ = load_checkpoint(path)
    assert step == 3 and loaded.config == model.config
    assert torch.equal(loaded.voice.table, model.voice.table)


def test_fine_tuning_onto_style_voices_keeps_every_other_weight():
    from avgen.train.prepared import to_style_voices

    torch.manual_seed(0)
    old = AVFlow(AVFlowConfig(d_model=32, n_blocks=1, n_heads=2))
    table = {v: {"gender": "male", "accent": "GB", "f0_median": 110.0,
                 "embedding": list(np.linspace(0, 1, 8) + k)} for k, v in enumerate("pq")}
    new = to_style_voices(old, ("p", "q"), table, log=lambda m: None)
    assert new.config.voices == ("p", "q") and new.config.voice_dim == 8
    for key, value in old.state_dict().items():
        if not key.startswith("voice."):
            assert torch.equal(new.state_dict()[key], value), key
    # the new voice embedder starts silent: the model behaves as before without a voice
    assert torch.count_nonzero(new.voice(torch.tensor([0, 1]))) == 0
    # continuing on a grown corpus (same voices, new F0 figures) keeps the learned embedder
    with torch.no_grad():
        for p in new.voice.parameters():
            p.add_(0.1)
    table = {v: {**t, "f0_median": 120.0} for v, t in table.items()}
    again = to_style_voices(new, ("p", "q"), table, log=lambda m: None)
    assert again.config.voice_info[0][2] == 120.0
    for key, value in new.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def test_the_mapper_keeps_pairs_apart_and_leaves_the_whisperer_alone(tmp_path):
    """Many pairs of photos: the second person's voice is pitched >= 12 % from the first's
    whenever the gender has such a voice (even outside the age band), prefers the other
    accent, and the whispering af_nicole is only ever chosen on request."""
    from avgen.speaker import NOT_CHOSEN_AUTOMATICALLY, PITCH_APART

    # each accent has a high and a low voice, so another accent is always at hand
    voices = (VoiceInfo("af_a", "female", "US", 220.0), VoiceInfo("bf_c", "female", "GB", 225.0),
              VoiceInfo("af_b", "female", "US", 180.0), VoiceInfo("bf_d", "female", "GB", 175.0),
              VoiceInfo("af_nicole", "female", "US", 150.0))
    f0 = {v.name: v.f0_median for v in voices}
    accent = {v.name: v.accent for v in voices}
    refs = _photos(tmp_path, 12)
    other_accent = 0
    for k in range(0, 12, 2):
        pair = [refs[k], refs[k + 1]]
        faces = [FaceAttributes("female", 0.9, 30), FaceAttributes("female", 0.9, 80)]
        first, second = choose_voices(("ANN", "MARY"), pair, voices, faces=faces)
        assert {first.voice, second.voice}.isdisjoint(NOT_CHOSEN_AUTOMATICALLY)
        assert abs(np.log(f0[first.voice] / f0[second.voice])) >= np.log(PITCH_APART) - 1e-9
        other_accent += accent[first.voice] != accent[second.voice]
    assert other_accent == 6
    asked = choose_voices(("ANN", "MARY"), refs[:2], voices, explicit=["af_nicole", "af_a"])
    assert asked[0].voice == "af_nicole"


def test_with_measured_similarity_the_two_voices_are_clearly_apart(tmp_path):
    """Where the checkpoint measured how alike its voices sound, two people keep their own
    voices when those are clearly apart, else move to voices that are, the whisperer only
    on request; the pitch rule stays for checkpoints without the measure."""
    from avgen.speaker import CLEARLY_APART, NOT_CHOSEN_AUTOMATICALLY

    names = ("af_a", "bf_c", "af_b", "bf_d", "af_nicole", "am_x", "bm_y")
    similarity = np.array([
        [1.00, 0.95, 0.80, 0.90, 0.50, 0.40, 0.45],
        [0.95, 1.00, 0.85, 0.70, 0.50, 0.40, 0.45],
        [0.80, 0.85, 1.00, 0.92, 0.50, 0.40, 0.45],
        [0.90, 0.70, 0.92, 1.00, 0.50, 0.40, 0.45],
        [0.50, 0.50, 0.50, 0.50, 1.00, 0.40, 0.45],
        [0.40, 0.40, 0.40, 0.40, 0.40, 1.00, 0.60],
        [0.45, 0.45, 0.45, 0.45, 0.45, 0.60, 1.00]])
    f0 = (220.0, 225.0, 180.0, 175.0, 150.0, 110.0, 100.0)
    gender = ("female",) * 5 + ("male",) * 2
    voices = tuple(VoiceInfo(n, g, "US" if n[0] == "a" else "GB", f, tuple(row))
                   for n, g, f, row in zip(names, gender, f0, similarity))
    refs = _photos(tmp_path, 12)
    woman, man = FaceAttributes("female", 0.9, 30), FaceAttributes("male", 0.9, 30)
    own = {}
    for k in range(0, 12, 2):
        pair = [refs[k], refs[k + 1]]
        first, second = choose_voices(("ANN", "MARY"), pair, voices, faces=[woman, woman])
        assert {first.voice, second.voice}.isdisjoint(NOT_CHOSEN_AUTOMATICALLY)
        # of the women, only bf_c and bf_d are clearly apart (0.70)
        assert {first.voice, second.voice} == {"bf_c", "bf_d"}, (first, second)
        # the same pair in the other order: the same voice for each face
        again = choose_voices(("MARY", "ANN"), pair[::-1], voices, faces=[woman, woman])
        assert (again[1].voice, again[0].voice) == (first.voice, second.voice)
        # a woman and a man are clearly apart whatever their own voices: both keep them
        with_man = choose_voices(("ANN", "S2"), pair, voices, faces=[woman, man])
        assert "its own voice" in with_man[0].reason and with_man[1].voice in ("am_x", "bm_y")
        own.setdefault(pair[0], set()).add(with_man[0].voice)
        alike = similarity[names.index(first.voice), names.index(second.voice)]
        assert alike <= CLEARLY_APART and f"similarity {alike:.2f}" in first.reason + second.reason
    # a face's own voice does not depend on its partner when that partner is far from it
    men = [r for r in refs[6:]]
    for r in refs[:6:2]:
        voices_with = {choose_voices(("ANN", "S"), [r, m], voices, faces=[woman, man])[0].voice
                       for m in men}
        assert len(voices_with) == 1
    # a script line fixes one person; the other moves clear of it
    dialogue = parse_script("# voices: ANN=af_a\nANN: Hi.\nMARY: Hello.\n")
    fixed, other = choose_voices(dialogue.names, refs[:2], voices, faces=[woman, woman],
                                 directives=dialogue.voice_directives())
    assert fixed.voice == "af_a" and other.voice == "af_b"  # 0.80: the least like af_a
    # unmeasured voices: the pitch rule as before
    plain = tuple(VoiceInfo(v.name, v.gender, v.accent, v.f0_median) for v in voices)
    first, second = choose_voices(("ANN", "MARY"), refs[:2], plain, faces=[woman, woman])
    assert "least like" not in second.reason and "similarity" not in second.reason


def test_of_two_equally_apart_ways_the_older_face_gets_the_lower_voice(tmp_path):
    """Two women whose photos pick the same voice: one keeps it, the other moves to the
    voice least like it. Either way round gives the same two voices, so the older face
    takes the lower one, whichever voice the photos pick, whichever photo is older and
    whatever the order of the speakers."""
    names = ("af_hi", "bf_lo", "am_x")
    similarity = np.array([[1.00, 0.70, 0.40], [0.70, 1.00, 0.40], [0.40, 0.40, 1.00]])
    voices = tuple(VoiceInfo(n, "male" if n == "am_x" else "female", "US", f, tuple(row))
                   for n, f, row in zip(names, (200.0, 170.0, 110.0), similarity))
    older, younger = FaceAttributes("female", 0.9, 80), FaceAttributes("female", 0.9, 35)
    man = FaceAttributes("male", 0.9, 35)
    by_own: dict[str, list] = {}
    *photos, man_photo = _photos(tmp_path, 9)
    for photo in photos:  # beside a man, a face keeps its own voice
        own = choose_voices(("ANN", "S"), [photo, man_photo], voices,
                            faces=[younger, man])[0].voice
        by_own.setdefault(own, []).append(photo)
    pairs = [group[:2] for group in by_own.values() if len(group) >= 2]
    assert pairs  # 8 photos, 2 voices: some share their own voice
    for pair in pairs:
        for refs in (pair, pair[::-1]):
            for faces in ([older, younger], [younger, older]):
                got = choose_voices(("ANN", "MARY"), refs, voices, faces=faces)
                assert got[faces.index(older)].voice == "bf_lo", got
                assert got[faces.index(younger)].voice == "af_hi", got


def test_voice_similarity_travels_in_the_checkpoint_and_a_fine_tune_drops_it(tmp_path):
    from avgen.errors import ConfigError
    from avgen.model.av_checkpoint import (load_checkpoint, save_checkpoint,
                                           with_voice_similarity)
    from avgen.model.features import Normalizer
    from avgen.speaker import model_voices
    from avgen.train.av import TrainConfig
    from avgen.train.prepared import start_from

    model = _style_model()
    normalizer = Normalizer(np.zeros(80, np.float32), np.ones(80, np.float32),
                            np.zeros(model.config.motion_dim, np.float32),
                            np.ones(model.config.motion_dim, np.float32))
    path, measured = tmp_path / "m.safetensors", tmp_path / "s.safetensors"
    save_checkpoint(path, model, normalizer, 3, TrainConfig())
    with pytest.raises(ConfigError, match="3 x 3"):
        with_voice_similarity(path, np.eye(2), measured)
    assert not measured.exists()
    matrix = [[1.0, 0.8, 0.6], [0.8, 1.0, 0.7], [0.6, 0.7, 1.0]]
    with pytest.raises(ConfigError, match="voice_f0_spoken has 2 entries"):
        with_voice_similarity(path, matrix, measured, f0_spoken=[180.0, 120.0])
    assert not measured.exists()
    with_voice_similarity(path, matrix, measured, f0_spoken=[181.04, 160.0, 110.0])
    loaded, _, step, _ = load_checkpoint(measured)
    voices = model_voices(loaded.config)
    assert step == 3 and [v.similarity for v in voices] == [tuple(row) for row in matrix]
    assert [v.f0_spoken for v in voices] == [181.0, 160.0, 110.0]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    tuned, _ = start_from(measured, model.config.voices, log=lambda m: None)
    assert tuned.config.voice_similarity == () and tuned.config.voice_f0_spoken == ()


def test_a_woman_gets_a_voice_the_model_speaks_in_the_female_range(tmp_path):
    """A female voice the model renders under `FEMALE_RANGE_HZ` (by its own measured
    speech) is not chosen for a woman, whatever her face's age band or partner; it stays
    available on request, and a model without the measure keeps every female voice."""
    from avgen.speaker import FEMALE_RANGE_HZ

    names = ("af_a", "bf_low", "af_b", "bf_c", "am_x")
    similarity = np.full((5, 5), 0.6) + 0.4 * np.eye(5)
    teacher_f0 = (200.0, 175.0, 210.0, 190.0, 110.0)
    spoken = (198.0, 158.0, 207.0, 186.0, 112.0)
    gender = ("female",) * 4 + ("male",)
    voices = tuple(VoiceInfo(n, g, "US", f, tuple(row), s)
                   for n, g, f, row, s in zip(names, gender, teacher_f0, similarity, spoken))
    assert spoken[1] < FEMALE_RANGE_HZ <= min(spoken[0], spoken[2], spoken[3])
    refs = _photos(tmp_path, 12)
    chosen = set()
    for age in (80, 30, 20):
        woman = FaceAttributes("female", 0.9, age)
        for k in range(0, 12, 2):
            for faces in ([woman, woman], [woman, FaceAttributes("male", 0.9, 40)]):
                picked = choose_voices(("ANN", "S"), refs[k:k + 2], voices, faces=faces)
                chosen |= {c.voice for c, f in zip(picked, faces) if f.gender == "female"}
    assert "bf_low" not in chosen and len(chosen) >= 2
    asked = choose_voices(("ANN", "S"), refs[:2], voices, explicit=["bf_low", "af_a"])
    assert asked[0].voice == "bf_low"
    unmeasured = tuple(VoiceInfo(v.name, v.gender, v.accent, v.f0_median, v.similarity)
                       for v in voices)
    older = FaceAttributes("female", 0.9, 80)
    assert any(choose_voices(("ANN", "S"), refs[k:k + 2], unmeasured,
                             faces=[older, FaceAttributes("male", 0.9, 40)])[0].voice == "bf_low"
               for k in range(0, 12, 2))


def test_a_scripted_blend_counts_as_its_mixture_and_a_one_voice_model_repeats(tmp_path):
    from avgen.speaker import CLEARLY_APART

    names = ("af_a", "af_b", "af_c")
    similarity = np.array([[1.0, 0.9, 0.5], [0.9, 1.0, 0.8], [0.5, 0.8, 1.0]])
    voices = tuple(VoiceInfo(n, "female", "US", 200.0 - 10 * k, tuple(row))
                   for k, (n, row) in enumerate(zip(names, similarity)))
    refs = _photos(tmp_path)
    woman = FaceAttributes("female", 0.9, 30)
    dialogue = parse_script("# voices: ANN=af_a+af_b\nANN: Hi.\nMARY: Hello.\n")
    fixed, other = choose_voices(dialogue.names, refs, voices, faces=[woman, woman],
                                 directives=dialogue.voice_directives())
    # the blend is 0.95 like af_a and af_b, 0.65 like af_c: the other person gets af_c
    assert fixed.voice == "af_a+af_b" and other.voice == "af_c"
    assert "0.65" in other.reason and 0.65 <= CLEARLY_APART
    single = (VoiceInfo("af_a", "female", "US", 200.0, (1.0,)),)
    assert [c.voice for c in choose_voices(("ANN", "MARY"), refs, single,
                                           faces=[woman, woman])] == ["af_a", "af_a"]


def test_voices_command_lists_the_shipped_voices_and_each_photos_choice():
    """`avgen voices` with the shipped model: 16 or more English voices of both genders,
    US and GB accents, the F0 of the teacher and, where measured, of the model's speech;
    with two photos, two different voices and why; one photo is a one-line error."""
    import json

    from typer.testing import CliRunner

    from conftest import EXAMPLES
    from avgen.cli import app

    example_refs = [EXAMPLES / "eileen.png", EXAMPLES / "grace.png"]
    runner = CliRunner()
    result = runner.invoke(app, ["voices", "--json"], prog_name="avgen")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["voices"]
    assert len(rows) >= 16
    assert {r["gender"] for r in rows} == {"female", "male"}
    assert {r["accent"] for r in rows} >= {"US", "GB"}
    assert all(r["f0_median_hz"] > 0 for r in rows)
    spoken = [r["f0_spoken_hz"] for r in rows]
    assert all(f is None for f in spoken) or all(f > 0 for f in spoken)
    result = runner.invoke(app, ["voices", "--ref", *map(str, example_refs), "--json"],
                           prog_name="avgen")
    assert result.exit_code == 0, result.output
    choices = json.loads(result.stdout)["choices"]
    assert len(choices) == 2 and choices[0]["voice"] != choices[1]["voice"]
    assert all(c["why"] for c in choices)
    table = runner.invoke(app, ["voices"], prog_name="avgen")
    assert table.exit_code == 0 and "as spoken" in table.stdout
    one = runner.invoke(app, ["voices", "--ref", str(example_refs[0])], prog_name="avgen")
    assert one.exit_code == 2 and len(one.output.strip().splitlines()) == 1, one.output
