import pytest

from avgen.errors import InputError
from avgen.text.script import Cue, Pause, Speech, parse_script, read_script


def test_name_style_maps_speakers_by_first_appearance():
    d = parse_script("Bob: hi\nAlice: hello\nbob: again\n", "s.txt")
    assert d.names == ("Bob", "Alice")
    assert [t.person for t in d.turns] == [0, 1, 0]
    assert [t.line for t in d.turns] == [1, 2, 3]


def test_tag_style_and_first_appearance():
    d = parse_script("[S2] first\n[s1] second\n[S2] third\n", "s.txt")
    assert d.names == ("S2", "S1")
    assert [t.person for t in d.turns] == [0, 1, 0]
    assert d.turns[1].segments == (Speech("second"),)


def test_comments_blank_lines_and_escaped_hash():
    d = parse_script("# header\n\nA: we are \\#1  # a comment\n   \nB: ok\n", "s.txt")
    assert d.turns[0].text == "we are #1"
    assert d.turns[0].line == 3 and d.turns[1].line == 5


def test_cues_and_pauses_keep_their_order():
    d = parse_script("A: Hi (laughs) there. (pause 0.8) Bye (Smiles)\nB: (nod)", "s.txt")
    assert d.turns[0].segments == (Speech("Hi"), Cue("laughs"), Speech("there."), Pause(0.8),
                                   Speech("Bye"), Cue("smiles"))
    assert d.turns[1].segments == (Cue("nods"),)
    assert not d.turns[1].has_speech


def test_one_speaker_is_allowed():
    assert parse_script("A: just me", "s.txt").names == ("A",)


@pytest.mark.parametrize("text, line, message", [
    ("", None, "script is empty"),
    ("# only a comment\n\n", None, "script is empty"),
    ("A: hi\nB: yo\nC: no\n", 3, "third speaker 'C'"),
    ("A: hi\nB:\n", 2, "line for B has no text"),
    ("A: hi\nB:   # just a comment\n", 2, "line for B has no text"),
    ("A: hello (sings)\n", 1, "unknown cue '(sings)'"),
    ("A: hello (pause)\n", 1, "must be '(pause SECONDS)'"),
    ("A: hello (pause soon)\n", 1, "pause length 'soon' is not a number"),
    ("A: hello (pause -1)\n", 1, "must be > 0"),
    ("A: hello (pause 0)\n", 1, "must be > 0"),
    ("A: hello (pause nan)\n", 1, "must be > 0"),
    ("A: hello (pause 99)\n", 1, "<= 30"),
    ("A: hello ()\n", 1, "empty cue"),
    ("A: hello (laughs\n", 1, "unbalanced parenthesis"),
    ("A: hello laughs)\n", 1, "unbalanced parenthesis"),
    ("A: hi\njust words without a name\n", 2, "expected 'NAME: words'"),
    ("[S3] hi\n", 1, "expected 'NAME: words'"),
])
def test_errors_name_file_and_line(text, line, message):
    with pytest.raises(InputError) as info:
        parse_script(text, "dialogue.txt")
    where = f"dialogue.txt:{line}: " if line else "dialogue.txt: "
    assert str(info.value).startswith(where)
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_read_script_errors(tmp_path):
    with pytest.raises(InputError, match="missing.txt: no such file"):
        read_script(tmp_path / "missing.txt")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"A: hi\nB: caf\xe9\n")
    with pytest.raises(InputError, match=r"latin1.txt:2: not UTF-8"):
        read_script(bad)


def test_read_script_accepts_bom(write_script):
    path = write_script("\ufeffA: hi\n")
    assert read_script(path).names == ("A",)


@pytest.mark.parametrize("text", ["A: hello [S2] hi there\n", "[S1] hi [S2] there\n"])
def test_speaker_tag_inside_a_line_is_an_error(text):
    with pytest.raises(InputError, match=r"s.txt:1: speaker tag '\[S2\]' inside a line"):
        parse_script(text, "s.txt")


def test_problems_list_collects_every_bad_line():
    problems = []
    dialogue = parse_script("A: hi\nB: (sings)\nC: ok\nD: no\nwhat\nA: fine\n", "s.txt",
                            problems)
    assert [p.line for p in problems] == [2, 3, 4, 5]
    assert "third speaker 'C'" in str(problems[1])  # B's bad line still numbers B
    assert [t.line for t in dialogue.turns] == [1, 6]
    assert dialogue.names == ("A", "B")


@pytest.mark.parametrize("data, kind", [
    (b"\x89PNG\r\n\x1a\n" + bytes(20), "a PNG image"), (b"\xff\xd8\xff\xe0" + bytes(20), "a JPEG"),
])
def test_photo_given_as_script_is_named(tmp_path, data, kind):
    path = tmp_path / "grace.png"
    path.write_bytes(data)
    with pytest.raises(InputError, match=f"grace.png: is {kind}.*not a dialogue script"):
        read_script(path)
