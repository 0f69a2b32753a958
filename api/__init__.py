"""api: the read-only HTTP API (`forecast api`): latest forecasts, `/predict` on the
champion, `/healthz` and Prometheus `/metrics`. Built on FastAPI; reads through tasks'
settings and store, and lstm's registry."""

from api.app import ApiState, api_state, create_app, rows_response

__all__ = ["ApiState", "api_state", "create_app", "rows_response"]
