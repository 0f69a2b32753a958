"""Model artifacts: the files of one model version, and the seed's file API around them.

An artifact is five files (held in a folder, or as bytes in a database row):
    model_weights.pt      the network's state_dict (tensors only)
    scaler_features.json  exogenous-feature scaler (plain JSON)
    scaler_target.json    target scaler settings (plain JSON)
    model_metadata.json   architecture, features, intervals, training data, metrics,
                          library versions and the SHA-256 of the three files above
    SHA256SUMS            the SHA-256 of all four files

Safety rules, all tested: every file's hash is checked before anything is deserialised
(a mismatch names the file); weights load on CPU with `torch.load(weights_only=True)`;
scalers are JSON (format 2). Format-1 artifacts (scalers written with joblib) still load:
their scaler files are read by an unpickler that refuses every class, so even a file with
matching hashes cannot run code.
"""

from __future__ import annotations

import io
import logging
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from lstm.errors import ArtifactError
from lstm.features import FeatureScaler, FeatureSpec, TargetScaler
from lstm.files import (
    atomic_write_bytes,
    json_bytes,
    parse_json,
    read_json,
    safe_unpickle,
    sha256_bytes,
    sha256_file,
)
from lstm.forecaster import Forecaster
from lstm.intervals import ConformalIntervals
from lstm.model import LSTMConfig, LSTMModel

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
WEIGHTS = "model_weights.pt"
SCALER_FEATURES = "scaler_features.json"
SCALER_TARGET = "scaler_target.json"
METADATA = "model_metadata.json"
SUMS = "SHA256SUMS"
#: scaler files of format 1 (joblib pickles of plain dicts)
LEGACY_SCALERS = ("scaler_features.joblib", "scaler_target.joblib")
#: the data files of each format (besides the metadata and SHA256SUMS)
FORMAT_FILES = {1: (WEIGHTS, *LEGACY_SCALERS), 2: (WEIGHTS, SCALER_FEATURES, SCALER_TARGET)}
#: this project's distribution name (pyproject.toml); "lstm-forecast" on PyPI is someone
#: else's. Its version is still recorded under the metadata key "lstm_forecast".
DISTRIBUTION = "lstm-forecast-sre"


def library_versions() -> dict:
    """Versions of what produced a model (read from package metadata: nothing imported)."""

    def of(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "unknown"

    return {
        "lstm_forecast": of(DISTRIBUTION),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": of("pandas"),
        "scikit_learn": of("scikit-learn"),
    }


# ------------------------------------------------------------------ seed API: files
def weights_bytes(model: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def save_model_weights(model: torch.nn.Module, filepath: str | Path) -> Path:
    """Save the model's state_dict (tensors only) atomically."""
    atomic_write_bytes(filepath, weights_bytes(model))
    return Path(filepath)


def load_weights_bytes(model: torch.nn.Module, data: bytes, name: str, device: str = "cpu"):
    """Load a state_dict from bytes with weights_only=True (no code can run)."""
    try:
        state = torch.load(io.BytesIO(data), map_location=device or "cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(
            f"{name}: refused to load weights ({type(exc).__name__}: {str(exc)[:300]})"
        ) from exc
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"{name}: weights do not fit the model ({str(exc)[:300]})") from exc
    return model


def load_model_weights(
    model: torch.nn.Module,
    filepath: str | Path,
    device: str = "cpu",
    expected_sha256: str | None = None,
) -> torch.nn.Module:
    """Load a state_dict into `model` with weights_only=True (no code can run), on CPU."""
    data = _read(Path(filepath), "weights")
    if expected_sha256 is not None:
        _check_hash(data, expected_sha256, Path(filepath).name, str(Path(filepath).parent))
    return load_weights_bytes(model, data, Path(filepath).name, device)


def save_scalers(
    scaler_features: FeatureScaler, scaler_target: TargetScaler, output_dir: str | Path = "models"
) -> dict[str, Path]:
    """Write both scalers as JSON (atomically); returns their paths."""
    output_dir = Path(output_dir)
    paths = {
        "features_scaler_path": output_dir / SCALER_FEATURES,
        "target_scaler_path": output_dir / SCALER_TARGET,
    }
    atomic_write_bytes(paths["features_scaler_path"], json_bytes(scaler_features.to_dict()))
    atomic_write_bytes(paths["target_scaler_path"], json_bytes(scaler_target.to_dict()))
    return paths


def load_scalers(
    features_scaler_path: str | Path,
    target_scaler_path: str | Path,
    expected_sha256: Mapping[str, str] | None = None,
) -> tuple[FeatureScaler, TargetScaler]:
    """Read scalers written by save_scalers (JSON, or format 1's joblib files); hashes are
    checked first when given."""
    out = []
    for p in (Path(features_scaler_path), Path(target_scaler_path)):
        data = _read(p, "scaler")
        if expected_sha256 is not None and p.name in expected_sha256:
            _check_hash(data, expected_sha256[p.name], p.name, str(p.parent))
        out.append(_scaler_dict(data, p.name))
    return _scalers(out[0], out[1])


def _scaler_dict(data: bytes, name: str) -> dict:
    return parse_json(data, name) if name.endswith(".json") else safe_unpickle(data, name)


def _scalers(features: dict, target: dict) -> tuple[FeatureScaler, TargetScaler]:
    try:
        return FeatureScaler.from_dict(features), TargetScaler.from_dict(target)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"scaler files hold unexpected content ({exc})") from exc


def _read(path: Path, what: str) -> bytes:
    if not path.exists():
        raise ArtifactError(f"{what} file {str(path)!r} does not exist")
    return path.read_bytes()


