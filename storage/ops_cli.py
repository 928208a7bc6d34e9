"""Operator commands: `segbot backup`, `restore`, `health`, `clean`, `admin usage`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from segbot.errors import user_errors


def _settings():  # type: ignore[no-untyped-def]
    from storage.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    return settings


def _fail(error: Exception) -> click.ClickException:
    from storage.logs import redact

    return click.ClickException(redact(str(error)))


@click.command()
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Archive to write (.tar, or .tar.gz to compress).")
@user_errors
def backup(out: Path) -> None:
    """Copy the database and the file store into one archive with checksums."""
    from storage.backup import BackupError, create_backup

    settings = _settings()
    try:
        report = create_backup(settings.database_url, settings.files_dir, out,
                               progress=lambda line: click.echo(line, err=True))
    except BackupError as error:
        raise _fail(error) from None
    rows = ", ".join(f"{n} {t}" for t, n in report.rows.items())
    click.echo(f"backup written: {report.path} ({report.dialect} at {report.revision}; {rows}; "
               f"{report.files} files, {report.bytes / 1e6:.1f} MB)")


@click.command()
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an installation that already has data.")
@user_errors
def restore(archive: Path, force: bool) -> None:
    """Restore a backup into this (empty) installation; stop the bot and workers first."""
    from storage.backup import BackupError, restore_backup

    settings = _settings()
    try:
        report = restore_backup(archive, settings.database_url, settings.files_dir, force=force,
                                progress=lambda line: click.echo(line, err=True))
    except BackupError as error:
        raise _fail(error) from None
    rows = ", ".join(f"{n} {t}" for t, n in report.rows.items())
    click.echo(f"restored: {report.dialect} at {report.revision}; {rows}; {report.files} files")
    if report.missing:
        click.echo(f"warning: {len(report.missing)} rows name files that are not in the store, e.g. "
                   f"{report.missing[0]}", err=True)
        sys.exit(1)


@click.command()
@click.option("--skip", multiple=True,
              type=click.Choice(["database", "broker", "file-store", "gpu", "bot-api"]),
              help="Leave out a check (workers: --skip bot-api).")
@user_errors
def health(skip: tuple[str, ...]) -> None:
    """Check database, broker, file store, GPU and Bot API; exit 1 when any is unhealthy."""
    from storage.health import run_checks

    checks = run_checks(_settings(), skip=skip)
    for check in checks:
        click.echo(check.line())
    if not all(check.ok for check in checks):
        sys.exit(1)


@click.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@click.option("--days", type=float, default=None,
              help="Override SEGBOT_RETENTION_DAYS for this run.")
@user_errors
def clean(dry_run: bool, days: float | None) -> None:
    """Delete uploads and results older than the retention period and files nothing references."""
    from storage.retention import run_cleanup

    settings = _settings()
    if days is not None and days <= 0:
        raise click.BadParameter("must be > 0", param_hint="--days")
    report = run_cleanup(settings.database_url, settings.files_dir, days or settings.retention_days,
                         dry_run=dry_run)
    for line in report.lines():
        click.echo(line)


@click.group()
def admin() -> None:
    """Administration reports."""


@admin.command()
@user_errors
def usage() -> None:
    """Disk used per user (uploads, results, models), largest first."""
    import shutil

    from storage.db import session_scope
    from storage.files import FileStore
    from storage.retention import usage_by_user

    settings = _settings()
    with session_scope(settings.database_url) as session:
        rows = usage_by_user(session, FileStore(settings.files_dir))
    click.echo(f"{'user':<24} {'uploads':>8} {'results':>8} {'models':>7} {'MB':>10}")
    for row in rows:
        who = f"{row.telegram_id}" + (f" @{row.username}" if row.username else "")
        click.echo(f"{who[:24]:<24} {row.uploads:>8} {row.results:>8} {row.models:>7} "
                   f"{row.total_bytes / 1e6:>10.1f}")
    disk = shutil.disk_usage(settings.files_dir)
    click.echo(f"total {sum(r.total_bytes for r in rows) / 1e6:.1f} MB for {len(rows)} users; "
               f"{disk.free / 1e9:.1f} GB free on the store's disk")
