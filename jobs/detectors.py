"""The user models a worker keeps loaded. A model is hundreds of MB: one stays in memory per worker
process, and a job for another model replaces it. The runner makes one cache per process and hands
it to every job's context; a test hands a cache whose loader returns a fake detector.

Several machines: the bundle's local copy may have gone stale since it was loaded (the model was
deleted, or its bundle re-installed, through another machine). So every job asks the store for the
bundle again (with S3 one small read of its `.complete` marker) and the cached model is used only
while the copy is still there with the same marker."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path

from core.settings import Settings
from segmodel.types import TileDetector
from storage.s3store import MARKER

# loads the bundle directory of a model (a local path) for a worker with these settings
Loader = Callable[[Path, Settings], TileDetector]


def load_bundle(bundle: Path, settings: Settings) -> TileDetector:
    """The mmdet model of a bundle in segbot's model store (segmodel.detector: nothing from elsewhere)."""
    from segmodel.detector import load_detector  # torch and mmdet: only when a job needs a model

    return load_detector(bundle, device=settings.device, trusted_roots=[settings.files_dir / "models"])


class DetectorCache:
    """The last loaded detector and its key; `get` loads another when the key changes."""

    def __init__(self, load: Loader = load_bundle) -> None:
        self.load = load
        self._key: Hashable | None = None
        self._detector: TileDetector | None = None

    def get(self, key: Hashable, bundle: Callable[[], Path], settings: Settings) -> TileDetector:
        """The detector for `key`; loaded again when the key or the bundle's copy changed.
        `bundle()` (which may download it) gives the bundle's local copy."""
        path = bundle()
        current = (key, _stamp(path))
        if self._detector is None or current != self._key:
            self._key, self._detector = None, None  # the old model goes before the next one loads
            self._detector = self.load(path, settings)
            self._key = current
        return self._detector


def _stamp(bundle: Path) -> tuple[bool, str | None]:
    """What tells one copy of a bundle from another: there at all, and its store marker (S3)."""
    marker = bundle / MARKER
    return bundle.is_dir(), marker.read_text() if marker.is_file() else None
