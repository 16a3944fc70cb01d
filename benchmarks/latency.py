"""Streaming latency and memory -> benchmarks/results/latency.md.

    python benchmarks/latency.py [--threads 2] [--minutes 1 5 20] [--skip-steady] [--memory-only]

- warm: a Python process with the models loaded and the photos' renderers set up calls
  `Synthesizer.stream(...)` on a 20 s dialogue; time until the first chunk holding both
  video frames and audio (the script's tokens, the first model chunk, its audio and
  frames), median of 3 calls.
- cold: `avgen synth SCRIPT --ref A B --stream -o -` started from nothing (process start,
  imports, model loading included); time until standard output holds a playable
  fragmented MP4 prefix: the header with its index and one complete fragment (moof +
  mdat), median of 2.
- steady state: over the same streamed command on a 60 s dialogue, when each fragment
  arrives against when a player that started at the first fragment reaches it; the
  smallest such margin (negative: a stall) and the wall time per second of media after
  the first fragment.
- memory: peak RSS of `avgen synth` for dialogues of `--minutes`, streamed to a file
  and written as an ordinary MP4, with each run's wall time: of its largest process
  and of avgen with its children (render worker, ffmpeg) together.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's avgen, not whichever one is installed
sys.path.insert(0, str(REPO / "benchmarks"))
REFS = [str(REPO / "examples" / "eileen.png"), str(REPO / "examples" / "grace.png")]


def env(threads: int) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}


def warm_first_chunk(script: str, threads: int, calls: int = 3) -> list[float]:
    """Seconds from `stream(...)` to the first chunk with frames and audio, per call."""
    import avgen  # noqa: F401 - before torch, as the command imports it
    import torch

    from avgen.pipeline import Synthesizer
    from avgen.text.script import parse_script

    torch.set_num_threads(threads)
    synth = Synthesizer().load()
    dialogue = parse_script(script, "bench")
    warm_up = synth.stream(dialogue, REFS)  # renderers, voices, first allocations
    next(iter(warm_up))
    warm_up.close()
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        chunks = synth.stream(dialogue, REFS)
        for chunk in chunks:
            if len(chunk.frames) and len(chunk.audio):
                seconds.append(time.perf_counter() - start)
                break
        chunks.close()
    return seconds


def boxes(data: bytes):
    """Top-level MP4 boxes (type, end offset) complete in `data`."""
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        kind = data[offset + 4:offset + 8].decode("latin-1")
        if size == 1 and offset + 16 <= len(data):
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        if size < 8 or offset + size > len(data):
            return
        yield kind, offset + size
        offset += size


def streamed_command(seconds: float, threads: int, first_only: bool = False) -> dict:
    """Run `avgen synth --stream -o -` on a dialogue of about `seconds`: when each
    fragment (moof + mdat) was complete on its standard output, and the media time
    where each fragment starts (and the video's end)."""
    from speed import script_of_length

    with tempfile.TemporaryDirectory() as work:
        script = Path(work) / "s.txt"
        script.write_text(script_of_length(seconds))
        command = [sys.executable, "-m", "avgen", "synth", str(script), "--ref", *REFS,
                   "--stream", "-o", "-"]
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   cwd=REPO, env=env(threads))
        data, arrivals, seen = b"", [], 0
        while chunk := os.read(process.stdout.fileno(), 1 << 16):
            data += chunk
            now = time.perf_counter() - start
            complete = [(kind, end) for kind, end in boxes(data)]
            for kind, end in complete[seen:]:
                if kind == "mdat":
                    arrivals.append((now, end))
            seen = len(complete)
            if first_only and arrivals:
                process.kill()
                process.wait()
                return {"arrivals": [arrivals[0][0]]}
        process.wait()
        total = time.perf_counter() - start
        if process.returncode:
            raise SystemExit(f"{' '.join(command)} failed ({process.returncode})")
        path = Path(work) / "out.mp4"
        path.write_bytes(data)
        times = media_times(path)
    return {"arrivals": [a for a, _ in arrivals], "media_starts": times, "total": total}


