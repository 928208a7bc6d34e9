"""Training samples from the labelled crops only, with augmentation.

Each LabelMe crop (or the whole image when there are none) becomes a `Region`: the crop's pixels
rescaled by the training rescale factor, and one mask per object touching it, clipped to it.
Nothing outside the crops is ever shown to the model: unlabelled objects there would be taught
as background. Samples are random sub-crops of regions with flips, 90-degree rotations,
brightness/contrast and noise (see Augmentation for the scale, gamma and blur levers, measured and off).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from annotations.geometry import polygon_to_mask
from annotations.model import AnnotatedImage, Crop
from segmodel.options import LabelStats

MIN_MASK_PX = 3  # slivers of objects cut by a crop edge smaller than this are dropped


@dataclass
class Region:
    name: str
    image: np.ndarray  # (h, w, 3) uint8, rescaled
    masks: np.ndarray  # (n, h, w) bool
    labels: np.ndarray  # (n,) int64, index into classes

    @property
    def n_objects(self) -> int:
        return int(len(self.labels))


@dataclass(frozen=True)
class Augmentation:
    """What SampleSource varies (augment=False shows the crops as they are).

    scale: range of an extra zoom factor (log-uniform, with probability scale_p) for particles a little
    larger or smaller on other images; gamma (probability gamma_p) and a Gaussian blur (sigma 0.5-1.2 px,
    probability blur_p) for contrast and focus that differ between images. Off by default: with scale
    (0.8, 1.25) p 0.5, gamma (0.7, 1.4) p 0.5 and blur p 0.25, bench_scenarios --quick (150 iterations)
    fell from F1 0.887 / 0.753 / 0.468 to 0.877 / 0.698 / 0.373 (same image / same series / other
    materials): at the default budgets the model learns the labelled look less well and gains nothing.
    """

    flips: bool = True
    scale: tuple[float, float] | None = None
    scale_p: float = 0.5
    contrast: tuple[float, float] = (0.7, 1.3)
    brightness: float = 25.0
    gamma: tuple[float, float] | None = None
    gamma_p: float = 0.5
    blur_p: float = 0.0
    noise_p: float = 0.5
    # Copy-paste: with probability copy_paste_p a sample gets 1..copy_paste_max whole labelled objects
    # (from any region, flipped or turned) pasted onto its background, never over another object; the
    # crops are fully labelled, so the background there is known to be empty. Off by default: at p 0.5,
    # bench_scenarios --quick went from F1 0.887 / 0.753 / 0.468 to 0.893 / 0.650 / 0.397 (recall up,
    # precision down: more false positives on images it was not trained on).
    copy_paste_p: float = 0.0
    copy_paste_max: int = 4
    # Piles: the share of pasted objects laid partly over a neighbour (an object of the sample or one
    # pasted before) instead of onto empty background; the covered part is cut from the neighbour's mask,
    # as a manual mask outlines only the visible part of a half-hidden particle.
    pile_p: float = 0.0
    min_visible: float = 0.25  # a covered object keeps its label while this share of it stays visible


@dataclass(frozen=True)
class Cutout:
    """One whole labelled object cut out of its region, for copy-paste."""

    image: np.ndarray  # (h, w, 3) uint8, the object's box
    mask: np.ndarray  # (h, w) bool
    label: int


def cutouts(regions: Sequence[Region]) -> list[Cutout]:
    """Every object that lies wholly inside its region (one cut by a crop edge is only a part)."""
    out: list[Cutout] = []
    for region in regions:
        h, w = region.image.shape[:2]
        for mask, label, (x0, y0, x1, y1) in zip(region.masks, region.labels, boxes_from_masks(region.masks),
                                                 strict=True):
            x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
            if x0 == 0 or y0 == 0 or x1 == w or y1 == h:
                continue
            out.append(Cutout(region.image[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1].copy(), int(label)))
    return out


@dataclass
class Sample:
    image: np.ndarray  # (h, w, 3) uint8
    masks: np.ndarray  # (n, h, w) bool
    labels: np.ndarray  # (n,) int64
    boxes: np.ndarray  # (n, 4) float32 xyxy


def crops_of(ann: AnnotatedImage) -> list[Crop]:
    if ann.crops:
        return list(ann.crops)
    return [Crop(0.0, 0.0, float(ann.width), float(ann.height))]


def label_stats(sources: Sequence[AnnotatedImage]) -> LabelStats:
    """Object size/shape/density statistics of the labels that will be trained on."""
    import cv2

    diameters: list[float] = []
    aspects: list[float] = []
    counts: dict[str, int] = {}
    area_px = 0.0
    n_regions = 0
    for ann in sources:
        for crop in crops_of(ann):
            n_regions += 1
            area_px += max(0.0, crop.width) * max(0.0, crop.height)
        for inst in ann.instances:
            poly = inst.polygon.astype(np.float32)
            area = abs(float(cv2.contourArea(poly)))
            if area <= 0:
                continue
            counts[inst.label] = counts.get(inst.label, 0) + 1
            diameters.append(2 * math.sqrt(area / math.pi))
            (_, _), (rw, rh), _ = cv2.minAreaRect(poly)
            short = max(1e-3, min(rw, rh))
            aspects.append(max(rw, rh) / short)
    d = np.asarray(diameters) if diameters else np.asarray([float("nan")])
    a = np.asarray(aspects) if aspects else np.asarray([1.0])
    n = len(diameters)
    return LabelStats(
        n_images=len(sources), n_regions=n_regions, n_objects=n, counts=dict(sorted(counts.items())),
        median_d_px=float(np.median(d)), p10_d_px=float(np.percentile(d, 10)),
        p90_d_px=float(np.percentile(d, 90)), median_aspect=float(np.median(a)),
        p90_aspect=float(np.percentile(a, 90)),
        objects_per_mpx=float(n / area_px * 1e6) if area_px > 0 else 0.0,
    )


def build_regions(sources: Sequence[AnnotatedImage], classes: list[str], rescale: float) -> list[Region]:
    """One region per labelled crop: rescaled pixels and clipped object masks."""
    import cv2

    index = {c: i for i, c in enumerate(classes)}
    regions: list[Region] = []
    for ann in sources:
        for k, crop in enumerate(crops_of(ann)):
            x0, y0 = max(0, int(math.floor(crop.x0))), max(0, int(math.floor(crop.y0)))
            x1, y1 = min(ann.width, int(math.ceil(crop.x1))), min(ann.height, int(math.ceil(crop.y1)))
            if x1 - x0 < 4 or y1 - y0 < 4:
                continue
            pixels = ann.image[y0:y1, x0:x1]
            w, h = max(1, round((x1 - x0) * rescale)), max(1, round((y1 - y0) * rescale))
            if (w, h) != (x1 - x0, y1 - y0):
                # area averaging when shrinking, as inference/tiling.py reads a shrunk tile
                interp = cv2.INTER_AREA if rescale < 1 else cv2.INTER_LINEAR
                pixels = cv2.resize(pixels, (w, h), interpolation=interp)
            masks, labels = [], []
            for inst in ann.instances:
                if inst.label not in index:
                    continue
                # pixel centres map like cv2.resize maps them: j -> (j + 0.5) * rescale - 0.5
                pts = (inst.polygon - [x0, y0] + 0.5) * rescale - 0.5
                if pts[:, 0].max() < 0 or pts[:, 1].max() < 0 or pts[:, 0].min() >= w or pts[:, 1].min() >= h:
                    continue
                # the pixels the outline encloses (area == outline area); the canvas clips to the crop
                mask = polygon_to_mask(pts, h, w)
                if int(mask.sum()) < MIN_MASK_PX:
                    continue
                masks.append(mask)
                labels.append(index[inst.label])
            regions.append(Region(
                name=f"{ann.name}#crop{k + 1}", image=np.ascontiguousarray(pixels),
                masks=np.stack(masks) if masks else np.zeros((0, h, w), bool),
                labels=np.asarray(labels, np.int64),
            ))
    return regions


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        ys = np.flatnonzero(m.any(axis=1))
        xs = np.flatnonzero(m.any(axis=0))
        boxes[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes


def iterations_per_epoch(regions: Sequence[Region], crop_size: int, batch_size: int) -> int:
    """One epoch shows about every labelled pixel once."""
    area = sum(r.image.shape[0] * r.image.shape[1] for r in regions)
    return max(1, math.ceil(area / (crop_size * crop_size) / max(1, batch_size)))


class SampleSource:
    """Draws augmented random sub-crops from regions (weighted by region area)."""

    def __init__(self, regions: Sequence[Region], crop_size: int, augment: bool | Augmentation,
                 seed: int = 0) -> None:
        if not regions:
            raise ValueError("no labelled regions to train on")
        self.regions = list(regions)
        self.crop_size = crop_size
        self.augment = (Augmentation() if augment is True else augment) or None
        self.rng = np.random.default_rng(seed)
        areas = np.asarray([r.image.shape[0] * r.image.shape[1] for r in self.regions], np.float64)
        self.weights = areas / areas.sum()
        wants_cutouts = self.augment is not None and self.augment.copy_paste_p > 0
        self.cutouts = cutouts(self.regions) if wants_cutouts else []

    def draw(self) -> Sample:
        region = self.regions[int(self.rng.choice(len(self.regions), p=self.weights))]
        aug = self.augment
        zoom = 1.0
        if aug is not None and aug.scale is not None and self.rng.random() < aug.scale_p:
            lo, hi = np.log(aug.scale[0]), np.log(aug.scale[1])
            zoom = float(np.exp(self.rng.uniform(lo, hi)))
        h, w = region.image.shape[:2]
        side = max(1, round(self.crop_size / zoom))  # source pixels that become one crop after zooming
        ch, cw = min(h, side), min(w, side)
        y0 = int(self.rng.integers(0, h - ch + 1))
        x0 = int(self.rng.integers(0, w - cw + 1))
        image = region.image[y0:y0 + ch, x0:x0 + cw]
        masks = region.masks[:, y0:y0 + ch, x0:x0 + cw]
        if zoom != 1.0:  # a full-size cut becomes exactly crop_size; a smaller region scales with it
            size = tuple(self.crop_size if n == side else max(1, round(n * zoom)) for n in (cw, ch))
            image, masks = _zoom(image, masks, size)
        keep = masks.sum(axis=(1, 2)) >= MIN_MASK_PX  # (0, h, w) from a crop of background works too
        masks, labels = masks[keep], region.labels[keep]
        if self.cutouts and self.rng.random() < aug.copy_paste_p:
            image, masks, labels = self._paste(image, masks, labels, aug)
        if aug is not None:
            if aug.flips:
                image, masks = self._geometry(image, masks)
            image = self._photometric(image, aug)
        return Sample(image=np.ascontiguousarray(image), masks=np.ascontiguousarray(masks), labels=labels,
                      boxes=boxes_from_masks(masks))

    def _paste(self, image: np.ndarray, masks: np.ndarray, labels: np.ndarray,
               aug: Augmentation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Up to `aug.copy_paste_max` cutouts pasted where they overlap no object (with a 2 px gap),
        or (share `aug.pile_p`) partly over a neighbour; the pasted edge is blended over about a pixel
        so it does not give the object away."""
        import cv2

        h, w = image.shape[:2]
        def grown(mask: np.ndarray) -> np.ndarray:  # the mask and a 2 px gap around it
            return cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)

        taken = grown(masks.any(axis=0))
        image = image.astype(np.float32)
        all_masks, all_labels = [m.copy() for m in masks], list(labels)
        visible_px = [int(m.sum()) for m in all_masks]  # each object's size before anything covers it
        for _ in range(int(self.rng.integers(1, aug.copy_paste_max + 1))):
            cut = self.cutouts[int(self.rng.integers(len(self.cutouts)))]
            patch, mask = cut.image, cut.mask
            k = int(self.rng.integers(0, 4))
            flip = self.rng.random() < 0.5
            patch, mask = np.rot90(patch, k), np.rot90(mask, k)
            if flip:
                patch, mask = patch[:, ::-1], mask[:, ::-1]
            ph, pw = mask.shape
            if ph >= h or pw >= w:
                continue
            pile = bool(all_masks) and self.rng.random() < aug.pile_p
            spot = self._pile_spot(all_masks, mask, h, w) if pile else self._free_spot(taken, mask, h, w)
            if spot is None:
                continue
            y, x = spot
            alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.7)
            alpha = np.maximum(alpha, mask)[:, :, None]  # inside stays the object, outside blends
            window = image[y:y + ph, x:x + pw]
            window[:] = alpha * patch + (1 - alpha) * window
            full = np.zeros((h, w), bool)
            full[y:y + ph, x:x + pw] = mask
            for m in all_masks:  # the pasted object lies on top: what it covers is hidden
                m &= ~full
            taken |= grown(full)
            all_masks.append(full)
            all_labels.append(cut.label)
            visible_px.append(int(mask.sum()))
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        keep = [i for i, m in enumerate(all_masks)
                if (n := int(m.sum())) >= MIN_MASK_PX and n >= aug.min_visible * visible_px[i]]
        if len(keep) == len(masks) == len(all_masks):
            return image, masks, labels
        return (image, np.stack([all_masks[i] for i in keep]) if keep else np.zeros((0, h, w), bool),
                np.asarray([all_labels[i] for i in keep], np.int64))

    def _free_spot(self, taken: np.ndarray, mask: np.ndarray, h: int, w: int) -> tuple[int, int] | None:
        """(y, x) of a place where `mask` overlaps nothing taken, or None after 5 tries."""
        ph, pw = mask.shape
        for _try in range(5):
            y, x = int(self.rng.integers(0, h - ph + 1)), int(self.rng.integers(0, w - pw + 1))
            if not (taken[y:y + ph, x:x + pw] & mask).any():
                return y, x
        return None

    def _pile_spot(self, masks: list[np.ndarray], mask: np.ndarray, h: int, w: int) -> tuple[int, int] | None:
        """(y, x) placing `mask` partly over one of `masks`: centres 0.5-0.85 of the two radii apart,
        in a random direction (None when the neighbour is empty or the place leaves the sample)."""
        target = masks[int(self.rng.integers(len(masks)))]
        ys, xs = np.nonzero(target)
        if not len(ys):
            return None
        r_t, r_p = np.sqrt(len(ys) / np.pi), np.sqrt(mask.sum() / np.pi)
        angle = self.rng.uniform(0, 2 * np.pi)
        dist = (r_t + r_p) * self.rng.uniform(0.5, 0.85)
        ph, pw = mask.shape
        y = int(round(ys.mean() + dist * np.sin(angle) - ph / 2))
        x = int(round(xs.mean() + dist * np.cos(angle) - pw / 2))
        if y < 0 or x < 0 or y + ph > h or x + pw > w:
            return None
        return y, x

    def _geometry(self, image: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.rng.random() < 0.5:
            image, masks = image[:, ::-1], masks[:, :, ::-1]
        if self.rng.random() < 0.5:
            image, masks = image[::-1], masks[:, ::-1]
        k = int(self.rng.integers(0, 4))
        if k:
            image, masks = np.rot90(image, k, axes=(0, 1)), np.rot90(masks, k, axes=(1, 2))
        return image, masks

    def _photometric(self, image: np.ndarray, aug: Augmentation) -> np.ndarray:
        import cv2

        out = image.astype(np.float32)
        if aug.gamma is not None and self.rng.random() < aug.gamma_p:
            gamma = float(np.exp(self.rng.uniform(np.log(aug.gamma[0]), np.log(aug.gamma[1]))))
            out = 255.0 * (out / 255.0) ** gamma
        if aug.blur_p and self.rng.random() < aug.blur_p:
            out = cv2.GaussianBlur(out, (0, 0), float(self.rng.uniform(0.5, 1.2)))
        contrast = self.rng.uniform(*aug.contrast)
        brightness = self.rng.uniform(-aug.brightness, aug.brightness)
        mean = out.mean()
        out = (out - mean) * contrast + mean + brightness
        if self.rng.random() < aug.noise_p:
            out += self.rng.normal(0, self.rng.uniform(2, 10), size=out.shape[:2])[:, :, None]
        return np.clip(out, 0, 255).astype(np.uint8)


def _zoom(image: np.ndarray, masks: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Image and masks resized to `size` (w, h); nearest keeps the masks binary and aligned."""
    import cv2

    enlarge = size[0] > image.shape[1]
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR if enlarge else cv2.INTER_AREA)
    if not len(masks):
        return image, np.zeros((0, size[1], size[0]), bool)
    # cv2 resizes at most 512 channels at a time; masks go as channels, nearest keeps them binary
    parts = [cv2.resize(np.ascontiguousarray(masks[i:i + 512].transpose(1, 2, 0), dtype=np.uint8), size,
                        interpolation=cv2.INTER_NEAREST).reshape(size[1], size[0], -1)
             for i in range(0, len(masks), 512)]
    return image, np.concatenate(parts, axis=2).transpose(2, 0, 1).astype(bool)
