"""segbot: train a personal instance-segmentation model from a few labelled crops."""

from core import VERSION as __version__  # noqa: F401 - the CLI's --version and packaging read it
