"""Model artifacts: weights, scalers, metadata; a versioned registry with a champion pointer;
the seed's export package.

Safety rules, all tested:
- every file's SHA-256 is recorded (metadata JSON and a SHA256SUMS file) and checked before
  anything is deserialised; a mismatch names the file;
- weights are a `state_dict` loaded on CPU with `torch.load(weights_only=True)`;
- scalers are plain dicts written with joblib and read back by an unpickler that refuses
  every global, so even a file with matching hashes cannot run code;
- a version folder is written under a temporary name and renamed into place; the champion
  pointer is replaced with os.replace: a crash leaves the old state whole.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import platform
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
import torch

from lstm.errors import ArtifactError
from lstm.features import FeatureScaler, FeatureSpec, TargetScaler
from lstm.forecaster import Forecaster
from lstm.intervals import ConformalIntervals
from lstm.model import LSTMConfig, LSTMModel

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS = "model_weights.pt"
SCALER_FEATURES = "scaler_features.joblib"
SCALER_TARGET = "scaler_target.joblib"
METADATA = "model_metadata.json"
SUMS = "SHA256SUMS"
CHAMPION = "champion.json"


# ------------------------------------------------------------------------- small helpers
def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name lets a later cleanup tell a crashed writer's leftovers
    # from a file another live process is writing right now
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
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


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default).encode()


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple | set):
        return list(o)
    return str(o)


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickles plain containers and scalars only; any class or function is refused."""

    def find_class(self, module, name):  # noqa: D401
        raise ArtifactError(
            f"refusing to unpickle {module}.{name}: scaler files may only hold plain values"
        )


def _safe_unpickle(path: Path):
    with open(path, "rb") as f:
        try:
            return _NoGlobalsUnpickler(f).load()
        except ArtifactError:
            raise
        except Exception as exc:
            raise ArtifactError(f"{path.name}: not a readable scaler file ({exc})") from exc


def library_versions() -> dict:
    import pandas
    import sklearn

    try:
        from importlib.metadata import version

        own = version("lstm-forecast")
    except Exception:
        own = "unknown"
    return {
        "lstm_forecast": own,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "scikit_learn": sklearn.__version__,
    }


