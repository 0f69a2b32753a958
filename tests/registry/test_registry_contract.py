"""The model registry's contract, run against every kind alike: the folder (embedded
default), SQLite, PostgreSQL and MariaDB tables (issue 15.1 and 15.2). Each registry is
built the way the job builds it (`tasks.common.get_registry` from the settings), the
database ones with a unique table prefix, dropped afterwards."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from forecast_test_support import require_mariadb, require_postgres, tiny_forecaster

import lstm.artifacts
import lstm.registry_folder
import storage.sqlregistry
from lstm import (
    ArtifactError,
    ModelRegistry,
    Registry,
    generate_metrics,
)
from lstm.artifacts import METADATA, SUMS, WEIGHTS
from storage import SqlRegistryBackend, StorageConnectionError
from tasks.common import forget_stores, get_registry
from tasks.settings import get_settings

KINDS = [
    "folder",
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]
FILES = [WEIGHTS, "scaler_features.json", "scaler_target.json", METADATA, SUMS]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    end = pd.Timestamp("2026-03-02 12:00", tz="UTC")
    return generate_metrics(3, 2, seed=1, start=end - pd.Timedelta("5min") * (2 * 288 - 1))


class Kind:
    """A registry of one kind, and what a test needs to reach behind it."""

    def __init__(self, name: str, tmp_path, monkeypatch) -> None:
        self.name = name
        self.prefix = f"t{uuid.uuid4().hex[:8]}_"
        monkeypatch.delenv("FORECAST_MODELS_URL", raising=False)
        if name == "folder":
            self.location = str(tmp_path / "models")
        elif name == "sqlite":
            self.location = f"sqlite:///{tmp_path / 'registry.db'}"
        elif name == "postgres":
            self.location = require_postgres()
        else:
            self.location = require_mariadb()
        self.settings = get_settings(models_dir=self.location, models_table_prefix=self.prefix)
        self._others: list[Registry] = []

    def registry(self) -> Registry:
        return get_registry(self.settings)

    def fresh(self) -> Registry:
        """Another registry object on the same location (another process or machine)."""
        if self.name == "folder":
            return ModelRegistry(self.location)
        reg = Registry(SqlRegistryBackend(self.location, self.prefix))
        self._others.append(reg)
        return reg

    # what an attacker or a disk fault does to the stored bytes
    def stored(self, version: str, name: str) -> bytes:
        reg = self.registry()
        if self.name == "folder":
            return (reg.path(version) / name).read_bytes()
        return reg.backend.read_file(version, name)

    def overwrite(self, version: str, name: str, data: bytes | None) -> None:
        reg = self.registry()
        if self.name == "folder":
            path = reg.path(version) / name
            path.unlink() if data is None else path.write_bytes(data)
            return
        f = reg.backend.t["files"]
        cond = (f.c.version == version) & (f.c.name == name)
        with reg.backend.engine.begin() as conn:
            if data is None:
                conn.execute(sa.delete(f).where(cond))
            else:
                conn.execute(sa.update(f).where(cond).values(data=data))

    def set_pointer_version(self, value: str) -> None:
        reg = self.registry()
        if self.name == "folder":
            import json

            pointer = reg.root / "champion.json"
            data = json.loads(pointer.read_text())
            data["version"] = value
            pointer.write_text(json.dumps(data))
            return
        c = reg.backend.t["champion"]
        with reg.backend.engine.begin() as conn:
            conn.execute(sa.update(c).values(version=value))

    def row_counts(self) -> dict[str, int]:
        reg = self.registry()
        with reg.backend.engine.connect() as conn:
            return {
                k: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for k, t in reg.backend.t.items()
            }

    def drop(self) -> None:
        for reg in self._others:
            reg.backend.close()
        if self.name in ("postgres", "mariadb"):
            self.registry().backend.drop_all()
        forget_stores()


@pytest.fixture(params=KINDS)
def kind(request, tmp_path, monkeypatch):
    k = Kind(request.param, tmp_path, monkeypatch)
    yield k
    k.drop()


def flip(data: bytes) -> bytes:
    b = bytearray(data)
    b[len(b) // 2] ^= 0x01
    return bytes(b)


# ---------------------------------------------------------------------------- versions
def test_save_then_load_gives_the_same_forecasts_and_metadata(kind, frame):
    reg = kind.registry()
    assert reg.versions() == [] and reg.champion() is None
    f = tiny_forecaster(1)
    v = reg.save(f, metrics={"MASE": 0.75}, note="contract")
    assert reg.versions() == [v]
    md = reg.metadata(v)
    assert md["version"] == v and md["note"] == "contract"
    assert md["evaluation_metrics"] == {"MASE": 0.75}
    assert set(md["files"]) == {WEIGHTS, "scaler_features.json", "scaler_target.json"}
    assert reg.verify(v)["version"] == v
    loaded = reg.load(v)
    a, _ = f.forecast(frame)
    b, _ = loaded.forecast(frame)
    assert np.abs(a.yhat.to_numpy() - b.yhat.to_numpy()).max() <= 1e-6
    # another registry object on the same location (another process or machine) sees it
    assert kind.fresh().versions() == [v]


def test_versions_are_listed_in_order_and_unknown_ones_are_refused_by_name(kind):
    reg = kind.registry()
    saved = [reg.save(tiny_forecaster(i)) for i in range(3)]
    assert reg.versions() == sorted(saved)
    with pytest.raises(ArtifactError, match="'20990101T000000Z-000000' does not exist"):
        reg.load("20990101T000000Z-000000")
    with pytest.raises(ArtifactError, match="does not exist"):
        reg.metadata("20990101T000000Z-000000")
    with pytest.raises(ArtifactError, match="invalid model version"):
        reg.load("../../etc")
    with pytest.raises(ArtifactError, match="no champion model"):
        reg.load()


# ---------------------------------------------------------------------------- champion
def test_promote_history_and_rollback(kind):
    reg = kind.registry()
    a, b = reg.save(tiny_forecaster(1)), reg.save(tiny_forecaster(2))
    reg.promote(a, "first")
    reg.promote(b, "better")
    assert reg.champion() == b
    reg.promote(a, "rollback")  # a rollback is a promotion of an older version
    assert reg.champion() == a and reg.load().metadata["version"] == a
    assert [(e["version"], e["reason"]) for e in reg.history()] == [
        (a, "first"),
        (b, "better"),
        (a, "rollback"),
    ]
    assert kind.fresh().champion() == a
    with pytest.raises(ArtifactError, match="does not exist"):
        reg.promote("20990101T000000Z-000000")
    assert reg.champion() == a and len(reg.history()) == 3


def test_last_good_skips_the_refused_version(kind):
    reg = kind.registry()
    a, b = reg.save(tiny_forecaster(1)), reg.save(tiny_forecaster(2))
    reg.promote(a)
    reg.promote(b)
    model, version = reg.last_good(exclude=[b])
    assert version == a and model.metadata["version"] == a


def test_concurrent_promotions_lose_no_history(kind):
    """Eight writers promoting at once: every promotion is in the history, in one order."""
    reg = kind.registry()
    versions = [reg.save(tiny_forecaster(i)) for i in range(2)]
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            r = kind.fresh() if i % 2 else reg  # separate engines / file handles too
            for j in range(3):
                r.promote(versions[(i + j) % 2], f"w{i}-{j}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    history = reg.history()
    assert sorted(e["reason"] for e in history) == sorted(
        f"w{i}-{j}" for i in range(8) for j in range(3)
    )
    assert reg.champion() == history[-1]["version"]
    if kind.name != "folder":
        pointer = reg.backend.read_pointer()
        assert pointer["revision"] == 24 and kind.row_counts()["promotions"] == 24


# ---------------------------------------------------------------------------- tampering
@pytest.mark.parametrize("name", FILES)
def test_a_modified_file_is_refused_naming_the_version_and_last_good_falls_back(
    kind, name, tmp_path
):
    reg = kind.registry()
    a, b = reg.save(tiny_forecaster(1)), reg.save(tiny_forecaster(2))
    reg.promote(a)
    reg.promote(b)
    kind.overwrite(b, name, flip(kind.stored(b, name)))
    with pytest.raises(ArtifactError) as err:
        reg.load()
    message = str(err.value)
    assert b in message, message
    assert name in message or (name == SUMS and "SHA-256 mismatch" in message), message
    assert reg.last_good(exclude=[b])[1] == a
    with pytest.raises(ArtifactError):
        reg.promote(b)  # a tampered version is never promoted again
    with pytest.raises(ArtifactError):
        reg.export(b, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_a_missing_file_is_refused(kind):
    reg = kind.registry()
    v = reg.save(tiny_forecaster(1))
    kind.overwrite(v, "scaler_target.json", None)
    with pytest.raises(ArtifactError, match="scaler_target.json") as err:
        reg.load(v)
    assert v in str(err.value)


def test_a_malformed_pointer_is_reported_and_last_good_falls_back(kind):
    reg = kind.registry()
    a = reg.save(tiny_forecaster(1))
    reg.promote(a)
    kind.set_pointer_version("../elsewhere")
    with pytest.raises(ArtifactError, match="malformed"):
        reg.champion()
    assert reg.last_good()[1] == a


# ---------------------------------------------------------------------------- crashes
def test_a_crash_mid_save_leaves_the_old_champion_loading_and_nothing_behind(kind, monkeypatch):
    """Issue 15.2: an exception after some of the version's files were written. SQL: the
    transaction rolls back (no temporary file exists at all); folder: the temporary
    folder is removed (and one left by a kill is collected by age only, row 4/17)."""
    reg = kind.registry()
    old = reg.save(tiny_forecaster(1))
    reg.promote(old)
    before = None if kind.name == "folder" else kind.row_counts()

    def boom(*_args, **_kw):
        raise RuntimeError("injected crash mid-save")

    if kind.name == "folder":
        real = lstm.artifacts.atomic_write_bytes
        written: list[str] = []

        def write_then_crash(path, data):
            if written:
                boom()
            real(path, data)
            written.append(str(path))

        monkeypatch.setattr(lstm.artifacts, "atomic_write_bytes", write_then_crash)
    else:

        def crash_after_rows(label: str) -> None:
            if label == "after file scaler_target.json":  # 3 of the 5 file rows written
                boom()

        monkeypatch.setattr(storage.sqlregistry, "_fault_point", crash_after_rows)
    with pytest.raises(RuntimeError, match="injected crash"):
        reg.save(tiny_forecaster(2))
    monkeypatch.undo()
    assert reg.versions() == [old]
    assert reg.champion() == old and reg.load().metadata["version"] == old
    if kind.name == "folder":
        assert list(reg.versions_dir.glob(".*.tmp")) == []
    else:
        assert kind.row_counts() == before
        assert reg.cleanup() == 0
    assert reg.save(tiny_forecaster(3)) in reg.versions()  # and the next save works


def test_a_crash_mid_promotion_leaves_the_pointer_and_history(kind, monkeypatch):
    reg = kind.registry()
    a, b = reg.save(tiny_forecaster(1)), reg.save(tiny_forecaster(2))
    reg.promote(a, "first")

    def boom(*_args, **_kw):
        raise RuntimeError("injected crash mid-promotion")

    if kind.name == "folder":
        monkeypatch.setattr(lstm.registry_folder, "atomic_write_bytes", boom)
    else:
        monkeypatch.setattr(
            storage.sqlregistry,
            "_fault_point",
            lambda label: boom() if label == "after champion update" else None,
        )
    with pytest.raises(RuntimeError, match="injected crash"):
        reg.promote(b, "second")
    monkeypatch.undo()
    assert reg.champion() == a
    assert [e["reason"] for e in reg.history()] == ["first"]


# ---------------------------------------------------------------------------- export
def test_export_of_any_version(kind, tmp_path):
    reg = kind.registry()
    v = reg.save(tiny_forecaster(1))
    info = reg.export(v, tmp_path / "pkg")
    assert (tmp_path / "pkg" / "model_weights.pth").exists()
    assert info["export_dir"] == str(tmp_path / "pkg")


# ---------------------------------------------------------------------------- URLs
def test_a_password_in_the_registry_url_is_never_shown():
    url = "postgresql+psycopg://forecast:s3cr3t-pw@127.0.0.1:1/registry?connect_timeout=2"
    with pytest.raises(StorageConnectionError) as err:
        SqlRegistryBackend(url)
    assert "s3cr3t-pw" not in str(err.value) and "127.0.0.1:1" in str(err.value)
    s = get_settings(models_dir=url)
    assert s.models_url == url and "s3cr3t-pw" not in repr(s)
    assert "s3cr3t-pw" not in s.registry_location()


def test_a_mistyped_or_unsupported_registry_url_is_refused_up_front():
    from tasks.settings import SettingsError

    for bad in ("sqlite:/one/slash.db", "redis://u:pw@127.0.0.1/0", "parquet:///lake"):
        with pytest.raises(SettingsError, match="not a model registry location") as err:
            get_settings(models_dir=bad)
        assert ":pw@" not in str(err.value)


def test_the_old_and_new_setting_names_and_the_store_database(monkeypatch, tmp_path):
    monkeypatch.delenv("FORECAST_MODELS_URL", raising=False)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    monkeypatch.setenv("FORECAST_MODELS_DIR", db)  # the old name holding a URL
    s = get_settings()
    assert s.models_url == db and s.resolved_models_url() == db
    monkeypatch.delenv("FORECAST_MODELS_DIR")
    monkeypatch.setenv("FORECAST_MODELS_URL", str(tmp_path / "folder"))  # a folder
    s = get_settings()
    assert s.models_url is None and s.models_dir == tmp_path / "folder"
    monkeypatch.setenv("FORECAST_MODELS_URL", "store")
    monkeypatch.setenv("FORECAST_STORE_URL", db)
    assert get_settings().resolved_models_url() == db
    monkeypatch.setenv("FORECAST_MODELS_URL", db)
    # a flow's models_dir parameter wins over the environment
    assert get_settings(models_dir=str(tmp_path / "m")).resolved_models_url() is None


def test_a_reader_never_creates_a_sqlite_registry_at_a_mistyped_path(tmp_path):
    from storage import ConfigError

    url = f"sqlite:///{tmp_path / 'typo' / 'registry.db'}"
    with pytest.raises(ConfigError, match="does not exist"):
        get_registry(get_settings(models_dir=url), create=False)
    assert not (tmp_path / "typo").exists()


# ---------------------------------------------------------------------------- privileges
@pytest.mark.parametrize(
    "server",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
def test_the_documented_privileges_are_enough_once_the_tables_exist(server):
    """An account holding only SELECT, INSERT, UPDATE on the four tables (created by an
    owner) saves, promotes and loads (README: Running it for real)."""
    admin_url = require_postgres() if server == "postgres" else require_mariadb()
    prefix = f"p{uuid.uuid4().hex[:8]}_"
    user, password = f"reg_{uuid.uuid4().hex[:8]}", "Pw-0123456789"
    owner = SqlRegistryBackend(admin_url, prefix)

    def run(conn, sql: str) -> None:
        conn.execute(sa.text(sql))  # text(): '%' in a MySQL host name is escaped

    tables = [t.name for t in owner.t.values()]
    url = sa.engine.make_url(admin_url).set(username=user, password=password)
    try:
        with owner.engine.begin() as conn:
            if server == "postgres":
                run(conn, f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
                run(conn, f"GRANT USAGE ON SCHEMA public TO {user}")
                for t in tables:
                    run(conn, f"GRANT SELECT, INSERT, UPDATE ON {t} TO {user}")
            else:
                run(conn, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
                run(conn, f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}'")
                db = sa.engine.make_url(admin_url).database
                for t in tables:
                    for host in ("%", "localhost"):
                        run(conn, f"GRANT SELECT, INSERT, UPDATE ON {db}.{t} TO '{user}'@'{host}'")
        worker = Registry(SqlRegistryBackend(url.render_as_string(hide_password=False), prefix))
        try:
            v = worker.save(tiny_forecaster(1))
            worker.promote(v, "limited account")
            assert worker.load().metadata["version"] == v and worker.history()[-1]["version"] == v
        finally:
            worker.backend.close()
    finally:
        owner.drop_all()
        with owner.engine.begin() as conn:
            if server == "postgres":
                run(conn, f"DROP OWNED BY {user}")
                run(conn, f"DROP ROLE IF EXISTS {user}")
            else:
                run(conn, f"DROP USER IF EXISTS '{user}'@'%', '{user}'@'localhost'")
        owner.close()
