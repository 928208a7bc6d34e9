"""`segbot migrate`."""

from __future__ import annotations

import click

from segbot.errors import user_errors


@click.command()
@click.option("--database-url", default=None, help="Override DATABASE_URL for this run.")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to reach.")
@user_errors
def migrate(database_url: str | None, revision: str) -> None:
    """Bring the database (SQLite or PostgreSQL) to the latest schema."""
    from core.settings import get_settings
    from storage import migrate as migrations

    settings = get_settings()
    settings.ensure_dirs()
    url = database_url or settings.database_url
    migrations.upgrade(url, revision)
    click.echo(f"database at revision {migrations.current_revision(url)}")
    if settings.store_url:  # the one-shot setup step also makes the object store's bucket
        from storage.stores import open_store

        store = open_store(settings)
        store.ensure_bucket()  # type: ignore[attr-defined]
        click.echo(f"file store {store.describe()} ready")
