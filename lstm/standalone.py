"""Standalone inference for an exported model: needs only numpy, torch and the standard library.

`lstm.export` copies this file, unchanged, into every export package as `predict.py`, so a
package runs without this project installed (requirements.txt names torch and numpy only).
It mirrors `lstm.model.LSTMModel`, `lstm.features.encode` and the intervals of
`lstm.forecaster.Forecaster.predict_raw`; tests/lstm/test_export.py checks that its forecasts
equal the library's on the same input, so the two cannot drift apart unnoticed.

    import predict
    model = predict.load(".")                 # the export folder; SHA-256 of files checked
    result = model.predict({"value": [...], "ts": [...], "<exogenous>": [...]})

or from a shell: `python predict.py input.json` (the same dict as JSON) prints the result.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import torch
from torch import nn

WEIGHTS = "model_weights.pth"
SCALER_FEATURES = "scaler_features.json"
SCALER_TARGET = "scaler_target.json"
METADATA = "model_metadata.json"
TARGET_KEYS = ("value", "requests_target")
TIME_KEYS = ("ts", "timestamp")
NS_PER_DAY = 86_400 * 10**9
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Network(nn.Module):
    """The state_dict layout of lstm.model.LSTMModel: LSTM encoder, context adapter, MLP."""

    def __init__(self, arch: Mapping) -> None:
        super().__init__()
        self.horizon, self.context_size = int(arch["horizon"]), int(arch["context_size"])
        self.future_size = int(arch["future_size"])
        self.naive_skip = bool(arch.get("naive_skip", False))  # older models had none
        layers = int(arch["num_layers"])
        self.lstm = nn.LSTM(
            int(arch["input_size"]),
            int(arch["hidden_size"]),
            layers,
            dropout=float(arch["dropout"]) if layers > 1 else 0.0,
            batch_first=True,
        )
        self.context = nn.Linear(int(arch["hidden_size"]), self.context_size * self.horizon)
        self.decoder = nn.Sequential(
            nn.Linear(self.context_size + self.future_size, int(arch["decoder_hidden"])),
            nn.ReLU(),
            nn.Linear(int(arch["decoder_hidden"]), 1),
        )

    def forward(self, x: torch.Tensor, fut: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)
        ctx = self.context(h[:, -1]).view(x.shape[0], self.horizon, self.context_size)
        if self.future_size:
            ctx = torch.cat([ctx, fut], dim=-1)
        out = self.decoder(ctx).squeeze(-1)
        return out + x[:, -1, :1] if self.naive_skip else out


def calendar(slot: np.ndarray, freq_ns: int, names) -> np.ndarray:
    """Calendar features (UTC) of slot numbers, shape slot.shape + (len(names),)."""
    ns = np.asarray(slot, dtype=np.int64) * np.int64(freq_ns)
    day = np.floor_divide(ns, NS_PER_DAY)
    frac = (ns - day * NS_PER_DAY) / NS_PER_DAY
    dow = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    known = {
        "hour_sin": lambda: np.sin(2 * np.pi * frac),
        "hour_cos": lambda: np.cos(2 * np.pi * frac),
        "dow_sin": lambda: np.sin(2 * np.pi * (dow + frac) / 7),
        "dow_cos": lambda: np.cos(2 * np.pi * (dow + frac) / 7),
        "is_weekend": lambda: (dow >= 5).astype(np.float64),
    }
    cols = [known[n]() for n in names]
    return np.stack(cols, axis=-1) if cols else np.zeros(ns.shape + (0,))


def to_ns(ts) -> int:
    """A timestamp (datetime, ISO string or numpy datetime64) -> ns since the epoch; a naive
    one is taken to be UTC."""
    if isinstance(ts, np.datetime64):
        return int(ts.astype("datetime64[ns]").astype(np.int64))
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.strip().replace("Z", "+00:00"))
    if not isinstance(ts, datetime):
        raise ValueError(f"not a timestamp: {ts!r}")
    d = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    d = d - EPOCH
    return (d.days * 86_400 + d.seconds) * 10**9 + d.microseconds * 1000


def level_key(level: float) -> str:
    pct = level * 100
    return str(int(round(pct))) if abs(pct - round(pct)) < 1e-9 else f"{pct:g}"


def _key(data: Mapping, names: tuple[str, ...]):
    return next((k for k in names if k in data), None)


class Model:
    """An export package in memory: the network, the scalers, the intervals."""

    def __init__(self, metadata: Mapping, network: Network, features: Mapping, target: Mapping):
        spec = metadata["features"]
        self.window, self.horizon = int(spec["window"]), int(spec["horizon"])
        self.freq_ns = int(spec["freq_ns"])
        self.calendar = tuple(spec["calendar"])
        self.exog = tuple(spec["exog"])
        self.lags = tuple(int(v) for v in spec["lags"])
        self.use_level = bool(spec["use_level"])
        self.lags_in_window = bool(spec.get("lags_in_window", False))
        if target.get("kind", "log_window") != "log_window":
            raise ValueError(f"unknown target scaler {target.get('kind')!r}")
        self.min_scale, self.use_std = float(target["min_scale"]), bool(target["use_std"])
        if tuple(features["names"]) != self.exog:
            raise ValueError(f"feature scaler {features['names']} != features {list(self.exog)}")
        self.mean = np.asarray(features["mean"], dtype=np.float64)
        self.std = np.asarray(features["std"], dtype=np.float64)
        iv = metadata.get("intervals") or {"levels": [], "edges": [], "lo": [], "hi": []}
        self.levels = tuple(float(v) for v in iv["levels"])
        self.edges = np.asarray(iv["edges"], dtype=np.float64)
        self.lo, self.hi = np.asarray(iv["lo"], np.float64), np.asarray(iv["hi"], np.float64)
        self.network = network.eval()
        self.metadata = dict(metadata)

    @property
    def inputs(self) -> list[str]:
        """The keys an input dict needs: target values, timestamps, exogenous features."""
        return ["value", "ts", *self.exog]

    @property
    def history(self) -> int:
        """Target values that give every seasonal lag a real (not imputed) value."""
        return max((self.window, *self.lags))

    def _check(self, data: Mapping) -> tuple[np.ndarray, int]:
        missing = [n for n, k in zip(self.inputs, self._keys(data), strict=True) if k is None]
        if missing:
            raise ValueError(f"Missing features: {missing} (got {sorted(map(str, data))})")
        yk, tk, *_ = self._keys(data)
        for k in (yk, *self.exog):
            arr = np.asarray(data[k], dtype=np.float64)
            if arr.ndim != 1 or len(arr) < self.window or not np.isfinite(arr).all():
                raise ValueError(f"{k}: need >= {self.window} finite values, one per slot")
        y = np.asarray(data[yk], dtype=np.float64)
        if (y < 0).any():
            raise ValueError(f"{yk} must be >= 0 (a count)")
        ts = data[tk]
        last = ts if isinstance(ts, str | datetime | np.datetime64) else list(ts)[-1]
        return y, to_ns(last) // self.freq_ns

    def _keys(self, data: Mapping) -> list:
        return [
            _key(data, TARGET_KEYS),
            _key(data, TIME_KEYS),
            *(_key(data, (e,)) for e in self.exog),
        ]

    def predict(self, data: Mapping) -> dict:
        """Forecast one series from its latest values.

        data: {'value': [>= window values, oldest first; more history feeds the seasonal
        lags], 'ts': [their timestamps] (or only the last), '<exogenous>': [>= window]}.
        Returns issued_at, target_ts, forecast (H steps), intervals per level, prediction.
        """
        y, origin = self._check(data)
        w, h, n = self.window, self.horizon, len(y)
        ly = np.log1p(np.maximum(y[-w:][None, :], 0.0))
        loc = ly.mean(axis=1)
        scale = np.maximum(ly.std(axis=1), self.min_scale) if self.use_std else np.ones_like(loc)
        z = (ly - loc[:, None]) / scale[:, None]
        parts = [z[:, :, None]]
        if self.calendar:
            parts.append(calendar(origin + np.arange(-w + 1, 1), self.freq_ns, self.calendar)[None])
        if self.exog:
            ex = np.stack([np.asarray(data[e], np.float64)[-w:] for e in self.exog], axis=-1)
            parts.append(((ex - self.mean) / self.std)[None])
        zl = None
        if self.lags:
            raw = np.full((1, w + h, len(self.lags)), np.nan)
            for j, lag in enumerate(self.lags):
                pos = n - 1 + np.arange(-w + 1, h + 1) - lag
                raw[0, pos >= 0, j] = y[pos[pos >= 0]]
            zl = (np.log1p(np.maximum(raw, 0.0)) - loc.reshape(-1, 1, 1)) / scale.reshape(-1, 1, 1)
            fallback = np.concatenate([z, np.broadcast_to(z[:, -1:], (1, h))], axis=1)
            for j in np.argsort(self.lags):  # a missing lag: the next shorter one, then naive
                zl[:, :, j] = np.where(np.isnan(zl[:, :, j]), fallback, zl[:, :, j])
                fallback = zl[:, :, j]
            if self.lags_in_window:
                parts.append(zl[:, :w, :])
        if self.use_level:
            parts.append(np.broadcast_to((loc / 5.0)[:, None, None], (1, w, 1)))
        x = np.concatenate(parts, axis=-1).astype(np.float32)
        fparts = [] if zl is None else [zl[:, w:, :]]
        if self.calendar:
            fparts.append(calendar(origin + np.arange(1, h + 1), self.freq_ns, self.calendar)[None])
        fut = np.concatenate(fparts, axis=-1) if fparts else np.zeros((1, h, 0))
        with torch.inference_mode():
            zp = self.network(torch.from_numpy(x), torch.from_numpy(fut.astype(np.float32)))
        zp = zp.numpy()

        def inv(v):
            return np.maximum(np.expm1(v * scale[:, None] + loc[:, None]), 0.0)

        yhat = inv(zp.astype(np.float64))
        bins = np.searchsorted(self.edges, loc, side="right")
        intervals = {}
        for li, lv in enumerate(self.levels):
            lower = np.minimum(inv(zp + self.lo[li, bins]), yhat)[0].tolist()
            upper = np.maximum(inv(zp + self.hi[li, bins]), yhat)[0].tolist()
            intervals[level_key(lv)] = {"lower": lower, "upper": upper}
        step = timedelta(microseconds=self.freq_ns // 1000)
        stamp = [(EPOCH + (origin + s) * step).isoformat() for s in range(h + 1)]
        return {
            "issued_at": stamp[0],
            "target_ts": stamp[1:],
            "forecast": yhat[0].tolist(),
            "intervals": intervals,
            "prediction": float(yhat[0, 0]),
        }


def _read(folder: Path, name: str, hashes: Mapping) -> bytes:
    data = (folder / name).read_bytes()
    if hashlib.sha256(data).hexdigest() != hashes.get(name):
        raise ValueError(f"{name}: SHA-256 does not match {METADATA}; refusing to load it")
    return data


def load(folder: str | Path = ".") -> Model:
    """Load an export package; every file's SHA-256 is checked before it is read."""
    folder = Path(folder)
    md = json.loads((folder / METADATA).read_text())
    hashes = md.get("files") or {}
    features = json.loads(_read(folder, SCALER_FEATURES, hashes))
    target = json.loads(_read(folder, SCALER_TARGET, hashes))
    weights = _read(folder, WEIGHTS, hashes)
    net = Network(md["model_architecture"])
    net.load_state_dict(torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True))
    return Model(md, net, features, target)


if __name__ == "__main__":  # python predict.py input.json [export folder]
    model = load(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parent)
    print(json.dumps(model.predict(json.loads(Path(sys.argv[1]).read_text())), indent=2))
