"""The seed's export package of a model, one folder that runs on its own:

    model_weights.pth     the network's state_dict
    scaler_features.json  the scalers as plain JSON (what predict.py reads)
    scaler_target.json
    scaler_features.pkl   the same dicts as joblib dumps (the seed's format, for old readers)
    scaler_target.pkl
    model_metadata.json   architecture, features, intervals, metrics, SHA-256 of every file
    predict.py            the inference code (a copy of lstm/standalone.py: numpy + torch)
    requirements.txt      torch and numpy, pinned: nothing of this project, so `pip install
                          -r` can never fetch a stranger's package of the same name
    README.md             a worked example that runs as written

The `.pkl` files exist only here; the registry itself holds no pickle.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import lstm.standalone as standalone
from lstm.artifacts import forecaster_from_parts, library_versions, load_model_weights, load_scalers
from lstm.errors import ArtifactError
from lstm.features import FeatureScaler, TargetScaler
from lstm.files import json_bytes, read_json, sha256_file
from lstm.forecaster import Forecaster
from lstm.intervals import level_key
from lstm.model import LSTMConfig, LSTMModel

METADATA = "model_metadata.json"
PREDICT = "predict.py"
#: the files of a package, by the keys `export_model_and_scalers_for_api` returns
FILES = {
    "model_weights": standalone.WEIGHTS,
    "scaler_features": "scaler_features.pkl",
    "scaler_target": "scaler_target.pkl",
    "scaler_features_json": standalone.SCALER_FEATURES,
    "scaler_target_json": standalone.SCALER_TARGET,
    "metadata": METADATA,
    "predict": PREDICT,
    "requirements": "requirements.txt",
    "readme": "README.md",
}


def export_model_and_scalers_for_api(
    model_path: str | Path | bytes,
    scaler_features: FeatureScaler,
    scaler_target: TargetScaler,
    metadata: Mapping,
    export_dir: str | Path = "./models_export",
) -> dict:
    """Write the package (see the module doc). Built in a temp folder, then moved into
    place; refuses to overwrite a non-empty folder."""
    export_path = Path(export_dir)
    if export_path.exists() and any(export_path.iterdir()):
        raise ArtifactError(f"export folder {str(export_path)!r} is not empty; choose a new one")
    export_path.parent.mkdir(parents=True, exist_ok=True)
    import joblib  # only the export package uses joblib (the seed's format)

    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=export_path.parent))
    try:
        if isinstance(model_path, bytes):  # verified bytes, e.g. from a database registry
            (tmp / "model_weights.pth").write_bytes(model_path)
        else:
            shutil.copyfile(model_path, tmp / "model_weights.pth")
        for name, obj in (
            ("scaler_features.pkl", scaler_features),
            ("scaler_target.pkl", scaler_target),
        ):
            joblib.dump(obj.to_dict(), tmp / name)
            (tmp / name).with_suffix(".json").write_bytes(json_bytes(obj.to_dict()))
        shutil.copyfile(standalone.__file__, tmp / PREDICT)
        (tmp / "requirements.txt").write_text(export_requirements())
        md = {k: v for k, v in dict(metadata).items() if k != "files"}
        hashed = sorted(set(FILES.values()) - {METADATA, "README.md"})
        md["files"] = {n: sha256_file(tmp / n) for n in hashed}
        (tmp / METADATA).write_bytes(json_bytes(md))
        (tmp / "README.md").write_text(_export_readme(md, scaler_features))
        if export_path.exists():
            export_path.rmdir()
        os.rename(tmp, export_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "export_dir": str(export_path),
        "files": {k: str(export_path / v) for k, v in FILES.items()},
    }


def export_requirements() -> str:
    """requirements.txt of a package: what predict.py imports, at the versions that wrote it
    (torch without its local label such as +cpu, which no index serves)."""
    versions = library_versions()
    return (
        "# what predict.py needs (this project itself is not needed)\n"
        f"torch=={versions['torch'].split('+')[0]}\nnumpy=={versions['numpy']}\n"
    )


def load_export(export_dir: str | Path) -> Forecaster:
    """Load an export package back into a Forecaster (hashes checked first). Reads the JSON
    scalers, or the `.pkl` ones of packages written before the JSON copies existed."""
    d = Path(export_dir)
    md = read_json(d / METADATA)
    files = md.get("files") or {}
    model = LSTMModel(LSTMConfig.from_dict(md["model_architecture"]))
    load_model_weights(model, d / standalone.WEIGHTS, expected_sha256=files.get(standalone.WEIGHTS))
    ext = ".json" if standalone.SCALER_FEATURES in files else ".pkl"
    fs, ts = load_scalers(
        d / f"scaler_features{ext}", d / f"scaler_target{ext}", expected_sha256=files
    )
    return forecaster_from_parts(model.eval(), fs, ts, md)


def _export_readme(md: Mapping, scaler_features: FeatureScaler) -> str:
    arch = md.get("model_architecture", {})
    feats = md.get("features", {})
    metrics = md.get("evaluation_metrics") or {}
    window, lags = int(feats.get("window", 12)), [int(v) for v in feats.get("lags", [])]
    step_s = int(feats.get("freq_ns", 300 * 10**9)) // 10**9
    n = max([window, *lags]) + window
    means = dict(zip(scaler_features.names, scaler_features.mean.tolist(), strict=True))
    exog = [
        f"    {name!r}: [{means.get(name, 0.0):.6g}] * {window},  # exogenous: latest {window} values"
        for name in feats.get("exog", [])
    ]
    levels = [level_key(v) for v in (md.get("intervals") or {}).get("levels", [])]
    lines = [
        "# LSTM forecasting model package",
        "",
        f"Version `{md.get('version', 'unversioned')}`, built {md.get('created_at', '')}.",
        "This folder runs on its own: `predict.py` is the inference code and needs only",
        "`torch` and `numpy` (Python >= 3.11); the project that trained the model is not needed.",
        "",
        "```bash",
        "pip install -r requirements.txt",
        "```",
        "",
        "Files: `model_weights.pth` (PyTorch state_dict), `scaler_features.json` and",
        "`scaler_target.json` (the scalers; `.pkl` copies written with joblib for older",
        "readers), `model_metadata.json` (architecture, features, interval calibration,",
        "metrics, SHA-256 of every file), `predict.py`, `requirements.txt`.",
        "",
        "## Use",
        "",
        "Run in this folder (it imports `predict.py` from here); the input needs every",
        f"feature the model was trained on: {['value', 'ts', *feats.get('exog', [])]}.",
        "",
        "```python",
        "import math",
        "from datetime import UTC, datetime, timedelta",
        "",
        "import predict",
        "",
        "model = predict.load('.')  # checks the SHA-256 of every file first",
        f"n = {n}  # the window ({window}) plus the longest seasonal lag ({max(lags, default=0)})",
        "last = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # timestamp of the latest value",
        "data = {",
        "    'value': [100 + 40 * math.sin(2 * math.pi * i / 288) for i in range(n)],  # oldest first",
        f"    'ts': [last - timedelta(seconds={step_s} * (n - 1 - i)) for i in range(n)],",
        *exog,
        "}",
        "result = model.predict(data)",
        "print(result['issued_at'], result['forecast'])",
        "for level, band in result['intervals'].items():  # levels " + ", ".join(levels),
        "    print(level, band['lower'][0], band['upper'][0])",
        "```",
        "",
        "Or from a shell: `python predict.py input.json` with the same dict as JSON",
        "(timestamps as ISO strings). With the training project installed,",
        "`lstm.export.load_export(folder)` loads this package as an `lstm.Forecaster`.",
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
