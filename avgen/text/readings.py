"""Spoken forms of written things the number rules alone misread (for text.normalize).

Dates (`3/4/2024`, `2024-03-04`, `March 4`, `4 March`), phone numbers (digit by digit),
decades (`1990s`), regnal numerals after a ruler's name (`Louis XVI`), units after a
number (`5 km`, `20 °C`), scores and ranges (`3-2`), and URLs and e-mail addresses
(spelled out with "dot", "slash", "at"). Each `expand_*` takes and returns text; run them
before the general number rule, which would otherwise read the digits as one number.
"""

from __future__ import annotations

import re

from avgen.text import numbers

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
_MONTH_ABBREVIATIONS = {m[:3]: m for m in MONTHS} | {"Sept": "September"}
_MONTH = (r"(" + "|".join(MONTHS) + "|" + "|".join(
    re.escape(a) for a in sorted(_MONTH_ABBREVIATIONS, key=len, reverse=True)) + r")\.?")

_DIGITS = "zero one two three four five six seven eight nine".split()


def _month_name(text: str) -> str:
    return _MONTH_ABBREVIATIONS.get(text.rstrip("."), text.rstrip("."))


def _digits(text: str) -> str:
    return " ".join(_DIGITS[int(d)] for d in text if d.isdigit())


def _year(text: str) -> str:
    value = int(text)
    if len(text) == 2:  # '24 -> "twenty-four", '05 -> "oh five"
        return f"oh {_DIGITS[value]}" if value < 10 else numbers.cardinal(value)
    return numbers.year(value)


# -- dates ---------------------------------------------------------------------------------
def _date(month: int, day: int, year: str | None) -> str | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    spoken = f"{MONTHS[month - 1]} {numbers.ordinal(day)}"
    return f"{spoken}, {_year(year)}" if year else spoken


def _numeric_date(m: re.Match) -> str:
    first, second, year = int(m.group(1)), int(m.group(2)), m.group(3)
    # month/day as in the US; a first part above 12 can only be a day (day/month)
    spoken = _date(first, second, year) if first <= 12 else _date(second, first, year)
    return spoken or m.group(0)


def _iso_date(m: re.Match) -> str:
    return _date(int(m.group(2)), int(m.group(3)), m.group(1)) or m.group(0)


def _month_day(m: re.Match) -> str:
    day = int(m.group(2))
    if not 1 <= day <= 31:
        return m.group(0)
    spoken = f"{_month_name(m.group(1))} {numbers.ordinal(day)}"
    return f"{spoken}, {_year(m.group(3))}" if m.group(3) else spoken


def _day_month(m: re.Match) -> str:
    day = int(m.group(1))
    if not 1 <= day <= 31:
        return m.group(0)
    article = m.group(0)[:4] if m.group(0)[:4] in ("the ", "The ") else "the "
    spoken = f"{article}{numbers.ordinal(day)} of {_month_name(m.group(2))}"
    return f"{spoken}, {_year(m.group(3))}" if m.group(3) else spoken


def expand_dates(text: str) -> str:
    """'3/4/2024' -> 'March fourth, twenty twenty-four' (month first unless the first part
    is above 12); '2024-03-04' likewise; 'March 4th' / 'Mar. 4' -> 'March fourth';
    '4 March 2024' -> 'the fourth of March, twenty twenty-four'."""
    text = re.sub(r"(?<![\w/])(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})(?![\w/])", _numeric_date, text)
    text = re.sub(r"(?<![\w-])(\d{4})-(\d{2})-(\d{2})(?![\w-])", _iso_date, text)
    text = re.sub(r"\b" + _MONTH + r" (\d{1,2})(?:st|nd|rd|th)?\b(?:,? (\d{4})\b)?",
                  _month_day, text)
    text = re.sub(r"(?:\b[Tt]he )?\b(\d{1,2})(?:st|nd|rd|th)? (?:of )?" + _MONTH
                  + r"(?!\w)(?:,? (\d{4})\b)?", _day_month, text)
    return text


# -- phone numbers -------------------------------------------------------------------------
_PHONE = re.compile(
    r"(?<![\w-])(?:(\+\d{1,3})[ .-])?(?:\((\d{3})\) ?|(\d{3})[ .-])?(\d{3})-(\d{4})(?![\w-])")


