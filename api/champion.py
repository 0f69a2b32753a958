"""The model `/predict` runs on: the registry's champion, loaded once and swapped when the
champion pointer moves.

The pointer is one small JSON file (or row): reading it is cheap, so it is re-read at most
every FORECAST_API_CHAMPION_CHECK_S seconds (0: on every request). A new champion is loaded
and verified (SHA-256 of every file) before it replaces the old one; if it cannot be
loaded, the old model keeps serving and the refusal is kept for /healthz. Read-only: this
never cleans up or writes the registry.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from lstm import ArtifactError, Forecaster, Registry

log = logging.getLogger("api")


class NoChampion(RuntimeError):
    """No model can serve /predict (no champion yet, or it cannot be loaded)."""


@dataclass(frozen=True)
class Loaded:
    forecaster: Forecaster
    version: str


class ChampionHolder:
    """The current champion, thread-safe; `get()` is what a request calls."""

    def __init__(self, registry: Registry, check_s: float = 5.0) -> None:
        self.registry = registry
        self.check_s = check_s
        self._loaded: Loaded | None = None
        self._checked_at = -float("inf")
        self._lock = threading.Lock()
        self.error: str | None = None  # why the pointer's version is not the one serving
        self.loads = 0  # models loaded so far (the first, then one per champion change)

    def version(self) -> str | None:
        """The version serving now (None before the first successful load)."""
        loaded = self._loaded
        return None if loaded is None else loaded.version

    def get(self) -> Loaded:
        """The champion, re-checking the pointer when the last check is older than check_s."""
        loaded = self._loaded
        if loaded is not None and time.monotonic() - self._checked_at < self.check_s:
            return loaded
        with self._lock:
            if self._loaded is None or time.monotonic() - self._checked_at >= self.check_s:
                self._refresh()
            if self._loaded is None:
                raise NoChampion(self.error or "no champion model")
            return self._loaded

    def _refresh(self) -> None:
        self._checked_at = time.monotonic()
        try:
            version = self.registry.champion()
        except ArtifactError as exc:  # a malformed pointer: keep serving what we have
            self.error = str(exc)
            return
        if version is None:
            self.error = (
                f"no champion model in {str(self.registry.root)!r}: run `forecast train` "
                "(or `forecast promote VERSION`) first"
            )
            return
        if self._loaded is not None and self._loaded.version == version:
            self.error = None
            return
        try:
            forecaster = self.registry.load(version)
        except ArtifactError as exc:
            self.error = f"champion {version} cannot be loaded: {exc}"
            log.error("%s; still serving %s", self.error, self.version() or "nothing")
            return
        before = self.version()
        self._loaded = Loaded(forecaster, version)
        self.loads += 1
        self.error = None
        log.info("serving model %s (was %s)", version, before or "none")
