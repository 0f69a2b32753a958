"""Feature engineering: calendar features, scalers, and the encoder shared by training,
backtest and inference (so every path turns raw windows into tensors the same way).

Target scaling ("log_window"): z = (log1p(y) - loc) / scale with loc, scale taken from the
window itself. It needs no per-series state, so one global model serves series of any
level, including series it never saw; log1p keeps bursts of 100x from squashing the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from lstm.windows import RawWindows

CALENDAR_FEATURES = ("hour_sin", "hour_cos", "dow_sin", "dow_cos", "is_weekend")
NS_PER_DAY = 86_400 * 10**9


def lag_name(lag: int) -> str:
    return f"lag_{lag}"


def calendar_features(slot: np.ndarray, freq_ns: int, names: Sequence[str]) -> np.ndarray:
    """Calendar features (UTC) of slot numbers, shape slot.shape + (len(names),)."""
    ns = np.asarray(slot, dtype=np.int64) * np.int64(freq_ns)
    day = np.floor_divide(ns, NS_PER_DAY)
    day_frac = (ns - day * NS_PER_DAY) / NS_PER_DAY
    dow = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    cols = []
    for name in names:
        if name == "hour_sin":
            cols.append(np.sin(2 * np.pi * day_frac))
        elif name == "hour_cos":
            cols.append(np.cos(2 * np.pi * day_frac))
        elif name == "dow_sin":
            cols.append(np.sin(2 * np.pi * (dow + day_frac) / 7))
        elif name == "dow_cos":
            cols.append(np.cos(2 * np.pi * (dow + day_frac) / 7))
        elif name == "is_weekend":
            cols.append((dow >= 5).astype(np.float64))
        else:
            raise ValueError(f"unknown calendar feature {name!r}; known: {CALENDAR_FEATURES}")
    if not cols:
        return np.zeros(ns.shape + (0,))
    return np.stack(cols, axis=-1)


@dataclass
class TargetScaler:
    """Per-window log scaling of the target; stateless apart from its two settings."""

    min_scale: float = 0.1  # floor on the window's log-std, for flat windows
    use_std: bool = False  # divide by the window's log-std (else only centre it)

    def transform(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """y [B, W] -> (z [B, W], loc [B], scale [B])."""
        ly = np.log1p(np.maximum(y, 0.0))
        loc = ly.mean(axis=1)
        if self.use_std:
            scale = np.maximum(ly.std(axis=1), self.min_scale)
        else:
            scale = np.ones_like(loc)
        return (ly - loc[:, None]) / scale[:, None], loc, scale

    def apply(self, values: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Scale other values (lags, targets) [B, ...] with each window's loc and scale."""
        shape = (-1,) + (1,) * (values.ndim - 1)
        ly = np.log1p(np.maximum(values, 0.0))
        return (ly - loc.reshape(shape)) / scale.reshape(shape)

    def inverse_transform(self, z: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """z [B, ...] -> values on the original scale, never negative."""
        shape = (-1,) + (1,) * (z.ndim - 1)
        return np.maximum(np.expm1(z * scale.reshape(shape) + loc.reshape(shape)), 0.0)

    def to_dict(self) -> dict:
        return {"kind": "log_window", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> TargetScaler:
        return cls(min_scale=float(d["min_scale"]), use_std=bool(d["use_std"]))


@dataclass
class FeatureScaler:
    """Standardises exogenous features with training mean and std (global, not per series)."""

    names: tuple[str, ...] = ()
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    std: np.ndarray = field(default_factory=lambda: np.ones(0))

    def fit(self, names: Sequence[str], values: np.ndarray) -> FeatureScaler:
        self.names = tuple(names)
        values = np.asarray(values, dtype=np.float64)
        values = values.reshape(len(values), len(self.names))
        self.mean = values.mean(axis=0) if len(values) else np.zeros(len(self.names))
        std = values.std(axis=0) if len(values) else np.ones(len(self.names))
        self.std = np.where(std > 1e-12, std, 1.0)
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def to_dict(self) -> dict:
        return {"names": list(self.names), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureScaler:
        return cls(tuple(d["names"]), np.asarray(d["mean"], float), np.asarray(d["std"], float))


@dataclass(frozen=True)
class FeatureSpec:
    """Which features the model sees, fixed at training time and stored in the metadata.

    Input (per window step): z, the selected calendar features, the selected exogenous
    features, and the window level (loc). Future (per target step): the target `lag` slots
    earlier for each selected lag, and the selected calendar features of the target slot.
    """

    window: int = 12
    horizon: int = 12
    freq_ns: int = 300 * 10**9
    calendar: tuple[str, ...] = CALENDAR_FEATURES
    exog: tuple[str, ...] = ()
    lags: tuple[int, ...] = (288, 2016)
    use_level: bool = True
    lags_in_window: bool = True  # also feed each window step's lagged values to the encoder

    @property
    def input_size(self) -> int:
        n_lag = len(self.lags) if self.lags_in_window else 0
        return 1 + len(self.calendar) + len(self.exog) + n_lag + int(self.use_level)

    @property
    def future_size(self) -> int:
        return len(self.lags) + len(self.calendar)

    @property
    def input_names(self) -> list[str]:
        lagged = [f"{lag_name(lag)}_in" for lag in self.lags] if self.lags_in_window else []
        return ["z", *self.calendar, *self.exog, *lagged] + (["level"] if self.use_level else [])

    @property
    def future_names(self) -> list[str]:
        return [lag_name(lag) for lag in self.lags] + [f"{c}_target" for c in self.calendar]

    @property
    def history_needed(self) -> int:
        """Slots of history that give every feature a real (not imputed) value."""
        return max((self.window, *(lag for lag in self.lags)), default=self.window)

    def read_ranges(self, origin_slots: Sequence[int]) -> tuple[int, list[tuple[int, int]]]:
        """What a forecast from each origin slot reads, as (latest origin, merged inclusive
        (lo, hi) ranges of slot offsets back from it): the windows and the lag slots. A store
        reads exactly these rows in one query."""
        origins = np.unique(np.asarray(origin_slots, dtype=np.int64))
        last = int(origins[-1])
        back = last - origins
        ranges = [(int(b), int(b) + self.window - 1) for b in back]
        reach = self.window - 1 if self.lags_in_window else -1  # the lagged window steps too
        for lag in self.lags:
            ranges += [(int(b) + lag - self.horizon, int(b) + lag + reach) for b in back]
        ranges.sort()
        merged: list[list[int]] = []
        for lo, hi in ranges:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        return last, [(lo, hi) for lo, hi in merged]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["calendar"], d["exog"], d["lags"] = list(self.calendar), list(self.exog), list(self.lags)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        return cls(
            window=int(d["window"]),
            horizon=int(d["horizon"]),
            freq_ns=int(d["freq_ns"]),
            calendar=tuple(d["calendar"]),
            exog=tuple(d["exog"]),
            lags=tuple(int(v) for v in d["lags"]),
            use_level=bool(d["use_level"]),
            # specs written before the field existed fed lags to the decoder only
            lags_in_window=bool(d.get("lags_in_window", False)),
        )


@dataclass
class Encoded:
    """Model-ready arrays for B windows plus what is needed to undo the scaling."""

    x: np.ndarray  # [B, W, F_in] float32
    fut: np.ndarray  # [B, H, F_fut] float32
    loc: np.ndarray  # [B]
    scale: np.ndarray  # [B]
    z_target: np.ndarray | None = None  # [B, H] float32
    lags_imputed: int = 0


def _calendar_rows(origin_slot: np.ndarray, offsets: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Calendar features of `origin + offsets` per row [B, len(offsets), C], computed once
    per distinct origin (a predict run has one: every series shares it)."""
    origins, inverse = np.unique(origin_slot, return_inverse=True)
    cal = calendar_features(origins[:, None] + offsets, spec.freq_ns, spec.calendar)
    return cal[inverse.reshape(-1)]


def encode(
    raw: RawWindows,
    spec: FeatureSpec,
    target_scaler: TargetScaler,
    feature_scaler: FeatureScaler,
    exog_index: Sequence[int] | None = None,
) -> Encoded:
    """Raw windows -> scaled model inputs. A missing lag value falls back to the next
    shorter lag, then to the value it lags (for a target step: the last observed value, a
    seasonal-naive -> naive chain); imputed target-step lags are counted.

    `exog_index` picks the spec's exogenous columns out of raw.exog (default: the first E).
    """
    b, w = raw.y.shape
    z, loc, scale = target_scaler.transform(raw.y)  # [B, W], [B], [B]
    parts = [z[:, :, None]]
    if spec.calendar:
        parts.append(_calendar_rows(raw.origin_slot, np.arange(-w + 1, 1), spec))  # [B, W, C]
    if spec.exog:
        idx = list(range(len(spec.exog))) if exog_index is None else list(exog_index)
        parts.append(feature_scaler.transform(raw.exog[:, :, idx]))
    imputed = 0
    zl = None
    if spec.lags:
        zl = target_scaler.apply(raw.lags, loc, scale)  # [B, W+H, L]
        # what a missing lag falls back to: the lagged step itself (window) or the last value
        fallback = np.concatenate([z, np.broadcast_to(z[:, -1:], (b, spec.horizon))], axis=1)
        for j in np.argsort(spec.lags):  # shortest lag first
            missing = np.isnan(zl[:, :, j])
            imputed += int(missing[:, w:].sum())
            zl[:, :, j] = np.where(missing, fallback, zl[:, :, j])
            fallback = zl[:, :, j]
        if spec.lags_in_window:
            parts.append(zl[:, :w, :])
    if spec.use_level:
        parts.append(np.broadcast_to((loc / 5.0)[:, None, None], (b, w, 1)))
    x = np.concatenate(parts, axis=-1).astype(np.float32)  # [B, W, F_in]

    fparts = []
    if zl is not None:
        fparts.append(zl[:, w:, :])  # [B, H, L]
    if spec.calendar:
        fparts.append(_calendar_rows(raw.origin_slot, np.arange(1, spec.horizon + 1), spec))
    fut = (
        np.concatenate(fparts, axis=-1).astype(np.float32)
        if fparts
        else np.zeros((b, spec.horizon, 0), np.float32)
    )  # [B, H, F_fut]
    z_target = None
    if raw.target is not None:
        z_target = target_scaler.apply(raw.target, loc, scale).astype(np.float32)
    return Encoded(x, fut, loc, scale, z_target, imputed)
