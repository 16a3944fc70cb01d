"""Render a held-out teacher dialogue (teacher audio + teacher motion) to look at and
listen to, with a contact sheet of frames -> benchmarks/results/teacher_dialogue.png.

    python benchmarks/teacher_dialogue.py /work/corpus --seconds 12 -o /tmp/teacher.mp4

The MP4 stays outside the repo (it is regenerated); the contact sheet is committed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from avgen import formats
from avgen.constants import EXPRESSION_NAMES, FRAMES_PER_SECOND as FPS
from avgen.train.dialogues import dialogue_av, load_dialogues

REPO = Path(__file__).resolve().parents[1]
E = {n: k for k, n in enumerate(EXPRESSION_NAMES)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--dialogue", type=int, default=None, help="index; default: first held-out")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("-o", type=Path, default=Path("/tmp/teacher_dialogue.mp4"))
    parser.add_argument("--sheet", type=Path,
                        default=REPO / "benchmarks" / "results" / "teacher_dialogue.png")
    args = parser.parse_args()
    dialogues = load_dialogues(args.root)
    d, motion = next((d, m) for d, m in dialogues
                     if (d.index == args.dialogue if args.dialogue is not None else d.heldout))
    av, audio = dialogue_av(args.root, d, motion)
    n = min(d.num_frames, int(args.seconds * FPS))
    for key in list(av):
        if key.startswith("p"):
            av[key] = av[key][:n]
    av["num_frames"] = np.array(n)
    audio = audio[:n * 256]
    work = Path(tempfile.mkdtemp(prefix="avgen-teacher-"))
    formats.save(work / "d.av.npz", formats.AV, av)
    soundfile.write(work / "d.wav", audio, 22050)
    frames_dir = work / "frames"
    frames_dir.mkdir()
    refs = [str(REPO / "examples" / "eileen.png"), str(REPO / "examples" / "grace.png")]
    subprocess.run([sys.executable, "-m", "avgen", "render", str(work / "d.av.npz"), "--ref", *refs,
                    "--audio", str(work / "d.wav"), "-o", str(args.o), "--size", "256",
                    "--frames", str(frames_dir)], check=True)
    # Contact sheet: frames where person 0 closes lips / opens jaw / listens while 1 talks.
    from PIL import Image, ImageDraw

    pngs = sorted(frames_dir.glob("*.png"))
    video_fps = len(pngs) / (n / FPS)
    e0, e1 = av["p0/expression"], av["p1/expression"]
    picks = {
        "p0 lips closed (p/b/m)": int(np.argmax(e0[:, E["lips_close"]] * (e1[:, E["jaw_open"]] < 0.1))),
        "p0 jaw open": int(np.argmax(e0[:, E["jaw_open"]])),
        "p1 jaw open": int(np.argmax(e1[:, E["jaw_open"]])),
        "p0 blink": int(np.argmax(e0[:, E["eye_blink_left"]])),
        "p1 smile": int(np.argmax(e1[:, E["smile_left"]])),
        "p0 smile": int(np.argmax(e0[:, E["smile_left"]])),
    }
    tiles = []
    for label, frame in picks.items():
        k = min(int(frame / FPS * video_fps), len(pngs) - 1)
        tile = Image.open(pngs[k]).convert("RGB")
        ImageDraw.Draw(tile).text((6, 6), f"{label} t={frame / FPS:.2f}s", fill=(255, 255, 0))
        tiles.append(tile)
    w, h = tiles[0].size
    sheet = Image.new("RGB", (w * 2, h * 3))
    for k, tile in enumerate(tiles):
        sheet.paste(tile, ((k % 2) * w, (k // 2) * h))
    args.sheet.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.sheet)
    print(f"dialogue {d.index} ({'held out' if d.heldout else 'train'}), {n / FPS:.1f} s -> "
          f"{args.o}; contact sheet {args.sheet}")


if __name__ == "__main__":
    main()
