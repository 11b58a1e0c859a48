"""SAM (``segment_anything``: vit_h, vit_l, vit_b) and MobileSAM (``mobile_sam``: vit_t) behind one segmenter.

Both packages share the same ``Sam`` model layout (image encoder, prompt encoder, mask decoder), so one class serves
them. The architecture is built from the package's ``sam_model_registry`` without a checkpoint; the weights are then
loaded here with ``torch.load(..., weights_only=True)`` and ``load_state_dict(strict=True)`` so that a wrong file or
a wrong ``segmenter.model_type`` fails loudly instead of running a half-initialised model.

Images are ``H x W x 3`` ``uint8`` RGB (as ``SamPredictor`` expects with ``image_format="RGB"``); masks come back as
``H x W`` ``bool`` at the full frame resolution, or at the tracker's working size when it sets ``mask_shape`` (then a
prompted answer also gives itself at the frame size inside any box on demand, ``Proposal.fine``: its logits resampled
as ``postprocess_masks`` does, for the tracker's small tracks); points are pixel ``(x, y)`` with the origin at the
top-left pixel centre (SAM's own convention: its prompt encoder adds 0.5 to reach the pixel centre).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..config import SegmenterSection
from ..errors import BackendUnavailable, CheckpointError, ConfigError, FrameError, MastSamError
from ..types import PointPrompt, Proposal
from .base import Segmenter, grid_points

log = logging.getLogger(__name__)

#: Official checkpoint file names, by (package, model_type).
OFFICIAL_CHECKPOINTS = {
    ("segment_anything", "vit_h"): "sam_vit_h_4b8939.pth",
    ("segment_anything", "vit_l"): "sam_vit_l_0b3195.pth",
    ("segment_anything", "vit_b"): "sam_vit_b_01ec64.pth",
    ("mobile_sam", "vit_t"): "mobile_sam.pt",
}
SAM_SOURCE = (
    "the facebookresearch/segment-anything release "
    "(https://github.com/facebookresearch/segment-anything#model-checkpoints, "
    "https://dl.fbaipublicfiles.com/segment_anything/{name})"
)
MOBILE_SAM_SOURCE = (
    "ChaoningZhang/MobileSAM, weights/mobile_sam.pt "
    "(https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt)"
)
PIP_NAMES = {"segment_anything": "segment-anything==1.0", "mobile_sam": "mobilesam-mirror==1.0.0 timm"}


@dataclass(frozen=True)
class SamEmbedding:
    """One image's encoder output and the sizes that map prompts onto it (from :meth:`SamSegmenter.embed`)."""

    features: object  # torch tensor 1 x 256 x 64 x 64 float32, on the segmenter's device
    original_size: tuple[int, int]  # H, W of the frame
    input_size: tuple[int, int]  # H, W after the longest-side resize


def _import_package(package: str):
    """Import ``segment_anything`` or ``mobile_sam``; BackendUnavailable names the pip package when it is missing."""
    try:
        if package == "mobile_sam":
            import mobile_sam as pkg  # noqa: PLC0415 - heavy, optional
            from mobile_sam.utils import amg
            from mobile_sam.utils.transforms import ResizeLongestSide
        else:
            import segment_anything as pkg  # noqa: PLC0415
            from segment_anything.utils import amg
            from segment_anything.utils.transforms import ResizeLongestSide
    except ImportError as e:
        raise BackendUnavailable(
            f"segmenter backend needs the Python package '{package}', which failed to import ({e}); "
            f"install it with: pip install {PIP_NAMES[package]}"
        ) from e
    return pkg, amg, ResizeLongestSide


def _missing_checkpoint_message(package: str, model_type: str, path: str) -> str:
    name = OFFICIAL_CHECKPOINTS[(package, model_type)]
    source = MOBILE_SAM_SOURCE if package == "mobile_sam" else SAM_SOURCE.format(name=name)
    where = f"'{path}' does not exist" if path else "segmenter.checkpoint is empty"
    return (
        f"{package} {model_type} checkpoint not found: {where}. Set segmenter.checkpoint (ROS parameter / "
        f"--set segmenter.checkpoint=PATH / config/tracker.yaml) to the path of {name}; the official file comes from "
        f"{source}."
    )


