"""MASt3R (naver/mast3r) dense descriptors, looked up only at the carried points.

MASt3R is not on PyPI: the user clones ``naver/mast3r`` with its submodules (``dust3r``, and ``croco`` inside it)
and points ``matcher.mast3r_path`` (or ``PYTHONPATH``) at the clone. Nothing here is imported before the backend is
built.

What runs per frame pair (n -> n+1):

- **Encoder**: once per frame. ``push`` encodes the new frame with MASt3R's ViT encoder and keeps the tokens, so the
  pair n -> n+1 reuses frame n's encoding from the previous pair.
- **Decoder and heads**: once per pair. MASt3R's two decoders cross-attend between the two images, so descriptors of
  frame n depend on its partner frame and cannot be cached across pairs; they run in ``prepare`` (the tracker's
  matcher thread) or else on the first ``carry`` after a ``push``.
- **Matching**: per carried point, not per pixel. Each point's descriptor in the previous frame is compared with
  every descriptor of the current frame (a (N, H*W) product: N ~ 100 points instead of the H*W x H*W all-pixel
  reciprocal search), and the winner's descriptor is checked back against every descriptor of the previous frame.
  The point keeps its match when the back-match lands within ``matcher.max_error_px`` model pixels of where it
  started.

- **Precision** (``matcher.precision``): on CUDA the encoder and the decoder run under fp16 autocast by default
  (measured faster there than bf16 and than fp32: ../shared/GPU.md); the heads run in fp32 on fp32 tokens, as
  upstream runs them. On a CPU everything stays fp32.
- **RoPE**: croco picks its compiled ``curope`` kernel at import when the user built it, else a slower PyTorch
  path; which one runs is logged once per process (:func:`log_rope`).

- **Point map** (only when a front end asks for 3D, :meth:`Mast3rMatcher.point_map`): MASt3R's first head
  predicts the first image's 3D points in the first image's own camera frame, so the newest frame's point map needs
  a pass with the newest frame first, (n+1, n), or (n+1, n+1) on the first frame (one image paired with itself, as
  DUSt3R does for a single view). That is one more decoder and head pass per frame, run only on request; the
  matching pair (n, n+1) is not changed. The points are in the newest frame's camera frame (x right, y down,
  z forward) at the model resolution, in the checkpoint's units: metres, as far as the ``_metric`` checkpoint's
  training makes them so; each frame's scale is predicted on its own, so it may drift from frame to frame.

Images are ``H x W x 3`` ``uint8`` RGB; points are ``(x, y)`` pixels with the origin at the top-left pixel centre.
Frames are resized so the long side is 512 (MASt3R's training resolution) and each side is a multiple of the 16-pixel
patch, keeping the aspect ratio within half a patch; x and y are mapped back with their own scale factors.
Upstream's own loader centre-crops to the patch multiple instead, which would lose a strip at the border.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import logging
import sys
import time
from pathlib import Path

import numpy as np

from ..config import MatcherSection
from ..errors import BackendUnavailable, CheckpointError, ConfigError, FrameError
from .base import Matcher

log = logging.getLogger(__name__)

LONG_SIDE = 512
PATCH = 16
BORDER_PX = 3  # model pixels; descriptors next to the image edge are unreliable (upstream's example drops 3 px)

OFFICIAL_NAME = "MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric.pth"
OFFICIAL_URL = f"https://download.europe.naverlabs.com/ComputerVision/MASt3R/{OFFICIAL_NAME}"
#: The architecture of the published checkpoint above (its ``args.model``), used when a checkpoint has no ``args``.
PUBLISHED_MODEL = (
    "AsymmetricMASt3R(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
    "head_type='catmlp+dpt', output_mode='pts3d+desc24', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
    "enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12, "
    "two_confs=True, desc_conf_mode=('exp', 0, inf))"
)
CLONE_HINT = (
    "MASt3R is not on PyPI: git clone --recursive https://github.com/naver/mast3r /path/to/mast3r, "
    "pip install -r /path/to/mast3r/requirements.txt -r /path/to/mast3r/dust3r/requirements.txt, then set "
    "matcher.mast3r_path to /path/to/mast3r (or add it to PYTHONPATH)"
)


# --- upstream package and checkpoint ----------------------------------------------------------------------------
def import_mast3r(mast3r_path: str = ""):
    """Return upstream's ``AsymmetricMASt3R`` class, adding ``mast3r_path`` to ``sys.path`` first when given."""
    if mast3r_path:
        root = Path(mast3r_path).expanduser().resolve()
        if not (root / "mast3r" / "model.py").is_file():
            raise BackendUnavailable(f"matcher.mast3r_path '{mast3r_path}' holds no mast3r/model.py; {CLONE_HINT}")
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
    try:
        # croco prints its own warning when the compiled curope kernel is absent; Mast3rMatcher logs one line instead
        with contextlib.redirect_stdout(io.StringIO()):
            from mast3r.model import AsymmetricMASt3R  # noqa: PLC0415 - heavy, optional, not on PyPI
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "mast3r":
            raise BackendUnavailable(f"matcher backend mast3r: the mast3r package does not import; {CLONE_HINT}") from e
        raise BackendUnavailable(
            f"matcher backend mast3r: mast3r imports but its dependency '{e.name}' is missing; install "
            f"mast3r/requirements.txt and mast3r/dust3r/requirements.txt (pip install {e.name} at least)"
        ) from e
    except ImportError as e:  # mast3r raises ImportError itself when the dust3r / croco submodules are absent
        raise BackendUnavailable(
            f"matcher backend mast3r: {e}; run 'git submodule update --init --recursive' in the mast3r clone"
        ) from e
    return AsymmetricMASt3R


