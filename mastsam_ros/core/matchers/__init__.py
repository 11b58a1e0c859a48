"""Matcher backends, looked up by ``matcher.backend``."""

from __future__ import annotations

from ..config import MatcherSection
from .base import MATCHERS, Matcher


@MATCHERS.register("flow")
def _flow(cfg: MatcherSection) -> Matcher:
    from .flow import FlowMatcher

    return FlowMatcher(cfg)


@MATCHERS.register("xfeat")
def _xfeat(cfg: MatcherSection) -> Matcher:
    from .xfeat import XFeatMatcher

    return XFeatMatcher(cfg)


@MATCHERS.register("mast3r")
def _mast3r(cfg: MatcherSection) -> Matcher:
    from .mast3r import Mast3rMatcher

    return Mast3rMatcher(cfg)


@MATCHERS.register("cadence")
def _cadence(cfg: MatcherSection) -> Matcher:
    from .cadence import CadenceMatcher

    return CadenceMatcher(cfg)


def build_matcher(cfg: MatcherSection) -> Matcher:
    return MATCHERS.build(cfg.backend, cfg)


__all__ = ["MATCHERS", "Matcher", "build_matcher"]