# ------------------------------------------------------------------------ seed API: files
def save_model_weights(model: torch.nn.Module, filepath: str | Path) -> Path:
    """Save the model's state_dict (tensors only) atomically."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(filepath, buf.getvalue())
    return Path(filepath)


def load_model_weights(
    model: torch.nn.Module,
    filepath: str | Path,
    device: str = "cpu",
    expected_sha256: str | None = None,
) -> torch.nn.Module:
    """Load a state_dict into `model` with weights_only=True (no code can run), on CPU."""
    filepath = Path(filepath)
    if not filepath.exists():
        raise ArtifactError(f"weights file {str(filepath)!r} does not exist")
    if expected_sha256 is not None:
        _check_hash(filepath, expected_sha256)
    try:
        state = torch.load(filepath, map_location=device or "cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(
            f"{filepath.name}: refused to load weights ({type(exc).__name__}: {str(exc)[:300]})"
        ) from exc
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ArtifactError(
            f"{filepath.name}: weights do not fit the model ({str(exc)[:300]})"
        ) from exc
    return model


def save_scalers(
    scaler_features: FeatureScaler, scaler_target: TargetScaler, output_dir: str | Path = "models"
) -> dict[str, Path]:
    """Write both scalers as plain dicts with joblib (atomically); returns their paths."""
    output_dir = Path(output_dir)
    paths = {
        "features_scaler_path": output_dir / SCALER_FEATURES,
        "target_scaler_path": output_dir / SCALER_TARGET,
    }
    for key, obj in (
        ("features_scaler_path", scaler_features.to_dict()),
        ("target_scaler_path", scaler_target.to_dict()),
    ):
        buf = io.BytesIO()
        joblib.dump(obj, buf)
        atomic_write_bytes(paths[key], buf.getvalue())
    return paths


def load_scalers(
    features_scaler_path: str | Path,
    target_scaler_path: str | Path,
    expected_sha256: Mapping[str, str] | None = None,
) -> tuple[FeatureScaler, TargetScaler]:
    """Read scalers written by save_scalers; hashes checked first when given."""
    fpath, tpath = Path(features_scaler_path), Path(target_scaler_path)
    for p in (fpath, tpath):
        if not p.exists():
            raise ArtifactError(f"scaler file {str(p)!r} does not exist")
        if expected_sha256 is not None and p.name in expected_sha256:
            _check_hash(p, expected_sha256[p.name])
    try:
        features = FeatureScaler.from_dict(_safe_unpickle(fpath))
        target = TargetScaler.from_dict(_safe_unpickle(tpath))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"scaler files hold unexpected content ({exc})") from exc
    return features, target


def _check_hash(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ArtifactError(
            f"{path.name}: SHA-256 mismatch in {str(path.parent)!r} (expected {expected[:12]}..., "
            f"found {actual[:12]}...): the file was modified or corrupted; refusing to load it"
        )


def build_metadata(forecaster: Forecaster, metrics: Mapping | None = None, **extra) -> dict:
    """Everything needed to rebuild and judge the model, as JSON-ready data."""
    md = dict(forecaster.metadata)
    md.update(
        format_version=FORMAT_VERSION,
        model_name="lstm_forecast",
        frequency=f"{forecaster.spec.freq_ns // 10**9}s",
        model_architecture=forecaster.model.config.to_dict(),
        features=forecaster.spec.to_dict(),
        feature_names={
            "input": forecaster.spec.input_names,
            "future": forecaster.spec.future_names,
        },
        intervals=forecaster.intervals.to_dict() if forecaster.intervals else None,
        evaluation_metrics=dict(metrics or md.get("evaluation_metrics") or {}),
        library_versions=library_versions(),
        inference_config={
            "window": forecaster.spec.window,
            "horizon": forecaster.spec.horizon,
            "expected_input_shape": [None, forecaster.spec.window, forecaster.spec.input_size],
            "output_shape": [None, forecaster.spec.horizon],
            "device": "cpu",
        },
    )
    md.update(extra)
    return md


def save_model_metadata(
    model: LSTMModel | Forecaster,
    scaler_features: FeatureScaler | None = None,
    scaler_target: TargetScaler | None = None,
    eval_result: Mapping | None = None,
    model_path: str | Path | None = None,
    metadata_path: str | Path = "models/model_metadata.json",
) -> dict:
    """Write the metadata JSON (atomically) and return it. `model` may be a Forecaster
    (full metadata) or a bare LSTMModel (architecture and metrics only, as the seed did)."""
    metrics = dict((eval_result or {}).get("metrics", eval_result or {}))
    if isinstance(model, Forecaster):
        md = build_metadata(model, metrics)
    else:
        md = {
            "format_version": FORMAT_VERSION,
            "model_architecture": model.config.to_dict(),
            "evaluation_metrics": metrics,
            "library_versions": library_versions(),
        }
    if scaler_features is not None:
        md["scaler_info"] = {
            "features": scaler_features.to_dict(),
            "target": (scaler_target or TargetScaler()).to_dict(),
        }
    md["timestamp"] = datetime.now(UTC).isoformat()
    if model_path is not None:
        md["model_weights_path"] = str(model_path)
        if Path(model_path).exists():
            md.setdefault("files", {})[Path(model_path).name] = sha256_file(model_path)
    atomic_write_bytes(metadata_path, _json_bytes(md))
    return md


def forecaster_from_parts(
    model: LSTMModel, scaler_features: FeatureScaler, scaler_target: TargetScaler, metadata: dict
) -> Forecaster:
    """Reassemble a Forecaster from the seed-style pieces and its metadata."""
    try:
        spec = FeatureSpec.from_dict(metadata["features"])
        intervals = (
            ConformalIntervals.from_dict(metadata["intervals"])
            if metadata.get("intervals")
            else None
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"metadata lacks the feature spec or intervals ({exc})") from exc
    return Forecaster(spec, model, scaler_target, scaler_features, intervals, metadata)


def load_production_model(
    model_weights_path: str | Path, metadata_path: str | Path | None = None, device: str = "cpu"
) -> tuple[LSTMModel, dict]:
    """Rebuild the model from its metadata and load its weights (hash checked when the
    metadata records one). Returns (model in eval mode, metadata)."""
    model_weights_path = Path(model_weights_path)
    metadata_path = Path(metadata_path) if metadata_path else model_weights_path.parent / METADATA
    if not metadata_path.exists():
        raise ArtifactError(f"metadata file {str(metadata_path)!r} does not exist")
    metadata = _read_json(metadata_path)
    expected = (metadata.get("files") or {}).get(model_weights_path.name)
    model = LSTMModel(LSTMConfig.from_dict(metadata["model_architecture"]))
    load_model_weights(model, model_weights_path, device, expected_sha256=expected)
    model.eval()
    return model, metadata


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path.name}: not readable JSON ({exc})") from exc


# ------------------------------------------------------------------------------ versions
def new_version_id(now: datetime | None = None) -> str:
    """Sortable, unique: 20261127T224500Z-1a2b3c."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def write_version_dir(forecaster: Forecaster, target: Path, metadata: dict) -> dict:
    """Write all files of one version into `target` (a fresh folder) and return metadata."""
    target.mkdir(parents=True, exist_ok=False)
    save_model_weights(forecaster.model, target / WEIGHTS)
    save_scalers(forecaster.feature_scaler, forecaster.target_scaler, target)
    files = {name: sha256_file(target / name) for name in (WEIGHTS, SCALER_FEATURES, SCALER_TARGET)}
    metadata = {**metadata, "files": files}
    atomic_write_bytes(target / METADATA, _json_bytes(metadata))
    sums = {**files, METADATA: sha256_file(target / METADATA)}
    atomic_write_bytes(
        target / SUMS, "".join(f"{h}  {n}\n" for n, h in sorted(sums.items())).encode()
    )
    return metadata


