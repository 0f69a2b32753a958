"""The model registry: immutable versions, a champion pointer with its promotion history,
and the last-good fallback, over a small storage backend.

`Registry` holds the logic (ids, metadata, hashes verified on every load, promotion
history, fallback); a backend only keeps bytes and a pointer (`RegistryBackend`):

* `ModelRegistry(root)`: a folder (`lstm.registry_folder.FolderBackend`), the embedded
  default: versions/<version>/ artifact folders and a champion.json pointer;
* any object with the same methods, e.g. `storage.SqlRegistryBackend` (SQLite,
  PostgreSQL, MariaDB/MySQL tables; one transaction per save and per promotion), composed
  by `tasks.common.get_registry` from a URL. `lstm` never imports it: the backend is
  handed in.

Whatever the backend, a version is saved whole or not at all, every load checks every
file's SHA-256 before anything is deserialised (a mismatch names the file and the
version), and a promotion appends to the history in the same step that moves the pointer.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from lstm.artifacts import (
    FORMAT_FILES,
    METADATA,
    build_metadata,
    decode_artifact,
    encode_artifact,
    verify_artifact,
)
from lstm.errors import ArtifactError
from lstm.export import export_model_and_scalers_for_api
from lstm.files import parse_json
from lstm.forecaster import Forecaster
from lstm.registry_folder import (
    CHAMPION,
    HISTORY_KEPT,
    TEMP_MAX_AGE_S,
    FolderBackend,
    history_entries,
)

log = logging.getLogger(__name__)

__all__ = [
    "CHAMPION",
    "HISTORY_KEPT",
    "TEMP_MAX_AGE_S",
    "ModelRegistry",
    "Registry",
    "RegistryBackend",
    "check_version",
    "new_version_id",
]

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


class RegistryBackend(Protocol):
    """Where a registry keeps its bytes. Versions are immutable sets of named files;
    the pointer is {"version", "promoted_at", "history": [{"version", "at", "reason"}]}."""

    #: "folder", "sqlite", "postgres", "mysql" (for messages and benchmarks)
    kind: str

    @property
    def where(self) -> str:
        """The registry's location for messages (passwords masked)."""
        ...

    def key(self) -> str:
        """A string that identifies this registry (the in-process model cache's key)."""
        ...

    def location(self, version: str) -> str:
        """Where one version lives, for messages (names the version)."""
        ...

    def write_version(self, version: str, files: Mapping[str, bytes]) -> None:
        """Store a new version's files: all of them or, on any failure, none."""
        ...

    def read_version(self, version: str) -> dict[str, bytes] | None:
        """The files of a version as stored (None when the version does not exist)."""
        ...

    def read_file(self, version: str, name: str) -> bytes | None:
        """One file of a version (None when it does not exist)."""
        ...

    def list_versions(self) -> list[str]:
        """Every complete version, sorted."""
        ...

    def read_pointer(self) -> object | None:
        """The champion pointer as stored (None when nothing was ever promoted)."""
        ...

    def move_pointer(self, version: str, at: str, reason: str) -> None:
        """Point at `version` and append {version, at, reason} to the history, in one
        atomic step that a concurrent promotion cannot overwrite."""
        ...

    def cleanup(self, now: float | None = None) -> int:
        """Remove what interrupted writes left (by age, never by process id); the count."""
        ...


