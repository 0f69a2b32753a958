"""Rows 8, 9 and 15: hostile configuration, bad metrics, and a changing set of series."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from reliability_helpers import END, N_SERIES, STEP, drop_env_tables, make_env

from storage import ConfigError


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.parametrize(
    "setting", ["FORECAST_FORECASTS_TABLE", "FORECAST_METRICS_TABLE", "FORECAST_TARGET_COL"]
)
def test_r08_sql_injection_in_table_or_column_names_is_rejected_before_any_sql(
    harness, trained, tmp_path, monkeypatch, request, backend, setting
):
    env = make_env(backend, trained, tmp_path, monkeypatch)
    if backend == "postgres":
        request.addfinalizer(lambda: drop_env_tables(env))
    victim = f"victim_{env.tables['metrics']}"
    engine = sa.create_engine(env.url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {victim} (x INTEGER)"))
    from tasks.common import forget_stores

    forget_stores()
    monkeypatch.setenv(setting, f"forecasts; DROP TABLE {victim}")
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        with pytest.raises(ConfigError) as err:
            env.predict(END)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
    assert "DROP TABLE" in str(err.value) or "identifier" in str(err.value).lower()
    assert not any("DROP" in s.upper() for s in statements), statements
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {victim}")).scalar() == 0  # still there
        if backend == "postgres":
            conn.execute(sa.text(f"DROP TABLE {victim}"))
            conn.commit()
    engine.dispose()
    forget_stores()


# ---------------------------------------------------------------------------- row 9
def user_table(
    env, rows: pd.DataFrame, *, naive=False, columns=("series_id", "ts", "value", "error_rate")
):
    """A metrics table created by someone else: no key, loose SQLite types."""
    db = env.url[len("sqlite:///") :]
    t = env.tables["metrics"]
    fmt = "%Y-%m-%d %H:%M:%S" if naive else "%Y-%m-%d %H:%M:%S+00:00"
    with sqlite3.connect(db) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {t}")
        types = {"series_id": "TEXT", "ts": "TEXT", "value": "REAL", "error_rate": "REAL"}
        conn.execute(f"CREATE TABLE {t} ({', '.join(f'{c} {types[c]}' for c in columns)})")
        data = [
            tuple(r[c] if c != "ts" else r["ts"].strftime(fmt) for c in columns if c in r)
            for _, r in rows.iterrows()
        ]
        conn.executemany(f"INSERT INTO {t} VALUES ({', '.join('?' * len(columns))})", data)


def recent(env, hours=26) -> pd.DataFrame:
    f = env.frame
    return f[f.ts > END - pd.Timedelta(hours=hours)].reset_index(drop=True)


BAD = "svc-2"


def mutate(case: str, df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    at = (df.series_id == BAD) & (df.ts == END)
    inside = (df.series_id == BAD) & (df.ts == END - 4 * STEP)
    df = df.astype({"value": object})
    if case == "duplicate_rows":
        return pd.concat([df, df[at].assign(value=7.0)]), {"duplicate_rows": 1}
    if case == "nan":
        df.loc[at, "value"] = None
        return df, {"skipped": BAD}
    if case == "inf":
        df.loc[at, "value"] = math.inf
        return df, {"skipped": BAD}
    if case == "string_in_target":
        df.loc[at, "value"] = "n/a"
        return df, {"skipped": BAD}
    if case == "negative_count":
        df.loc[inside, "value"] = -5.0
        return df, {"repaired": BAD}
    if case == "off_grid_timestamp":
        extra = df[at].assign(ts=END - pd.Timedelta("150s"), value=3.0)
        return pd.concat([df, extra]), {
            "off_grid_rows": 1,
            "duplicate_rows": 1,
        }  # floored into a slot
    if case == "three_points":
        new = df[df.series_id == "svc-0"].tail(3).assign(series_id="tiny")
        return pd.concat([df, new]), {"skipped": "tiny"}
    if case == "naive_timestamps":
        return df, {}
    raise AssertionError(case)


CASES = [
    "duplicate_rows",
    "nan",
    "inf",
    "string_in_target",
    "negative_count",
    "off_grid_timestamp",
    "three_points",
    "naive_timestamps",
]


@pytest.mark.parametrize("case", CASES)
def test_r09_bad_metrics_are_rejected_or_repaired_and_the_rest_forecast(sqlite_env, case):
    df, expect = mutate(case, recent(sqlite_env))
    user_table(sqlite_env, df, naive=(case == "naive_timestamps"))
    from tasks.common import forget_stores

    forget_stores()
    from storage import NaiveTimestampWarning, NonNumericValueWarning

    warning = {
        "naive_timestamps": NaiveTimestampWarning,
        "string_in_target": NonNumericValueWarning,
    }.get(case)
    with pytest.warns(warning) if warning else _nothing():
        out = sqlite_env.predict(END)
    healthy = sorted(set(sqlite_env.frame.series_id) - {expect.get("skipped")})
    rows = sqlite_env.store().read_forecasts(issued_at=END)
    assert sorted(rows.series_id.unique()) == healthy, (
        f"{case}: forecast {sorted(rows.series_id.unique())}"
    )
    if "skipped" in expect:
        assert list(out["skipped"]) == [expect["skipped"]], out["skipped"]
        assert out["n_skipped"] == 1
    else:
        assert out["n_skipped"] == 0, out["skipped"]
    if "repaired" in expect:
        assert out["repaired"] == {expect["repaired"]: 1}
    for key in ("duplicate_rows", "off_grid_rows"):
        assert out[key] == expect.get(key, 0), (key, out[key])


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_r09_missing_column_is_a_clear_error(sqlite_env):
    user_table(sqlite_env, recent(sqlite_env), columns=("series_id", "ts", "error_rate"))
    from storage import SchemaError
    from tasks.common import forget_stores

    forget_stores()
    with pytest.raises(SchemaError) as err:
        sqlite_env.predict(END)
    msg = str(err.value)
    assert "'value'" in msg and sqlite_env.tables["metrics"] in msg


def test_r09_wrong_table_name_is_a_clear_error(sqlite_env, monkeypatch):
    from storage import SchemaError
    from tasks.common import forget_stores

    monkeypatch.setenv("FORECAST_METRICS_TABLE", "no_such_metrics")
    forget_stores()
    with pytest.raises(SchemaError) as err:
        sqlite_env.predict(END)
    msg = str(err.value)
    assert "'no_such_metrics'" in msg and sqlite_env.tables["forecasts"] in msg, msg
    forget_stores()


def test_r09_empty_table_writes_nothing_and_says_so(sqlite_env):
    user_table(sqlite_env, recent(sqlite_env).head(0))
    from tasks.common import forget_stores

    forget_stores()
    # nothing to forecast is not a green run (issue 13.2): the run fails and says why
    from tasks.predict_tasks import ForecastShortfall

    with pytest.raises(ForecastShortfall, match="no series has metrics in the window read"):
        sqlite_env.predict(END)
    assert sqlite_env.store().read_forecasts().empty


# --------------------------------------------------------------------------- row 15
def test_r15_new_disappearing_and_1000x_series(env):
    base = env.frame[env.frame.series_id == "svc-0"]
    new = base[base.ts > END - pd.Timedelta("2h")].assign(series_id="new-svc")
    gone = base[base.ts <= END - pd.Timedelta("1h")].assign(series_id="gone-svc")
    big = base.assign(series_id="big-svc", value=base.value * 1000)
    env.store().write_metrics(pd.concat([new, gone, big]))
    out = env.predict(END)
    rows = env.store().read_forecasts(issued_at=END)
    got = set(rows.series_id)
    assert {"new-svc", "big-svc"} <= got and "gone-svc" not in got
    assert list(out["skipped"]) == ["gone-svc"] and "last value at" in out["skipped"]["gone-svc"]
    assert out["series_forecast"] == N_SERIES + 2
    window = big[big.ts > END - pd.Timedelta("1h")].value
    yhat = rows[rows.series_id == "big-svc"].yhat
    ratio = float(np.median(yhat) / np.median(window))
    assert 0.5 < ratio < 2.0, f"1000x series forecast at {ratio:.2f}x its own recent level"
    small = rows[rows.series_id == "svc-0"].yhat
    assert 300 < float(np.median(yhat) / np.median(small)) < 3000


def test_r21_a_series_id_no_store_can_key_is_skipped_and_the_others_are_forecast(sqlite_env):
    """Row 21 through the predict flow: a 3,000-character id in a user's table (written
    with plain SQL, so the store's own write check never saw it) is skipped with a reason
    naming the limit; every other series is forecast and written."""
    import sqlalchemy as sa

    from storage import MAX_SERIES_ID_LENGTH

    env = sqlite_env
    long_id = "x" * 3000
    rows = env.frame[env.frame.series_id == "svc-0"].assign(series_id=long_id)
    engine = sa.create_engine(env.url)
    with engine.begin() as conn:
        rows[["series_id", "ts", "value", "error_rate"]].assign(
            ts=rows.ts.dt.strftime("%Y-%m-%d %H:%M:%S+00:00")  # the store's own text form
        ).to_sql(env.tables["metrics"], conn, if_exists="append", index=False)
    engine.dispose()
    out = env.predict(END)
    assert out["series_forecast"] == N_SERIES
    assert list(out["skipped"]) == [long_id]
    assert f"at most {MAX_SERIES_ID_LENGTH}" in out["skipped"][long_id]
    written = env.store().read_forecasts(issued_at=END)
    assert len(written) == N_SERIES * 12 and long_id not in set(written.series_id)


def test_r15b_a_history_near_the_float_maximum_skips_that_series_not_the_run(sqlite_env):
    """Issue 12.4: values >= 1.75e308 make an infinite interval; that series is skipped
    (named, with the reason) and every other series is forecast and written."""
    env = sqlite_env
    base = env.frame[env.frame.series_id == "svc-0"]
    huge = base.assign(series_id="huge-svc", value=1.75e308)
    env.store().write_metrics(huge)
    out = env.predict(END)
    assert "huge-svc" in out["skipped"], out["skipped"]
    assert "finite" in out["skipped"]["huge-svc"]
    assert out["series_forecast"] == N_SERIES
    rows = env.store().read_forecasts(issued_at=END)
    assert len(rows) == N_SERIES * 12 and "huge-svc" not in set(rows.series_id)
    assert np.isfinite(rows[["yhat", "yhat_lower", "yhat_upper"]].to_numpy()).all()