def verify_version_dir(path: Path) -> dict:
    """Check every file against SHA256SUMS and the metadata's hashes; return the metadata.

    Runs before anything in the folder is deserialised.
    """
    if not path.is_dir():
        raise ArtifactError(f"model version folder {str(path)!r} does not exist")
    sums_path = path / SUMS
    if not sums_path.exists():
        raise ArtifactError(f"{SUMS} missing in {str(path)!r}: incomplete or foreign artifact")
    expected = {}
    try:
        for line in sums_path.read_text().splitlines():
            if line.strip():
                digest, name = line.split(None, 1)
                expected[name.strip()] = digest
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{SUMS} in {str(path)!r} is malformed ({exc})") from exc
    required = {WEIGHTS, SCALER_FEATURES, SCALER_TARGET, METADATA}
    if not required <= set(expected):
        raise ArtifactError(f"{SUMS} in {str(path)!r} lacks {sorted(required - set(expected))}")
    for name in sorted(required):
        if not (path / name).exists():
            raise ArtifactError(f"{name} missing in {str(path)!r}")
        _check_hash(path / name, expected[name])
    metadata = _read_json(path / METADATA)
    for name, digest in (metadata.get("files") or {}).items():
        if expected.get(name) != digest:
            raise ArtifactError(
                f"{name}: hash in {METADATA} disagrees with {SUMS} in {str(path)!r}"
            )
    fmt = metadata.get("format_version")
    if fmt is None or int(fmt) > FORMAT_VERSION:
        raise ArtifactError(
            f"{str(path)!r} has artifact format {fmt}; this library reads formats <= {FORMAT_VERSION}"
        )
    return metadata


def load_forecaster(path: str | Path) -> Forecaster:
    """Verify a version folder, then load it on CPU."""
    path = Path(path)
    metadata = verify_version_dir(path)
    files = metadata["files"]
    model = LSTMModel(LSTMConfig.from_dict(metadata["model_architecture"]))
    load_model_weights(model, path / WEIGHTS, "cpu", expected_sha256=files[WEIGHTS])
    fs, ts = load_scalers(path / SCALER_FEATURES, path / SCALER_TARGET, expected_sha256=files)
    return forecaster_from_parts(model.eval(), fs, ts, metadata)