def load_sam_model(package: str, model_type: str, checkpoint: str):
    """Build ``model_type`` from ``package``'s registry and load ``checkpoint`` strictly. Returns the model on CPU."""
    import torch  # noqa: PLC0415

    pkg, _, _ = _import_package(package)
    if model_type not in pkg.sam_model_registry or (package, model_type) not in OFFICIAL_CHECKPOINTS:
        allowed = sorted(m for p, m in OFFICIAL_CHECKPOINTS if p == package)
        raise ConfigError(f"{package} has no model_type '{model_type}'; choose one of: {', '.join(allowed)}")
    path = Path(checkpoint).expanduser() if checkpoint else None
    if path is None or not path.is_file():
        raise CheckpointError(_missing_checkpoint_message(package, model_type, checkpoint))

    model = pkg.sam_model_registry[model_type](checkpoint=None)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and weights_only errors all mean "not a usable state dict"
        raise CheckpointError(f"cannot read checkpoint '{path}' as a torch state dict (weights_only=True): {e}") from e
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # training checkpoints wrap the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint '{path}' is not a state dict of tensors")

    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint '{path}' does not match {package} {model_type} "
            f"({len(missing)} missing keys, e.g. {missing[:3]}; {len(unexpected)} unexpected keys, e.g. "
            f"{unexpected[:3]}); is segmenter.model_type right for this file "
            f"(official name: {OFFICIAL_CHECKPOINTS[(package, model_type)]})?"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # same keys, wrong shapes
        raise CheckpointError(f"checkpoint '{path}' does not fit {package} {model_type}: {e}") from e
    return model.eval()


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64: 1-D bilinear resampling as ``torch.nn.functional.interpolate(..., mode="bilinear",
    align_corners=False)`` does it along one axis (source index (i + 0.5) n_in / n_out - 0.5, clamped at 0)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.floor(src).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    a = src - i0
    out = np.zeros((n_out, n_in))
    np.add.at(out, (np.arange(n_out), i0), 1 - a)
    np.add.at(out, (np.arange(n_out), i1), a)
    return out


class _FrameAxis:
    """One axis of SAM's ``postprocess_masks`` (decoder side -> encoder input side, crop to the resized image, ->
    frame side, both bilinear) as one matrix, with the decoder rows each frame row reads (``lo``..``hi``)."""

    def __init__(self, side: int, img: int, used: int, frame: int):
        m = _bilinear_matrix(used, frame) @ _bilinear_matrix(side, img)[:used]
        self.matrix = m.astype(np.float32)
        nz = m != 0
        self.lo = np.argmax(nz, axis=1)
        self.hi = side - np.argmax(nz[:, ::-1], axis=1)  # exclusive


class _FrameLogits:
    """One prompted answer at the frame size inside a box, on demand (:attr:`Proposal.fine`): its decoder logits
    (side x side) resampled as ``postprocess_masks`` does, so the pixels equal SAM's own full-size answer there up to
    float rounding, at the cost of the box only."""

    __slots__ = ("_low", "_rows", "_cols", "_threshold")

    def __init__(self, low, rows: _FrameAxis, cols: _FrameAxis, threshold: float):
        self._low, self._rows, self._cols, self._threshold = low, rows, cols, threshold

    def __call__(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        if y1 <= y0 or x1 <= x0:
            return np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), bool)
        if not isinstance(self._low, np.ndarray) and self._low.device.type == "cpu":
            self._low = self._low.float().numpy()  # a view, no copy
        r, c = self._rows, self._cols
        r0, r1, c0, c1 = int(r.lo[y0]), int(r.hi[y1 - 1]), int(c.lo[x0]), int(c.hi[x1 - 1])
        low = self._low[r0:r1, c0:c1]
        if not isinstance(low, np.ndarray):  # on a GPU: only the cells the box reads come over
            low = low.float().cpu().numpy()
        logits = r.matrix[y0:y1, r0:r1] @ low @ c.matrix[x0:x1, c0:c1].T
        return logits > self._threshold


def _resolve_device(name: str):
    import torch  # noqa: PLC0415

    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"segmenter.device: '{name}' is not a torch device ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable(f"segmenter.device is '{name}' but torch sees no CUDA device; use 'cpu'")
    return device


