"""Name -> builder registries for backends (like segment_anything's ``sam_model_registry``).

Builders import their heavy dependencies when called, never at registration, so ``import mastsam_ros`` stays light
and a missing optional package only matters when its backend is chosen.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(builder: Callable[..., T]) -> Callable[..., T]:
            self._builders[name] = builder
            return builder

        return deco

    def names(self) -> list[str]:
        return sorted(self._builders)

    def build(self, name: str, *args, **kwargs) -> T:
        try:
            builder = self._builders[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} backend '{name}'; choose one of: {', '.join(self.names())}"
            ) from None
        return builder(*args, **kwargs)
