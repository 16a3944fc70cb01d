"""Peak memory of avgen on small hostile inputs -> benchmarks/results/hostile_memory.md.

    python benchmarks/hostile_memory.py

Each case runs `python -m avgen ...` as its own process; its peak resident set size comes
from wait4's rusage (the process and the children it waited for). Target: no input file
under 10 MB makes any command use more than 1.5 GB. The inputs:

- a 2 MB av .npz holding an extra entry that decompresses to 2 GiB (`vocode`);
- a 1.2 MB PNG of 20000 x 20000 pixels as a `--ref` photo (`render`);
- `render --size 100000` (a 30 GB frame buffer if it were allocated);
- a script with one 10,000-character line, and one with 5,000 lines (`tokens`);
- a 1 MB script of 500 lines at the line limit: hours of speech (`tokens`);

and valid inputs at the limits (`avgen/limits.py`), which must run within the target:
a 2,000-character line and a 1,000-line script (`tokens`), a 6000x6000 JPEG portrait
(`render`), `render --size 2048`, and a 30-minute av file (`vocode`).
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TARGET_MB = 1536


def av_file(path: Path, frames: int = 200, people: int = 2) -> Path:
    from avgen import formats
    from avgen.constants import EXPRESSION_NAMES, N_MELS

    pose = np.zeros((frames, 7), np.float32)
    pose[:, 0] = 1
    arrays = {"num_people": np.array(people), "num_frames": np.array(frames),
              "names": formats.string_array(["A", "B"][:people]),
              "expression_names": formats.string_array(EXPRESSION_NAMES)}
    for i in range(people):
        arrays[f"p{i}/mel"] = np.full((frames, N_MELS), -11.5, np.float32)
        arrays[f"p{i}/head_pose"] = pose
        arrays[f"p{i}/expression"] = np.zeros((frames, len(EXPRESSION_NAMES)), np.float32)
    formats.save(path, formats.AV, arrays)
    return path


def npz_bomb(path: Path, gib: int = 2) -> Path:
    av_file(path)
    header = {"descr": "<f4", "fortran_order": False, "shape": ((gib << 30) // 4,)}
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("extra.npy", "w", force_zip64=True) as handle:
            np.lib.format.write_array_header_2_0(handle, header)
            zeros = bytes(1 << 24)
            for _ in range((gib << 30) >> 24):
                handle.write(zeros)
    return path


def huge_png(path: Path, side: int = 20000) -> Path:
    """A real, decodable side x side RGB PNG (black), streamed so it never sits in memory."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * side)
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)))
        data = bytearray()
        for _ in range(side):
            data += compressor.compress(row)
        data += compressor.flush()
        out.write(chunk(b"IDAT", bytes(data)))
        out.write(chunk(b"IEND", b""))
    return path


