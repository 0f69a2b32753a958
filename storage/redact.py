"""``redact_url``: a store URL that is safe to print, log or keep, with every password masked.

A database URL can carry a secret in several places, and all of them are masked:

* the password of the user info, ``scheme://user:secret@host/db``, including one that holds
  an unencoded ``@`` or ``/`` (the user info runs to the last ``@``);
* query parameters that libpq and drivers read as secrets or secret files:
  ``?password=...``, ``sslpassword=``, ``passfile=``, ``sslkey=`` and any key containing
  ``pass``, ``pwd``, ``secret`` or ``token``.

Masking errs on the side of hiding too much: when the query itself holds an ``@``, the host
may be masked with the password. ``url_secrets`` lists the secret values themselves, so
that driver messages can be scrubbed of them (``redact_text``), which also masks every URL
and every libpq ``password=...``-style setting it finds in free text (error messages, log
lines). ``encode_userinfo`` percent-encodes an unencoded ``@`` in a URL's password, so a
URL parser sees the host the user meant (and never a piece of the password as the host).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*:)(?P<rest>.*)$", re.S)
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|sslkey", re.I)
#: A URL inside free text: a scheme, ':' and at least one '/', up to white space or a quote.
_URL_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*:/+[^\s'\"<>]*")
#: ``key=value`` of a libpq connection string (``password=x`` or ``password='x y'``).
_KV_IN_TEXT = re.compile(
    r"(?P<key>\b[A-Za-z_]*(?:pass|pwd|secret|token|sslkey)[A-Za-z_]*\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|[^\s&;,'\"]+)",
    re.I,
)


def _split_userinfo(rest: str) -> tuple[str, str, str] | None:
    """``(user, password, after)`` of ``user:password@after``; None without a password."""
    at = rest.rfind("@")
    if at < 0:
        return None
    user, sep, password = rest[:at].partition(":")
    if not sep or any(ch in user for ch in "/?#"):
        return None  # no password, or the '@' is in a path (sqlite:///dir/a@b.db)
    return user, password, rest[at:]


def _query_secrets(rest: str) -> list[tuple[int, int]]:
    """(start, end) spans of secret query values in ``rest``."""
    q = rest.find("?")
    if q < 0:
        return []
    spans, pos = [], q + 1
    for item in re.split(r"([&;])", rest[q + 1 :]):
        if item not in ("&", ";"):
            key, sep, _ = item.partition("=")
            if sep and _SECRET_KEY.search(unquote(key)):
                spans.append((pos + len(key) + 1, pos + len(item)))
        pos += len(item)
    return spans


def _parts(url: str) -> tuple[str, str] | None:
    """``(scheme and slashes, rest)``; every leading slash counts, so that a mistyped
    ``scheme:/user:pw@host`` is masked as well."""
    m = _SCHEME.match(url)
    if m is None:
        return None
    rest = m["rest"].lstrip("/")
    return url[: len(url) - len(rest)], rest


def redact_url(url: str) -> str:
    """The URL with every password replaced by ``***`` (see the module docstring).

    >>> redact_url("postgresql+psycopg://app:s3cret@db:5432/metrics?sslpassword=x")
    'postgresql+psycopg://app:***@db:5432/metrics?sslpassword=***'
    """
    text = str(url)
    parts = _parts(text)
    if parts is None:
        return text  # a plain path holds no password
    head, rest = parts
    userinfo = _split_userinfo(rest)
    if userinfo is not None:
        user, _, after = userinfo
        rest = f"{user}:{MASK}{after}"
    for start, end in reversed(_query_secrets(rest)):
        rest = rest[:start] + MASK + rest[end:]
    return head + rest


def url_secrets(url: str) -> list[str]:
    """The secret values in ``url`` (raw and percent-decoded), longest first."""
    text = str(url)
    parts = _parts(text)
    if parts is None:
        return []
    _, rest = parts
    found = []
    userinfo = _split_userinfo(rest)
    if userinfo is not None:
        found.append(userinfo[1])
    found.extend(rest[a:b] for a, b in _query_secrets(rest))
    out = {s for f in found for s in (f, unquote(f)) if s}
    return sorted(out, key=len, reverse=True)


def redact_text(text: str, url: str | None = None) -> str:
    """``text`` (e.g. a driver's error message) with every secret masked: those of ``url``
    (wherever they appear), every URL found in the text (``redact_url``) and every
    ``password=...``-style setting (libpq connection strings, query strings).

    >>> redact_text("failed: password=hunter2 host=db; see postgresql://u:pw@db/x")
    'failed: password=*** host=db; see postgresql://u:***@db/x'
    """
    out = str(text)
    if url is not None:
        for secret in url_secrets(url):
            out = out.replace(secret, MASK)
    out = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), out)
    return _KV_IN_TEXT.sub(lambda m: m["key"] + MASK, out)


def encode_userinfo(url: str) -> str:
    """``url`` with each ``@`` of its password percent-encoded (``user:p@ss@host`` ->
    ``user:p%40ss@host``): the user info runs to the last ``@``, as ``redact_url`` reads it."""
    text = str(url)
    parts = _parts(text)
    if parts is None:
        return text
    head, rest = parts
    authority, q, query = rest.partition("?")  # an '@' in the query is not the user info's
    userinfo = _split_userinfo(authority)
    if userinfo is None or "@" not in userinfo[1]:
        return text
    user, password, after = userinfo
    return f"{head}{user}:{password.replace('@', '%40')}{after}{q}{query}"
