"""Which file store a deployment uses: the local folder (or NFS mount) or an S3 bucket."""

from __future__ import annotations

from core.settings import Settings
from storage.files import FileStore, Store
from storage.s3store import S3Store


def open_store(settings: Settings) -> Store:
    """The store the settings name: SEGBOT_STORE_URL=s3://... or the local files dir."""
    if settings.store_url:
        return S3Store.from_settings(settings)
    return FileStore(settings.files_dir)