def children(data: bytes, start: int, end: int):
    """(type, payload start, box end) of the boxes in data[start:end]."""
    offset = start
    while offset + 8 <= end:
        size = int.from_bytes(data[offset:offset + 4], "big")
        kind = data[offset + 4:offset + 8].decode("latin-1")
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[offset + 8:offset + 16], "big"), 16
        if size < header:
            return
        yield kind, offset + header, offset + size
        offset += size


def media_times(path: Path) -> list[float]:
    """Start time (s) of the video in each fragment of a fragmented MP4 (the `tfdt` of
    the video track's `traf` in each `moof`), then the video's end."""
    data = path.read_bytes()
    video_track, timescale, starts, end = None, None, [], 0.0
    for kind, a, b in children(data, 0, len(data)):
        if kind == "moov":
            for kind2, a2, b2 in children(data, a, b):
                if kind2 != "trak":
                    continue
                track = handler = scale = None
                for kind3, a3, b3 in children(data, a2, b2):
                    if kind3 == "tkhd":
                        version = data[a3]
                        track = int.from_bytes(data[a3 + (20 if version else 12):][:4], "big")
                    if kind3 == "mdia":
                        for kind4, a4, b4 in children(data, a3, b3):
                            if kind4 == "mdhd":
                                version = data[a4]
                                scale = int.from_bytes(data[a4 + (20 if version else 12):][:4],
                                                       "big")
                            if kind4 == "hdlr":
                                handler = data[a4 + 8:a4 + 12]
                if handler == b"vide":
                    video_track, timescale = track, scale
        if kind == "moof":
            for kind2, a2, b2 in children(data, a, b):
                if kind2 != "traf":
                    continue
                track = base = None
                for kind3, a3, b3 in children(data, a2, b2):
                    if kind3 == "tfhd":
                        track = int.from_bytes(data[a3 + 4:a3 + 8], "big")
                    if kind3 == "tfdt":
                        width = 8 if data[a3] == 1 else 4
                        base = int.from_bytes(data[a3 + 4:a3 + 4 + width], "big")
                if track == video_track and base is not None:
                    starts.append(base / timescale)
    from avgen.video import read_video

    fps, _, count = read_video(path)
    end = count / fps
    return starts + [end]


def steady_state(run: dict) -> dict:
    """Playback from the first fragment's arrival: fragment k (k >= 1) must arrive before
    the player reaches the media time where it starts."""
    arrivals, starts = run["arrivals"], run["media_starts"]
    first = arrivals[0]
    margins = [first + starts[k] - starts[0] - arrivals[k] for k in range(1, len(arrivals))]
    after = (arrivals[-1] - first) / max(starts[-1] - starts[1], 1e-9)
    return {"first": first, "min_margin": min(margins) if margins else 0.0,
            "wall_per_media_second": after, "fragments": len(arrivals)}


def tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and all its descendants together, MB (from /proc)."""
    parents, rss = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        parents[int(entry.name)] = int(fields.get("PPid", "0").strip() or 0)
        rss[int(entry.name)] = int(fields.get("VmRSS", "0 kB").split()[0])
    tree, frontier = {pid}, {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - tree
        tree |= frontier
    return sum(rss.get(p, 0) for p in tree) / 1024


def peak_memory(minutes: float, threads: int, stream: bool) -> dict:
    """Peak RSS of `avgen synth` on a dialogue of `minutes`: of its largest process (GNU
    time's figure: avgen itself, its render worker or ffmpeg) and of the whole process
    tree at once (sampled every 0.2 s)."""
    from speed import script_of_length

    with tempfile.TemporaryDirectory() as work:
        script = Path(work) / "s.txt"
        script.write_text(script_of_length(minutes * 60))
        rss = Path(work) / "rss"
        command = [sys.executable, "-m", "avgen", "synth", str(script), "--ref", *REFS,
                   "-o", f"{work}/d.mp4", *(["--stream"] if stream else [])]
        start = time.perf_counter()
        process = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", str(rss), *command],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   cwd=REPO, env=env(threads))
        tree = 0.0
        while process.poll() is None:
            tree = max(tree, tree_rss_mb(process.pid))
            time.sleep(0.2)
        wall = time.perf_counter() - start
        if process.returncode:
            raise SystemExit(f"avgen synth failed on the {minutes:g} min dialogue")
        from avgen.video import read_video

        fps, frames, count = read_video(f"{work}/d.mp4")
        return {"rss_mb": int(rss.read_text().split()[-1]) / 1024, "tree_mb": tree,
                "wall": wall, "media_seconds": count / fps}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--minutes", type=float, nargs="*", default=[1, 5, 20])
    parser.add_argument("--skip-steady", action="store_true",
                        help="leave out the 60 s steady-state run")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the memory runs (no warm, cold or steady-state timing)")
    parser.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("-o", type=Path, default=REPO / "benchmarks" / "results" / "latency.md")
    args = parser.parse_args()
    from speed import script_of_length

    if args.warm:
        print(json.dumps(warm_first_chunk(script_of_length(20), args.threads)))
        return
    load = [float(open("/proc/loadavg").read().split()[0])]
    warm = cold = steady = None
    if not args.memory_only:
        warm = json.loads(subprocess.run(
            [sys.executable, __file__, "--warm", "--threads", str(args.threads)],
            capture_output=True, text=True, check=True,
            env=env(args.threads)).stdout.splitlines()[-1])
        load.append(float(open("/proc/loadavg").read().split()[0]))
        print(f"warm first chunk: {warm}", file=sys.stderr, flush=True)
        cold = [streamed_command(20, args.threads, first_only=True)["arrivals"][0]
                for _ in range(2)]
        load.append(float(open("/proc/loadavg").read().split()[0]))
        print(f"cold first fragment: {cold}", file=sys.stderr, flush=True)
    if not (args.skip_steady or args.memory_only):
        steady = steady_state(streamed_command(60, args.threads))
        load.append(float(open("/proc/loadavg").read().split()[0]))
        print(f"steady: {steady}", file=sys.stderr, flush=True)
    memory = []
    for minutes in args.minutes:
        for stream in (True, False):
            memory.append((minutes, stream, peak_memory(minutes, args.threads, stream)))
            load.append(float(open("/proc/loadavg").read().split()[0]))
            print(minutes, stream, memory[-1], file=sys.stderr, flush=True)
    lines = ["# Streaming latency and memory\n",
             f"`python benchmarks/latency.py --threads {args.threads} --minutes "
             f"{' '.join(f'{m:g}' for m in args.minutes)}"
             f"{' --memory-only' if args.memory_only else ''}`; load average (1 min) over "
             f"the runs: {min(load):.1f} to {max(load):.1f} on {os.cpu_count()} cores.\n"]
    if warm is not None:
        median = sorted(warm)[len(warm) // 2]
        lines += [
             "| figure | value |", "| --- | --- |",
             f"| warm process (API, models loaded), 20 s dialogue: first chunk with video "
             f"and audio | {median:.2f} s (calls: {', '.join(f'{s:.2f}' for s in warm)}) |",
             f"| cold `avgen synth --stream -o -`, 20 s dialogue: first playable fragment on "
             f"stdout | {sorted(cold)[0]:.2f} s, {sorted(cold)[-1]:.2f} s |",
             *([f"| 60 s dialogue streamed: wall s per media s after the first fragment | "
                f"{steady['wall_per_media_second']:.2f} |",
                f"| 60 s dialogue streamed: smallest margin of a fragment over playback "
                f"({steady['fragments']} fragments; < 0 is a stall) | "
                f"{steady['min_margin']:+.2f} s |"] if steady else []), ""]
    lines += ["| dialogue | output | peak RSS, largest process (MB) | peak RSS, all "
             "processes together (MB) | wall s | real-time factor |",
             "| --- | --- | --- | --- | --- | --- |"]
    for minutes, stream, m in memory:
        lines.append(f"| {minutes:g} min ({m['media_seconds']:.0f} s) | "
                     f"{'streamed (fragmented MP4)' if stream else 'MP4'} | "
                     f"{m['rss_mb']:.0f} | {m['tree_mb']:.0f} | {m['wall']:.0f} | "
                     f"{m['wall'] / m['media_seconds']:.2f} |")
    text = "\n".join(lines) + "\n"
    args.o.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