class SamSegmenter(Segmenter):
    """SAM / MobileSAM: ``set_image`` runs the image encoder once; ``generate`` and ``predict`` only run the
    (cheap) prompt encoder and mask decoder on the stored embedding."""

    def __init__(self, model, cfg: SegmenterSection, *, package: str = "segment_anything", name: str = "sam"):
        import torch  # noqa: PLC0415

        self.torch = torch
        _, self.amg, resize_cls = _import_package(package)
        self.name = name
        self.cfg = cfg
        self.device = _resolve_device(cfg.device)
        self.half = bool(cfg.half_precision) and self.device.type == "cuda"
        if cfg.half_precision and not self.half:
            log.warning("segmenter.half_precision applies on CUDA only; running float32 on %s", self.device)
        self.model = model.to(self.device).eval()
        if self.half:
            # Only the encoder (the bulk of the cost) runs in float16; prompts and masks stay float32.
            self.model.image_encoder.half()
        self.transform = resize_cls(self.model.image_encoder.img_size)
        self._embedding = None  # 1 x 256 x 64 x 64 float32
        self._original_size: tuple[int, int] | None = None  # H, W of the frame
        self._input_size: tuple[int, int] | None = None  # H, W after the longest-side resize
        self._axes: dict = {}  # (decoder side, input size, frame size) -> the _FrameAxis of rows and of columns

    @classmethod
    def from_config(cls, cfg: SegmenterSection, mobile: bool = False) -> "SamSegmenter":
        package, model_type = ("mobile_sam", "vit_t") if mobile else ("segment_anything", cfg.model_type)
        model = load_sam_model(package, model_type, cfg.checkpoint)
        return cls(model, cfg, package=package, name="mobile_sam" if mobile else "sam")

    # --- image ------------------------------------------------------------------------------------------------
    embeds_ahead = True

    def embed(self, image: np.ndarray) -> "SamEmbedding":
        """Run the image encoder on ``image`` (H x W x 3 uint8 RGB: resized so its longest side is the encoder's,
        1024, then padded) without touching the current embedding, so it may run in another thread while the
        decoder answers prompts on the current one (inference mode is per thread; the model is only read)."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise FrameError(f"SAM expects an H x W x 3 uint8 RGB image, got {desc}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise FrameError("SAM got an empty image")
        torch = self.torch
        resized = self.transform.apply_image(image)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        with torch.inference_mode():
            x = self.model.preprocess(x.float())
            emb = self.model.image_encoder(x.half() if self.half else x).float()
        return SamEmbedding(emb, (int(image.shape[0]), int(image.shape[1])),
                            (int(resized.shape[0]), int(resized.shape[1])))

    def set_embedding(self, embedding: object) -> None:
        if not isinstance(embedding, SamEmbedding):
            raise MastSamError(f"{self.name}: set_embedding got {type(embedding).__name__}, not a SamEmbedding")
        self._embedding = embedding.features
        self._original_size = embedding.original_size
        self._input_size = embedding.input_size

    def set_image(self, image: np.ndarray) -> None:
        """Embed ``image`` and make it current: :meth:`embed`, then :meth:`set_embedding`."""
        self.set_embedding(self.embed(image))

    pools_embedding = True

    def pool_embedding(self, mask: np.ndarray) -> np.ndarray | None:
        """The current embedding averaged over ``mask`` (H x W bool at any size covering the frame, e.g. the
        tracker's working size): (256,) float32, or None when the mask covers no embedding cell. The encoder's grid
        (64 x 64 over the padded 1024-pixel input) covers the frame in its top-left part; the mask is brought to that
        part's cells by area, so each cell weighs by the share of it the mask covers."""
        if self._embedding is None:
            return None
        feats = self._embedding[0]  # C x G x G
        grid, img = feats.shape[-1], self.model.image_encoder.img_size
        h = max(1, min(grid, -(-self._input_size[0] * grid // img)))
        w = max(1, min(grid, -(-self._input_size[1] * grid // img)))
        weights = cv2.resize(np.asarray(mask, np.float32), (w, h), interpolation=cv2.INTER_AREA)
        total = float(weights.sum())
        if total <= 0:
            return None
        wt = self.torch.as_tensor(weights, device=feats.device)
        pooled = (feats[:, :h, :w] * wt).sum(dim=(1, 2)) / total
        return pooled.float().cpu().numpy()

    def _require_image(self) -> None:
        if self._embedding is None:
            raise MastSamError(f"{self.name}: call set_image before generate / predict")

    # --- decoding ---------------------------------------------------------------------------------------------
    def _decode(self, coords: np.ndarray, labels: np.ndarray):
        """All four mask tokens for a batch of prompts in one decoder call.

        ``coords`` (B, N, 2) float pixel x y in the original frame, ``labels`` (B, N) with -1 for padding.
        Returns low-res logits (B, 4, 256, 256) and predicted IoU (B, 4); token 0 is SAM's single-mask output,
        tokens 1-3 its multimask outputs.
        """
        torch = self.torch
        pts = self.transform.apply_coords(coords.astype(np.float32), self._original_size)
        pts_t = torch.as_tensor(pts, dtype=torch.float32, device=self.device)
        lab_t = torch.as_tensor(labels, dtype=torch.int64, device=self.device)
        sparse, dense = self.model.prompt_encoder(points=(pts_t, lab_t), boxes=None, masks=None)
        return self.model.mask_decoder.predict_masks(
            image_embeddings=self._embedding,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )

    def _upscale(self, low_res):
        """(B, C, 256, 256) logits -> (B, C, H, W) logits at the original frame size, or at ``mask_shape`` when the
        tracker set it: then the decoder's own resolution is kept (the part of its 256 x 256 output that covers the
        frame, resized only if ``mask_shape`` differs), never upscaled to the frame."""
        if self.mask_shape is None:
            return self.model.postprocess_masks(low_res, self._input_size, self._original_size)
        side = low_res.shape[-1]
        img = self.model.image_encoder.img_size
        h = min(side, -(-self._input_size[0] * side // img))
        w = min(side, -(-self._input_size[1] * side // img))
        low_res = low_res[..., :h, :w]
        if (h, w) != tuple(self.mask_shape):
            low_res = self.torch.nn.functional.interpolate(
                low_res, tuple(self.mask_shape), mode="bilinear", align_corners=False
            )
        return low_res

    def _stability(self, logits):
        return self.amg.calculate_stability_score(logits, self.model.mask_threshold, 1.0)

    # --- automatic masks --------------------------------------------------------------------------------------
    def seed_points(self, region: np.ndarray | None = None) -> np.ndarray:
        """The automatic-mode grid (``points_per_side``^2 pixel x y, (N, 2) float32), limited to ``region``."""
        self._require_image()
        if region is not None and np.shape(region) != self._original_size:
            raise MastSamError(f"region shape {np.shape(region)} does not match the image {self._original_size}")
        return grid_points(self._original_size, self.cfg.points_per_side, region)

    def generate(self, region: np.ndarray | None = None, seeds: np.ndarray | None = None) -> list[Proposal]:
        """Automatic masks from the stored embedding (no new encoder pass), like ``SamAutomaticMaskGenerator``
        without crops: every seed point is decoded with multimask output, then masks are kept when predicted IoU
        >= ``pred_iou_thresh`` and stability >= ``stability_score_thresh``, and box NMS at ``box_nms_thresh``
        removes duplicates. Sorted by score, best first."""
        self._require_image()
        torch = self.torch
        from torchvision.ops import batched_nms  # noqa: PLC0415

        points = self.seed_points(region) if seeds is None else np.asarray(seeds, np.float32).reshape(-1, 2)
        cfg = self.cfg
        masks, scores, stabs, probs = [], [], [], []
        with torch.inference_mode():
            for start in range(0, len(points), cfg.points_per_batch):
                batch = points[start : start + cfg.points_per_batch]
                low, iou = self._decode(batch[:, None, :], np.ones((len(batch), 1), dtype=np.int64))
                low, iou = low[:, 1:].flatten(0, 1), iou[:, 1:].flatten()  # the three multimask outputs
                keep = iou >= cfg.pred_iou_thresh  # cheap filter before upscaling to full resolution
                if not keep.any():
                    continue
                logits = self._upscale(low[keep][:, None])[:, 0]
                stab = self._stability(logits)
                keep2 = stab >= cfg.stability_score_thresh
                masks.append(logits[keep2] > self.model.mask_threshold)
                if self.mask_shape is not None:
                    probs.append(self._probability(logits[keep2]))
                scores.append(iou[keep][keep2])
                stabs.append(stab[keep2])
            if not masks:
                return []
            masks_t, scores_t, stabs_t = torch.cat(masks), torch.cat(scores), torch.cat(stabs)
            nonempty = masks_t.flatten(1).any(1)
            masks_t, scores_t, stabs_t = masks_t[nonempty], scores_t[nonempty], stabs_t[nonempty]
            if len(masks_t) == 0:
                return []
            boxes = self.amg.batched_mask_to_box(masks_t).float()
            keep = batched_nms(boxes, scores_t, torch.zeros_like(scores_t), iou_threshold=cfg.box_nms_thresh)
            # batched_nms returns indices sorted by decreasing score
            masks_np = masks_t[keep].cpu().numpy()
            scores_np, stabs_np = scores_t[keep].cpu().numpy(), stabs_t[keep].cpu().numpy()
            softs = list(torch.cat(probs)[nonempty][keep].cpu().numpy()) if probs else [None] * len(masks_np)
        return [
            Proposal(mask=m, score=float(np.clip(s, 0.0, 1.0)), stability=float(st), soft=p)
            for m, s, st, p in zip(masks_np, scores_np, stabs_np, softs)
        ]

    # --- prompted masks ---------------------------------------------------------------------------------------
    def predict(self, prompts: list[PointPrompt]) -> list[Proposal]:
        """One mask per prompt, all prompts decoded together (in batches of ``points_per_batch``).

        Prompts with different point counts are padded with label -1 points, which SAM's prompt encoder treats as
        "not a point". A prompt with a single point is ambiguous (part / object / group), so it takes SAM's best
        multimask output by predicted IoU; a prompt with several points takes the single-mask output, as SAM's
        authors recommend. With ``mask_shape`` set each answer keeps its decoder logits for ``Proposal.fine``
        (:class:`_FrameLogits`: nothing is computed unless the tracker asks for a box).
        """
        self._require_image()
        if not prompts:
            return []
        torch = self.torch
        h, w = self._original_size
        counts = []
        for i, p in enumerate(prompts):
            pts, lab = np.asarray(p.points), np.asarray(p.labels)
            if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0 or lab.shape != (len(pts),):
                raise MastSamError(
                    f"prompt {i}: points must be (N, 2) with N >= 1 and labels (N,), got {pts.shape} / {lab.shape}"
                )
            counts.append(len(pts))
        n_max = max(counts)
        coords = np.zeros((len(prompts), n_max, 2), dtype=np.float32)
        labels = np.full((len(prompts), n_max), -1, dtype=np.int64)
        for i, p in enumerate(prompts):
            coords[i, : counts[i]] = np.clip(np.asarray(p.points, dtype=np.float32), 0, [w - 1, h - 1])
            labels[i, : counts[i]] = np.asarray(p.labels, dtype=np.int64)
        single = torch.as_tensor(np.array(counts) == 1, device=self.device)

        out: list[Proposal] = []
        bs = self.cfg.points_per_batch
        with torch.inference_mode():
            for start in range(0, len(prompts), bs):
                low, iou = self._decode(coords[start : start + bs], labels[start : start + bs])
                best_multi = 1 + iou[:, 1:].argmax(1)
                pick = torch.where(single[start : start + bs], best_multi, torch.zeros_like(best_multi))
                rows = torch.arange(len(pick), device=self.device)
                picked = low[rows, pick]
                logits = self._upscale(picked[:, None])[:, 0]
                stab = np.nan_to_num(self._stability(logits).cpu().numpy())
                masks = (logits > self.model.mask_threshold).cpu().numpy()
                score = iou[rows, pick].cpu().numpy()
                if self.mask_shape is not None:
                    softs = list(self._probability(logits).cpu().numpy())
                    rows_axis, cols_axis = self._frame_axes(picked.shape[-1])
                    thr = float(self.model.mask_threshold)
                    fines = [_FrameLogits(picked[k], rows_axis, cols_axis, thr) for k in range(len(masks))]
                else:
                    softs = fines = [None] * len(masks)
                out.extend(
                    Proposal(mask=m, score=float(np.clip(s, 0.0, 1.0)), stability=float(st), soft=p, fine=f)
                    for m, s, st, p, f in zip(masks, score, stab, softs, fines)
                )
        return out

    def _frame_axes(self, side: int) -> tuple[_FrameAxis, _FrameAxis]:
        """The rows and columns of ``postprocess_masks`` for the current image size (made once per size)."""
        key = (side, self._input_size, self._original_size)
        if key not in self._axes:
            img = self.model.image_encoder.img_size
            (ih, iw), (fh, fw) = self._input_size, self._original_size
            self._axes[key] = (_FrameAxis(side, img, ih, fh), _FrameAxis(side, img, iw, fw))
        return self._axes[key]

    def _probability(self, logits):
        """Per-pixel probabilities (float32) of logits: what a :class:`Proposal`'s ``soft`` holds at the tracker's
        working size, for the published map's boundaries (at the frame size none is made: a full-size float map
        each)."""
        return self.torch.sigmoid(logits.float() - self.model.mask_threshold)
