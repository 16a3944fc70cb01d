"""Re-create examples/eileen.png and examples/grace.png from their public-domain sources.

    pip install -e '.[examples]' && python examples/make_portraits.py

Both are face-centred square crops resized to 512x512 (see examples/README.md).
"""

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SIZE = 512


def crop(image: np.ndarray, left: int, top: int, side: int) -> Image.Image:
    square = image[top:top + side, left:left + side]
    assert square.shape[:2] == (side, side), "crop box leaves the image"
    return Image.fromarray(square).resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def main() -> None:
    import matplotlib
    import skimage.data

    # Eileen Collins, NASA portrait (512x512): face centre near (225, 115).
    crop(skimage.data.astronaut(), left=65, top=0, side=320).save(HERE / "eileen.png")
    # Grace Hopper, US Navy portrait (512x600): face centre near (262, 235).
    hopper = np.asarray(Image.open(Path(matplotlib.get_data_path()) / "sample_data"
                                   / "grace_hopper.jpg").convert("RGB"))
    crop(hopper, left=57, top=20, side=410).save(HERE / "grace.png")


if __name__ == "__main__":
    main()
