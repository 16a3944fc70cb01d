"""The weights registry (`weights.toml`) and its checks (docs/design.md, "Weights").

Every checkpoint avgen can load is named in `avgen/weights.toml`: component, file,
sha256, size, licence and source. `source = "builtin"` means the file ships in the
package under `avgen/assets/`; a URL means it is fetched only by an explicit
`avgen weights fetch NAME` into the cache folder ($AVGEN_CACHE_DIR, default
~/.cache/avgen). Loading always checks the sha256 first.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from avgen.errors import InputError, WeightsError

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR / "assets"
REGISTRY_PATH = PACKAGE_DIR / "weights.toml"
CACHE_ENV = "AVGEN_CACHE_DIR"
_FIELDS = ("component", "file", "sha256", "size", "licence", "source")
# A URL entry whose publisher gives no digest we could check offline may say
# sha256 = "unpinned" (and size = 0): `avgen weights fetch` downloads it and records the
# digest it got in FILE.sha256, but it is never loaded by name (a planted file and record
# would pass); the user checks it and passes the file as a checkpoint. Pin it when you can.
UNPINNED = "unpinned"


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    component: str
    file: str
    sha256: str
    size: int
    licence: str
    source: str  # "builtin" or a URL
    description: str = ""

    @property
    def builtin(self) -> bool:
        return self.source == "builtin"

    @property
    def pinned(self) -> bool:
        return self.sha256 != UNPINNED


def cache_dir() -> Path:
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "avgen"


def load_registry(path: str | Path = REGISTRY_PATH) -> dict[str, WeightsEntry]:
    """Parse a registry; errors name the file and the entry."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"{path}: weights registry not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise WeightsError(f"{path}: not valid TOML ({exc})") from None
    entries = {}
    for name, table in data.get("weights", {}).items():
        missing = [f for f in _FIELDS if f not in table]
        if missing:
            raise WeightsError(f"{path}: entry [weights.{name}] lacks {', '.join(missing)}")
        sha = str(table["sha256"]).lower()
        unpinned_ok = sha == UNPINNED and str(table["source"]) != "builtin"
        if not unpinned_ok and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
            raise WeightsError(f"{path}: entry [weights.{name}] sha256 is not 64 hex digits")
        entries[name] = WeightsEntry(name, str(table["component"]), str(table["file"]), sha,
                                     int(table["size"]), str(table["licence"]),
                                     str(table["source"]), str(table.get("description", "")))
    return entries


class Weights:
    """A registry with the folders its files live in."""

    def __init__(self, registry: str | Path = REGISTRY_PATH, assets: str | Path = ASSETS_DIR,
                 cache: str | Path | None = None) -> None:
        self.registry_path = Path(registry)
        self.entries = load_registry(registry)
        self.assets = Path(assets)
        self.cache = Path(cache) if cache is not None else cache_dir()

    def entry(self, name: str) -> WeightsEntry:
        if name not in self.entries:
            known = ", ".join(sorted(self.entries)) or "none"
            raise InputError(f"unknown weights {name!r}; registered: {known}")
        return self.entries[name]

    def location(self, name: str) -> Path:
        """Where the file for `name` is or would be (it may not exist)."""
        entry = self.entry(name)
        return (self.assets if entry.builtin else self.cache) / entry.file

    def status(self, name: str) -> str:
        """'ok', 'missing', 'corrupt' (size or sha256 differ) or 'unpinned' (the registry
        has no digest; the file matches only what its own fetch recorded)."""
        path = self.location(name)
        if not path.is_file():
            return "missing"
        entry = self.entry(name)
        if not entry.pinned:
            # checked only against the digest recorded at its first fetch, which whoever
            # can write the cache can also write: never reported as "ok"
            record = path.with_name(path.name + ".sha256")
            expected = record.read_text().strip() if record.is_file() else None
            return "unpinned" if expected == sha256_file(path) else "corrupt"
        if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
            return "corrupt"
        return "ok"

    def path(self, name: str) -> Path:
        """Verified path of `name`; WeightsError says what to do when it is unusable."""
        entry = self.entry(name)
        path = self.location(name)
        # an unpinned file is refused whatever its digest, so it is not hashed first
        state = "unpinned" if not entry.pinned and path.is_file() else self.status(name)
        if state == "missing":
            hint = ("the avgen installation is incomplete; reinstall it" if entry.builtin
                    else f"run 'avgen weights fetch {name}' on a machine with internet access")
            raise WeightsError(f"{path}: weights {name!r} not found; {hint}")
        if state == "unpinned":
            # whoever can write the cache can write the digest record beside a file too,
            # so only a digest in the registry (shipped with the code) makes it trusted
            raise WeightsError(f"{path}: weights {name!r} have no sha256 pinned in the "
                               "registry, so a file put there by anyone would pass as "
                               "them; compare its sha256 with the publisher's yourself, "
                               "then pass its folder with --checkpoint")
        if state == "corrupt":
            raise WeightsError(f"{path}: weights {name!r} fail their sha256/size check "
                               f"(expected {entry.sha256[:12]}…, {entry.size} bytes); "
                               "delete the file and reinstall or fetch it again")
        return path

    def fetch(self, name: str, progress=None) -> Path:
        """Download a URL-sourced entry into the cache, verified, atomically."""
        import tempfile
        import urllib.request

        entry = self.entry(name)
        if entry.builtin:
            return self.path(name)
        target = self.location(name)
        if self.status(name) in ("ok", "unpinned"):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.source) as response:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    if progress is not None:
                        progress(len(chunk))
            if entry.pinned and digest.hexdigest() != entry.sha256:
                raise WeightsError(f"{entry.source}: download of {name!r} has sha256 "
                                   f"{digest.hexdigest()[:12]}…, expected {entry.sha256[:12]}…")
            if not entry.pinned:
                target.with_name(target.name + ".sha256").write_text(digest.hexdigest() + "\n")
            os.replace(tmp, target)
        except OSError as exc:
            raise WeightsError(f"{entry.source}: could not fetch {name!r} ({exc})") from None
        finally:
            Path(tmp).unlink(missing_ok=True)
        return target


_DIGESTS: dict[tuple, str] = {}


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file; remembered per (path, size, mtime) for this process, so the
    checks before loading (a voice name, then the model) hash a file once."""
    from avgen.formats import file_key

    key = file_key(path)
    if key is not None and key in _DIGESTS:
        return _DIGESTS[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    hexdigest = digest.hexdigest()
    if key is not None:
        _DIGESTS[key] = hexdigest
    return hexdigest
