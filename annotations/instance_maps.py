"""Images labelled by an instance map (0 = background, each object its own integer id), as in EMPS.

Such datasets are the public, fully labelled material a base model is pretrained on; here they
become AnnotatedImage objects with one polygon per object, like a LabelMe file without crops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from annotations.model import AnnotatedImage, AnnotationError, Instance


def instances_from_map(seg: np.ndarray, label: str = "particle") -> list[Instance]:
    """One polygon per id of `seg` (largest component, area-exact outline)."""
    from scipy import ndimage

    from annotations.geometry import mask_to_polygon

    instances = []
    for k, sl in enumerate(ndimage.find_objects(seg), start=1):
        if sl is None:
            continue
        poly = mask_to_polygon(seg[sl] == k, offset=(sl[1].start, sl[0].start))
        if poly is not None:
            instances.append(Instance(label, poly, None))
    return instances


def read_instance_map(image_path: Path, map_path: Path, label: str = "particle") -> AnnotatedImage:
    """The image (RGB) with every object of its instance map as a `label` polygon."""
    import cv2

    bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    seg = cv2.imread(str(map_path), cv2.IMREAD_UNCHANGED)
    if bgr is None or seg is None:
        raise AnnotationError(f"cannot read {Path(image_path).name} or its instance map")
    if seg.ndim == 3:
        seg = seg[:, :, 0]
    if seg.shape[:2] != bgr.shape[:2]:
        raise AnnotationError(f"{Path(map_path).name}: instance map size {seg.shape[:2]} differs from "
                              f"the image's {bgr.shape[:2]}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return AnnotatedImage(name=Path(image_path).name, image=rgb, instances=instances_from_map(seg, label))


def read_dataset(folder: Path, label: str = "particle", exclude: set[str] | frozenset[str] = frozenset(),
                 ) -> list[AnnotatedImage]:
    """Every `images/ID.png` with its `segmaps/ID.png` under `folder`, except the IDs in `exclude`."""
    folder = Path(folder)
    images = sorted((folder / "images").glob("*.png"))
    if not images:
        raise AnnotationError(f"{folder} holds no images/*.png")
    return [read_instance_map(p, folder / "segmaps" / p.name, label) for p in images
            if p.stem not in exclude and (folder / "segmaps" / p.name).is_file()]
