"""LabelMe in and out, crops and geometry: the shared vocabulary of instances, crops and annotated images.

Below it, imaging reads the pixels and scales; above it, measures and outputs turn outlines into
numbers and files. No Telegram, no torch: the bot, the trainer and inference all import it.
"""

from annotations.model import AnnotatedImage, AnnotationError, Crop, Instance

__all__ = ["AnnotatedImage", "AnnotationError", "Crop", "Instance"]