def _pid_alive(pid: str) -> bool:
    """Whether process `pid` (from a temp file name) still runs; unknown -> not alive."""
    try:
        n = int(pid)
    except ValueError:
        return False
    if n == os.getpid():
        return True  # this process: maybe a save in another thread (its own failures clean up)
    try:
        os.kill(n, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ModelRegistry:
    """A folder of immutable model versions and an atomically replaced champion pointer.

    root/versions/<version>/{model_weights.pt, scaler_*.joblib, model_metadata.json, SHA256SUMS}
    root/champion.json  {"version": ..., "promoted_at": ..., "history": [...]}
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"

    def save(self, forecaster: Forecaster, metrics: Mapping | None = None, **extra) -> str:
        """Register a new version; it appears whole or not at all. Returns its id."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self.cleanup()
        version = new_version_id()
        metadata = build_metadata(
            forecaster, metrics, version=version, created_at=datetime.now(UTC).isoformat(), **extra
        )
        tmp = self.versions_dir / f".tmp-{os.getpid()}-{version}"
        try:
            write_version_dir(forecaster, tmp, metadata)
            os.rename(tmp, self.versions_dir / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(self.versions_dir)
        forecaster.metadata = {
            **metadata,
            "files": _read_json(self.versions_dir / version / METADATA)["files"],
        }
        log.info("registered model version %s in %s", version, self.root)
        return version

    def cleanup(self) -> int:
        """Remove temp folders and files left by a crashed save or promotion.

        Only leftovers of processes that are gone are removed; a save in progress in
        another live process is left alone. Runs before every save and in every predict run.
        """
        removed = 0
        candidates = []
        if self.versions_dir.exists():
            candidates += [(p, p.name.split("-")[1]) for p in self.versions_dir.glob(".tmp-*")]
        if self.root.exists():
            candidates += [(p, p.name.split(".")[3]) for p in self.root.glob(f".{CHAMPION}.*.tmp")]
        for path, pid in candidates:
            if _pid_alive(pid):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed += 1
        if removed:
            log.warning(
                "removed %d temporary file(s) left by an interrupted save in %s", removed, self.root
            )
        return removed

    def versions(self) -> list[str]:
        if not self.versions_dir.exists():
            return []
        return sorted(
            p.name for p in self.versions_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def path(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise ArtifactError(f"invalid model version {version!r}")
        return self.versions_dir / version

    def metadata(self, version: str) -> dict:
        path = self.path(version) / METADATA
        if not path.exists():
            raise ArtifactError(
                f"model version {version!r} not found in {str(self.root)!r}; "
                f"known: {self.versions()[-5:]}"
            )
        return _read_json(path)

    def champion(self) -> str | None:
        pointer = self.root / CHAMPION
        if not pointer.exists():
            return None
        return _read_json(pointer).get("version")

    def promote(self, version: str, reason: str = "") -> None:
        """Make `version` the champion (atomic pointer swap); the old one stays loadable."""
        verify_version_dir(self.path(version))
        pointer = self.root / CHAMPION
        history = _read_json(pointer).get("history", []) if pointer.exists() else []
        history.append({"version": version, "at": datetime.now(UTC).isoformat(), "reason": reason})
        atomic_write_bytes(
            pointer,
            _json_bytes(
                {"version": version, "promoted_at": history[-1]["at"], "history": history[-50:]}
            ),
        )
        log.info("champion is now %s (%s)", version, reason or "promoted")

    def load(self, version: str | None = None) -> Forecaster:
        """Load `version` (default: the champion), verified before deserialising."""
        version = version or self.champion()
        if version is None:
            raise ArtifactError(f"no champion model in {str(self.root)!r}: train one first")
        return load_forecaster(self.path(version))

    def export(self, version: str, export_dir: str | Path) -> dict:
        """The seed's export package of any version."""
        forecaster = self.load(version)
        path = self.path(version)
        return export_model_and_scalers_for_api(
            path / WEIGHTS,
            forecaster.feature_scaler,
            forecaster.target_scaler,
            forecaster.metadata,
            export_dir,
        )


# ------------------------------------------------------------------------------- export
def export_model_and_scalers_for_api(
    model_path: str | Path,
    scaler_features: FeatureScaler,
    scaler_target: TargetScaler,
    metadata: Mapping,
    export_dir: str | Path = "./models_export",
) -> dict:
    """Write the seed's package: model_weights.pth, scaler_features.pkl, scaler_target.pkl,
    model_metadata.json, requirements.txt, README.md. Built in a temp folder, then moved
    into place; refuses to overwrite a non-empty folder."""
    export_path = Path(export_dir)
    if export_path.exists() and any(export_path.iterdir()):
        raise ArtifactError(f"export folder {str(export_path)!r} is not empty; choose a new one")
    export_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=export_path.parent))
    try:
        shutil.copyfile(model_path, tmp / "model_weights.pth")
        for name, obj in (
            ("scaler_features.pkl", scaler_features),
            ("scaler_target.pkl", scaler_target),
        ):
            joblib.dump(obj.to_dict(), tmp / name)
        md = {k: v for k, v in dict(metadata).items() if k != "files"}
        md["files"] = {
            n: sha256_file(tmp / n)
            for n in ("model_weights.pth", "scaler_features.pkl", "scaler_target.pkl")
        }
        (tmp / "model_metadata.json").write_bytes(_json_bytes(md))
        versions = library_versions()
        (tmp / "requirements.txt").write_text(
            f"lstm-forecast=={versions['lstm_forecast']}\ntorch=={versions['torch'].split('+')[0]}\n"
            f"numpy=={versions['numpy']}\npandas=={versions['pandas']}\n"
            f"scikit-learn=={versions['scikit_learn']}\n"
        )
        (tmp / "README.md").write_text(_export_readme(md))
        if export_path.exists():
            export_path.rmdir()
        os.rename(tmp, export_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = {
        "model_weights": "model_weights.pth",
        "scaler_features": "scaler_features.pkl",
        "scaler_target": "scaler_target.pkl",
        "metadata": "model_metadata.json",
        "requirements": "requirements.txt",
        "readme": "README.md",
    }
    return {
        "export_dir": str(export_path),
        "files": {k: str(export_path / v) for k, v in files.items()},
    }


def load_export(export_dir: str | Path) -> Forecaster:
    """Load an export package back into a Forecaster (hashes checked first)."""
    d = Path(export_dir)
    md = _read_json(d / "model_metadata.json")
    files = md.get("files") or {}
    model = LSTMModel(LSTMConfig.from_dict(md["model_architecture"]))
    load_model_weights(
        model, d / "model_weights.pth", expected_sha256=files.get("model_weights.pth")
    )
    fs, ts = load_scalers(d / "scaler_features.pkl", d / "scaler_target.pkl", expected_sha256=files)
    return forecaster_from_parts(model.eval(), fs, ts, md)


def _export_readme(md: Mapping) -> str:
    arch = md.get("model_architecture", {})
    feats = md.get("features", {})
    metrics = md.get("evaluation_metrics") or {}
    lines = [
        "# LSTM forecasting model package",
        "",
        f"Version `{md.get('version', 'unversioned')}`, built {md.get('created_at', '')}.",
        "",
        "Files: `model_weights.pth` (PyTorch state_dict), `scaler_features.pkl` and",
        "`scaler_target.pkl` (plain dicts written with joblib), `model_metadata.json`",
        "(architecture, features, interval calibration, metrics, SHA-256 of every file).",
        "",
        "## Use",
        "```python",
        "from lstm.artifacts import load_export",
        "from lstm import real_time_predict",
        "forecaster = load_export('.')   # checks the SHA-256 of every file first",
        "result = real_time_predict(forecaster, data_dict={",
        f"    'value': [...],   # at least {feats.get('window', 12)} latest values, oldest first",
        "    'ts': [...],      # their timestamps (UTC)",
        "}, return_confidence=True)",
        "print(result['forecast'], result['intervals'])",
        "```",
        "",
        "## Model",
        f"- window {feats.get('window')} x {arch.get('input_size')} features -> "
        f"LSTM {arch.get('num_layers')} x {arch.get('hidden_size')} -> {arch.get('horizon')} steps",
        f"- lags {feats.get('lags')}, calendar {feats.get('calendar')}, exogenous {feats.get('exog')}",
        "",
        "## Metrics",
    ]
    lines += [
        f"- {k}: {v:.4g}" if isinstance(v, int | float) else f"- {k}: {v}"
        for k, v in metrics.items()
    ]
    return "\n".join(lines) + "\n"