def _literal(node: ast.AST):
    """A keyword value of a model spec: constants, tuples / lists of them, ``inf`` and negation."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.Name) and node.id == "inf":
        return float("inf")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _literal(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    raise ValueError(f"unsupported expression {ast.dump(node)}")


def parse_model_spec(spec: str) -> dict:
    """Keyword arguments of an ``AsymmetricMASt3R(...)`` spec string as stored in upstream checkpoints' ``args.model``.

    Parsed as literals instead of ``eval`` (which upstream's loader uses), so a checkpoint cannot run code here.
    """
    try:
        call = ast.parse(spec.strip(), mode="eval").body
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "AsymmetricMASt3R"):
            raise ValueError("not an AsymmetricMASt3R(...) call")
        if call.args:
            raise ValueError("positional arguments")
        return {kw.arg: _literal(kw.value) for kw in call.keywords}
    except (SyntaxError, ValueError) as e:
        raise CheckpointError(f"cannot read the MASt3R model spec {spec!r}: {e}") from None


def load_mast3r_model(checkpoint: str, mast3r_path: str = ""):
    """Build the checkpoint's architecture with upstream's class and load its weights strictly (CPU, eval mode).

    Accepts upstream's training-format ``.pth`` (``{'model': state_dict, 'args': Namespace(model=spec)}``, as the
    published file is) or a bare state dict (then the published architecture is assumed).
    """
    path = Path(checkpoint).expanduser() if checkpoint else None
    if path is None or not path.is_file():
        where = f"'{checkpoint}' does not exist" if checkpoint else "matcher.checkpoint is empty"
        raise CheckpointError(
            f"MASt3R checkpoint not found: {where}. Set matcher.checkpoint to the path of {OFFICIAL_NAME}, "
            f"downloaded from {OFFICIAL_URL} (CC BY-NC-SA 4.0: non-commercial use only; see naver/mast3r's README)."
        )
    model_cls = import_mast3r(mast3r_path)
    import torch  # noqa: PLC0415

    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read MASt3R checkpoint '{path}' with weights_only=True: {e}") from e
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        state, args = ckpt["model"], ckpt.get("args")
        spec = getattr(args, "model", None) if args is not None else None
    elif isinstance(ckpt, dict):
        state, spec = ckpt, None
    else:
        raise CheckpointError(f"MASt3R checkpoint '{path}' is not a dict (got {type(ckpt).__name__})")
    kwargs = parse_model_spec(spec or PUBLISHED_MODEL)
    # As upstream's loader does for inference: the plain patch embedding and no landscape transposition, so any
    # single image orientation works without the training-time batching wrapper.
    kwargs["patch_embed_cls"] = "PatchEmbedDust3R"
    kwargs["landscape_only"] = False
    try:
        model = model_cls(**kwargs)
    except Exception as e:
        raise CheckpointError(f"cannot build MASt3R from the spec of '{path}' ({kwargs}): {e}") from e
    if not hasattr(model, "desc_mode") or "desc" not in str(kwargs.get("output_mode", "")):
        raise CheckpointError(
            f"'{path}' is not a MASt3R model with descriptors (output_mode {kwargs.get('output_mode')})"
        )
    try:
        # upstream's load_state_dict copies dec_blocks to dec_blocks2 when absent, then loads; strict=True makes
        # any other missing or unexpected key an error instead of a silently random layer.
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"MASt3R checkpoint '{path}' does not match its architecture: {e}") from e
    return model.eval()


_ROPE_LOGGED = False


def rope_kind(model) -> str:
    """Which 2D RoPE the model's blocks use: ``"curope"`` (croco's compiled ``cuRoPE2D`` kernel, picked by croco at
    import when it was built), ``"pytorch"`` (croco's slower PyTorch fallback) or ``"none"`` (no RoPE, stand-ins)."""
    rope = getattr(model, "rope", None)
    if rope is None:
        return "none"
    return "curope" if type(rope).__name__ == "cuRoPE2D" else "pytorch"


def log_rope(kind: str) -> None:
    """One log line per process: which RoPE MASt3R runs, and how to build the kernel when it is the slow one."""
    global _ROPE_LOGGED
    if _ROPE_LOGGED or kind == "none":
        return
    _ROPE_LOGGED = True
    if kind == "curope":
        log.info("MASt3R: RoPE runs croco's compiled curope kernel")
    else:
        log.warning(
            "MASt3R: croco's compiled curope kernel is not built, RoPE runs its slower PyTorch path; build it with "
            "'cd <mast3r clone>/dust3r/croco/models/curope && python setup.py build_ext --inplace'"
        )


def autocast_dtype(precision: str, device) -> "object | None":
    """The autocast dtype for ``matcher.precision`` on ``device`` (None = plain fp32).

    ``auto``: fp16 on CUDA (measured faster there than bf16: ../shared/GPU.md), fp32 elsewhere. fp16 and bf16 are
    refused off CUDA with a ConfigError."""
    import torch  # noqa: PLC0415

    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if device.type != "cuda":
        raise ConfigError(f"matcher.precision '{precision}' needs a CUDA device (matcher.device is '{device}'); "
                          "use auto or fp32")
    return torch.bfloat16 if precision == "bf16" else torch.float16


# --- geometry -------------------------------------------------------------------------------------------------
def model_size(width: int, height: int, long_side: int = LONG_SIDE, patch: int = PATCH) -> tuple[int, int]:
    """(width, height) MASt3R sees: long side ``long_side``, short side rounded to a multiple of ``patch``."""
    if width >= height:
        return long_side, max(patch, int(round(height * long_side / width / patch)) * patch)
    return max(patch, int(round(width * long_side / height / patch)) * patch), long_side


def to_model(points: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Frame pixels -> model pixels, x and y with their own factor; pixel centres map onto pixel centres."""
    return (points + 0.5) * scale - 0.5


def to_frame(points: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Model pixels -> frame pixels (inverse of :func:`to_model`)."""
    return (points + 0.5) / scale - 0.5


def desc_confidence(conf, mode) -> "np.ndarray":
    """Map MASt3R's descriptor confidence (``reg_dense_conf`` output) to [0, 1): the sigmoid of the head's logit."""
    kind, vmin, vmax = mode
    if kind == "exp":
        e = conf - vmin
        return e / (1.0 + e)
    return (conf - vmin) / (vmax - vmin)


def match_points(desc1, conf1, desc2, conf2, pts1: np.ndarray, max_error: float, border: int = BORDER_PX):
    """Reciprocal nearest-neighbour matches of ``pts1`` from map 1 into map 2, all in model pixels.

    ``desc*`` (H, W, D) torch unit descriptors, ``conf*`` (H, W) torch in [0, 1]; ``pts1`` (N, 2) float x y.
    Returns ``(pts2 (N, 2) float32, confidence (N,) float32)``. Confidence = sqrt(conf1 * conf2) at both ends x
    reciprocal agreement (1 when the back-match returns to the start pixel, 0 at ``max_error`` pixels or more);
    0 for points outside map 1 and for matches within ``border`` pixels of either map's edge. A matched point keeps
    its sub-pixel offset from the pixel it was looked up at.
    """
    import torch  # noqa: PLC0415

    h1, w1, d = desc1.shape
    h2, w2, _ = desc2.shape
    n = pts1.shape[0]
    out = pts1.astype(np.float32).copy()
    confidence = np.zeros(n, np.float32)
    if n == 0:
        return out, confidence
    q = np.round(pts1).astype(np.int64)
    inside = (q[:, 0] >= 0) & (q[:, 0] < w1) & (q[:, 1] >= 0) & (q[:, 1] < h1)
    if not inside.any():
        return out, confidence
    idx = np.nonzero(inside)[0]
    q = q[idx]
    flat1, flat2 = desc1.reshape(-1, d), desc2.reshape(-1, d)
    src = torch.as_tensor(q[:, 1] * w1 + q[:, 0], device=desc1.device)
    fwd = (flat1[src] @ flat2.T).argmax(dim=1)  # (n,) best pixel in map 2
    back = (flat2[fwd] @ flat1.T).argmax(dim=1)  # and its best pixel back in map 1
    fwd, back = fwd.cpu().numpy(), back.cpu().numpy()
    dst = np.stack([fwd % w2, fwd // w2], axis=1)
    ret = np.stack([back % w1, back // w1], axis=1)
    err = np.linalg.norm(ret - q, axis=1)
    agree = np.clip(1.0 - err / max_error, 0.0, 1.0)
    c1 = conf1.reshape(-1)[src].cpu().numpy()
    c2 = conf2.reshape(-1)[torch.as_tensor(fwd, device=conf2.device)].cpu().numpy()
    conf = np.sqrt(np.clip(c1 * c2, 0.0, 1.0)) * agree

    def away_from_border(p, w, h):
        return (p[:, 0] >= border) & (p[:, 0] < w - border) & (p[:, 1] >= border) & (p[:, 1] < h - border)

    conf[~(away_from_border(q, w1, h1) & away_from_border(dst, w2, h2))] = 0.0
    out[idx] = dst + (pts1[idx] - q)
    confidence[idx] = conf
    return out, confidence


# --- the matcher ----------------------------------------------------------------------------------------------
class Mast3rMatcher(Matcher):
    """MASt3R correspondences for carried points; see the module docstring for what is cached."""

    name = "mast3r"

    def __init__(self, cfg: MatcherSection, model=None):
        import torch  # noqa: PLC0415

        self.torch = torch
        try:
            self.device = torch.device(cfg.device)
        except RuntimeError as e:
            raise ConfigError(f"matcher.device: '{cfg.device}' is not a torch device ({e})") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(f"matcher.device is '{cfg.device}' but torch sees no CUDA device; use 'cpu'")
        if model is None:
            model = load_mast3r_model(cfg.checkpoint, cfg.mast3r_path)
        self.model = model.to(self.device).eval()
        self.max_error = float(cfg.max_error_px)
        self.precision = cfg.precision
        self.amp_dtype = autocast_dtype(self.precision, self.device)
        self.rope = rope_kind(self.model)
        log_rope(self.rope)
        self._prev: dict | None = None
        self._cur: dict | None = None
        self._pair: tuple | None = None  # (desc1, conf1, desc2, conf2) of (prev, cur)
        self._points: tuple | None = None  # (pts3d, conf) of cur, from the pass (cur, prev)
        self.timings: dict[str, float] = {}  # seconds of the last encoder / decoder run, for benchmarks

    def settings(self) -> dict:
        return {"max_error_px": self.max_error, "precision": self.precision}

    def _autocast(self):
        """Autocast for the encoder and the decoder under ``matcher.precision``; the heads run outside it in fp32
        (their input tokens are cast with ``.float()``), as upstream runs them."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return self.torch.autocast(self.device.type, dtype=self.amp_dtype)

    def reset(self) -> None:
        self._prev = self._cur = None
        self._pair = None
        self._points = None

    def _encode(self, image: np.ndarray) -> dict:
        import cv2  # noqa: PLC0415

        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise FrameError(f"MASt3R expects an H x W x 3 uint8 RGB image, got {desc}")
        h, w = image.shape[:2]
        if h == 0 or w == 0:
            raise FrameError("MASt3R got an empty image")
        mw, mh = model_size(w, h)
        interp = cv2.INTER_AREA if mw < w else cv2.INTER_CUBIC
        small = cv2.resize(image, (mw, mh), interpolation=interp)
        torch = self.torch
        # upstream's ImgNorm: [0, 1] then normalised with mean 0.5 and std 0.5
        x = torch.from_numpy(np.ascontiguousarray(small)).to(self.device).permute(2, 0, 1)[None].float()
        x = x.div(255.0).sub(0.5).div(0.5)
        true_shape = torch.tensor([[mh, mw]], device=self.device)
        t = time.perf_counter()
        with torch.inference_mode(), self._autocast():
            feat, pos, _ = self.model._encode_image(x, true_shape)
        self.timings["encode"] = time.perf_counter() - t
        scale = np.array([mw / w, mh / h], dtype=np.float64)
        return {"feat": feat, "pos": pos, "shape": true_shape, "scale": scale}

    def push(self, image: np.ndarray) -> None:
        """Encode ``image`` (H x W x 3 uint8 RGB) once; it becomes the current frame, the old one the previous."""
        enc = self._encode(image)
        self._prev, self._cur = self._cur, enc
        self._pair = None
        self._points = None

    def _decode_pair(self):
        torch = self.torch
        a, b = self._prev, self._cur
        t = time.perf_counter()
        with torch.inference_mode():
            with self._autocast():
                dec1, dec2 = self.model._decoder(a["feat"], a["pos"], b["feat"], b["pos"])
            res1 = self.model._downstream_head(1, [tok.float() for tok in dec1], a["shape"])
            res2 = self.model._downstream_head(2, [tok.float() for tok in dec2], b["shape"])
        self.timings["decode"] = time.perf_counter() - t
        mode = self.model.desc_conf_mode
        return (
            res1["desc"][0], desc_confidence(res1["desc_conf"][0], mode),
            res2["desc"][0], desc_confidence(res2["desc_conf"][0], mode),
        )

    def prepare(self) -> None:
        """Run the pair's decoder and heads now (the tracker's matcher thread, while the segmenter encodes)."""
        if self._prev is not None and self._pair is None:
            self._pair = self._decode_pair()

    def point_map(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The newest frame's 3D points from MASt3R's first head on the pair (newest, previous); see the module
        docstring for the frame and the scale. ``(h x w x 3 float32, h x w float32 confidence >= 1)`` at the model
        resolution, or None before the first push. Costs one decoder and head pass, once per frame."""
        if self._cur is None:
            return None
        if self._points is None:
            torch = self.torch
            a = self._cur
            b = self._prev if self._prev is not None else self._cur
            t = time.perf_counter()
            with torch.inference_mode():
                with self._autocast():
                    dec1, _ = self.model._decoder(a["feat"], a["pos"], b["feat"], b["pos"])
                res = self.model._downstream_head(1, [tok.float() for tok in dec1], a["shape"])
            self.timings["point_map"] = time.perf_counter() - t
            self._points = (
                res["pts3d"][0].float().cpu().numpy().astype(np.float32),
                res["conf"][0].float().cpu().numpy().astype(np.float32),
            )
        return self._points

    def carry(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        if self._prev is None:
            return points.copy(), np.zeros(points.shape[0], np.float32)
        if self._pair is None:
            self._pair = self._decode_pair()
        desc1, conf1, desc2, conf2 = self._pair
        t = time.perf_counter()
        with self.torch.inference_mode():
            pts2, conf = match_points(
                desc1, conf1, desc2, conf2, to_model(points, self._prev["scale"]), self.max_error
            )
        self.timings["match"] = time.perf_counter() - t
        return to_frame(pts2, self._cur["scale"]).astype(np.float32), conf
