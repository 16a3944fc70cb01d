import pytest

from avgen.text import numbers
from avgen.errors import InputError
from avgen.text.symbols import (NUM_SYMBOLS, SILENCE, SILENCE_ID, SYMBOLS, SYMBOLS_VERSION,
                           phones_to_ids, split_phone)
from avgen.text.normalize import normalize
from avgen.text.phrases import phonemize, split_phrases, to_phrases


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (13, "thirteen"), (40, "forty"), (99, "ninety-nine"), (101, "one hundred one"),
    (1234, "one thousand two hundred thirty-four"), (2_000_000, "two million"),
    (-7, "minus seven"),
])
def test_cardinal(n, words):
    assert numbers.cardinal(n) == words


@pytest.mark.parametrize("n, words", [
    (1, "first"), (2, "second"), (3, "third"), (5, "fifth"), (12, "twelfth"), (20, "twentieth"),
    (21, "twenty-first"), (100, "one hundredth"), (103, "one hundred third"),
])
def test_ordinal(n, words):
    assert numbers.ordinal(n) == words


@pytest.mark.parametrize("written, spoken", [
    ("I have 3 cats.", "I have three cats."),
    ("It cost $3.50 today", "It cost three dollars and fifty cents today"),
    ("Just $1", "Just one dollar"),
    ("About £2 million", "About two million pounds"),
    ("Pay €0.01", "Pay one cent"),
    ("the 2nd and 23rd", "the second and twenty-third"),
    ("In 1984 and 2005", "In nineteen eighty-four and two thousand five"),
    ("1,500,000 people", "one million five hundred thousand people"),
    ("pi is 3.14", "pi is three point one four"),
    ("up 15%", "up fifteen percent"),
    ("at 10:30 or 7:05 pm", "at ten thirty or seven oh five p m"),
    ("by 9:00.", "by nine o'clock."),
    ("Dr. Smith and Mrs. Jones", "doctor Smith and missus Jones"),
    ("apples, pears, etc.", "apples, pears, et cetera"),
    ("it's -5 out", "it's minus five out"),
    ("the Mark II", "the Mark two"),
    ("salt & pepper", "salt and pepper"),
    ("“quoted” — dash", "quoted — dash"),
    ("we're #1", "we're number one"),
])
def test_normalize(written, spoken):
    assert normalize(written) == spoken


def test_split_phrases_and_pauses():
    assert split_phrases("Hi, you. Ok") == [("Hi", ","), ("you", "."), ("Ok", "")]
    assert split_phrases("Wait… what?!") == [("Wait", "…"), ("what", "?!")]
    phrases = to_phrases("Well, yes. Fine!")
    assert [p.text for p in phrases] == ["Well", "yes", "Fine"]
    assert [p.pause_after for p in phrases] == [0.15, 0.35, 0.0]  # last pause is the turn's


def test_phonemes_keep_stress_and_are_all_in_the_table():
    phones = to_phrases("The quick brown fox jumps over the lazy dog; "
                        "judge church thought measure ring butter button bottle!")
    flat = [p for phrase in phones for p in phrase.phones]
    assert any(p.startswith("ˈ") for p in flat)  # primary stress survives
    for phone in flat:
        assert phone in SYMBOLS, phone
    assert "tʃ" in flat and "dʒ" in flat and "ŋ" in flat  # affricates are single phones


def test_phonemize_covers_a_wide_vocabulary_with_table_symbols():
    words = ("pleasure thigh this yes azure hierarchy violation tour fire bear near poor "
             "car door hurt bird cure oil out ice cat bed sit see book food cup about "
             "water little kitten uh-oh mountain").split()
    for word, phones in zip(words, phonemize(words)):
        assert phones, word
        phones_to_ids(list(phones), "vocab", 1)  # raises if a phone is unknown


