"""URLs, names and connections: checked before any SQL is built; passwords never shown."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from storage import (
    ColumnMap,
    ConfigError,
    StorageConnectionError,
    TableNames,
    open_store,
)
from storage.parquet import ParquetStore
from storage.sql import SqlStore


@pytest.mark.parametrize(
    "name",
    ["metrics; DROP TABLE x", "a-b", "1metrics", "", "m.x", 'q"uote', "x" * 49, "sp ace", "ü"],
)
def test_table_names_must_be_plain_identifiers(name):
    with pytest.raises(ConfigError) as err:
        TableNames(metrics=name)
    assert repr(name) in str(err.value)
    assert "metrics table" in str(err.value)


@pytest.mark.parametrize("field", ["id_col", "time_col", "target_col"])
def test_column_names_must_be_plain_identifiers(field):
    with pytest.raises(ConfigError, match="x y"):
        ColumnMap(**{field: "x y"})
    with pytest.raises(ConfigError, match="feature column 'bad-name'"):
        ColumnMap(feature_cols=("ok", "bad-name"))


def test_column_map_rules():
    assert ColumnMap.nixtla().keys == ("unique_id", "ds", "y")
    assert ColumnMap(feature_cols=["a", "b"]).feature_cols == ("a", "b")
    with pytest.raises(ConfigError, match="must differ"):
        ColumnMap(id_col="x", time_col="x")
    with pytest.raises(ConfigError, match="also id/time/target"):
        ColumnMap(feature_cols=("value",))
    with pytest.raises(ConfigError, match="tuple of names"):
        ColumnMap(feature_cols="error_rate")
    with pytest.raises(ConfigError, match="must differ"):
        TableNames(metrics="t", forecasts="t")
    assert TableNames(forecasts="fc").latest_view == "fc_latest"


def test_bad_names_fail_before_touching_the_database(tmp_path):
    db = tmp_path / "never.db"
    with pytest.raises(ConfigError):
        open_store(f"sqlite:///{db}", tables=TableNames(forecasts="f; DROP TABLE metrics"))
    assert not db.exists()


def test_url_selects_backend(tmp_path):
    s1 = open_store(tmp_path / "plain")
    s2 = open_store(f"parquet://{tmp_path / 'pq'}")
    s3 = open_store(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")  # parent folder created
    try:
        assert isinstance(s1, ParquetStore) and s1.backend == "parquet"
        assert isinstance(s2, ParquetStore) and s2.root == tmp_path / "pq"
        assert isinstance(s3, SqlStore) and s3.backend == "sqlite"
        assert (tmp_path / "sub" / "x.db").exists()
    finally:
        for s in (s1, s2, s3):
            s.close()


@pytest.mark.parametrize("url", ["", "   ", "parquet://"])
def test_empty_urls_are_refused(url):
    with pytest.raises(ConfigError):
        open_store(url)


def test_bad_frequency_and_horizon(tmp_path):
    with pytest.raises(ConfigError, match="'often'"):
        open_store(tmp_path / "a", freq="often")
    with pytest.raises(ConfigError, match="whole number of seconds"):
        open_store(tmp_path / "a", freq="1500ms")
    with pytest.raises(ConfigError, match="max_horizon"):
        open_store(tmp_path / "a", max_horizon=0)


def test_parquet_path_that_is_a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        open_store(f)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_postgres_names_host_not_password():
    port = _closed_port()
    url = f"postgresql+psycopg://forecaster:s3cr3t-pw@127.0.0.1:{port}/metricsdb"
    with pytest.raises(StorageConnectionError) as err:
        open_store(url)
    msg = str(err.value)
    assert "127.0.0.1" in msg and str(port) in msg and "'metricsdb'" in msg
    assert "'forecaster'" in msg
    assert "s3cr3t-pw" not in msg
    assert "s3cr3t-pw" not in repr(err.value.__cause__ or "")


def test_unopenable_sqlite_names_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageConnectionError, match="cannot open SQLite database"):
        open_store(f"sqlite:///{blocker / 'sub' / 'x.db'}")


def test_unsupported_dialect_hides_password():
    with pytest.raises(ConfigError) as err:
        open_store("oracle+oracledb://scott:tiger-pw@127.0.0.1:1/xe")
    assert "tiger-pw" not in str(err.value)
    assert "oracle" in str(err.value)


@pytest.mark.parametrize("driver", ["postgresql+asyncpg", "postgresql+psycopg2"])
def test_postgres_needs_the_psycopg_driver(driver):
    with pytest.raises(ConfigError) as err:
        open_store(f"{driver}://scott:tiger-pw@127.0.0.1:1/db")
    msg = str(err.value)
    assert "postgresql+psycopg://" in msg and "tiger-pw" not in msg, msg


def test_storage_imports_neither_torch_nor_lstm():
    code = (
        "import sys, storage, storage.sql, storage.parquet;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'lstm')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
