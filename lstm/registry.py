"""The model registry: immutable versions, a champion pointer with its promotion history,
and the last-good fallback. The only code that knows the registry's layout:

    root/versions/<version>/   one artifact folder per version (see lstm.artifacts)
    root/champion.json         {"version": ..., "promoted_at": ..., "history": [...]}

A version is written under a hidden temporary name and renamed into place; the pointer is
replaced with os.replace: a crash leaves the old state whole. Leftovers of a crashed save
are removed only once they are older than `temp_max_age_s` (default 6 hours, far above
any save's duration), so a cleanup started anywhere (another process, container or
machine sharing the folder) never removes a save that may still be running.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from lstm.artifacts import METADATA, build_metadata, load_forecaster, write_version_dir
from lstm.errors import ArtifactError
from lstm.export import export_model_and_scalers_for_api
from lstm.files import TMP_SUFFIX, atomic_write_bytes, fsync_dir, json_bytes, read_json, temp_name
from lstm.forecaster import Forecaster

log = logging.getLogger(__name__)

CHAMPION = "champion.json"
HISTORY_KEPT = 50
TEMP_MAX_AGE_S = 6 * 3600.0
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def new_version_id(now: datetime | None = None) -> str:
    """Sortable, unique: 20261127T224500Z-1a2b3c."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def check_version(version: object) -> str:
    """A version id as stored in the registry (no path separators, no hidden names)."""
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ArtifactError(
            f"invalid model version {version!r} ({type(version).__name__}): expected an id "
            "such as 20261127T224500Z-1a2b3c"
        )
    return version


class ModelRegistry:
    """A folder of immutable model versions and an atomically replaced champion pointer."""

    def __init__(self, root: str | Path, temp_max_age_s: float = TEMP_MAX_AGE_S) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.temp_max_age_s = temp_max_age_s

    # ------------------------------------------------------------------ versions
    def save(self, forecaster: Forecaster, metrics: Mapping | None = None, **extra) -> str:
        """Register a new version; it appears whole or not at all. Returns its id."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self.cleanup()
        version = new_version_id()
        metadata = build_metadata(
            forecaster, metrics, version=version, created_at=datetime.now(UTC).isoformat(), **extra
        )
        tmp = self.versions_dir / temp_name(version)
        try:
            metadata = write_version_dir(forecaster, tmp, metadata)
            os.rename(tmp, self.versions_dir / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self.versions_dir)
        forecaster.metadata = metadata
        log.info("registered model version %s in %s", version, self.root)
        return version

    def versions(self) -> list[str]:
        if not self.versions_dir.exists():
            return []
        return sorted(
            p.name for p in self.versions_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def path(self, version: str) -> Path:
        return self.versions_dir / check_version(version)

    def metadata(self, version: str) -> dict:
        path = self.path(version) / METADATA
        if not path.exists():
            raise ArtifactError(
                f"model version {version!r} not found in {str(self.root)!r}; "
                f"known: {self.versions()[-5:]}"
            )
        return read_json(path)

    def load(self, version: str | None = None) -> Forecaster:
        """Load `version` (default: the champion), verified before deserialising."""
        version = version or self.champion()
        if version is None:
            raise ArtifactError(
                f"no champion model in {str(self.root)!r}: run `forecast train` first"
            )
        return load_forecaster(self.path(version))

    def export(self, version: str, export_dir: str | Path) -> dict:
        """The seed's export package of any version."""
        forecaster = self.load(version)
        return export_model_and_scalers_for_api(
            self.path(version) / "model_weights.pt",
            forecaster.feature_scaler,
            forecaster.target_scaler,
            forecaster.metadata,
            export_dir,
        )

    # ------------------------------------------------------------------ champion
    def _pointer(self) -> dict | None:
        pointer = self.root / CHAMPION
        if not pointer.exists():
            return None
        data = read_json(pointer)
        if not isinstance(data, dict):
            raise ArtifactError(f"{CHAMPION} in {str(self.root)!r} is not a JSON object: {data!r}")
        return data

    def champion(self) -> str | None:
        """The champion's version (None when there is none). A malformed pointer is an
        ArtifactError naming what it holds, so callers can fall back and say why."""
        data = self._pointer()
        if data is None:
            return None
        try:
            return check_version(data.get("version"))
        except ArtifactError as exc:
            raise ArtifactError(f"{CHAMPION} in {str(self.root)!r} is malformed: {exc}") from None

    def history(self) -> list[dict]:
        """Promotions, oldest first: {"version", "at", "reason"} (malformed entries dropped)."""
        try:
            data = self._pointer() or {}
        except ArtifactError:
            return []
        entries = data.get("history")
        if not isinstance(entries, list):
            return []
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("version"), str)]

    def promote(self, version: str, reason: str = "") -> None:
        """Make `version` the champion (atomic pointer swap); the old one stays loadable."""
        load_forecaster(self.path(version))  # verified and loadable, or refused here
        history = self.history()
        history.append({"version": version, "at": datetime.now(UTC).isoformat(), "reason": reason})
        history = history[-HISTORY_KEPT:]
        atomic_write_bytes(
            self.root / CHAMPION,
            json_bytes({"version": version, "promoted_at": history[-1]["at"], "history": history}),
        )
        log.info("champion is now %s (%s)", version, reason or "promoted")

    def last_good(self, exclude: Iterable[str] = ()) -> tuple[Forecaster, str] | None:
        """The most recent earlier champion that still verifies and loads (skipping
        `exclude`), else the newest version that was promoted when it was registered."""
        skip = set(exclude)
        candidates = [e["version"] for e in reversed(self.history())]
        for v in reversed(self.versions()):
            try:
                if (self.metadata(v).get("decision") or {}).get("promote"):
                    candidates.append(v)
            except ArtifactError:
                continue
        for v in dict.fromkeys(candidates):
            if v in skip:
                continue
            try:
                return self.load(v), v
            except ArtifactError as exc:
                log.warning("earlier champion %s cannot be loaded either: %s", v, exc)
        return None

    # ------------------------------------------------------------------ clean-up
    def cleanup(self, now: float | None = None) -> int:
        """Remove temporary files and folders left by a crashed save or promotion, once
        they are older than `temp_max_age_s` (a younger one may be a save in progress)."""
        now = time.time() if now is None else now
        removed = 0
        for folder in (self.versions_dir, self.root):
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if not (entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX)):
                    continue
                try:
                    age = now - entry.stat().st_mtime
                except FileNotFoundError:
                    continue  # finished (renamed) or removed meanwhile
                if age < self.temp_max_age_s:
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed += 1
        if removed:
            log.warning(
                "removed %d temporary file(s) older than %.0f s left by an interrupted save in %s",
                removed,
                self.temp_max_age_s,
                self.root,
            )
        return removed
