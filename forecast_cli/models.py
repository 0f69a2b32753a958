"""The registry commands: `forecast models`, `promote` and `export`, the same on a folder
and on a database registry (`tasks.common.get_registry` chooses from the settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from forecast_cli.common import _echo_json, _settings, fail


def _registry():
    """The registry the settings name (a missing SQLite file is an error, never created)."""
    from storage import StorageError
    from tasks.common import get_registry
    from tasks.settings import SettingsError

    try:
        return get_registry(_settings(), create=False)
    except (StorageError, SettingsError) as exc:
        from storage import redact_text

        fail(redact_text(str(exc)))


def models() -> None:
    """List model versions with their held-out metrics; * marks the champion."""
    from lstm import ArtifactError
    from storage import StorageError, redact_text

    registry = _registry()
    try:
        try:
            champion = registry.champion()
        except ArtifactError as exc:  # a malformed pointer: list the versions anyway
            typer.echo(f"warning: {exc}", err=True)
            champion = None
        versions = registry.versions()
    except StorageError as exc:
        fail(redact_text(str(exc)))
    if not versions:
        typer.echo(f"no models in {registry.where} yet: run `forecast train`")
        return
    typer.echo(
        f"{'':2}{'version':<26}{'MASE':>8}{'MASE s1':>9}{'naive':>8}{'promoted':>10}  created"
    )
    for v in versions:
        try:
            md = registry.metadata(v)
        except Exception as exc:  # a damaged version is listed, not fatal
            typer.echo(f"  {v:<26} unreadable: {redact_text(str(exc))}")
            continue
        comp = md.get("comparison") or {}
        m = comp.get("challenger", md.get("evaluation_metrics", {}))
        naive = comp.get("naive", {}).get("MASE", float("nan"))
        promoted = (md.get("decision") or {}).get("promote")
        typer.echo(
            f"{'*' if v == champion else ' ':2}{v:<26}{m.get('MASE', float('nan')):>8.3f}"
            f"{m.get('MASE_step1', float('nan')):>9.3f}{naive:>8.3f}{str(promoted):>10}  {md.get('created_at', '')[:19]}"
        )


def promote(
    version: Annotated[str, typer.Argument(help="Model version to make champion.")],
) -> None:
    """Make VERSION the champion (roll back or forward); the pointer moves in one atomic
    step (a file swap, or one transaction in a database registry)."""
    from lstm import ArtifactError
    from storage import StorageError, redact_text

    registry = _registry()
    try:
        try:
            before = registry.champion()
        except ArtifactError:  # a malformed pointer is replaced by the promotion
            before = None
        registry.promote(version, "manual promote from the command line")
    except (ArtifactError, StorageError) as exc:
        fail(redact_text(str(exc)))
    typer.echo(f"champion: {before} -> {version}")


def export(
    version: Annotated[str, typer.Argument(help="Model version to export.")],
    directory: Annotated[Path, typer.Argument(help="New folder for the package.")],
) -> None:
    """Write a package that runs without this project: weights, scalers, metadata,
    predict.py (numpy + torch only), requirements.txt, README.md with a working example."""
    from lstm import ArtifactError
    from storage import StorageError, redact_text

    registry = _registry()
    try:
        info = registry.export(version, directory)
    except (ArtifactError, StorageError) as exc:
        fail(redact_text(str(exc)))
    _echo_json(info)
