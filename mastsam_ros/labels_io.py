"""Track ids -> pixel values, and label maps as PNG files in the DAVIS layout (one file per frame).

**The id -> pixel value mapping** (:class:`LabelMapper`), shared by every writer: the node's ``~/labels`` (mono16),
``mastsam-bag process``, ``mastsam-track`` and the evaluation runner. Track ids are uint32 and never reused, so a long
run passes 65535, the largest value a 16-bit image holds:

- an id up to 65535 is its own pixel value (so short runs, and every DAVIS evaluation, store plain ids);
- a larger id takes ``(id - 1) % 65535 + 1``, moved up to the next value no other live track holds, so one frame
  never shows two objects under one value;
- a track keeps its value for its whole life; the value is freed when the track retires (or the writer resets).

Each writer also records the value next to the id: ``Instance.label`` in the node and the bag, ``"label"`` in each
track record of ``tracks.jsonl`` (the sidecar ``mastsam-track`` writes beside its PNGs). :func:`ids_from_values`
turns a frame's pixel values back into ids with that record; :func:`load_track_ids` does it for a whole output
directory.

**PNG files** (:func:`save_label_png`, :func:`load_label_png`):

- pixel values all below 256 are written as 8-bit indexed ('P' mode) PNGs with the DAVIS colour palette: the pixel
  value is the id, the palette only colours it for viewers. This is what the DAVIS tools read;
- larger values (up to 65535, which the mapping guarantees) as 16-bit greyscale PNGs: viewers show them nearly black.

``load_label_png`` reads either kind, plus DAVIS-2016 binary masks (0/255 greyscale), and returns the stored values
unchanged; interpreting 255 (object in DAVIS-2016, void in DAVIS-2017) is the caller's business.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .core.labels import LABEL_MAX, LabelMapper, _translate  # noqa: F401 - re-exported


def ids_from_values(values: np.ndarray, label_of: dict[int, int]) -> np.ndarray:
    """Invert :meth:`LabelMapper.map` for one frame: H x W pixel values -> H x W uint32 ids.

    ``label_of``: that frame's ``{id: value}`` (``Instance.label``, or the ``"label"`` of ``tracks.jsonl``). A value
    no id holds becomes 0.
    """
    return _translate(np.asarray(values), {v: i for i, v in label_of.items()}).astype(np.uint32)


def load_track_ids(out_dir: str | Path) -> dict[str, np.ndarray]:
    """The id maps of a ``mastsam-track`` output directory: ``{frame name: H x W uint32 ids}``, decoded from
    ``<frame>.png`` with the ``"label"`` values its ``tracks.jsonl`` record lists."""
    out_dir = Path(out_dir)
    return {name: ids_from_values(load_label_png(out_dir / f"{name}.png"), label_of)
            for name, label_of in read_label_records(out_dir / "tracks.jsonl").items()}


def read_label_records(path: str | Path) -> dict[str, dict[int, int]]:
    """``{frame name: {id: pixel value}}`` from a ``tracks.jsonl`` written by ``mastsam-track``."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            # Files written before "label" existed stored every id as its own value.
            out[rec["frame"]] = {int(t["id"]): int(t.get("label", t["id"])) for t in rec["tracks"]}
    return out


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
    negative values, values above 65535 (map ids first with :class:`LabelMapper`), or an array that is not 2-D
    integer.
    """
    from PIL import Image

    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"label map must be a 2-D integer array, got shape {labels.shape} dtype {labels.dtype}")
    top = int(labels.max()) if labels.size else 0
    low = int(labels.min()) if labels.size else 0
    if low < 0 or top > LABEL_MAX:
        raise ValueError(f"label values must lie in [0, {LABEL_MAX}], got [{low}, {top}] (map ids with LabelMapper)")
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
