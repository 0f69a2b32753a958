"""File primitives for artifacts: hashes, atomic writes, JSON, and a no-code unpickler.

A file is written to a uniquely named temporary file beside its target (never a process
id in the name: an id means nothing in another container sharing the folder), fsynced,
and renamed over the target, so a reader sees the old file or the new one, never a part.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from lstm.errors import ArtifactError

TMP_SUFFIX = ".tmp"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def temp_name(target: str) -> str:
    """A hidden, unique name for a temporary file or folder beside `target`."""
    return f".{target}.{uuid.uuid4().hex}{TMP_SUFFIX}"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / temp_name(path.name)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # artifacts are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (best effort where the OS does not allow it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, default=_json_default).encode()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple | set):
        return list(o)
    return str(o)


def parse_json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{name}: not readable JSON ({exc})") from exc


def read_json(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path.name}: cannot be read ({exc})") from exc
    return parse_json(data, path.name)


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickles plain containers and scalars only; any class or function is refused."""

    def find_class(self, module: str, name: str):  # noqa: D401
        raise ArtifactError(
            f"refusing to unpickle {module}.{name}: scaler files may only hold plain values"
        )


def safe_unpickle(data: bytes, name: str) -> Any:
    """Plain values from a pickle (legacy format-1 scalers, the seed's export package);
    a file that names any class or function is refused before it can run code."""
    try:
        return _NoGlobalsUnpickler(io.BytesIO(data)).load()
    except ArtifactError:
        raise
    except Exception as exc:
        raise ArtifactError(f"{name}: not a readable scaler file ({exc})") from exc