class Registry:
    """Immutable model versions and a champion pointer, over any `RegistryBackend`."""

    def __init__(self, backend: RegistryBackend) -> None:
        self.backend = backend

    @property
    def where(self) -> str:
        return self.backend.where

    @property
    def kind(self) -> str:
        return self.backend.kind

    def key(self) -> str:
        return self.backend.key()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where})"

    # ------------------------------------------------------------------ versions
    def save(self, forecaster: Forecaster, metrics: Mapping | None = None, **extra) -> str:
        """Register a new version; it appears whole or not at all. Returns its id."""
        self.cleanup()
        version = new_version_id()
        metadata = build_metadata(
            forecaster, metrics, version=version, created_at=datetime.now(UTC).isoformat(), **extra
        )
        files, metadata = encode_artifact(forecaster, metadata)
        self.backend.write_version(version, files)
        forecaster.metadata = metadata
        log.info("registered model version %s in %s", version, self.where)
        return version

    def versions(self) -> list[str]:
        return self.backend.list_versions()

    def _missing(self, version: str) -> ArtifactError:
        return ArtifactError(
            f"model version {version!r} does not exist in {self.where}; "
            f"known: {self.versions()[-5:]}"
        )

    def files(self, version: str) -> dict[str, bytes]:
        """The stored files of a version, unverified (`verify` checks them)."""
        files = self.backend.read_version(check_version(version))
        if files is None:
            raise self._missing(version)
        return files

    def verify(self, version: str) -> dict:
        """Check every file of `version` against its hashes; return its metadata."""
        return verify_artifact(self.files(version), self.backend.location(version))

    def metadata(self, version: str) -> dict:
        """The metadata of a version as stored (for listings; `load` verifies)."""
        data = self.backend.read_file(check_version(version), METADATA)
        if data is None:
            raise self._missing(version)
        md = parse_json(data, METADATA)
        if not isinstance(md, dict):
            raise ArtifactError(f"{METADATA} of {self.backend.location(version)} is not an object")
        return md

    def load(self, version: str | None = None) -> Forecaster:
        """Load `version` (default: the champion), verified before deserialising."""
        version = version or self.champion()
        if version is None:
            raise ArtifactError(f"no champion model in {self.where}: run `forecast train` first")
        return decode_artifact(self.files(version), self.backend.location(version))

    def export(self, version: str, export_dir: str | Path) -> dict:
        """The seed's export package of any version (from the verified bytes)."""
        files = self.files(version)
        forecaster = decode_artifact(files, self.backend.location(version))
        weights = FORMAT_FILES[forecaster.metadata["format_version"]][0]
        return export_model_and_scalers_for_api(
            files[weights],
            forecaster.feature_scaler,
            forecaster.target_scaler,
            forecaster.metadata,
            export_dir,
        )

    # ------------------------------------------------------------------ champion
    def _pointer(self) -> dict | None:
        data = self.backend.read_pointer()
        if data is None:
            return None
        if not isinstance(data, dict):
            raise ArtifactError(f"the champion pointer in {self.where} is not an object: {data!r}")
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
            raise ArtifactError(
                f"the champion pointer ({CHAMPION}) in {self.where} is malformed: {exc}"
            ) from None

    def history(self) -> list[dict]:
        """Promotions, oldest first: {"version", "at", "reason"} (malformed entries dropped)."""
        try:
            return history_entries(self._pointer())
        except ArtifactError:
            return []

    def promote(self, version: str, reason: str = "") -> None:
        """Make `version` the champion (one atomic step, history included); the old one
        stays loadable. The version must verify and load first."""
        self.load(check_version(version))  # verified and loadable, or refused here
        self.backend.move_pointer(version, datetime.now(UTC).isoformat(), reason)
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

    def cleanup(self, now: float | None = None) -> int:
        """What interrupted saves left behind (folder: temporary files older than the
        bound; SQL: nothing, an interrupted transaction leaves nothing)."""
        return self.backend.cleanup(now)


class ModelRegistry(Registry):
    """The folder registry: a folder of immutable model versions and an atomically
    replaced champion pointer (see `lstm.registry_folder`)."""

    backend: FolderBackend

    def __init__(self, root: str | Path, temp_max_age_s: float = TEMP_MAX_AGE_S) -> None:
        super().__init__(FolderBackend(root, temp_max_age_s))

    @property
    def root(self) -> Path:
        return self.backend.root

    @property
    def versions_dir(self) -> Path:
        return self.backend.versions_dir

    @property
    def temp_max_age_s(self) -> float:
        return self.backend.temp_max_age_s

    def path(self, version: str) -> Path:
        return self.versions_dir / check_version(version)
