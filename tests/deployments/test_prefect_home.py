"""One Prefect home (issue 13): CLI commands reuse the server `forecast serve` runs, else
open the same database; a configured PREFECT_API_URL always wins."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _choose(models: Path, env: dict | None = None) -> dict:
    """What a fresh CLI process would choose (before Prefect is imported)."""
    code = (
        "import json, os, sys, deployments;"
        "said = deployments.use_local_prefect(sys.argv[1]);"
        "print(json.dumps({'said': said, 'api': os.environ.get('PREFECT_API_URL'),"
        "'home': os.environ.get('PREFECT_HOME'), 'imported': 'prefect' in sys.modules,"
        "'startup_timeout': os.environ.get('PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS')}))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    out = subprocess.run(
        [sys.executable, "-c", code, str(models)],
        cwd=REPO,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server API
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args):
        pass


def test_without_a_running_serve_the_cli_uses_the_serve_database(tmp_path):
    models = tmp_path / "data" / "models"
    got = _choose(models)
    assert got["api"] is None and got["home"] == str(tmp_path / "data" / "prefect")
    assert not got["imported"] and (tmp_path / "data" / "prefect").is_dir()
    assert got["startup_timeout"] == "180"  # a loaded machine gets time to start the server


def test_a_running_serve_server_is_reused_and_a_stale_url_file_is_ignored(tmp_path):
    models = tmp_path / "data" / "models"
    home = tmp_path / "data" / "prefect"
    home.mkdir(parents=True)
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api"
    (home / "api-url").write_text(url + "\n")
    try:
        got = _choose(models)
        assert got["api"] == url and "forecast serve" in got["said"]
    finally:
        server.shutdown()
        server.server_close()
    got = _choose(models)  # the server is gone: the file is stale
    assert got["api"] is None and got["home"] == str(home)


def test_a_configured_api_url_wins(tmp_path):
    got = _choose(tmp_path / "models", {"PREFECT_API_URL": "http://127.0.0.1:4200/api"})
    assert got["api"] == "http://127.0.0.1:4200/api" and got["home"] is None