def measure(args: list[str], cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "avgen", *map(str, args)], cwd=cwd,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    return {"exit": process.returncode, "seconds": time.perf_counter() - started,
            "peak_mb": usage.ru_maxrss / 1024, "message": errors[0] if errors else
            (stderr.strip().splitlines() or [""])[-1], "traceback": "Traceback" in stderr}


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="hostile-memory-"))
    (work / "out").mkdir()
    examples = REPO / "examples"
    long_line = work / "long_line.txt"
    long_line.write_text("A: " + ("word " * 2000)[:10000] + "\nB: Hi.\n")
    many_lines = work / "many_lines.txt"
    many_lines.write_text("".join(f"{'AB'[k % 2]}: This is line number {k}.\n"
                                  for k in range(5000)))
    bomb = npz_bomb(work / "bomb.av.npz")
    png = huge_png(work / "huge.png")
    motion = av_file(work / "motion.av.npz")
    cases = [
        ("vocode: 2 MB .npz with a 2 GiB entry", bomb,
         ["vocode", bomb, "-o", "out/bomb.wav"]),
        ("render: 20000x20000 PNG as --ref", png,
         ["render", motion, "--ref", png, examples / "grace.png", "-o", "out/png.mp4"]),
        ("render --size 100000", motion,
         ["render", motion, "--ref", examples / "eileen.png", examples / "grace.png",
          "--size", "100000", "-o", "out/size.mp4"]),
        ("tokens: one 10,000-character line", long_line,
         ["tokens", long_line, "-o", "out/long.tokens.npz"]),
        ("tokens: 5,000-line script", many_lines,
         ["tokens", many_lines, "-o", "out/many.tokens.npz"]),
    ]
    from avgen.limits import MAX_FRAMES, MAX_LINE_CHARS, MAX_TURNS

    import cv2

    words = "Well, I suppose that is one way to look at it, and another is this. "
    max_line = work / "max_line.txt"
    max_line.write_text("A: " + (words * 40)[:MAX_LINE_CHARS - 3] + "\nB: Hi.\n")
    max_lines = work / "max_lines.txt"
    max_lines.write_text("".join(f"{'AB'[k % 2]}: This is line number {k}.\n"
                                 for k in range(MAX_TURNS)))
    # every line and the file within their limits, but hours of speech: refused at the
    # turn that passes 30 minutes
    hours = work / "hours.txt"
    hours.write_text("".join(f"{'AB'[k % 2]}: " + (words * 40)[:MAX_LINE_CHARS - 3] + "\n"
                             for k in range(500)))
    portrait = work / "portrait.jpg"
    big = cv2.resize(cv2.imread(str(examples / "eileen.png")), (6000, 6000),
                     interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(portrait), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    short = av_file(work / "short.av.npz", frames=100)
    long_av = av_file(work / "long.av.npz", frames=MAX_FRAMES)
    cases += [
        (f"tokens: one {MAX_LINE_CHARS}-character line (the limit)", max_line,
         ["tokens", max_line, "-o", "out/max_line.tokens.npz"]),
        (f"tokens: {MAX_TURNS}-line script (the limit)", max_lines,
         ["tokens", max_lines, "-o", "out/max_lines.tokens.npz"]),
        ("tokens: 1 MB script of 500 full lines (hours of speech)", hours,
         ["tokens", hours, "-o", "out/hours.tokens.npz"]),
        ("render: 6000x6000 JPEG portrait as --ref", portrait,
         ["render", short, "--ref", portrait, examples / "grace.png", "-o", "out/big.mp4"]),
        ("render --size 2048 (the limit)", short,
         ["render", short, "--ref", examples / "eileen.png", examples / "grace.png",
          "--size", "2048", "-o", "out/size2048.mp4"]),
        (f"vocode: {MAX_FRAMES} frames (30 minutes, the limit)", long_av,
         ["vocode", long_av, "-o", "out/long.wav"]),
    ]
    rows = []
    for name, source, args in cases:
        result = measure(args, work)
        result.update(name=name, input_mb=Path(source).stat().st_size / 2**20,
                      left=sorted(p.name for p in (work / "out").iterdir()))
        rows.append(result)
        print(result, flush=True)
    write_report(rows)


def write_report(rows: list[dict], note: str = "") -> None:
    lines = ["# Peak memory on small hostile inputs", "",
             "Made by `python benchmarks/hostile_memory.py` "
             f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, shared machine). "
             "Peak resident set size of the avgen process from wait4's rusage. Target: "
             f"under {TARGET_MB} MB for any input file under 10 MB.", ""]
    if note:
        lines += [note, ""]
    lines += ["| input | file MB | exit | seconds | peak MB | under target | traceback | "
              "files in out/ after it | message |", "|---|---:|---:|---:|---:|---|---|---|---|"]
    for r in rows:
        message = re.sub(r"/tmp/hostile-memory-[^/]+/", "", r["message"]).replace("|", "/")
        if r["exit"] == 0 and not message.startswith("out/"):
            message = "ok"  # the last stderr line is the end of a summary table
        lines.append(f"| {r['name']} | {r['input_mb']:.2f} | {r['exit']} | {r['seconds']:.1f} "
                     f"| {r['peak_mb']:.0f} | {'yes' if r['peak_mb'] < TARGET_MB else 'NO'} "
                     f"| {'yes' if r['traceback'] else 'no'} | "
                     f"{', '.join(r['left']) or 'none'} | {message} |")
    out = REPO / "benchmarks" / "results" / "hostile_memory.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--from-log":  # rows a stopped run printed
        import ast

        rows = [ast.literal_eval(line) for line in Path(sys.argv[2]).read_text().splitlines()
                if line.startswith("{")]
        write_report(rows, "Cases after the last row did not run: the run was stopped.")
    else:
        main()
