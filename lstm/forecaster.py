"""`Forecaster`: a trained model with everything needed to use it (feature spec, scalers,
calibrated intervals, metadata), and the one vectorised inference kernel every path uses.

Inference only: training lives in `lstm.fit`, batch window preparation in `lstm.prepare`,
the seed's single-series API in `lstm.inference`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
import torch

from lstm.errors import DataValidationError
from lstm.features import Encoded, FeatureScaler, FeatureSpec, TargetScaler, encode
from lstm.intervals import ConformalIntervals
from lstm.model import LSTMModel
from lstm.panel import Panel
from lstm.prepare import InferenceReport, prepare_windows, series_chunks
from lstm.slots import slot_ts, to_slot
from lstm.windows import RawWindows, gather

log = logging.getLogger(__name__)
T = TypeVar("T")

# Windows per forward pass at inference: small enough for the LSTM's working set to stay in
# CPU cache (measured: 512-1024 windows run ~2.5x faster per window than 16,384 on 2 cores).
INFERENCE_CHUNK = 1024
# Series per window-preparation pass: bounds the dense arrays of a run over a big fleet
# (about 5 KiB per series; measured in BENCHMARKS.md "Predict at 1,000,000 series").
SERIES_CHUNK = 50_000
MIN_PARALLEL_CHUNK = 256  # below this, splitting a batch across threads costs more than it gains


@dataclass
class ForecastArrays:
    """Forecasts for B windows: point forecast and bounds per level, original scale."""

    yhat: np.ndarray  # [B, H]
    lower: dict[float, np.ndarray]  # level -> [B, H]
    upper: dict[float, np.ndarray]
    z: np.ndarray  # [B, H] scaled point forecast
    lags_imputed: int = 0

    def take(self, idx: np.ndarray | slice) -> ForecastArrays:
        return ForecastArrays(
            self.yhat[idx],
            {lv: a[idx] for lv, a in self.lower.items()},
            {lv: a[idx] for lv, a in self.upper.items()},
            self.z[idx],
            self.lags_imputed,
        )


def _finite_rows(arrays: ForecastArrays, level: float) -> np.ndarray:
    """[B] rows whose point forecast and bounds at `level` are all finite."""
    ok = np.isfinite(arrays.yhat).all(axis=1)
    ok &= np.isfinite(arrays.lower[level]).all(axis=1) & np.isfinite(arrays.upper[level]).all(
        axis=1
    )
    return ok


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
        series_chunk: int = SERIES_CHUNK,
    ) -> tuple[pd.DataFrame, InferenceReport]:
        """Forecast every series of a long history frame from the slot `as_of` (or from each
        slot of a list of them, as backfill does).

        `history` holds canonical columns (series_id, ts, value, exogenous features) and at
        least the window; slots one day / one week earlier are used when present. A series
        whose window misses its last slot or more than `max_missing` slots is skipped and
        named in the report; fewer gaps are interpolated and counted. Returns the forecasts
        in the forecasts-table layout (level defaults to the first calibrated level).
        Series are prepared and forecast `series_chunk` at a time (bounded memory; the
        result does not depend on it).
        """
        level = self.levels[0] if level is None else level
        many = (
            as_of is not None
            and not isinstance(as_of, str | pd.Timestamp)
            and hasattr(as_of, "__len__")
        )
        origins = None if as_of is None else (list(as_of) if many else [as_of])
        frames, report = [], InferenceReport()
        for part in series_chunks(history, series_chunk):
            frame, part_report = self._forecast_chunk(part, origins, level, max_missing, chunk_size)
            frames.append(frame)
            report.merge(part_report)
        frames = [f for f in frames if len(f)] or frames[:1]
        if len(frames) == 1:
            return frames[0], report
        frame = pd.concat(frames, ignore_index=True)
        if origins is not None and len(origins) > 1:  # rows by origin (as given), then series
            freq = self.spec.freq_ns
            order = pd.DatetimeIndex([slot_ts(to_slot(a, freq), freq) for a in origins])
            rank = order.drop_duplicates().get_indexer(frame["issued_at"])
            frame = frame.take(np.argsort(rank, kind="stable")).reset_index(drop=True)
        return frame, report

    def _forecast_chunk(
        self,
        history: pd.DataFrame,
        origins: list | None,
        level: float,
        max_missing: int | None,
        chunk_size: int,
    ) -> tuple[pd.DataFrame, InferenceReport]:
        """`forecast` over one chunk of series."""
        t0 = time.perf_counter()
        raw, ids, report = prepare_windows(
            history,
            self.spec,
            origins,
            max_missing=max_missing,
            exog_fill=self.feature_scaler.mean,
        )
        t1 = time.perf_counter()
        if len(ids) == 0:
            report.timings = {"features_s": t1 - t0, "model_s": 0.0, "frame_s": 0.0}
            return empty_forecast_frame(), report
        arrays = self.predict_raw(raw, (level,), chunk_size=chunk_size)
        t2 = time.perf_counter()
        report.lags_imputed = arrays.lags_imputed
        ok = _finite_rows(arrays, level)
        if not ok.all():  # one extreme history must never block the other series
            for r in np.flatnonzero(~ok):
                report.skip(
                    ids[r],
                    "the forecast or its interval is not finite (history values near the "
                    f"float maximum, e.g. {np.nanmax(raw.y[r]):.3g})",
                )
            ids, raw, arrays = ids[ok], raw.take(ok), arrays.take(ok)
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


def empty_forecast_frame() -> pd.DataFrame:
    """A zero-row frame in the forecasts-table layout."""
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


__all__ = [
    "INFERENCE_CHUNK",
    "ForecastArrays",
    "Forecaster",
    "InferenceReport",
    "empty_forecast_frame",
    "forecast_frame",
    "map_chunks",
]
