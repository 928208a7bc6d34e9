"""Operator commands: `segbot backup`, `restore`, `health`, `clean`, `admin usage`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from segbot.errors import user_errors


def _settings():  # type: ignore[no-untyped-def]
    from core.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    return settings


def _fail(error: Exception) -> click.ClickException:
    from core.logs import redact

    return click.ClickException(redact(str(error)))


def human(size: float) -> str:
    """Bytes as `812 B`, `27.4 kB`, `1.2 GB`."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _database_errors(func):  # type: ignore[no-untyped-def]
    """An unreachable or unmigrated database is one line, never a traceback."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        from sqlalchemy.exc import OperationalError, ProgrammingError

        try:
            return func(*args, **kwargs)
        except (OperationalError, ProgrammingError) as error:
            from core.logs import redact

            reason = str(error.orig if error.orig is not None else error).strip().splitlines()[0]
            raise click.ClickException(f"database error: {redact(reason)} (check DATABASE_URL; "
                                       "run `segbot migrate`; `segbot health` tells more)") from None

    return wrapper


def _store(settings):  # type: ignore[no-untyped-def]
    """The configured store: the local folder or the S3 bucket (SEGBOT_STORE_URL)."""
    from storage.stores import open_store

    return open_store(settings)


@click.command()
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Archive to write (.tar, or .tar.gz to compress).")
@user_errors
@_database_errors
def backup(out: Path) -> None:
    """Copy the database and the file store into one archive with checksums."""
    from ops.backup import BackupError, create_backup, ops_lock

    settings = _settings()
    try:
        with ops_lock(settings.data_dir, "a backup"):
            report = create_backup(settings.database_url, _store(settings), out,
                                   progress=lambda line: click.echo(line, err=True))
    except BackupError as error:
        raise _fail(error) from None
    rows = ", ".join(f"{n} {t}" for t, n in report.rows.items())
    click.echo(f"backup written: {report.path} ({report.dialect} at {report.revision}; {rows}; "
               f"{report.files} files, {human(report.bytes)}; archive {human(report.path.stat().st_size)})")


@click.command()
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an installation that already has data.")
@click.option("--check", is_flag=True, help="Only verify the archive's checksums; change nothing.")
@user_errors
@_database_errors
def restore(archive: Path, force: bool, check: bool) -> None:
    """Restore a backup into this (empty) installation; stop the bot and workers first."""
    from ops.backup import BackupError, ops_lock, restore_backup, verify_backup

    if check:
        try:
            manifest = verify_backup(archive)
        except BackupError as error:
            raise _fail(error) from None
        rows = ", ".join(f"{n} {t}" for t, n in manifest.get("rows", {}).items())
        click.echo(f"{archive.name}: intact; {manifest['dialect']} at {manifest.get('revision')}, made "
                   f"{manifest.get('created')}; {rows}; {len(manifest['files']) - 1} files")
        return
    settings = _settings()
    try:
        with ops_lock(settings.data_dir, "a restore"):
            report = restore_backup(archive, settings.database_url, _store(settings), force=force,
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
    from ops.health import run_checks

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
@_database_errors
def clean(dry_run: bool, days: float | None) -> None:
    """Delete uploads and results older than the retention period and files nothing references."""
    from ops.backup import BackupError, ops_lock
    from ops.retention import run_cleanup

    settings = _settings()
    if days is not None and days <= 0:
        raise click.BadParameter("must be > 0", param_hint="--days")
    try:
        with ops_lock(settings.data_dir, "a clean"):
            report = run_cleanup(settings.database_url, _store(settings),
                                 days or settings.retention_days, dry_run=dry_run)
    except BackupError as error:
        raise _fail(error) from None
    for line in report.lines():
        click.echo(line)


@click.group()
def admin() -> None:
    """Administration reports."""


@admin.command()
@user_errors
@_database_errors
def usage() -> None:
    """Disk used per user (uploads, results, models), largest first."""
    import shutil

    from ops.retention import usage_by_user
    from storage.db import session_scope
    settings = _settings()
    with session_scope(settings.database_url) as session:
        rows = usage_by_user(session, _store(settings))
    click.echo(f"{'user':<24} {'uploads':>8} {'results':>8} {'models':>7} {'disk':>10}")
    for row in rows:
        who = f"{row.telegram_id}" + (f" @{row.username}" if row.username else "")
        click.echo(f"{who[:24]:<24} {row.uploads:>8} {row.results:>8} {row.models:>7} "
                   f"{human(row.total_bytes):>10}")
    disk = shutil.disk_usage(settings.files_dir)
    click.echo(f"total {human(sum(r.total_bytes for r in rows))} for {len(rows)} users; "
               f"{human(disk.free)} free on the store's disk")
