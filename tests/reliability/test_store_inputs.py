"""Rows 18, 19, 21 and 23 of the reliability table: store input that must never leak a
secret, open the wrong backend, be retried for ever, or poison later reads."""

from __future__ import annotations

import pytest

from storage import ConfigError, StorageConnectionError, open_store, redact_text, redact_url

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
