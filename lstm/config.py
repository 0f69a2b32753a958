"""`ForecastConfig`: the one configuration of a forecaster (features, network, training,
intervals), stored in every model's metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd

from lstm.errors import DataValidationError
from lstm.features import CALENDAR_FEATURES, TargetScaler
from lstm.model import LSTMConfig
from lstm.training import TrainConfig


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
    # conformal calibration uses at most this many windows (sampled, fixed seed): bounded
    # memory and time whatever the number of series
    max_calibration_windows: int = 50_000
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
