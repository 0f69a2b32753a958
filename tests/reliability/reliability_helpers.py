from __future__ import annotations

import contextlib
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from forecast_test_support import require_mariadb, require_postgres

from lstm import (
    ForecastConfig,
    Forecaster,
    LSTMConfig,
    ModelRegistry,
    TrainConfig,
    fit_forecaster,
    generate_metrics,
    regularize,
)

END = pd.Timestamp("2026-03-02 12:00", tz="UTC")
STEP = pd.Timedelta("5min")
N_SERIES = 6
DAYS = 8


def make_metrics(n_series: int = N_SERIES, days: float = DAYS, seed: int = 4) -> pd.DataFrame:
    slots = int(pd.Timedelta(days=days) / STEP)
    return generate_metrics(n_series, days, seed=seed, start=END - STEP * (slots - 1))


def small_config(seed: int = 0, epochs: int = 6) -> ForecastConfig:
    """Default features, a small network, no wall-clock budget (budgets break determinism)."""
    return ForecastConfig(
        model=LSTMConfig(hidden_size=24, num_layers=1, context_size=8, decoder_hidden=24),
        train=TrainConfig(epochs=epochs, batch_size=256, max_windows_per_epoch=6000, seed=seed),
    )


def train_small(frame: pd.DataFrame, seed: int = 0, epochs: int = 6) -> Forecaster:
    panel, _ = regularize(frame)
    return fit_forecaster(panel, config=small_config(seed, epochs))


@dataclass
class Env:
    backend: str
    url: str
    models_dir: Path
    version: str
    frame: pd.DataFrame
    tables: dict

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.models_dir)

    def store(self):
        from tasks.common import get_store
        from tasks.settings import get_settings

        return get_store(get_settings(store_url=self.url))

    def predict(self, as_of, **kw):
        from flows.predict import predict

        kw.setdefault("catch_up_slots", 0)
        return predict(
            as_of=pd.Timestamp(as_of).to_pydatetime(),
            store_url=self.url,
            models_dir=str(self.models_dir),
            **kw,
        )


def make_env(backend: str, trained, tmp_path: Path, monkeypatch, write_metrics: bool = True) -> Env:
    root, version, frame = trained
    suffix = uuid.uuid4().hex[:8]
    tables = {"metrics": f"m_{suffix}", "forecasts": f"f_{suffix}", "accuracy": f"a_{suffix}"}
    monkeypatch.setenv("FORECAST_METRICS_TABLE", tables["metrics"])
    monkeypatch.setenv("FORECAST_FORECASTS_TABLE", tables["forecasts"])
    monkeypatch.setenv("FORECAST_ACCURACY_TABLE", tables["accuracy"])
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'forecast.db'}"
    elif backend == "parquet":
        url = str(tmp_path / "lake")
    elif backend == "mariadb":
        url = require_mariadb()
    else:
        url = require_postgres()
    models = tmp_path / "models"
    shutil.copytree(root, models)
    env = Env(backend, url, models, version, frame, tables)
    if write_metrics:
        env.store().write_metrics(frame)
    return env


def drop_env_tables(env: Env) -> None:
    """Drop an env's tables by their own names (whatever FORECAST_* says by then): the shared
    PostgreSQL and MariaDB servers keep nothing of a test."""
    from storage import TableNames, open_store

    store = open_store(env.url, tables=TableNames(**env.tables))
    try:
        store.drop_all()
    finally:
        store.close()


class FlakyProxy:
    """A TCP forwarder to PostgreSQL or MariaDB on loopback that can go down and come back:
    the database 'down' for the store without touching the shared server.

    Down means down at once: the listening socket is shut down before it is closed (a
    plain close leaves it listening until the accept thread's poll returns, up to 0.2 s,
    and a connect in that window succeeded: a client that probed the server then waited
    for it through the whole outage), and a connection accepted while going down is
    closed, not forwarded."""

    def __init__(self, target_port: int = 5432):
        import socket
        import threading

        self.target = ("127.0.0.1", target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._threading = threading
        self._lock = threading.Lock()
        self._conns: list = []
        self._server = None
        self._stop = threading.Event()

    def up(self) -> None:
        import socket

        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        srv.settimeout(0.2)
        self._server = srv
        self._stop = self._threading.Event()  # this generation's: an old thread keeps its own
        self._threading.Thread(target=self._accept, args=(srv, self._stop), daemon=True).start()

    def down(self) -> None:
        import socket

        with self._lock:
            self._stop.set()
            if self._server is not None:
                with contextlib.suppress(OSError):
                    self._server.shutdown(socket.SHUT_RDWR)  # refuse connects from now on
                self._server.close()
                self._server = None
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.close()

    def _accept(self, srv, stop) -> None:
        import socket

        while not stop.is_set():
            try:
                client, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                if stop.is_set():  # went down while this connection was being accepted
                    client.close()
                    return
                upstream = socket.create_connection(self.target)
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                self._threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()


def forecast_frame(series, issued_at, version="v1", yhat=10.0, horizon=12) -> pd.DataFrame:
    """A valid forecasts frame: ``horizon`` steps for each series from ``issued_at``."""
    issued = pd.Timestamp(issued_at)
    rows = [
        {
            "series_id": s,
            "issued_at": issued,
            "target_ts": issued + STEP * h,
            "step": h,
            "yhat": yhat + h,
            "yhat_lower": yhat + h - 1.0,
            "yhat_upper": yhat + h + 1.0,
            "level": 0.8,
            "model_version": version,
        }
        for s in series
        for h in range(1, horizon + 1)
    ]
    return pd.DataFrame(rows)


def metrics_frame(series, end=END, n=12, value=3907.123) -> pd.DataFrame:
    """``n`` slots of metrics ending at ``end`` for each series, all equal to ``value``."""
    ts = pd.date_range(end=pd.Timestamp(end), periods=n, freq=STEP)
    return pd.DataFrame(
        {"series_id": [s for s in series for _ in ts], "ts": list(ts) * len(series)}
    ).assign(value=value)
