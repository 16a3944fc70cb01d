"""Where every command's outputs are created, and what happens to them on any exit.

- `check_output` looks at an output path before any work: a file name (not a folder) in
  an existing, writable folder, not one of the command's inputs, with the extension of
  the format that will be written.
- `atomic_output` hands out a temp file in the output's own folder; it is renamed onto
  the output only when the work succeeded and removed on any failure.
- `temp_dir` makes a scratch folder that is removed on any exit.
- `spawn` starts a child process (ffmpeg) that dies with avgen.
- `install_signal_handlers` turns SIGTERM and SIGHUP into an exception, so the `finally`
  blocks above run when a scheduler or a closed terminal stops avgen, as for Ctrl-C.

Temp names carry the creating process id (`.NAME.avgen-PID-XXXX.tmp`, `avgen-KIND-PID-XXXX`):
what a process killed outright (SIGKILL, power loss) left behind is removed by the next
run that writes into the same folder, once that process is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from avgen.errors import InputError

_TEMP_FILE = re.compile(r"^\..+\.avgen-(\d+)-.*\.tmp$")
_TEMP_DIR = re.compile(r"^avgen-[a-z]+-(\d+)-")
_STALE_SECONDS = 5.0  # a dead owner's temp files older than this are removed

_lock = threading.Lock()
_live: set[str] = set()                  # temp files and folders to remove on exit
_children: set[subprocess.Popen] = set()  # child processes to stop on exit


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C so cleanup code runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# -- checks before any work ----------------------------------------------------------------

def check_output(path: str | Path, suffixes: tuple[str, ...] = (), inputs=(),
                 stdout: bool = False, option: str = "-o") -> None:
    """InputError now, before any work, if `path` cannot take the output.

    `suffixes`: allowed endings (".mp4"); `inputs`: files the command reads, which it must
    not overwrite; `stdout`: whether '-' (standard output) is allowed."""
    text = str(path)
    if text == "-":
        if not stdout:
            raise InputError("this output cannot be streamed to standard output; give a "
                             "file name", option)
        return
    if not text:
        raise InputError("empty output name", option)
    path = Path(text)
    if path.is_dir():
        raise InputError("is a folder; give a file name", text)
    if path.exists() and not path.is_file():
        raise InputError("is not a regular file; give a file name", text)
    for source in inputs:
        if source is None or str(source) == "-":
            continue
        if _same_file(path, Path(source)):
            raise InputError(f"is also an input ({source}); choose another output name", text)
    if suffixes and not any(text.lower().endswith(s) for s in suffixes):
        raise InputError(f"the output must end in {' or '.join(suffixes)} (that is the "
                         "format written)", text)
    folder = path.parent
    if not folder.is_dir():
        raise InputError("output folder does not exist", str(folder))
    check_writable(folder)
    sweep_stale(folder)


def check_writable(folder: str | Path) -> None:
    """InputError unless a file can be created in `folder` (tried, not guessed from mode
    bits: root ignores those and a read-only filesystem does not show in them)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=f".avgen-{os.getpid()}-", suffix=".tmp",
                                     dir=folder)
    except OSError as exc:
        raise InputError(f"cannot write in this folder ({exc.strerror or exc})",
                         str(folder)) from None
    os.close(fd)
    os.unlink(probe)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


# -- files written atomically --------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _track(path: str) -> None:
    with _lock:
        _live.add(path)


def _untrack(path: str) -> None:
    with _lock:
        _live.discard(path)


def temp_beside(path: Path) -> str:
    """A new empty hidden temp file in `path`'s folder, named so that `sweep_stale`
    removes it once its process is gone (even one killed with SIGKILL)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.avgen-{os.getpid()}-", suffix=".tmp",
                               dir=path.parent)
    os.close(fd)
    return tmp


@contextlib.contextmanager
def atomic_output(path: str | Path):
    """Yield a temp path in `path`'s folder; on success it replaces `path` (with the
    usual file mode), on any exception or signal it is removed and `path` is untouched."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError("output folder does not exist", str(path.parent))
    tmp = temp_beside(path)
    _track(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    finally:
        _untrack(tmp)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` atomically ('-': standard output)."""
    if str(path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


@contextlib.contextmanager
def temp_dir(kind: str):
    """A scratch folder (`avgen-KIND-PID-XXXX` in the system temp folder), removed on exit."""
    path = tempfile.mkdtemp(prefix=f"avgen-{kind}-{os.getpid()}-")
    _track(path)
    try:
        yield path
    finally:
        _untrack(path)
        shutil.rmtree(path, ignore_errors=True)


def make_temp_dir(kind: str) -> str:
    """A scratch folder that lives as long as this process (removed at exit, and by a
    later run if this one is killed outright)."""
    path = tempfile.mkdtemp(prefix=f"avgen-{kind}-{os.getpid()}-")
    _track(path)
    return path


# -- child processes -----------------------------------------------------------------------

def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when avgen dies
    except (OSError, AttributeError):
        pass  # not Linux: cleanup() still stops children on a clean exit


def spawn(args: list[str], **kwargs) -> subprocess.Popen:
    """Popen a child that is killed when avgen exits, however it exits."""
    process = subprocess.Popen(args, preexec_fn=_die_with_parent if sys.platform.startswith(
        "linux") else None, **kwargs)
    with _lock:
        _children.add(process)
    return process


def widen_pipe(stream, size: int = 1 << 20) -> None:
    """Ask for a pipe buffer of `size` bytes (Linux; the default 64 KB makes a video
    frame two dozen writes, each a switch to the reader and back). Best effort: where
    the system refuses, the pipe stays as it is."""
    import fcntl

    setter = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setter is None:
        return
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except (OSError, ValueError):
        limit = size
    with contextlib.suppress(OSError):
        fcntl.fcntl(stream.fileno() if hasattr(stream, "fileno") else stream, setter,
                    min(size, limit))


def stop(process: subprocess.Popen, timeout: float = 5.0) -> None:
    """Kill a child started by `spawn` (if still running) and wait for it."""
    with _lock:
        _children.discard(process)
    if process.poll() is None:
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def release(process: subprocess.Popen) -> None:
    """Forget a child that has finished normally."""
    with _lock:
        _children.discard(process)


# -- exit paths ----------------------------------------------------------------------------

def cleanup() -> None:
    """Stop children and remove every temp file and folder still registered."""
    with _lock:
        children, live = list(_children), list(_live)
        _children.clear()
        _live.clear()
    for process in children:
        with contextlib.suppress(OSError):
            process.kill()
    for path in live:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


_installed = False


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP raise `Terminated` in the main thread (once: a second signal
    during cleanup is ignored, so cleanup finishes); cleanup() also runs at exit."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    _installed = True
    raised = []

    def handler(signum, frame):
        if raised:
            return
        raised.append(signum)
        raise Terminated(signum)

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)
    atexit.register(cleanup)
    sweep_stale(tempfile.gettempdir(), folders=True)


# -- what killed runs left -----------------------------------------------------------------

def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(folder: str | Path, folders: bool = False) -> list[str]:
    """Remove avgen temp files (and with `folders`, avgen temp folders) in `folder` whose
    creating process is gone; returns what was removed. Never raises."""
    import time

    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        pattern = _TEMP_DIR if folders else _TEMP_FILE
        match = pattern.match(entry.name)
        if not match or _alive(int(match.group(1))):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < _STALE_SECONDS:
                continue
            if entry.is_dir(follow_symlinks=False):
                if folders:
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed.append(entry.path)
            elif not folders:
                os.unlink(entry.path)
                removed.append(entry.path)
        except OSError:
            continue
    return removed
