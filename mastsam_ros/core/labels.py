"""Track ids -> 16-bit pixel values (:class:`LabelMapper`), shared by every output of the stream: the node's
``~/labels`` (mono16), ``mastsam-bag process``, ``mastsam-track`` and the evaluation runner. The rules are in
``mastsam_ros/labels_io.py``, which also reads and writes label PNGs."""

from __future__ import annotations

from typing import Iterable

import numpy as np

LABEL_MAX = 65535  # largest pixel value of a 16-bit label image (mono16, 16-bit PNG)


class LabelMapper:
    """Maps track ids (uint32, never reused) to pixel values in 1..65535, stable for each track's life (see above).

    One mapper per output stream; call :meth:`reset` when the tracker resets.
    """

    def __init__(self) -> None:
        self._label_of: dict[int, int] = {}

    def reset(self) -> None:
        self._label_of.clear()

    def assign(self, result) -> tuple[np.ndarray, dict[int, int]]:
        """(H x W uint16 pixel values, {track id: value}) for a :class:`~mastsam_ros.core.types.FrameResult`."""
        return self.map(result.labels, [t.id for t in result.tracks])

    def map(self, labels: np.ndarray, ids: Iterable[int] | None = None) -> tuple[np.ndarray, dict[int, int]]:
        """(H x W uint16 pixel values, {id: value}) for an H x W id map (0 = background).

        ``ids``: the live ids (default: those present in ``labels``); pixels of other ids become 0. An id
        missing from ``ids`` has retired: its value is freed.
        """
        labels = np.asarray(labels)
        live = {int(i) for i in (np.unique(labels) if ids is None else ids)} - {0}
        self._label_of = {i: v for i, v in self._label_of.items() if i in live}
        used = set(self._label_of.values())
        for i in sorted(live - self._label_of.keys()):
            value = i if i <= LABEL_MAX else (i - 1) % LABEL_MAX + 1
            while value in used:
                value = value % LABEL_MAX + 1
            self._label_of[i] = value
            used.add(value)
        if all(i == v for i, v in self._label_of.items()) and (labels.size == 0 or int(labels.max()) <= LABEL_MAX):
            return labels.astype(np.uint16), dict(self._label_of)
        # Slow path, only once ids passed 65535: translate through a sorted lookup table.
        return _translate(labels, self._label_of).astype(np.uint16), dict(self._label_of)


def _translate(keys: np.ndarray, table: dict[int, int]) -> np.ndarray:
    """Replace each element of ``keys`` by ``table[key]`` (0 where the key is not in the table)."""
    if not table:
        return np.zeros(keys.shape, np.int64)
    src = np.array(sorted(table), np.int64)
    dst = np.array([table[k] for k in src], np.int64)
    pos = np.clip(np.searchsorted(src, keys), 0, len(src) - 1)
    return np.where(src[pos] == keys, dst[pos], 0)
