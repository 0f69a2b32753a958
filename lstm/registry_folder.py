"""The folder backend of the model registry (the embedded default; `lstm.registry` holds
the logic over any backend). The only code that knows the folder's layout:

    root/versions/<version>/   one artifact folder per version (see lstm.artifacts)
    root/champion.json         {"version": ..., "promoted_at": ..., "history": [...]}
    root/.champion.lock        an flock held while the pointer is read and replaced

A version is written under a hidden, uniquely named temporary folder and renamed into
place; the pointer is replaced with os.replace: a crash leaves the old state whole.
Leftovers of a crashed save are removed only once they are older than `temp_max_age_s`
(default 6 hours, far above any save's duration): no process id is ever consulted, so a
cleanup started anywhere (another process, container or machine sharing the folder)
never removes a save that may still be running. Promotions hold an advisory `flock` on
`.champion.lock` while they read and replace the pointer, so two promotions at once keep
both history entries (the kernel drops the lock of a process that dies).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import lstm.artifacts as artifacts
from lstm.errors import ArtifactError
from lstm.files import TMP_SUFFIX, atomic_write_bytes, fsync_dir, json_bytes, read_json, temp_name

try:  # POSIX; elsewhere promotions are not serialised between processes
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

CHAMPION = "champion.json"
LOCK = ".champion.lock"
HISTORY_KEPT = 50
TEMP_MAX_AGE_S = 6 * 3600.0


def history_entries(pointer: object) -> list[dict]:
    """The promotion entries of a pointer, oldest first (malformed entries dropped)."""
    entries = pointer.get("history") if isinstance(pointer, dict) else None
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("version"), str)]


class FolderBackend:
    """Versions as folders and the champion as a JSON file, in one local (or shared) folder."""

    kind = "folder"

    def __init__(self, root: str | Path, temp_max_age_s: float = TEMP_MAX_AGE_S) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.temp_max_age_s = temp_max_age_s

    @property
    def where(self) -> str:
        return str(self.root)

    def key(self) -> str:
        """What identifies this registry (the model cache's key)."""
        return f"folder:{self.root.resolve()}"

    def location(self, version: str) -> str:
        return str(self.versions_dir / version)

    # ------------------------------------------------------------------ versions
    def write_version(self, version: str, files: Mapping[str, bytes]) -> None:
        """Write the files under a temporary name, then rename the folder into place."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.versions_dir / temp_name(version)
        try:
            artifacts.write_files_dir(files, tmp)
            os.rename(tmp, self.versions_dir / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self.versions_dir)

    def read_version(self, version: str) -> dict[str, bytes] | None:
        path = self.versions_dir / version
        return artifacts.read_version_dir(path) if path.is_dir() else None

    def read_file(self, version: str, name: str) -> bytes | None:
        path = self.versions_dir / version / name
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ArtifactError(f"{name} of {str(path.parent)!r} cannot be read ({exc})") from exc

    def list_versions(self) -> list[str]:
        if not self.versions_dir.exists():
            return []
        return sorted(
            p.name for p in self.versions_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    # ------------------------------------------------------------------ champion
    def read_pointer(self) -> object | None:
        """The pointer file's JSON as stored (None when there is none)."""
        pointer = self.root / CHAMPION
        if not pointer.exists():
            return None
        return read_json(pointer)

    def move_pointer(self, version: str, at: str, reason: str) -> None:
        """Append a promotion to the history and point at `version` (atomic replace,
        under the lock so that a concurrent promotion's entry is never lost)."""
        with self._locked():
            try:
                history = history_entries(self.read_pointer())
            except ArtifactError:  # an unreadable pointer: start a new history
                history = []
            history.append({"version": version, "at": at, "reason": reason})
            history = history[-HISTORY_KEPT:]
            atomic_write_bytes(
                self.root / CHAMPION,
                json_bytes({"version": version, "promoted_at": at, "history": history}),
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

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
