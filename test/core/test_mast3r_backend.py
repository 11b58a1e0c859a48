"""MASt3R matcher: geometry, point lookup and error paths always; the upstream model where its code is available.

The upstream tests use ``../shared/mast3r`` when it is beside the checkout (test/conftest.py), or the naver/mast3r
clone (with dust3r and dust3r/croco inside) that ``MASTSAM_MAST3R_PATH`` names, which takes precedence; they build a
scaled-down ``AsymmetricMASt3R`` with random weights (the published ViT-L one takes minutes on a CPU: see
scripts/verify_mast3r.py) and drive it through the project's matcher on real DAVIS frames.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mastsam_ros.core.config import MatcherSection  # noqa: E402
from mastsam_ros.core.errors import BackendUnavailable, CheckpointError, FrameError  # noqa: E402
from mastsam_ros.core.matchers import build_matcher  # noqa: E402
from mastsam_ros.core.matchers.mast3r import (  # noqa: E402
    OFFICIAL_NAME,
    PUBLISHED_MODEL,
    desc_confidence,
    import_mast3r,
    match_points,
    model_size,
    parse_model_spec,
    to_frame,
    to_model,
)

REPO = Path(__file__).resolve().parents[2]
MAST3R_PATH = os.environ.get("MASTSAM_MAST3R_PATH", "")  # test/conftest.py defaults it to ../shared/mast3r


def _upstream_reason() -> str | None:
    try:
        import_mast3r(MAST3R_PATH)
    except BackendUnavailable as e:
        return (f"mast3r not importable ({e}); put ../shared (with mast3r/) beside the checkout, or clone naver/mast3r "
                "with its submodules and set MASTSAM_MAST3R_PATH to it")
    return None


UPSTREAM_SKIP = _upstream_reason()
needs_upstream = pytest.mark.skipif(UPSTREAM_SKIP is not None, reason=str(UPSTREAM_SKIP))


# --- always: geometry -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "size, expected",
    [((854, 480), (512, 288)), ((960, 540), (512, 288)), ((640, 480), (512, 384)), ((480, 854), (288, 512)),
     ((512, 10), (512, 16))],
)
def test_model_size_keeps_aspect_in_patch_multiples(size, expected):
    mw, mh = model_size(*size)
    assert (mw, mh) == expected and mw % 16 == 0 and mh % 16 == 0
    w, h = size
    assert max(mw, mh) == 512
    assert abs(min(mw, mh) - min(w, h) * 512 / max(w, h)) <= 8  # short side within half a patch of exact


def test_coordinates_map_x_and_y_with_their_own_scale():
    w, h = 854, 480
    mw, mh = model_size(w, h)
    scale = np.array([mw / w, mh / h])
    corners = np.array([[0, 0], [w - 1, h - 1], [w / 2 - 0.5, h / 2 - 0.5]], np.float64)
    m = to_model(corners, scale)
    # pixel-centre convention: the frame's outer edges (-0.5 and size - 0.5) land on the model image's edges
    edges = to_model(np.array([[-0.5, -0.5], [w - 0.5, h - 0.5]]), scale)
    assert np.allclose(edges, [[-0.5, -0.5], [mw - 0.5, mh - 0.5]])
    assert np.allclose(m[2], [mw / 2 - 0.5, mh / 2 - 0.5])  # the centre stays the centre in x and y
    assert np.allclose(to_frame(m, scale), corners)


def test_published_spec_parses_without_eval():
    kw = parse_model_spec(PUBLISHED_MODEL)
    assert kw["enc_depth"] == 24 and kw["dec_depth"] == 12 and kw["output_mode"] == "pts3d+desc24"
    assert kw["depth_mode"] == ("exp", -float("inf"), float("inf")) and kw["desc_conf_mode"] == ("exp", 0, float("inf"))
    with pytest.raises(CheckpointError):
        parse_model_spec("__import__('os').system('true')")
    with pytest.raises(CheckpointError):
        parse_model_spec("AsymmetricMASt3R(enc_depth=open('x'))")


def test_desc_confidence_is_the_sigmoid_of_the_logit():
    logits = torch.tensor([-2.0, 0.0, 3.0])
    for mode in (("exp", 0, float("inf")), ("exp", 1, float("inf"))):
        conf = mode[1] + logits.exp()  # what upstream's reg_dense_conf returns
        assert torch.allclose(desc_confidence(conf, mode), torch.sigmoid(logits))
    assert torch.allclose(desc_confidence(2 * torch.sigmoid(logits) + 1, ("sigmoid", 1, 3)), torch.sigmoid(logits))


# --- always: the per-point reciprocal lookup ----------------------------------------------------------------------
def _shifted_maps(h=32, w=48, d=24, dx=3, dy=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    desc1 = torch.nn.functional.normalize(torch.randn(h, w, d, generator=g), dim=-1)
    desc2 = torch.roll(desc1, shifts=(dy, dx), dims=(0, 1))  # desc2[y + dy, x + dx] = desc1[y, x]
    conf1 = torch.full((h, w), 0.81)
    conf2 = torch.full((h, w), 0.64)
    return desc1, conf1, desc2, conf2


def test_match_points_follows_a_known_shift():
    desc1, conf1, desc2, conf2 = _shifted_maps()
    pts = np.array([[10, 10], [20.3, 15.6], [30, 20]], np.float32)
    out, conf = match_points(desc1, conf1, desc2, conf2, pts, max_error=3.0)
    assert out.dtype == np.float32 and conf.dtype == np.float32
    assert np.allclose(out, pts + [3, 2], atol=1e-5)  # sub-pixel offsets are kept
    assert np.allclose(conf, np.sqrt(0.81 * 0.64))


def test_match_points_drops_border_outside_and_non_reciprocal_points():
    desc1, conf1, desc2, conf2 = _shifted_maps()
    # (45, 10) lands at x = 48 -> wraps to 0: within the border of map 2; (1, 10) is in the border of map 1
    # (-5, 3) is outside map 1 and comes back unchanged
    pts = np.array([[45, 10], [1, 10], [-5, 3]], np.float32)
    out, conf = match_points(desc1, conf1, desc2, conf2, pts, max_error=3.0)
    assert np.all(conf == 0)
    assert np.allclose(out[2], pts[2])

    # Two pixels of map 1 share one descriptor: the later one's back-match returns to the earlier one, 10 px away.
    desc1[12, 30] = desc1[12, 20]
    desc2 = torch.roll(desc1, shifts=(2, 3), dims=(0, 1))
    _, conf = match_points(desc1, conf1, desc2, conf2, np.array([[30, 12], [25, 12]], np.float32), max_error=3.0)
    assert conf[0] == 0 and conf[1] > 0.5


# --- always: errors ----------------------------------------------------------------------------------------------
def test_missing_checkpoint_says_where_to_get_it(tmp_path):
    with pytest.raises(CheckpointError) as err:
        build_matcher(MatcherSection(backend="mast3r", checkpoint=str(tmp_path / "none.pth")))
    msg = str(err.value)
    assert OFFICIAL_NAME in msg and "download.europe.naverlabs.com" in msg and "non-commercial" in msg
    with pytest.raises(CheckpointError, match="matcher.checkpoint is empty"):
        build_matcher(MatcherSection(backend="mast3r"))


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    ckpt = tmp_path / "some.pth"
    ckpt.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "mast3r", None)  # `import mast3r` fails even where a clone is on the path
    monkeypatch.setitem(sys.modules, "mast3r.model", None)
    with pytest.raises(BackendUnavailable, match="git clone --recursive https://github.com/naver/mast3r"):
        build_matcher(MatcherSection(backend="mast3r", checkpoint=str(ckpt)))
    with pytest.raises(BackendUnavailable, match="holds no mast3r/model.py"):
        build_matcher(MatcherSection(backend="mast3r", checkpoint=str(ckpt), mast3r_path=str(tmp_path)))


# --- with the upstream clone -------------------------------------------------------------------------------------
def _verify_script():
    spec = importlib.util.spec_from_file_location("verify_mast3r", REPO / "scripts" / "verify_mast3r.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    if UPSTREAM_SKIP:
        pytest.skip(UPSTREAM_SKIP)
    out = tmp_path_factory.mktemp("mast3r") / "tiny.pth"
    return _verify_script().save_random_checkpoint(MAST3R_PATH, _verify_script().TINY_MODEL, out)


@needs_upstream
def test_upstream_model_through_the_matcher(tiny_ckpt, car_frames, monkeypatch):
    frames, gts = car_frames
    m = build_matcher(MatcherSection(backend="mast3r", checkpoint=str(tiny_ckpt), mast3r_path=MAST3R_PATH))
    encodes, decodes = [], []
    real_enc, real_dec = m.model._encode_image, m.model._decoder
    monkeypatch.setattr(m.model, "_encode_image", lambda *a: encodes.append(1) or real_enc(*a))
    monkeypatch.setattr(m.model, "_decoder", lambda *a: decodes.append(1) or real_dec(*a))

    h, w = frames[0].shape[:2]
    ys, xs = np.nonzero(gts[0])
    pts = np.stack([xs, ys], 1)[:: max(1, len(xs) // 40)].astype(np.float32)
    m.push(frames[0])
    out, conf = m.carry(pts)  # no previous frame yet: nothing is trusted
    assert np.all(conf == 0) and np.allclose(out, pts)
    m.push(frames[1])
    out, conf = m.carry(pts)
    out2, conf2 = m.carry(pts[:5])  # same pair: decoder not run again
    assert out.shape == pts.shape and out.dtype == np.float32 and conf.dtype == np.float32
    assert np.all((conf >= 0) & (conf <= 1)) and np.allclose(out2, out[:5]) and np.allclose(conf2, conf[:5])
    kept = out[conf > 0]
    assert np.all((kept >= -0.5) & (kept <= [w - 0.5, h - 0.5]))
    m.push(frames[2])
    m.carry(pts)
    assert len(encodes) == 3, "each frame is encoded once; the pair n -> n+1 reuses frame n"
    assert len(decodes) == 2, "the joint decoder runs once per pair"
    assert set(m.timings) == {"encode", "decode", "match"}

    with pytest.raises(FrameError):
        m.push(frames[0].astype(np.float32))
    m.reset()
    assert np.all(m.carry(pts)[1] == 0)


@needs_upstream
def test_upstream_checkpoint_with_missing_key_fails_loudly(tiny_ckpt, tmp_path):
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = torch.load(tiny_ckpt, weights_only=True)
    key = next(k for k in ckpt["model"] if k.startswith("downstream_head2."))
    del ckpt["model"][key]
    bad = tmp_path / "bad.pth"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match="does not match") as err:
        build_matcher(MatcherSection(backend="mast3r", checkpoint=str(bad), mast3r_path=MAST3R_PATH))
    assert key in str(err.value)


# --- the point map for 3D instances ------------------------------------------------------------------------------
class _PointMapModel:
    """A stand-in with MASt3R's call structure whose first head returns a point map computed from its own image:
    z = 1 + 2 x red (metres), x and y on a pinhole with f = model width, confidence = 1 + 4 x green. Lets the
    plumbing (which image is first in the pair, resolution, confidence, caching) be checked without upstream."""

    desc_conf_mode = ("exp", 0, float("inf"))

    def __init__(self):
        self.decoder_pairs = []

    def to(self, device):
        return self

    def eval(self):
        return self

    def _encode_image(self, x, true_shape):
        return x, None, None

    def _decoder(self, f1, p1, f2, p2):
        self.decoder_pairs.append((f1, f2))
        return [f1], [f2]

    def _downstream_head(self, head, toks, shape):
        img = (toks[0][0] + 1) / 2  # (3, h, w) in [0, 1]
        _, h, w = img.shape
        z = 1 + 2 * img[0]
        v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
        pts = torch.stack([(u - (w - 1) / 2) / w * z, (v - (h - 1) / 2) / w * z, z], dim=-1)
        desc = torch.nn.functional.normalize(img.permute(1, 2, 0).repeat(1, 1, 8) + 0.01, dim=-1)
        return {"pts3d": pts[None], "conf": (1 + 4 * img[1])[None], "desc": desc[None],
                "desc_conf": torch.ones(1, h, w)}


def test_point_map_is_the_newest_frame_first_in_its_own_pass():
    from mastsam_ros.core.geometry import frame_point_map, objects_3d
    from mastsam_ros.core.matchers.mast3r import Mast3rMatcher

    h, w = 240, 427  # model size 512 x 288
    a = np.zeros((h, w, 3), np.uint8)
    b = np.zeros((h, w, 3), np.uint8)
    b[60:180, 100:300, 0] = 255  # a red box at z = 3 m; the rest of b at z = 1 m
    b[:, : w // 2, 1] = 255  # green (confidence 5) on the left half only
    model = _PointMapModel()
    m = Mast3rMatcher(MatcherSection(backend="mast3r"), model=model)
    assert m.point_map() is None  # nothing pushed yet
    m.push(a)
    pts, conf = m.point_map()
    assert len(model.decoder_pairs) == 1 and model.decoder_pairs[0][0] is model.decoder_pairs[0][1]  # (a, a)
    assert pts.shape == (288, 512, 3) and np.allclose(pts[..., 2], 1.0)
    m.push(b)
    m.carry(np.array([[10.0, 10.0]], np.float32))  # the matching pair (a, b) is decoded on its own...
    pts, conf = m.point_map()
    m.point_map()  # ...and the point map once per frame, with b first
    assert len(model.decoder_pairs) == 3
    first, second = model.decoder_pairs[2]
    assert first is m._cur["feat"] and second is m._prev["feat"]
    assert "point_map" in m.timings

    full = frame_point_map(pts, conf, (w, h), min_confidence=3.0)
    assert full.shape == (h, w, 3)
    z = full[..., 2]
    assert np.isnan(z[:, w // 2 + 2:]).all() and np.isfinite(z[:, : w // 2 - 2]).all()  # low confidence -> NaN
    labels = np.zeros((h, w), np.uint32)
    labels[70:170, 110:200] = 7  # inside the red box, on the confident half
    labels[70:170, 260:290] = 8  # inside the box, on the unconfident half
    o7, o8 = objects_3d(labels, full, ids=[7, 8])
    assert o7.centroid[2] == pytest.approx(3.0, abs=0.02) and o7.valid_fraction == 1.0
    assert o8.points == 0 and o8.valid_fraction == 0.0
    m.reset()
    assert m.point_map() is None


@needs_upstream
def test_upstream_point_map_on_real_frames(tiny_ckpt, car_frames):
    from mastsam_ros.core.geometry import frame_point_map, objects_3d

    frames, gts = car_frames
    m = build_matcher(MatcherSection(backend="mast3r", checkpoint=str(tiny_ckpt), mast3r_path=MAST3R_PATH))
    h, w = frames[0].shape[:2]
    for f in frames[:2]:
        m.push(f)
        pts, conf = m.point_map()
        assert pts.shape == (*model_size(w, h)[::-1], 3) and conf.shape == pts.shape[:2]
        assert np.isfinite(pts).all() and (conf >= 1).all()  # conf_mode ('exp', 1, inf)
        full = frame_point_map(pts, conf, (w, h))
        (car,) = objects_3d(gts[0].astype(np.uint32), full, ids=[1])
        assert car.points == car.pixels and all(np.isfinite(car.centroid))


@needs_upstream
def test_upstream_model_as_the_cadence_anchor(tiny_ckpt, car_frames, monkeypatch):
    """matcher.backend cadence with the real (scaled-down) MASt3R anchoring every 2nd frame: encoded on anchor frames
    only, its point map on those frames only, every carry well-formed."""
    frames, gts = car_frames
    m = build_matcher(MatcherSection(backend="cadence", anchor_backend="mast3r", anchor_interval=2,
                                     checkpoint=str(tiny_ckpt), mast3r_path=MAST3R_PATH))
    encodes = []
    real_enc = m.anchor.model._encode_image
    monkeypatch.setattr(m.anchor.model, "_encode_image", lambda *a: encodes.append(1) or real_enc(*a))
    ys, xs = np.nonzero(gts[0])
    pts = np.stack([xs, ys], 1)[:: max(1, len(xs) // 20)].astype(np.float32)
    for i, f in enumerate(frames[:5]):
        m.push(f)
        m.prepare()
        out, conf = m.carry(pts)
        assert out.shape == pts.shape and out.dtype == np.float32 and np.all((conf >= 0) & (conf <= 1))
        assert (m.point_map() is not None) == (i % 2 == 0)
    assert len(encodes) == 3  # frames 0, 2, 4
    assert m.stats["anchor_frames"] == 3 and m.stats["anchored_points"] + m.stats["fallback_points"] == 2 * len(pts)
