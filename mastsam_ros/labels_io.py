"""Read and write label maps as PNG files in the DAVIS layout (one file per frame).

- Label maps with every id below 256 are written as 8-bit indexed ('P' mode) PNGs with the DAVIS colour palette:
  the pixel value is the id, the palette only colours it for viewers. This is what the DAVIS tools read.
- Label maps with an id of 256 or more (long runs where ids are never reused) are written as 16-bit greyscale PNGs:
  the pixel value is still the id, but viewers show them nearly black. Ids above 65535 are refused.

``load_label_png`` reads either kind, plus DAVIS-2016 binary masks (0/255 greyscale), and returns the stored values
unchanged; interpreting 255 (object in DAVIS-2016, void in DAVIS-2017) is the caller's business.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def davis_palette(n: int = 256) -> np.ndarray:
    """The usual VOC/DAVIS palette: (n, 3) uint8 RGB, colour of id i built from the bits of i."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


_PALETTE = davis_palette().reshape(-1).tolist()


def save_label_png(path: str | Path, labels: np.ndarray) -> None:
    """Write ``labels`` (H x W, any integer dtype, 0 = background, ids >= 1) as an indexed or 16-bit PNG.

    8-bit 'P' mode with the DAVIS palette when ``labels.max() < 256``, else 16-bit greyscale. Raises ValueError on
    negative ids, ids above 65535, or an array that is not 2-D integer.
    """
    from PIL import Image

    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"label map must be a 2-D integer array, got shape {labels.shape} dtype {labels.dtype}")
    top = int(labels.max()) if labels.size else 0
    low = int(labels.min()) if labels.size else 0
    if low < 0 or top > 65535:
        raise ValueError(f"label ids must lie in [0, 65535], got [{low}, {top}]")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if top < 256:
        img = Image.fromarray(labels.astype(np.uint8))  # 'L'; putpalette turns it into 'P' keeping the values
        img.putpalette(_PALETTE)
        img.save(path, optimize=False)
    else:
        Image.fromarray(labels.astype(np.uint16)).save(path)


def load_label_png(path: str | Path) -> np.ndarray:
    """Read a label PNG written by ``save_label_png`` (or a DAVIS annotation) as an H x W uint32 array of ids.

    Indexed PNGs give their indices (not colours); greyscale PNGs give their values; an RGB(A) PNG is refused since
    it holds colours, not ids.
    """
    from PIL import Image

    with Image.open(path) as img:
        if img.mode in ("RGB", "RGBA"):
            raise ValueError(f"{path}: colour PNG ({img.mode}); expected an indexed or greyscale label map")
        arr = np.array(img)
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel label map, got shape {arr.shape}")
    return arr.astype(np.uint32)
