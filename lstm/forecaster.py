"""`Forecaster`: the trained model with everything needed to use it (feature spec, scalers,
calibrated intervals, metadata), and the one vectorised inference kernel every path uses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import numpy as np
import pandas as pd
import torch

from lstm.errors import DataValidationError, TrainingError
from lstm.features import (
    CALENDAR_FEATURES,
    Encoded,
    FeatureScaler,
    FeatureSpec,
    TargetScaler,
    encode,
    lag_name,
)
from lstm.intervals import ConformalIntervals
from lstm.model import LSTMConfig, LSTMModel
from lstm.panel import Panel, freq_to_ns
from lstm.training import (
    BatchIterator,
    TrainConfig,
    TrainResult,
    set_seed,
    set_threads,
    train,
    train_schedule,
)
from lstm.windows import (
    RawWindows,
    Split,
    expand_ranges,
    gather,
    protocol_split,
    train_origins,
    val_origins,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Windows per forward pass at inference: small enough for the LSTM's working set to stay in
# CPU cache (measured: 512-1024 windows run ~2.5x faster per window than 16,384 on 2 cores).
INFERENCE_CHUNK = 1024
MIN_PARALLEL_CHUNK = 256  # below this, splitting a batch across threads costs more than it gains


@dataclass
class ForecastConfig:
    """The one configuration of a forecaster: features, network, training, intervals."""

    window: int = 12
    horizon: int = 12
    freq: str = "5min"
    # seasonal lags in slots; None: one day and one week at `freq` (288, 2016 at 5 minutes)
    lags: tuple[int, ...] | None = None
    calendar: tuple[str, ...] = CALENDAR_FEATURES
    exog: tuple[str, ...] | None = None  # None: every exogenous column of the training data
    use_level: bool = True
    lags_in_window: bool = True  # the encoder also sees each window step's lagged values
    select_top_k: int | None = None  # keep the k most important candidate features (RF)
    rank_features: bool = False  # rank candidates (RF) and record it even when keeping all
    levels: tuple[float, ...] = (0.8, 0.95)
    interval_bins: int = 4
    target_scaler: TargetScaler = field(default_factory=TargetScaler)
    model: LSTMConfig = field(default_factory=LSTMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def lag_slots(self) -> tuple[int, ...]:
        """The seasonal lags in slots: `lags`, or one day and one week at `freq`."""
        if self.lags is not None:
            return tuple(int(lag) for lag in self.lags)
        step = pd.Timedelta(self.freq)
        return tuple(int(round(pd.Timedelta(days=d) / step)) for d in (1, 7))

    def check_horizon(self) -> tuple[int, ...]:
        """The lags in slots, once the horizon is known to fit them (clear error if not)."""
        lags = self.lag_slots()
        if self.horizon < 1 or any(lag < self.horizon for lag in lags):
            raise DataValidationError(
                f"horizon {self.horizon} must be at least 1 and at most the shortest seasonal "
                f"lag ({min(lags, default='none')} slots; lags {list(lags)}): a lag shorter than "
                "the horizon would need values not yet observed"
            )
        return lags

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lags"] = list(self.lag_slots())
        d["target_scaler"] = self.target_scaler.to_dict()
        return d


@dataclass
class ForecastArrays:
    """Forecasts for B windows: point forecast and bounds per level, original scale."""

    yhat: np.ndarray  # [B, H]
    lower: dict[float, np.ndarray]  # level -> [B, H]
    upper: dict[float, np.ndarray]
    z: np.ndarray  # [B, H] scaled point forecast
    lags_imputed: int = 0


@dataclass
class InferenceReport:
    """What a batch forecast skipped or repaired, per series."""

    n_input_series: int = 0
    n_forecast: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # series -> reason
    repaired: dict[str, int] = field(default_factory=dict)  # series -> values interpolated
    lags_imputed: int = 0
    n_skipped: int = 0  # skipped forecasts (series x origin)
    off_grid_rows: int = 0
    duplicate_rows: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # features_s, model_s, frame_s

    def as_dict(self) -> dict:
        return asdict(self)


def map_chunks(fn: Callable[[slice], T], n: int, chunk_size: int) -> list[T]:
    """`fn` over consecutive slices of `n` rows, in order.

    With several torch threads and several chunks, the chunks run in parallel on a pool of
    that many Python threads, each op on one torch thread: the small LSTM scales poorly
    across intra-op threads (2 cores: 1.45x faster this way), and the numbers are exactly
    those of the serial loop. `fn` must only write its own rows.
    """
    threads = torch.get_num_threads()
    if threads > 1:  # a batch smaller than threads x chunk_size still fills every thread
        chunk_size = min(chunk_size, max(MIN_PARALLEL_CHUNK, -(-n // threads)))
    slices = [slice(i, min(i + chunk_size, n)) for i in range(0, n, chunk_size)]
    workers = min(threads, len(slices))
    if workers <= 1:
        return [fn(sl) for sl in slices]
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, slices))
    finally:
        torch.set_num_threads(threads)


class Forecaster:
    """A trained global model and the pieces that turn raw history into forecasts."""

    def __init__(
        self,
        spec: FeatureSpec,
        model: LSTMModel,
        target_scaler: TargetScaler,
        feature_scaler: FeatureScaler,
        intervals: ConformalIntervals | None,
        metadata: dict | None = None,
    ) -> None:
        self.spec = spec
        self.model = model.eval()
        self.target_scaler = target_scaler
        self.feature_scaler = feature_scaler
        self.intervals = intervals
        self.metadata = metadata or {}

    @property
    def levels(self) -> tuple[float, ...]:
        return self.intervals.levels if self.intervals is not None else ()

    # ------------------------------------------------------------------ training
    @classmethod
    def fit(
        cls,
        panel: Panel,
        split: Split | None = None,
        config: ForecastConfig | None = None,
    ) -> Forecaster:
        """Train on each series' train part, early-stop and calibrate on its validation part."""
        cfg = config or ForecastConfig()
        t_start = time.monotonic()
        set_seed(cfg.train.seed)
        set_threads(cfg.train.num_threads)
        if freq_to_ns(cfg.freq) != panel.freq_ns:
            raise DataValidationError(
                f"config freq {cfg.freq!r} does not match the data's grid "
                f"({pd.Timedelta(panel.freq_ns, 'ns')})"
            )
        lags = cfg.check_horizon()
        split = split or protocol_split(panel)
        exog = tuple(panel.exog_names) if cfg.exog is None else tuple(cfg.exog)
        missing = [c for c in exog if c not in panel.exog_names]
        if missing:
            raise DataValidationError(
                f"exogenous feature(s) {missing} not in the data; it has {list(panel.exog_names)}"
            )
        spec = FeatureSpec(
            window=cfg.window,
            horizon=cfg.horizon,
            freq_ns=panel.freq_ns,
            calendar=tuple(cfg.calendar),
            exog=exog,
            lags=lags,
            use_level=cfg.use_level,
            lags_in_window=cfg.lags_in_window,
        )
        tr = train_origins(panel, split, spec.window, spec.horizon)
        va = val_origins(panel, split, spec.window, spec.horizon)
        if len(tr) == 0:
            short = panel.ids[split.n_train < spec.window + spec.horizon]
            raise TrainingError(
                f"no training windows: every series needs at least window + horizon = "
                f"{spec.window + spec.horizon} slots in its train part; too short: "
                f"{list(short[:5])}"
            )
        if len(va) == 0:
            raise TrainingError(
                "no validation windows: series are too short for a validation part of "
                f"{spec.horizon} slots after the window"
            )
        exog_idx = [panel.exog_names.index(c) for c in exog]
        train_pos = _train_positions(panel, split)
        feature_scaler = FeatureScaler().fit(exog, panel.exog[np.ix_(train_pos, exog_idx)])
        target_scaler = cfg.target_scaler

        selection = None
        if cfg.select_top_k is not None or cfg.rank_features:
            from lstm.selection import select_features_lstm

            selection = select_features_lstm(
                panel, origins=tr, spec=spec, top_k=cfg.select_top_k, seed=cfg.train.seed
            )
            spec = selection.apply(spec)
            exog_idx = [panel.exog_names.index(c) for c in spec.exog]
            feature_scaler = FeatureScaler().fit(spec.exog, panel.exog[np.ix_(train_pos, exog_idx)])

        mcfg = LSTMConfig(
            **{
                **asdict(cfg.model),
                "input_size": spec.input_size,
                "future_size": spec.future_size,
                "horizon": spec.horizon,
            }
        )
        model = LSTMModel(mcfg)

        weights = _series_weights(panel, split) if cfg.train.series_weighting else None

        def make_batch(origins: np.ndarray):
            def batch(idx: np.ndarray):
                raw = gather(panel, origins[idx], spec.window, spec.horizon, spec.lags)
                enc = encode(raw, spec, target_scaler, feature_scaler, exog_idx)
                out = (
                    torch.from_numpy(enc.x),
                    torch.from_numpy(enc.fut),
                    torch.from_numpy(enc.z_target),
                )
                if weights is not None:
                    out = (*out, torch.from_numpy(weights[raw.series]))
                return out

            return batch

        tc = cfg.train
        train_loader = BatchIterator(
            len(tr), make_batch(tr), tc.batch_size, True, tc.seed, tc.max_windows_per_epoch
        )
        val_loader = _CachedBatches(
            BatchIterator(len(va), make_batch(va), 8192, False, tc.seed, tc.max_val_windows)
        )
        log.info(
            "fit: %d series, %d train / %d validation windows, features in %s, future %s",
            panel.n_series,
            len(tr),
            len(va),
            spec.input_names,
            spec.future_names,
        )
        result: TrainResult = train(model, train_loader, val_loader, tc)

        forecaster = cls(spec, model, target_scaler, feature_scaler, None)
        raw_val = gather(panel, va, spec.window, spec.horizon, spec.lags)
        enc = encode(raw_val, spec, target_scaler, feature_scaler, exog_idx)
        z_pred = forecaster._forward(enc)
        forecaster.intervals = ConformalIntervals.fit(
            enc.z_target - z_pred, enc.loc, cfg.levels, n_bins=cfg.interval_bins
        )
        refit = None
        if tc.refit_on_validation and result.best_epoch > 0:
            # The most recent data matter most: retrain a fresh network on train + validation
            # with the schedule that early stopping chose (same epochs, same learning rates).
            # Intervals stay calibrated on the first network's held-out residuals.
            both = expand_ranges(
                panel.offsets,
                np.full(panel.n_series, spec.window - 1),
                split.n_train + split.n_val - 1 - spec.horizon,
            )
            lrs = [row["lr"] for row in result.history[: result.best_epoch]]
            lrs += [lrs[-1] * 0.5] * tc.refit_extra_epochs
            set_seed(tc.seed)
            model_b = LSTMModel(mcfg)
            loader_b = BatchIterator(
                len(both), make_batch(both), tc.batch_size, True, tc.seed, tc.max_windows_per_epoch
            )
            refit = train_schedule(model_b, loader_b, lrs, tc, tc.refit_average_last)
            forecaster.model = model_b.eval()
        first = panel.timestamps(panel.offsets[:-1])
        end_train = panel.timestamps(panel.offsets[:-1] + split.n_train + split.n_val - 1)
        forecaster.metadata = {
            "config": cfg.to_dict(),
            "features": spec.to_dict(),
            "feature_selection": None if selection is None else selection.to_dict(),
            "training": {
                "series": int(panel.n_series),
                "train_windows": int(len(tr)),
                "val_windows": int(len(va)),
                "data_start": str(first.min()),
                "data_end": str(end_train.max()),
                "best_epoch": result.best_epoch,
                "best_val_loss": result.best_val_loss,
                "epochs_run": len(result.history),
                "steps": result.steps,
                "stop_reason": result.stop_reason,
                "seconds": round(time.monotonic() - t_start, 3),
                "history": result.history,
                "refit": refit,
            },
        }
        return forecaster

    # ----------------------------------------------------------------- inference
    def _forward(self, enc: Encoded, chunk_size: int = INFERENCE_CHUNK) -> np.ndarray:
        """Scaled point forecasts [B, H] for encoded windows, chunked to bound memory."""
        self.model.eval()
        out = np.empty((len(enc.x), self.spec.horizon), dtype=np.float32)

        @torch.inference_mode()
        def run(sl: slice) -> None:
            out[sl] = self.model(torch.from_numpy(enc.x[sl]), torch.from_numpy(enc.fut[sl])).numpy()

        map_chunks(run, len(enc.x), chunk_size)
        return out

    def predict_raw(
        self,
        raw: RawWindows,
        levels: Sequence[float] | None = None,
        chunk_size: int = INFERENCE_CHUNK,
        exog_index: Sequence[int] | None = None,
    ) -> ForecastArrays:
        """The inference kernel: raw windows -> point forecasts and intervals, vectorised.

        Encoding, the forward pass and decoding run per chunk of `chunk_size` windows, so
        memory stays bounded however many series there are.
        """
        levels = self.levels if levels is None else tuple(levels)
        b, h = len(raw), self.spec.horizon
        yhat = np.empty((b, h))
        z_all = np.empty((b, h), dtype=np.float32)
        lower = {lv: np.empty((b, h)) for lv in levels}
        upper = {lv: np.empty((b, h)) for lv in levels}
        inv = self.target_scaler.inverse_transform

        def run_chunk(sl: slice) -> int:  # writes rows `sl` of the outputs; thread-safe
            enc = encode(
                raw.take(sl), self.spec, self.target_scaler, self.feature_scaler, exog_index
            )
            z = self._forward(enc, chunk_size)
            z_all[sl] = z
            yhat[sl] = inv(z.astype(np.float64), enc.loc, enc.scale)
            for lv in levels:
                z_lo, z_hi = self.intervals.bounds(z, enc.loc, lv)
                lower[lv][sl] = np.minimum(inv(z_lo, enc.loc, enc.scale), yhat[sl])
                upper[lv][sl] = np.maximum(inv(z_hi, enc.loc, enc.scale), yhat[sl])
            return enc.lags_imputed

        imputed = sum(map_chunks(run_chunk, b, chunk_size))
        return ForecastArrays(yhat, lower, upper, z_all, imputed)

    def predict_panel(
        self, panel: Panel, origins: np.ndarray | None = None, levels: Sequence[float] | None = None
    ) -> tuple[ForecastArrays, RawWindows]:
        """Forecast from `origins` of a regular panel (default: the last slot of each series)."""
        if origins is None:
            origins = panel.offsets[1:] - 1
        exog_index = self._exog_index(panel.exog_names)
        raw = gather(panel, origins, self.spec.window, self.spec.horizon, self.spec.lags)
        return self.predict_raw(raw, levels, exog_index=exog_index), raw

    def _exog_index(self, available: Sequence[str]) -> list[int]:
        missing = [c for c in self.spec.exog if c not in available]
        if missing:
            raise DataValidationError(
                f"the model needs exogenous feature(s) {missing}; the data has {list(available)}"
            )
        return [list(available).index(c) for c in self.spec.exog]

    def forecast(
        self,
        history: pd.DataFrame,
        as_of: pd.Timestamp | str | Sequence | None = None,
        *,
        level: float | None = None,
        max_missing: int | None = None,
        chunk_size: int = INFERENCE_CHUNK,
    ) -> tuple[pd.DataFrame, InferenceReport]:
        """Forecast every series of a long history frame from the slot `as_of` (or from each
        slot of a list of them, as backfill does).

        `history` holds canonical columns (series_id, ts, value, exogenous features) and at
        least the window; slots one day / one week earlier are used when present. A series
        whose window misses its last slot or more than `max_missing` slots is skipped and
        named in the report; fewer gaps are interpolated and counted. Returns the forecasts
        in the forecasts-table layout (level defaults to the first calibrated level).
        """
        from lstm.inference import prepare_windows

        level = self.levels[0] if level is None else level
        many = (
            as_of is not None
            and not isinstance(as_of, str | pd.Timestamp)
            and hasattr(as_of, "__len__")
        )
        t0 = time.perf_counter()
        raw, ids, report = prepare_windows(
            history,
            self.spec,
            None if as_of is None else (list(as_of) if many else [as_of]),
            max_missing=max_missing,
            exog_fill=self.feature_scaler.mean,
        )
        t1 = time.perf_counter()
        if len(ids) == 0:
            report.timings = {"features_s": t1 - t0, "model_s": 0.0, "frame_s": 0.0}
            return _empty_forecast_frame(), report
        arrays = self.predict_raw(raw, (level,), chunk_size=chunk_size)
        t2 = time.perf_counter()
        report.lags_imputed = arrays.lags_imputed
        frame = forecast_frame(ids, raw.origin_slot, self.spec.freq_ns, arrays, level)
        report.timings = {
            "features_s": t1 - t0,  # validating, scattering and repairing the history
            "model_s": t2 - t1,  # scaling, the network, intervals
            "frame_s": time.perf_counter() - t2,  # building the output rows
        }
        return frame, report


