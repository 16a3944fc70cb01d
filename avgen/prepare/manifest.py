"""Item manifests of `avgen prepare`: which files show and sound each person.

One TOML file per conversation item (every `*.toml` under the input folder; paths in it
are relative to the manifest). An item has one person (a monologue) or two:

    heldout = false              # optional: keep this item out of training (validation)

    [[person]]
    name = "alice"               # required, unique in the item
    voice = "alice"              # optional: voice name the model learns (default: name)
    video = "talk.mp4"           # required: a video showing this person's face
    view = "left"                # optional: full (default) | left | right | top | bottom
    audio = "talk.wav"           # optional: default is the video's own audio track
    channel = 0                  # optional: 0-based channel of `audio` (default: mix)
    transcript = "alice.txt"     # optional: what the person says, one turn per line

The three layouts are just ways of filling this in: one video and one audio file per
person; one side-by-side video (`view = "left"` / `"right"`) with a stereo file
(`channel = 0` / `1`); or a single `[[person]]` with a talking video (a monologue).
Everything is checked here, before any work, and errors name the manifest and field.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from avgen.errors import InputError

# Fractions (x0, y0, x1, y1) of the video frame each view keeps.
VIEWS = {"full": None, "left": (0.0, 0.0, 0.5, 1.0), "right": (0.5, 0.0, 1.0, 1.0),
         "top": (0.0, 0.0, 1.0, 0.5), "bottom": (0.0, 0.5, 1.0, 1.0)}
ITEM_FIELDS = ("heldout", "person")
PERSON_FIELDS = ("name", "voice", "video", "view", "audio", "channel", "transcript")


@dataclass(frozen=True)
class Person:
    name: str
    voice: str
    video: Path
    view: str = "full"
    audio: Path | None = None  # None: the video's own audio track
    channel: int | None = None  # None: all channels mixed
    transcript: Path | None = None

    @property
    def region(self) -> tuple[float, float, float, float] | None:
        return VIEWS[self.view]

    @property
    def audio_source(self) -> Path:
        return self.audio if self.audio is not None else self.video


@dataclass(frozen=True)
class Item:
    name: str  # the manifest's path under the input folder, without .toml, '/' -> '--'
    manifest: Path
    people: tuple[Person, ...]
    heldout: bool = False


def item_name(manifest: Path, root: Path) -> str:
    return manifest.relative_to(root).with_suffix("").as_posix().replace("/", "--")


def find_manifests(root: str | Path) -> list[Path]:
    """Every item manifest under `root`, in a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("not a folder", str(root))
    found = sorted(p for p in root.rglob("*.toml") if p.is_file())
    if not found:
        raise InputError("no item manifests (*.toml) found; see 'avgen prepare --help'",
                         str(root))
    return found


def _string(table: dict, key: str, where: str, required: bool = False) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise InputError(f"{where}: missing field '{key}'")
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: field '{key}' must be a non-empty string")
    return value.strip()


def _file(base: Path, table: dict, key: str, where: str, required: bool = False
          ) -> Path | None:
    value = _string(table, key, where, required)
    if value is None:
        return None
    path = (base / value).resolve()
    if not path.is_file():
        raise InputError(f"{where}: {key} file {value!r} does not exist ({path})")
    return path


def read_manifest(path: str | Path, root: str | Path | None = None) -> Item:
    """Parse and check one manifest; InputError naming the manifest and field."""
    path = Path(path)
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the manifest ({exc})", source) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc})", source) from None
    unknown = sorted(set(data) - set(ITEM_FIELDS))
    if unknown:
        raise InputError(f"unknown field '{unknown[0]}' (known: {', '.join(ITEM_FIELDS)})",
                         source)
    heldout = data.get("heldout", False)
    if not isinstance(heldout, bool):
        raise InputError("field 'heldout' must be true or false", source)
    tables = data.get("person")
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise InputError("needs one or two [[person]] tables", source)
    if not 1 <= len(tables) <= 2:
        raise InputError(f"has {len(tables)} [[person]] tables; an item has one or two "
                         "people", source)
    base = path.parent
    people = []
    for k, table in enumerate(tables):
        where = f"{source}: person {k + 1}"
        unknown = sorted(set(table) - set(PERSON_FIELDS))
        if unknown:
            raise InputError(f"{where}: unknown field '{unknown[0]}' (known: "
                             f"{', '.join(PERSON_FIELDS)})")
        name = _string(table, "name", where, required=True)
        where = f"{source}: person {name!r}"
        view = _string(table, "view", where) or "full"
        if view not in VIEWS:
            raise InputError(f"{where}: view {view!r} is not one of {', '.join(VIEWS)}")
        channel = table.get("channel")
        if channel is not None and (not isinstance(channel, int) or isinstance(channel, bool)
                                    or channel < 0):
            raise InputError(f"{where}: field 'channel' must be a channel number 0, 1, ...")
        people.append(Person(
            name=name, voice=_string(table, "voice", where) or name,
            video=_file(base, table, "video", where, required=True), view=view,
            audio=_file(base, table, "audio", where), channel=channel,
            transcript=_file(base, table, "transcript", where)))
    if len(people) == 2:
        a, b = people
        if a.name == b.name:
            raise InputError(f"both people are named {a.name!r}; names must differ", source)
        if a.video == b.video and (a.view == b.view or "full" in (a.view, b.view)):
            raise InputError(f"persons {a.name!r} and {b.name!r} share {a.video.name} with "
                             f"views {a.view!r} and {b.view!r}; give each its own part "
                             "(left/right or top/bottom)", source)
        if a.audio_source == b.audio_source and (a.channel is None or a.channel == b.channel):
            raise InputError(f"persons {a.name!r} and {b.name!r} read the same audio "
                             f"{a.audio_source.name}; give each its own 'channel'", source)
    name = item_name(path, Path(root)) if root is not None else path.stem
    return Item(name, path.resolve(), tuple(people), heldout)