def _check_hash(data: bytes, expected: str, name: str, where: str) -> None:
    actual = sha256_bytes(data)
    if actual != expected:
        raise ArtifactError(
            f"{name}: SHA-256 mismatch in {where!r} (expected {str(expected)[:12]}..., found "
            f"{actual[:12]}...): the file was modified or corrupted; refusing to load it"
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
    atomic_write_bytes(metadata_path, json_bytes(md))
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
    metadata = read_json(metadata_path)
    expected = (metadata.get("files") or {}).get(model_weights_path.name)
    model = _network(metadata)
    load_model_weights(model, model_weights_path, device, expected_sha256=expected)
    return model.eval(), metadata


def _network(metadata: Mapping) -> LSTMModel:
    try:
        return LSTMModel(LSTMConfig.from_dict(metadata["model_architecture"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"metadata lacks a usable model_architecture ({exc})") from exc


# ------------------------------------------------------------ one version as bytes
def encode_artifact(forecaster: Forecaster, metadata: dict) -> tuple[dict[str, bytes], dict]:
    """The five files of a version, as bytes, and the metadata with the file hashes."""
    files = {
        WEIGHTS: weights_bytes(forecaster.model),
        SCALER_FEATURES: json_bytes(forecaster.feature_scaler.to_dict()),
        SCALER_TARGET: json_bytes(forecaster.target_scaler.to_dict()),
    }
    metadata = {**metadata, "files": {n: sha256_bytes(b) for n, b in files.items()}}
    files[METADATA] = json_bytes(metadata)
    sums = {n: sha256_bytes(b) for n, b in files.items()}
    files[SUMS] = "".join(f"{h}  {n}\n" for n, h in sorted(sums.items())).encode()
    return files, metadata


def verify_artifact(files: Mapping[str, bytes], where: str) -> dict:
    """Check every file against SHA256SUMS and the metadata's hashes; return the metadata.

    Runs before anything is deserialised; `where` names the folder or row in messages.
    """
    if SUMS not in files:
        raise ArtifactError(f"{SUMS} missing in {where!r}: incomplete or foreign artifact")
    expected = _parse_sums(files[SUMS], where)
    data_files = next((f for f in FORMAT_FILES.values() if set(f) <= set(expected)), None)
    if data_files is None:
        raise ArtifactError(
            f"{SUMS} in {where!r} lacks {sorted(set(FORMAT_FILES[FORMAT_VERSION]) - set(expected))}"
        )
    for name in sorted({*data_files, METADATA}):
        if name not in files:
            raise ArtifactError(f"{name} missing in {where!r}")
        _check_hash(files[name], expected.get(name, ""), name, where)
    metadata = parse_json(files[METADATA], METADATA)
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{METADATA} in {where!r} is not a JSON object")
    for name, digest in (metadata.get("files") or {}).items():
        if expected.get(name) != digest:
            raise ArtifactError(f"{name}: hash in {METADATA} disagrees with {SUMS} in {where!r}")
    fmt = metadata.get("format_version")
    if not isinstance(fmt, int) or fmt not in FORMAT_FILES:
        raise ArtifactError(
            f"{where!r} has artifact format {fmt!r}; this library reads formats "
            f"{sorted(FORMAT_FILES)} (<= {FORMAT_VERSION})"
        )
    if set(FORMAT_FILES[fmt]) != set(data_files):
        raise ArtifactError(f"{where!r}: its files do not match artifact format {fmt}")
    return metadata


def decode_artifact(files: Mapping[str, bytes], where: str) -> Forecaster:
    """Verify the files of a version, then load it on CPU."""
    metadata = verify_artifact(files, where)
    weights, sf, st = FORMAT_FILES[metadata["format_version"]]
    model = load_weights_bytes(_network(metadata), files[weights], weights)
    scalers = _scalers(_scaler_dict(files[sf], sf), _scaler_dict(files[st], st))
    return forecaster_from_parts(model.eval(), *scalers, metadata)


def _parse_sums(data: bytes, where: str) -> dict[str, str]:
    expected = {}
    try:
        for line in data.decode().splitlines():
            if line.strip():
                digest, name = line.split(None, 1)
                expected[name.strip()] = digest
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{SUMS} in {where!r} is malformed ({exc})") from exc
    return expected


# ------------------------------------------------------------- one version as a folder
def write_version_dir(forecaster: Forecaster, target: Path, metadata: dict) -> dict:
    """Write all files of one version into `target` (a fresh folder); return the metadata."""
    files, metadata = encode_artifact(forecaster, metadata)
    write_files_dir(files, target)
    return metadata


def write_files_dir(files: Mapping[str, bytes], target: Path) -> None:
    """Write the files of a version (from `encode_artifact`) into `target`, a new folder."""
    target.mkdir(parents=True, exist_ok=False)
    for name, data in files.items():
        atomic_write_bytes(target / name, data)


def read_version_dir(path: Path) -> dict[str, bytes]:
    """The files of a version folder (missing ones are reported by verify_artifact)."""
    if not path.is_dir():
        raise ArtifactError(f"model version folder {str(path)!r} does not exist")
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}


def verify_version_dir(path: Path) -> dict:
    """Check a version folder's files against their hashes; return its metadata."""
    return verify_artifact(read_version_dir(Path(path)), str(path))


def load_forecaster(path: str | Path) -> Forecaster:
    """Verify a version folder, then load it on CPU."""
    return decode_artifact(read_version_dir(Path(path)), str(path))
