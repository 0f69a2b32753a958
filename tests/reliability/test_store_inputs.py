"""Rows 18, 19, 21 and 23 of the reliability table: store input that must never leak a
secret, open the wrong backend, be retried for ever, or poison later reads."""

from __future__ import annotations

import pandas as pd
import pytest

from storage import (
    MAX_SERIES_ID_LENGTH,
    ConfigError,
    DataValidationError,
    StorageConnectionError,
    TimestampRangeWarning,
    invalid_series_ids,
    open_store,
    redact_text,
    redact_url,
)

SECRET = "Tr0ub4dor"  # every form below hides this (or a piece of it) somewhere

# (url, the secret pieces that must never appear)
PASSWORD_FORMS = [
    (f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/db", [SECRET]),
    (f"postgresql+psycopg://postgres@127.0.0.1:1/db?password={SECRET}", [SECRET]),
    (f"postgresql+psycopg://postgres@127.0.0.1:1/db?connect_timeout=3&password={SECRET}", [SECRET]),
    (f"postgresql+psycopg://postgres@127.0.0.1:1/db?sslpassword={SECRET}", [SECRET]),
    (
        f"postgresql+psycopg://postgres@127.0.0.1:1/db?passfile=/run/{SECRET}.pgpass",
        [f"/run/{SECRET}.pgpass"],
    ),
    (
        f"postgresql+psycopg://postgres@127.0.0.1:1/db?sslmode=disable&password={SECRET}%40x",
        [f"{SECRET}%40x", f"{SECRET}@x"],
    ),
    # an unencoded '@' in the password: the user info runs to the last '@'
    ("postgresql+psycopg://postgres:Tr0ub@4dor@127.0.0.1:1/db", ["Tr0ub@4dor", "4dor"]),
    (f"mysql+pymysql://root:{SECRET}@127.0.0.1:1/db", [SECRET]),
    ("mariadb+pymysql://root:Tr0ub@4dor@127.0.0.1:1/db", ["Tr0ub@4dor", "4dor"]),
    (f"mysql+pymysql://root@127.0.0.1:1/db?password={SECRET}", [SECRET]),
]


def _clean(text: str, pieces: list[str]) -> None:
    for piece in pieces:
        assert piece not in text, f"{piece!r} leaked in: {text}"


@pytest.mark.parametrize(("url", "pieces"), PASSWORD_FORMS, ids=range(len(PASSWORD_FORMS)))
def test_r18_every_password_form_is_masked_in_urls_text_and_errors(url, pieces):
    _clean(redact_url(url), pieces)
    _clean(redact_text(f"could not open {url} (retrying)"), pieces)
    _clean(redact_text(f"driver said: {pieces[0]}", url), pieces)
    with pytest.raises(StorageConnectionError) as info:  # nothing listens on port 1
        open_store(url, engine_kwargs={"connect_args": {"connect_timeout": 3}})
    _clean(str(info.value), pieces)
    assert "127.0.0.1:1" in str(info.value)  # the host is the one the user meant


def test_r18_libpq_connection_strings_in_text_are_masked():
    text = f"conninfo: host=db password={SECRET} sslpassword='{SECRET} x' passfile=/p/{SECRET}"
    _clean(redact_text(text), [SECRET])
    assert "host=db" in redact_text(text)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:/data/f.db",
        "sqlite:data/f.db",
        "postgresql+psycopg:/host/db",
        f"postgresql+psycopg:/postgres:{SECRET}@host/db",
        "postgres:/x",
        "parquet:/data/lake",
        "s3:bucket/lake",
    ],
)
def test_r19_a_url_missing_its_slashes_is_an_error_not_a_parquet_folder(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        open_store(url)
    msg = str(info.value)
    _clean(msg, [SECRET])
    assert redact_url(url) in msg
    assert "sqlite:///" in msg and "postgresql+psycopg://" in msg, msg
    assert list(tmp_path.iterdir()) == [], "a folder was created for a mistyped URL"


def test_r19_postgres_scheme_gets_a_hint(tmp_path):
    for url in (f"postgres://u:{SECRET}@127.0.0.1:1/db", "postgres:/db"):
        with pytest.raises(ConfigError, match=r"postgresql\+psycopg://") as info:
            open_store(url)
        _clean(str(info.value), [SECRET])


def test_r19_folders_and_known_urls_still_open(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert open_store("lake").backend == "parquet"
    assert open_store(str(tmp_path / "lake2")).backend == "parquet"
    assert open_store(f"parquet://{tmp_path / 'lake3'}").backend == "parquet"
    assert open_store(f"sqlite:///{tmp_path / 'x.db'}").backend == "sqlite"


def test_r21_a_series_id_too_long_for_the_index_is_refused_and_named(bare_store):
    from reliability_helpers import END, forecast_frame, metrics_frame

    long_id = "".join(f"{i:04x}" for i in range(750))  # 3,000 characters, incompressible
    assert set(invalid_series_ids(["ok", long_id])) == {long_id}
    assert "512" in invalid_series_ids([long_id])[long_id]
    for write, frame in (
        (bare_store.write_metrics, metrics_frame(["ok", long_id])),
        (bare_store.write_forecasts, forecast_frame(["ok", long_id], END)),
    ):
        with pytest.raises(DataValidationError) as info:
            write(frame)
        msg = str(info.value)
        assert long_id[:40] in msg and long_id not in msg, msg  # named, truncated
        assert str(MAX_SERIES_ID_LENGTH) in msg and "3000 characters" in msg, msg
    assert bare_store.read_forecasts().empty  # nothing of the frame was written
    ok = [s for s in ["ok", long_id] if s not in invalid_series_ids(["ok", long_id])]
    assert bare_store.write_forecasts(forecast_frame(ok, END)) == 12


def test_r21_program_limit_exceeded_is_permanent_not_retried():
    """PostgreSQL's index row limit (SQLSTATE 54000) fails the same way every time."""
    import uuid

    import sqlalchemy as sa
    from forecast_test_support import require_postgres

    from storage.errors import is_transient

    engine = sa.create_engine(require_postgres())
    name = f"t_limit_{uuid.uuid4().hex[:8]}"
    long_id = "".join(f"{i:04x}" for i in range(750))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {name} (id text PRIMARY KEY)")
        with pytest.raises(sa.exc.OperationalError) as info, engine.begin() as conn:
            conn.exec_driver_sql(f"INSERT INTO {name} VALUES (%(id)s)", {"id": long_id})
        assert info.value.orig.sqlstate.startswith("54"), info.value.orig.sqlstate
        assert not is_transient(info.value)
        assert not is_transient(info.value.orig)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        engine.dispose()


@pytest.mark.parametrize(
    "value",
    [pd.Timestamp("0999-01-01", tz="UTC"), pd.Timestamp("2300-01-01", tz="UTC"), "1899-12-31"],
)
def test_r23_a_timestamp_outside_the_supported_range_is_refused_at_write(bare_store, value):
    from reliability_helpers import END, forecast_frame, metrics_frame

    frame = metrics_frame(["good", "odd"])
    frame["ts"] = frame["ts"].astype(object)
    frame.loc[frame.index[-1], "ts"] = (
        pd.Timestamp(value, tz="UTC") if isinstance(value, str) else value
    )
    with pytest.raises(DataValidationError, match=r"outside the supported range") as info:
        bare_store.write_metrics(frame)
    assert "'odd'" in str(info.value) and str(pd.Timestamp(value).year) in str(info.value)
    fc = forecast_frame(["odd"], END)
    fc["created_at"] = pd.Timestamp(value, tz="UTC") if isinstance(value, str) else value
    with pytest.raises(DataValidationError, match=r"outside the supported range"):
        bare_store.write_forecasts(fc)
    assert bare_store.read_forecasts().empty  # nothing of either frame was written


BAD_TS = {  # rows a user wrote with plain SQL / pyarrow: out of range or unreadable
    "sqlite": [
        "999-01-01 00:00:00+00:00",
        "0999-06-01 00:00:00+00:00",
        "2300-01-01 00:00:00+00:00",
    ],
    "postgres": ["0999-01-01 00:00:00+00", "infinity", "0044-03-15 00:00:00+00 BC"],
    "mysql": ["1000-01-01 00:00:00", "2300-01-01 00:00:00", "9999-12-31 23:59:59"],
}


def _user_table_with_bad_rows(store, good: pd.DataFrame) -> None:
    """Good rows through the store, then bad rows behind its back (plain SQL or pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import sqlalchemy as sa

    store.write_metrics(good)
    if store.backend == "parquet":
        folder = store.root / store.tables.metrics / "date=2026-03-02"
        ts = pa.array([-30_000_000_000_000_000, 10_000_000_000_000_000], pa.int64())
        pq.write_table(
            pa.table(
                {
                    "series_id": ["bad", "bad"],
                    "ts": ts.cast(pa.timestamp("us", tz="UTC")),
                    "value": [1.0, 2.0],
                }
            ),
            folder / "user-extra.parquet",
        )
        return
    with store.engine.begin() as conn:
        for i, text in enumerate(BAD_TS[store.backend]):
            conn.execute(
                sa.text(
                    f"INSERT INTO {store.tables.metrics} (series_id, ts, value) VALUES (:s, :t, :v)"
                ),
                {"s": "bad", "t": text, "v": float(i)},
            )


def test_r23_a_read_meeting_out_of_range_rows_skips_and_counts_them(bare_store):
    from reliability_helpers import END, metrics_frame

    good = metrics_frame(["a", "b"], n=24)
    _user_table_with_bad_rows(bare_store, good)
    with pytest.warns(TimestampRangeWarning, match=r"(2|3) metrics row\(s\)"):
        rows = bare_store.read_metrics()
    assert len(rows) == len(good) and set(rows.series_id) == {"a", "b"}
    assert bare_store.skipped_rows["ts_out_of_range"] in (2, 3)
    with pytest.warns(TimestampRangeWarning):
        first, last, n = bare_store.metrics_range()
    assert (first, last, n) == (good.ts.min(), good.ts.max(), 2)
    recent = bare_store.read_recent(END, 12)  # the scheduled read never meets them
    assert len(recent) == 24
    with pytest.warns(TimestampRangeWarning):  # open-ended: meets the rows after 2262
        assert bare_store.read_metrics(start=good.ts.min()).shape[0] == len(good)
