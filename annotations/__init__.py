"""Domain package: LabelMe and microscope images in, measurements and exports out.

No Telegram, no torch: the bot, the trainer and inference all import it.
"""

from annotations.model import AnnotatedImage, AnnotationError, Crop, Instance

__all__ = ["AnnotatedImage", "AnnotationError", "Crop", "Instance"]
