"""The one id -> pixel value mapping every writer uses (mastsam_ros/labels_io.py), and its inverse."""

from __future__ import annotations

import numpy as np

from mastsam_ros.core.types import FrameResult, TrackInfo
from mastsam_ros.labels_io import LabelMapper, ids_from_values, load_label_png, save_label_png


def _result(ids: list[int]) -> FrameResult:
    labels = np.zeros((4, len(ids) + 1), np.uint32)
    for col, i in enumerate(ids):
        labels[:, col] = i
    tracks = [TrackInfo(id=i, score=1.0, area=4, bbox=(c, 0, 1, 4), age=0, frames_since_seen=0,
                        points=np.zeros((0, 2), np.float32)) for c, i in enumerate(ids)]
    return FrameResult(index=0, labels=labels, tracks=tracks, keyframe=False)


def test_label_mapper_keeps_small_ids_and_wraps_large_ones_without_collisions():
    m = LabelMapper()
    img, of = m.assign(_result([1, 2, 300]))
    assert of == {1: 1, 2: 2, 300: 300} and img.dtype == np.uint16 and list(img[0, :3]) == [1, 2, 300]
    # 65536 wraps to 1, taken by live id 1 -> next free value; 65537 wraps to 2, taken -> next free.
    img, of = m.assign(_result([1, 2, 300, 65536, 65537]))
    assert of[65536] == 3 and of[65537] == 4 and len(set(of.values())) == 5
    assert list(img[0, :5]) == [1, 2, 300, 3, 4]
    # Stable while the track lives, freed when it retires.
    _, again = m.assign(_result([65536, 65537]))
    assert again == {65536: 3, 65537: 4}
    _, later = m.assign(_result([65537, 131071]))
    assert later[65537] == 4 and later[131071] == 1


def test_mapped_values_decode_back_to_ids_and_fit_a_16_bit_png(tmp_path):
    ids = np.array([[0, 7, 65535, 65536], [70000, 131071, 2**32 - 1, 0]], np.uint32)
    values, label_of = LabelMapper().map(ids)
    assert values.dtype == np.uint16 and len(set(label_of.values())) == 6 and 0 not in label_of.values()
    save_label_png(tmp_path / "f.png", values)
    assert np.array_equal(ids_from_values(load_label_png(tmp_path / "f.png"), label_of), ids)


def test_evaluation_reads_wrapped_values_back_as_ids(tmp_path):
    """mastsam-eval on mastsam-track output: with tracks.jsonl beside the PNGs, two objects that shared a pixel value
    at different times (ids 5 and 65540, both stored as 5) stay two ids."""
    import json

    from mastsam_ros.evaluation.davis import load_pred

    seq = tmp_path / "seq"
    mapper = LabelMapper()
    frames = {"00000": np.array([[5, 0]], np.uint32), "00001": np.array([[0, 65540]], np.uint32)}
    seq.mkdir()
    with open(seq / "tracks.jsonl", "w") as f:
        for name, ids in frames.items():
            values, label_of = mapper.map(ids)
            save_label_png(seq / f"{name}.png", values)
            f.write(json.dumps({"frame": name, "tracks": [{"id": i, "label": v} for i, v in label_of.items()]}) + "\n")
    assert load_label_png(seq / "00001.png")[0, 1] == 5  # the wrapped value reuses the retired one
    assert np.array_equal(load_pred(tmp_path, "seq", list(frames)), np.stack(list(frames.values())))