def forecast_frame(
    ids: np.ndarray,
    origin_slot: np.ndarray,
    freq_ns: int,
    arrays: ForecastArrays,
    level: float,
) -> pd.DataFrame:
    """Arrays -> the forecasts-table layout, one row per series and step."""
    b, h = arrays.yhat.shape
    steps = np.tile(np.arange(1, h + 1), b)
    issued = np.repeat(origin_slot, h)
    return pd.DataFrame(
        {
            "series_id": np.repeat(np.asarray(ids, dtype=object), h),
            "issued_at": pd.DatetimeIndex(issued * freq_ns, tz="UTC"),
            "target_ts": pd.DatetimeIndex((issued + steps) * freq_ns, tz="UTC"),
            "step": steps.astype(np.int16),
            "yhat": arrays.yhat.ravel(),
            "yhat_lower": arrays.lower[level].ravel(),
            "yhat_upper": arrays.upper[level].ravel(),
            "level": np.full(b * h, float(level)),
        }
    )


def _empty_forecast_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "series_id": pd.Series([], dtype=object),
            "issued_at": pd.DatetimeIndex([], tz="UTC"),
            "target_ts": pd.DatetimeIndex([], tz="UTC"),
            "step": pd.Series([], dtype=np.int16),
            "yhat": pd.Series([], dtype=float),
            "yhat_lower": pd.Series([], dtype=float),
            "yhat_upper": pd.Series([], dtype=float),
            "level": pd.Series([], dtype=float),
        }
    )