def _phone(m: re.Match) -> str:
    country, area_paren, area, exchange, line = m.groups()
    groups = [g for g in (country, area_paren or area, exchange, line) if g]
    spoken = ", ".join(_digits(g) for g in groups)
    return ("plus " + spoken) if country else spoken


def expand_phone_numbers(text: str) -> str:
    """'555-1234' -> 'five five five, one two three four'; also '(555) 123-4567',
    '555-123-4567', '+1 555-123-4567': digit by digit, a short pause between groups."""
    return _PHONE.sub(_phone, text)


# -- decades -------------------------------------------------------------------------------
def _plural(words: str) -> str:
    head, sep, last = words.rpartition(" ")
    if "-" in last:
        head2, sep2, last = last.rpartition("-")
        head, sep = (head + sep + head2), sep2
    last = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return head + sep + last


def _decade(m: re.Match) -> str:
    digits = m.group(1)
    if digits.startswith("'") or len(digits) == 2:
        return _plural(numbers.cardinal(int(digits.lstrip("'"))))
    return _plural(numbers.year(int(digits)))


def expand_decades(text: str) -> str:
    """'1990s' -> 'nineteen nineties', "the '80s" / 'the 80s' -> 'the eighties',
    '1900s' -> 'nineteen hundreds', '2000s' -> 'two thousands'."""
    return re.sub(r"(?<![\w'])(\d{3}0|'?[1-9]0)'?s\b", _decade, text)


# -- regnal numerals -----------------------------------------------------------------------
# Given names of rulers and popes: after one of these a Roman numeral is an ordinal
# ("Louis the sixteenth"); after other words it stays a cardinal ("Mark two").
REGNAL_NAMES = frozenset("""
Alexander Alfonso Amenhotep Anne Benedict Boniface Carlos Catherine Charles Christian
Clement Constantine Darius David Edward Elizabeth Ferdinand Francis Franz Frederick
Friedrich George Gregory Gustav Gustavus Haakon Harald Henry Innocent Isabella Ivan James
John Joseph Juan Leo Leopold Louis Ludwig Malcolm Mary Napoleon Nicholas Olaf Otto Paul
Peter Philip Pius Ptolemy Ramesses Richard Robert Rudolf Sixtus Stephen Thutmose Urban
Victor Wilhelm William
""".split())
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50}
_NUMERAL = r"(?:XL|L?X{0,3})(?:IX|IV|V?I{0,3})"


def roman_value(numeral: str) -> int:
    """'XVI' -> 16 (numerals up to 89)."""
    digits = [_ROMAN_VALUES[c] for c in numeral]
    return sum(-d if k + 1 < len(digits) and digits[k + 1] > d else d
               for k, d in enumerate(digits))


def _regnal(m: re.Match) -> str:
    name, numeral = m.group(1), m.group(2)
    if name not in REGNAL_NAMES or not numeral:
        return m.group(0)
    return f"{name} the {numbers.ordinal(roman_value(numeral))}"


def expand_regnal_numerals(text: str) -> str:
    """'Louis XVI' -> 'Louis the sixteenth', 'Elizabeth II' -> 'Elizabeth the second',
    'Henry V' -> 'Henry the fifth' (only after names in REGNAL_NAMES)."""
    return re.sub(r"\b([A-Z][a-z]+) (" + _NUMERAL + r")\b(?!')", _regnal, text)


# -- units ---------------------------------------------------------------------------------
# symbol -> (singular, plural); matched case-sensitively right after a number.
UNITS = {
    "km": ("kilometer", "kilometers"), "m": ("meter", "meters"),
    "cm": ("centimeter", "centimeters"), "mm": ("millimeter", "millimeters"),
    "mi": ("mile", "miles"), "ft": ("foot", "feet"),
    "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"), "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces"),
    "l": ("liter", "liters"), "L": ("liter", "liters"), "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "h": ("hour", "hours"), "hr": ("hour", "hours"), "min": ("minute", "minutes"),
    "s": ("second", "seconds"), "ms": ("millisecond", "milliseconds"),
    "Hz": ("hertz", "hertz"), "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"), "GHz": ("gigahertz", "gigahertz"),
    "kB": ("kilobyte", "kilobytes"), "KB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"), "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "W": ("watt", "watts"), "kW": ("kilowatt", "kilowatts"), "V": ("volt", "volts"),
    "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit",
                                                      "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
}
_UNIT = re.compile(
    r"(?<![\w.])(-?)(\d+(?:,\d{3})*(?:\.\d+)?) ?("
    + "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
    + r")(?![\w/])")


