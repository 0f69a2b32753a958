"""Exceptions raised by the lstm library.

Every message names what is wrong (series, column, value) and, where one exists, the fix.
"""

from __future__ import annotations


class ForecastError(Exception):
    """Base class of every error this library raises on purpose."""


class DataValidationError(ForecastError, ValueError):
    """Input data is unusable as given (missing column, wrong dtype, bad values)."""


class ArtifactError(ForecastError):
    """A model artifact is missing, incomplete, incompatible or tampered with."""


class TrainingError(ForecastError, RuntimeError):
    """Training cannot continue (NaN loss, no training windows)."""


def preview(values, limit: int = 5) -> str:
    """Render at most `limit` values of a sequence for an error message."""
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:limit])
    more = f", ... ({len(values) - limit} more)" if len(values) > limit else ""
    return f"[{shown}{more}]"