def _series_weights(panel: Panel, split: Split) -> np.ndarray:
    """[N] float32: 1 / each series' in-sample naive MAE in log space, mean 1 over series.

    The loss then weighs every series like MASE does (error relative to how hard the
    series is), instead of letting noisy low-count series dominate log-space errors.
    Training-only: inference needs no per-series state.
    """
    ly = np.log1p(np.maximum(panel.y, 0.0))
    diff = np.abs(np.diff(ly, prepend=ly[:1]))
    pos = _train_positions(panel, split)
    series = panel.series_index[pos]
    first = np.isin(pos, panel.offsets[:-1])  # no difference across a series boundary
    sums = np.bincount(series[~first], weights=diff[pos][~first], minlength=panel.n_series)
    counts = np.bincount(series[~first], minlength=panel.n_series)
    scale = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    scale = np.where(np.isfinite(scale) & (scale > 1e-3), scale, np.nanmedian(scale))
    w = 1.0 / scale
    return (w / w.mean()).astype(np.float32)


def _train_positions(panel: Panel, split: Split) -> np.ndarray:
    from lstm.windows import expand_ranges

    return expand_ranges(panel.offsets, np.zeros(panel.n_series, np.int64), split.n_train - 1)


class _CachedBatches:
    """Materialise a fixed (validation) batch sequence once and replay it every epoch."""

    def __init__(self, source) -> None:
        self.source = source
        self.batches = None

    def __iter__(self):
        if self.batches is None:
            self.batches = list(self.source)
        return iter(self.batches)


__all__ = [
    "ForecastArrays",
    "ForecastConfig",
    "Forecaster",
    "InferenceReport",
    "forecast_frame",
    "lag_name",
]
