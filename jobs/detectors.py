"""The user models a worker keeps loaded. A model is hundreds of MB: one stays in memory per worker
process, and a job for another model replaces it. The runner makes one cache per process and hands
it to every job's context; a test hands a cache whose loader returns a fake detector."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path

from core.settings import Settings
from segmodel.types import TileDetector

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
        """The detector for `key`; `bundle()` (which may download it) only runs when it must be loaded."""
        if self._detector is None or key != self._key:
            self._key, self._detector = None, None  # the old model goes before the next one loads
            self._detector = self.load(bundle(), settings)
            self._key = key
        return self._detector
