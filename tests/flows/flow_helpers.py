from __future__ import annotations

import pandas as pd

from lstm import generate_metrics

END = pd.Timestamp("2026-03-02 12:00", tz="UTC")
N_SERIES = 8
DAYS = 9


def make_metrics() -> pd.DataFrame:
    """N_SERIES series of DAYS days of 5-minute metrics ending at END."""
    slots = int(pd.Timedelta(days=DAYS) / pd.Timedelta("5min"))
    start = END - pd.Timedelta("5min") * (slots - 1)
    return generate_metrics(N_SERIES, DAYS, seed=21, start=start)