def test_symbol_table_is_fixed_and_versioned():
    assert SYMBOLS_VERSION == "avgen.symbols/1"
    assert SYMBOLS[SILENCE_ID] == SILENCE == "_"
    assert len(set(SYMBOLS)) == NUM_SYMBOLS == 150
    # Appending is allowed only with a new version; these anchors catch a reorder.
    assert SYMBOLS[1:5] == ("p", "b", "t", "d")
    assert SYMBOLS.index("ˈoʊ") == SYMBOLS.index("oʊ") + 1


def test_unknown_phones_are_split_or_rejected_never_dropped():
    assert split_phone("ˈææ") == ["ˈæ", "æ"]
    assert phones_to_ids(["ɐɐ"]) == [SYMBOLS.index("ɐ")] * 2
    with pytest.raises(InputError, match=r"s.txt:4: phoneme 'q' is not in the symbol table"):
        phones_to_ids(["p", "q"], "s.txt", 4)


@pytest.mark.parametrize("text, message", [
    ("Привет", "CYRILLIC"),
    ("你好", "CJK"),
    ("a ^ b", r"cannot speak the character '\^'"),
])
def test_text_the_phonemizer_cannot_handle(text, message):
    with pytest.raises(InputError, match=message) as info:
        to_phrases(text, "s.txt", 7)
    assert str(info.value).startswith("s.txt:7: ")


def test_accented_latin_is_fine():
    assert to_phrases("Un café, señor.")


@pytest.mark.parametrize("written, spoken", [
    # dates: month first, unless the first part can only be a day
    ("on 3/4/2024", "on March fourth, twenty twenty-four"),
    ("by 25/12/2023.", "by December twenty-fifth, twenty twenty-three."),
    ("2024-03-04", "March fourth, twenty twenty-four"),
    ("March 4th", "March fourth"),
    ("Mar. 4, 2024", "March fourth, twenty twenty-four"),
    ("the 4th of July", "the fourth of July"),
    ("on 4 March", "on the fourth of March"),
    ("May I help", "May I help"),
    # phone numbers: digit by digit, a pause between groups
    ("call 555-1234", "call five five five, one two three four"),
    ("(555) 123-4567", "five five five, one two three, four five six seven"),
    ("+1 555-123-4567", "plus one, five five five, one two three, four five six seven"),
    # decades
    ("the 1990s", "the nineteen nineties"),
    ("the '80s", "the eighties"),
    ("the 1900s", "the nineteen hundreds"),
    # regnal numerals after a ruler's name; other numerals stay cardinals
    ("Louis XVI", "Louis the sixteenth"),
    ("Elizabeth II and Henry V", "Elizabeth the second and Henry the fifth"),
    ("the Mark II", "the Mark two"),
    # units
    ("5 km", "five kilometers"),
    ("1 kg", "one kilogram"),
    ("3 kg", "three kilograms"),
    ("20 °C", "twenty degrees Celsius"),
    ("-5°C", "minus five degrees Celsius"),
    ("80 km/h", "eighty kilometers per hour"),
    ("2.5 GB", "two point five gigabytes"),
    # scores, ratios, ranges
    ("won 3-2", "won three to two"),
    ("pages 10-20", "pages ten to twenty"),
    ("a 16:9 screen", "a sixteen to nine screen"),
    ("at 10:30", "at ten thirty"),
    # addresses, spelled
    ("mail jane.doe@example.com", "mail jane dot doe at example dot com"),
    ("see https://www.example.com/docs.", "see w w w dot example dot com slash docs."),
    ("visit github.com", "visit github dot com"),
])
def test_normalize_dates_phones_decades_regnal_units_scores_addresses(written, spoken):
    assert normalize(written) == spoken


def test_new_readings_are_speakable_and_phonemise():
    phrases = to_phrases("On 3/4/2024 Louis XVI called 555-1234 about the 1990s: "
                         "5 km at 20 °C, 3-2, jane@example.com")
    assert all(p.phones for p in phrases)
    for phrase in phrases:
        phones_to_ids(phrase.phones, "<test>")
