"""The seed's export package of a model: model_weights.pth, scaler_features.pkl,
scaler_target.pkl, model_metadata.json, requirements.txt and README.md in one folder.

The `.pkl` files (joblib dumps of plain dicts, as the seed wrote them) exist only here;
the registry itself holds no pickle.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from lstm.artifacts import forecaster_from_parts, library_versions, load_model_weights, load_scalers
from lstm.errors import ArtifactError
from lstm.features import FeatureScaler, TargetScaler
from lstm.files import json_bytes, read_json, sha256_file
from lstm.forecaster import Forecaster
from lstm.model import LSTMConfig, LSTMModel


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
    import joblib  # only the export package uses joblib (the seed's format)

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
        (tmp / "model_metadata.json").write_bytes(json_bytes(md))
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
    md = read_json(d / "model_metadata.json")
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