def _unit(m: re.Match) -> str:
    sign, amount, unit = m.groups()
    value = amount.replace(",", "")
    spoken = numbers.decimal(value) if "." in value else numbers.cardinal(int(value))
    singular, plural = UNITS[unit]
    name = singular if value == "1" and not sign else plural
    return ("minus " if sign else "") + f"{spoken} {name}"


def expand_units(text: str) -> str:
    """'5 km' -> 'five kilometers', '1 kg' -> 'one kilogram', '20 °C' / '20°C' -> 'twenty
    degrees Celsius', '-5 °C' -> 'minus five degrees Celsius'."""
    return _UNIT.sub(_unit, text)


# -- scores, ratios, ranges ----------------------------------------------------------------
def expand_scores(text: str) -> str:
    """'won 3-2' -> 'won three to two', 'pages 10-20' -> 'pages ten to twenty', a 16:9
    ratio -> 'sixteen to nine' (a colon with one digit after it: two digits is a time)."""
    text = re.sub(r"(?<![\w.,-])(\d{1,3})-(\d{1,3})(?![\w.-]|,\d)",
                  lambda m: f"{numbers.cardinal(int(m.group(1)))} to "
                            f"{numbers.cardinal(int(m.group(2)))}", text)
    return re.sub(r"(?<![\w.:])(\d{1,2}):(\d)(?![\w:.])",
                  lambda m: f"{numbers.cardinal(int(m.group(1)))} to "
                            f"{numbers.cardinal(int(m.group(2)))}", text)


# -- URLs and e-mail addresses -------------------------------------------------------------
_SEPARATORS = {".": "dot", "/": "slash", "-": "dash", "_": "underscore", "@": "at",
               ":": "colon", "?": "question mark", "=": "equals", "&": "and", "#": "hash",
               "~": "tilde", "+": "plus", "%": "percent"}
_URL = re.compile(r"\b(?:(?:https?|ftp)://|www\.)[^\s<>\"]*[^\s<>\".,;:!?)\]']"
                  r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|edu|gov|dev|app|ai|uk|de|fr)"
                  r"(?:/[^\s<>\"]*[^\s<>\".,;:!?)\]'])?(?![\w.]\w)", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")


def _spell(address: str) -> str:
    words = []
    for piece in re.split(r"([^A-Za-z0-9])", address):
        if not piece:
            continue
        if piece in _SEPARATORS:
            words.append(_SEPARATORS[piece])
        elif piece.isdigit():
            words.append(_digits(piece))
        elif piece.isalpha() and (len(piece) <= 2 or not re.search(r"[aeiouy]", piece, re.I)):
            words.append(" ".join(piece.lower()))  # 'www', 'io', 'xkcd': letter by letter
        elif re.fullmatch(r"[A-Za-z0-9]+", piece):
            words.append(" ".join(_digits(p) if p.isdigit() else p.lower()
                                  for p in re.findall(r"\d+|[A-Za-z]+", piece)))
        # any other character (non-ASCII) is left for the speakability check
        else:
            words.append(piece)
    return " ".join(words)


def _url(m: re.Match) -> str:
    address = re.sub(r"^(?:https?|ftp)://", "", m.group(0), flags=re.I).rstrip("/")
    return _spell(address)


def expand_addresses(text: str) -> str:
    """'https://www.example.com/docs' -> 'w w w dot example dot com slash docs',
    'jo.smith@mail.org' -> 'jo dot smith at mail dot org' (the scheme is not read)."""
    text = _EMAIL.sub(lambda m: _spell(m.group(0)), text)
    return _URL.sub(_url, text)
