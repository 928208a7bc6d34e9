"""segbot: train a personal instance-segmentation model from a few labelled crops."""

__version__ = "0.1.0"
