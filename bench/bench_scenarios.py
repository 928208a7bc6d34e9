"""Recognition quality in the three ways users meet it, each beside Otsu + watershed on the same regions.

    .venv/bin/python bench/bench_scenarios.py --quick              # ~20 min on 2 CPU cores
    .venv/bin/python bench/bench_scenarios.py                      # ~90 min on 2 CPU cores
    .venv/bin/python bench/bench_scenarios.py --inits random,base  # shipped base model or SEGBOT_BASE_MODEL

Data: ../shared/data/emps-dev (EMPS, Yildirim and Cole, J. Chem. Inf. Model. 2021, MIT), instance maps
turned into polygons. Scenarios:
- same image (the iOk/DLgram case): for the images with the most particles, two crops holding at most
  50 particles in all (and at most half of the image's) are the only labels; the rest of that image is
  scored (ground truth and predictions whose centre lies outside both crops). One model per image.
- same series: images grouped by look (width band and particle polarity, see `series_groups`); two crops
  of the group's richest image train the model, the group's other images are scored whole.
- other materials: bench_quality.py's setup (one crop on each of 4 images -> 20 other images).
Per scenario: precision, recall, F1 (centre rule, maximum matching: measures.evaluation), size accuracy
(mean over matched pairs of min(D)/max(D)), mean-D accuracy (1 - |mean Dp - mean Dg| / mean Dg), the
median signed D error in px over matched pairs (the outline bias), mask AP, iterations, training minutes,
inference s/MP; then the targets of the quality issue, met or not, and a PNG chart of F1 against training
minutes per init. Everything printed is measured in this run.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

print = functools.partial(print, flush=True)  # progress shows up even when piped to a file
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_figures import Figure, figure_series  # noqa: E402
from bench_quality import DATA, centres, load, predict_all, split, train_bundle  # noqa: E402

from segmodel.options import DEFAULT_SCORE_THRESHOLD  # noqa: E402

MAX_LABELS = 50


@dataclass
class Scored:
    """Predictions and ground truth of one scenario, pooled over its models and images."""

    preds: list = field(default_factory=list)
    scaled: list = field(default_factory=list)  # the same models' predictions with auto_scale (--auto-scale)
    gts: list = field(default_factory=list)
    baseline: list = field(default_factory=list)
    train_s: float = 0.0
    predict_s: float = 0.0
    scaled_s: float = 0.0
    megapixels: float = 0.0
    models: int = 0
    labels: int = 0
    cards: list = field(default_factory=list)  # per model: (label, the card's held-out figures or None)


# ------------------------------------------------------------------ regions and crops


def _inside(points: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return (points[:, 0] >= x0) & (points[:, 0] < x1) & (points[:, 1] >= y0) & (points[:, 1] < y1)


def two_crops(ann, quota: int):
    """Two squares grown from the left and right quarter points while both together hold <= quota
    particles (centres) and do not touch: the labels a user would draw. None when none fits."""
    from annotations.model import AnnotatedImage, Crop

    c = centres(ann.instances)
    seeds = [(ann.width * 0.25, ann.height / 2), (ann.width * 0.75, ann.height / 2)]
    best = None
    for half in range(32, ann.width // 4, 8):
        boxes = [(max(0.0, x - half), max(0.0, y - half), min(float(ann.width), x + half),
                  min(float(ann.height), y + half)) for x, y in seeds]
        inside = _inside(c, boxes[0]) | _inside(c, boxes[1])
        if inside.sum() > quota:
            break
        best = boxes, inside
    if best is None or not best[1].any():
        return None
    boxes, inside = best
    kept = [inst for inst, k in zip(ann.instances, inside, strict=True) if k]
    crops = [Crop(*b) for b in boxes]
    return AnnotatedImage(name=ann.name, image=ann.image, instances=kept, crops=crops)


def outside_crops(ann, instances: list, crops: list) -> list:
    """The instances whose centre lies in none of `crops` (the unlabelled rest of a labelled image)."""
    if not instances:
        return []
    c = np.array([i.polygon.mean(axis=0) for i in instances])
    hit = np.zeros(len(instances), dtype=bool)
    for crop in crops:
        hit |= _inside(c, (crop.x0, crop.y0, crop.x1, crop.y1))
    return [inst for inst, h in zip(instances, hit, strict=True) if not h]


def richest(stems: list[str], data: Path, n: int) -> list[str]:
    import cv2

    counts = []
    for stem in stems:
        seg = cv2.imread(str(data / "segmaps" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        counts.append((len(np.unique(seg[seg > 0])), stem))
    return [stem for _, stem in sorted(counts, reverse=True)[:n]]


def series_groups(data: Path, min_images: int = 4) -> list[list[str]]:
    """Images of one material and microscope, by look: the same width band (EMPS images of one series
    share a size), the same particle polarity (brighter or darker than the background by > 25 grey
    levels) and the same background band (dark < 60, mid, bright > 170 grey levels). Groups of at least
    `min_images`, richest first within each."""
    import cv2

    groups: dict[tuple[int, str, str], list[str]] = {}
    for path in sorted((data / "images").glob("*.png")):
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        seg = cv2.imread(str(data / "segmaps" / path.name), cv2.IMREAD_UNCHANGED)
        if not (seg > 0).any():
            continue
        background = float(image[seg == 0].mean())
        contrast = float(image[seg > 0].mean()) - background
        if abs(contrast) <= 25:
            continue
        band = "dark" if background < 60 else "bright" if background > 170 else "mid"
        key = (image.shape[1] // 40, "bright" if contrast > 0 else "dark", band)
        groups.setdefault(key, []).append(path.stem)
    found = [g for g in groups.values() if len(g) >= min_images]
    return [richest(g, data, len(g)) for g in sorted(found, key=len, reverse=True)]


# ------------------------------------------------------------------ scoring


def pair_diameters(pred: list, gt: list) -> tuple[np.ndarray, np.ndarray]:
    """D of matched (prediction, ground truth) pairs by the evaluator's centre-rule matching."""
    from annotations.geometry import area_centroid_perimeter
    from measures.evaluation import centre_pairs, match_pairs

    matched = match_pairs(centre_pairs(pred, gt), len(pred), len(gt))
    keep = np.flatnonzero(matched >= 0)
    if not len(keep):
        return np.zeros(0), np.zeros(0)
    d_pred = 2 * np.sqrt(area_centroid_perimeter([pred[i].polygon for i in keep])[0] / np.pi)
    d_gt = 2 * np.sqrt(area_centroid_perimeter([gt[matched[i]].polygon for i in keep])[0] / np.pi)
    return d_pred, d_gt


def score(preds: list, gts: list) -> dict:
    """The evaluator's pooled figures plus the pair-wise size figures of the quality issue."""
    from measures.evaluation import ClusterScore, cluster_score, evaluate

    result = evaluate(preds, gts)
    clusters = sum((cluster_score(p.instances, g.instances) for p, g in zip(preds, gts, strict=True)),
                   ClusterScore(0, 0, 0, 0, 0))
    d_pred, d_gt = map(np.concatenate, zip(*(pair_diameters(p.instances, g.instances)
                                             for p, g in zip(preds, gts, strict=True)), strict=True))
    c = result["count"]
    return {
        "precision": c["precision"], "recall": c["recall"], "f1": c["f1"], "tp": c["tp"], "fp": c["fp"],
        "fn": c["fn"],
        "size_acc": (float(np.mean(np.minimum(d_pred, d_gt) / np.maximum(d_pred, d_gt)))
                     if len(d_gt) else None),
        "mean_d_acc": result["size_accuracy"]["all"]["accuracy"],
        "d_bias_px": float(np.median(d_pred - d_gt)) if len(d_gt) else None,
        "mask_ap": (result.get("coco") or {}).get("segm", {}).get("AP"),
        "recall_isolated": clusters.recall_isolated, "recall_cluster": clusters.recall_cluster,
        "n_cluster": clusters.n_cluster, "n_isolated": clusters.n_isolated, "split": clusters.split,
    }


def at(preds: list, threshold: float, merge: bool | None = None) -> list:
    """The predictions whose score is at least `threshold` (they were made at a lower one, without the
    fragment merge), then merged as segbot merges what it kept at that threshold (`merge`: default
    unless --raw). Merged before the cut, fragments under the threshold can take a whole particle away
    as a "blob", which segbot, predicting at the threshold, never sees."""
    from inference.fragments import merge_fragments

    merge = not RAW if merge is None else merge
    kept = [[i for i in p.instances if i.score is None or i.score >= threshold] for p in preds]
    return [_named(p, merge_fragments(k)[0] if merge else k) for p, k in zip(preds, kept, strict=True)]


def _named(ann, instances: list, suffix: str = ""):
    from annotations.model import AnnotatedImage

    return AnnotatedImage(name=ann.name + suffix, image=ann.image, instances=instances)


# ------------------------------------------------------------------ scenarios


@functools.cache
def _weights():
    """The operator's base model (SEGBOT_BASE_MODEL) and COCO weights, for --inits base."""
    from core.settings import load_settings
    from trainer.init_weights import WeightPaths

    return WeightPaths.from_settings(load_settings())


def _check_unseen(weights, images: list) -> None:
    """Stop when the base model was pretrained on an image this scenario trains or scores on."""
    base = weights.base_model
    if base is None:
        sys.exit("--inits base needs SEGBOT_BASE_MODEL (segbot weights base, see bench_base.py)")
    from bench_base import pretrained_on

    seen = pretrained_on(base)
    leaked = sorted({stem for stem in seen for a in images if stem and stem in a.name})
    if leaked:
        sys.exit(f"the base model was pretrained on images of this scenario: {', '.join(leaked)}")


RAW = False  # --raw: predictions without the fragment merge


def run_model(sources, tests, options, threshold: float, into: Scored, label: str,
              auto_scale: bool = False) -> tuple[list, list]:
    """Train one model; (its predictions of `tests`, the same with auto_scale, or [] without)."""
    import tempfile

    from inference.baseline import otsu_watershed

    weights = _weights() if options.init != "random" else None
    if options.init == "base":
        _check_unseen(weights, [*sources, *tests])
    with tempfile.TemporaryDirectory() as tmp:
        bundle, train_s = train_bundle(sources, Path(tmp) / "bundle", options, label, weights)
        meta = json.loads((bundle / "bundle.json").read_text())
        into.cards.append((label.strip(), (meta.get("metrics") or {}).get("holdout")))
        # raw: `at` cuts at each threshold, then merges fragments as segbot does
        preds, predict_s = predict_all(bundle, tests, options.device, threshold, fragments=False)
        scaled, scaled_s = [], 0.0
        if auto_scale:
            scaled, scaled_s = predict_all(bundle, tests, options.device, threshold, auto_scale=True,
                                           fragments=False)
    into.train_s += train_s
    into.predict_s += predict_s
    into.scaled_s += scaled_s
    into.megapixels += sum(a.width * a.height for a in tests) / 1e6
    into.models += 1
    into.labels += sum(len(s.instances) for s in sources)
    into.baseline.extend(_named(a, otsu_watershed(a.image)) for a in tests)
    return preds, scaled


def same_image(stems: list[str], data: Path, options, threshold: float, auto_scale: bool = False) -> Scored:
    out = Scored()
    for stem in stems:
        ann = load(stem, data)
        quota = min(MAX_LABELS, len(ann.instances) // 2)
        source = two_crops(ann, quota)
        if source is None:
            print(f"  same image: {stem} has no two crops with <= {quota} particles, skipped")
            continue
        start = len(out.baseline)
        preds, scaled = run_model([source], [ann], options, threshold, out, f"{stem} ", auto_scale)
        # Only the unlabelled rest of the image is scored, for the model and the baseline alike.
        out.preds.append(_named(ann, outside_crops(ann, preds[0].instances, source.crops)))
        out.scaled.extend(_named(ann, outside_crops(ann, p.instances, source.crops)) for p in scaled)
        out.gts.append(_named(ann, outside_crops(ann, ann.instances, source.crops)))
        base = out.baseline[start]
        out.baseline[start] = _named(ann, outside_crops(ann, base.instances, source.crops))
        print(f"  same image {stem}: {len(source.instances)} labels in 2 crops, "
              f"{len(out.gts[-1].instances)} particles scored")
    return out


def same_series(groups: list[list[str]], data: Path, options, threshold: float,
                auto_scale: bool = False) -> Scored:
    out = Scored()
    for group in groups:
        train, tests = group[0], [load(stem, data) for stem in group[1:]]
        done = series_model(load(train, data), tests, options, threshold, out, f"series {train} ", auto_scale)
        if done is not None:
            print(f"  same series: {len(done[0].instances)} labels on {train} -> {len(tests)} images "
                  f"({', '.join(group[1:])})")
    return out


def series_model(ann, tests: list, options, threshold: float, out: Scored, label: str, auto_scale: bool):
    """Two crops (<= 50 particles) of `ann` train a model that predicts `tests`, pooled into `out`:
    (the labelled source, predictions, auto-scale predictions), or None when no two crops fit."""
    source = two_crops(ann, min(MAX_LABELS, len(ann.instances)))
    if source is None:
        return None
    preds, scaled = run_model([source], tests, options, threshold, out, label, auto_scale)
    out.preds.extend(preds)
    out.scaled.extend(scaled)
    out.gts.extend(tests)
    return source, preds, scaled


def figure_series_run(figures: list[Figure], options, threshold: float, auto_scale: bool = False) -> Scored:
    """Two crops (<= 50 particles) on a figure's richest panel -> its other panels, scored whole."""
    out = Scored()
    for fig in figures:
        tests = [load(stem, folder) for stem, folder in fig.tests]
        done = series_model(load(*fig.train), tests, options, threshold, out, f"{fig.train[0]} ", auto_scale)
        if done is None:
            continue
        source, preds, scaled = done
        print(f"  figure series {fig.name}: {len(source.instances)} labels on {fig.train[0]} -> "
              f"{len(tests)} panels, {fig.n_test} particles ({fig.n_cluster} in clusters)")
        shipped = score(at(scaled or preds, DEFAULT_SCORE_THRESHOLD), tests)
        print("    " + card_check(out.cards[-1][1], shipped))
    return out


def labelled_in(ann, crops: list[list[float]], suffix: str, touching: bool = False):
    """What a user sends back after labelling `crops` ([x0, y0, x1, y1]) of one more image: those crops,
    the prediction in them replaced by the ground truth: the particles whose centre lies in one, or with
    `touching` every particle reaching into one, as a user labelling a crop completely outlines them
    (the trainer clips them to it; one left out would be taught as background)."""
    from annotations.model import AnnotatedImage, Crop

    hit = np.zeros(len(ann.instances), dtype=bool)
    if touching:
        from shapely.geometry import Polygon, box

        shapes = [Polygon(i.polygon).buffer(0) for i in ann.instances]
        for x0, y0, x1, y1 in crops:
            hit |= [shape.intersects(box(x0, y0, x1, y1)) for shape in shapes]
    else:
        for crop in crops:
            hit |= _inside(centres(ann.instances), tuple(crop))
    truth = [i for i, k in zip(ann.instances, hit, strict=True) if k]
    return AnnotatedImage(name=ann.name + suffix, image=ann.image, instances=truth,
                          crops=[Crop(*c) for c in crops])


def corrected_half(ann, pred):
    """A user's correction of one more image: a crop over its left half (`labelled_in`)."""
    return labelled_in(ann, [[0.0, 0.0, ann.width / 2, float(ann.height)]], "#corrected")


def random_crops(instances: list, like: list[list[float]], width: int, height: int, seed: int) -> list:
    """As many crops as `like` (the suggestion), placed at random: squares of the suggestion's window side
    anywhere inside the image, grown as it grows them (annotations.suggest.grown), none overlapping."""
    from annotations.suggest import grown, window_side

    if not like:
        return []
    side, rng, chosen = window_side(instances, width, height), np.random.default_rng(seed), []
    for _ in range(10_000):  # rejection sampling: a few tries each on these images
        x0, y0 = rng.uniform(0, max(0.0, width - side)), rng.uniform(0, max(0.0, height - side))
        box = grown([x0, y0, min(float(width), x0 + side), min(float(height), y0 + side)], instances,
                    width, height)
        if not any(box[0] < c[2] and c[0] < box[2] and box[1] < c[3] and c[1] < box[3] for c in chosen):
            chosen.append([round(v, 1) for v in box])
        if len(chosen) == len(like):
            break
    return chosen


def crops_picture(ann, pred, arms: dict[str, list], path: Path) -> None:
    """`ann` with v1's outlines (yellow; red where it doubts most; magenta: under the threshold) and each
    arm's crops drawn, to look at."""
    import cv2

    from annotations.suggest import doubt

    rgb = np.ascontiguousarray(ann.image[..., :3]).copy()
    weight = doubt(pred.instances)
    for inst, w in zip(pred.instances, weight, strict=True):
        colour = (255, 0, 0) if w >= 0.5 else (255, 255, 0)
        cv2.polylines(rgb, [np.round(inst.polygon).astype(np.int32)], True, colour, 1)
    for inst in getattr(pred, "unsure", []):  # under the threshold
        cv2.polylines(rgb, [np.round(inst.polygon).astype(np.int32)], True, (255, 0, 255), 1)
    palette = [(0, 200, 0), (0, 120, 255), (255, 160, 0), (200, 0, 200), (0, 220, 220), (255, 255, 255),
               (140, 90, 40), (255, 80, 80)]  # one colour per arm (up to 8)
    for k, (name, crops) in enumerate(arms.items()):
        colour = palette[k % len(palette)]
        for x0, y0, x1, y1 in crops:
            cv2.rectangle(rgb, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), colour, 3)
        cv2.putText(rgb, name, (8, 24 + 22 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.7, colour, 2)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


ARMS = {"scratch": "v2 from scratch", "half": "v2 fine-tuned", "suggested": "v2 suggested",
        "kept": "v2 suggested-kept", "random": "v2 random"}


@dataclass
class Rounds:
    """A correction round per figure: the first version, then one next version per arm (how the new
    labels were chosen, how v2 was trained), each scored on the same panels; `figures` per figure."""

    first: Scored = field(default_factory=Scored)
    arms: dict[str, Scored] = field(default_factory=dict)
    figures: list[dict] = field(default_factory=list)  # name, extra, per arm: added labels, crop area, score


def round_arms(extra, seen, arms: list[str], seeds: int, touching: bool) -> dict[str, tuple[object, bool]]:
    """Per v2 name: (the labelled extra file, fine-tuned from v1?); `touching`: see `labelled_in`;
    `seen`: v1's Prediction of `extra` as the predict job makes it (`recognised`)."""
    from annotations.suggest import suggest_crops

    out: dict[str, tuple[object, bool]] = {}
    if "scratch" in arms:
        out[ARMS["scratch"]] = corrected_half(extra, seen), False
    if "half" in arms:
        out[ARMS["half"]] = corrected_half(extra, seen), True
    # the product's call (web/labeling.py image_view): v1's outlines at the threshold and its
    # detections under it, n=3
    suggested = suggest_crops(seen.instances, extra.width, extra.height, unsure=seen.unsure)
    if "suggested" in arms:
        out[ARMS["suggested"]] = labelled_in(extra, suggested, "#suggested", touching), True
    if "kept" in arms:  # the rule before the detections under the threshold were kept
        kept_only = suggest_crops(seen.instances, extra.width, extra.height)
        out[ARMS["kept"]] = labelled_in(extra, kept_only, "#kept", touching), True
    if "random" in arms:
        for seed in range(seeds):
            crops = random_crops(seen.instances, suggested, extra.width, extra.height, seed)
            out[f"{ARMS['random']} s{seed}"] = labelled_in(extra, crops, f"#random{seed}", touching), True
    return out


def recognised(bundle: Path, anns: list, device: str, threshold: float) -> list:
    """Each of `anns` recognised as the predict job does (jobs.predict: the detector's floor, auto
    scale, the detections under the threshold kept apart), the model loaded once: a list of
    inference.pipeline.Prediction."""
    from inference.pipeline import PredictOptions, predict_image
    from jobs.predict import DETECTOR_FLOOR
    from segmodel.detector import load_detector

    det = load_detector(bundle, device=device, trusted_roots=[bundle.parent],
                        score_thr=min(DETECTOR_FLOOR, threshold))
    options = PredictOptions(threshold=threshold, auto_scale=True, unsure_floor=DETECTOR_FLOOR)
    return [predict_image(ann.image, det, options) for ann in anns]


def kept(keep: Path | None, tmp: str, name: str, *key) -> tuple[Path, bool]:
    """Where a model goes: under `keep` (a folder kept between runs), named by what trains it, so that a
    later run with the same v1 or the same crops reuses it; else in the run's temporary folder. (path,
    already trained?)"""
    import hashlib

    if keep is None:
        return Path(tmp) / name, False
    digest = hashlib.sha1(json.dumps([str(k) for k in key]).encode()).hexdigest()[:10]
    path = keep / f"{name}-{digest}"
    return path, (path / "bundle.json").exists()  # written last, all at once


def correction_rounds(figures: list[Figure], options, threshold: float, tuned_iterations: int | None,
                      arms: list[str], seeds: int = 2, pictures: Path | None = None,
                      touching: bool = True, keep: Path | None = None, skip: int = 0) -> Rounds:
    """Per figure: v1 from two crops; v1 predicts the densest other panel, `extra`, which is labelled per
    arm (`round_arms`: its left half corrected, the suggested crops, random ones); v2 trains on both
    files per arm; the remaining panels are scored for each. `keep`: a folder where v1 and each v2 stay,
    reused by a later run that trains the same (same figure and options; same crops for a v2); `skip`:
    leave out the first figures."""
    import dataclasses
    import tempfile

    out = Rounds()
    weights = _weights() if options.init != "random" else None  # v1 (and afresh arms) from the base model
    for fig in figures[skip:]:
        if len(fig.tests) < 2:
            continue
        ann = load(*fig.train)
        source = two_crops(ann, min(MAX_LABELS, len(ann.instances)))
        tests = sorted((load(stem, folder) for stem, folder in fig.tests), key=lambda a: -len(a.instances))
        extra, rest = tests[0], tests[1:]
        record: dict = {"figure": fig.name, "extra": extra.name, "arms": {}}
        with tempfile.TemporaryDirectory() as tmp:
            v1, done = kept(keep, tmp, f"{fig.train[0]}-v1", fig.train, options)
            train_s = 0.0
            if not done:
                if options.init == "base":
                    _check_unseen(weights, [ann, *tests])
                v1, train_s = train_bundle([source], v1, options, f"{fig.train[0]} v1 ", weights)
            # as the product recognises it (jobs.predict: auto scale on): at 1x v1 found 24 of the 92
            # spheres of 5fc8c5b53c's extra panel, with auto scale 84, so crops were chosen on outlines
            # the user never sees
            (seen,) = recognised(v1, [extra], options.device, threshold)
            labelled = round_arms(extra, seen, arms, seeds, touching)
            if pictures is not None:
                crops_picture(extra, seen, {name: [[c.x0, c.y0, c.x1, c.y1] for c in a.crops]
                                            for name, (a, _) in labelled.items()},
                              pictures / f"crops-{Path(extra.name).stem}.png")
            for name, (added, tuned) in [("v1", (None, False)), *labelled.items()]:
                into = out.first if added is None else out.arms.setdefault(name, Scored())
                bundle = v1  # also where the suggestion found nothing to doubt: nothing to label
                if added is not None and added.crops:
                    opts = (dataclasses.replace(options, init=str(v1), iterations=tuned_iterations)
                            if tuned else options)
                    bundle, done = kept(keep, tmp, f"{fig.train[0]}-{name.replace(' ', '-')}", fig.train,
                                        opts, [[c.x0, c.y0, c.x1, c.y1] for c in added.crops],
                                        len(added.instances))
                    train_s = 0.0
                    if not done:
                        bundle, train_s = train_bundle([source, added], bundle, opts,
                                                       f"{fig.train[0]} {name} ", weights)
                preds, predict_s = predict_all(bundle, rest, options.device, threshold, auto_scale=True)
                into.preds.extend(preds)
                into.gts.extend(rest)
                into.train_s += train_s
                into.predict_s += predict_s
                into.megapixels += sum(a.width * a.height for a in rest) / 1e6
                into.models += 1
                n_added = 0 if added is None else len(added.instances)
                into.labels += len(source.instances) + n_added
                boxes = [] if added is None else [[c.x0, c.y0, c.x1, c.y1] for c in added.crops]
                area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes)
                record["arms"][name] = {"added": n_added, "crops": boxes, "score": score(preds, rest),
                                        "area": area / (extra.width * extra.height)}
                print(f"    {name}: +{n_added} labels, F1 {record['arms'][name]['score']['f1']:.3f}")
        out.figures.append(record)
        print(f"  correction round {fig.name}: {len(source.instances)} labels on {fig.train[0]}, "
              f"{extra.name} labelled per arm -> {len(rest)} panels scored")
        for line in arm_table([record]):
            print("    " + line)
    return out


def arm_table(records: list[dict]) -> list[str]:
    """Per figure and arm: labels added, crop area, P/R/F1/size on the remaining panels, F1 gain over v1
    and per 10 added labels; the random arms' mean beside them."""
    lines = [f"{'figure':28} {'arm':18} {'added':>5} {'area':>5} {'P':>6} {'R':>6} {'F1':>6} {'size':>6} "
             f"{'dF1':>7} {'dF1/10':>7}"]
    for r in records:
        first = r["arms"]["v1"]["score"]["f1"]
        rows = dict(r["arms"])
        randoms = [v for k, v in rows.items() if k.startswith(ARMS["random"])]
        if len(randoms) > 1:
            rows[f"{ARMS['random']} mean"] = {
                "added": float(np.mean([v["added"] for v in randoms])),
                "area": float(np.mean([v["area"] for v in randoms])),
                "score": {k: (float(np.mean([v["score"][k] for v in randoms]))
                              if all(v["score"][k] is not None for v in randoms) else None)
                          for k in ("precision", "recall", "f1", "size_acc")}}
        for name, v in rows.items():
            s, gain = v["score"], v["score"]["f1"] - first
            per = f"{10 * gain / v['added']:+7.4f}" if v["added"] else f"{'':>7}"
            lines.append(f"{r['figure'][:28]:28} {name:18} {v['added']:5.0f} {v['area']:5.2f} "
                         f"{fmt(s['precision'])} {fmt(s['recall'])} {fmt(s['f1'])} {fmt(s['size_acc'])} "
                         f"{'' if name == 'v1' else f'{gain:+7.3f}':>7} {per}")
    return lines


def card_check(card: dict | None, series: dict) -> str:
    """The model card's held-out figure beside what the model scores on the other panels (the card is
    honest when it is within 0.05 of it or its range covers it)."""
    if not card:
        return f"card: no held-out check; series F1 {series['f1']:.3f}"
    covered = card["f1_low"] <= series["f1"] <= card["f1_high"] or abs(card["f1"] - series["f1"]) <= 0.05
    return (f"card: F1 {card['f1']:.3f} ({card['f1_low']:.2f}-{card['f1_high']:.2f}, {card['n_gt']} objects) "
            f"vs series F1 {series['f1']:.3f}: {'honest' if covered else 'off'}")


def other_materials(data: Path, options, threshold: float, limit: int, auto_scale: bool = False) -> Scored:
    out = Scored()
    _, sources, test_stems = split(data, 4, MAX_LABELS, limit)
    tests = [load(stem, data) for stem in test_stems]
    preds, scaled = run_model(sources, tests, options, threshold, out, "other ", auto_scale)
    out.preds.extend(preds)
    out.scaled.extend(scaled)
    out.gts.extend(tests)
    return out


# ------------------------------------------------------------------ report


def fmt(value, digits: int = 3) -> str:
    return "  n/a" if value is None else f"{value:.{digits}f}"


HEADER = (f"{'scenario':15} {'method':17} {'P':>6} {'R':>6} {'F1':>6} {'size':>6} {'meanD':>6} "
          f"{'Dbias':>6} {'mAP':>6} {'R iso':>6} {'R clu':>6} {'split':>5} {'labels':>6} {'iters':>6} "
          f"{'train min':>9} {'s/MP':>6}")


def table_row(scenario: str, method: str, s: dict, run: Scored | None, iterations: int | None) -> str:
    extra = "" if run is None else (
        f" {run.labels:6d} {iterations or 'segbot':>6} {run.train_s / 60 / max(run.models, 1):9.1f} "
        f"{run.predict_s / max(run.megapixels, 1e-9):6.1f}")
    return (f"{scenario:15} {method:17} {fmt(s['precision'])} {fmt(s['recall'])} {fmt(s['f1'])} "
            f"{fmt(s['size_acc'])} {fmt(s['mean_d_acc'])} {fmt(s['d_bias_px'], 2):>6} {fmt(s['mask_ap'])} "
            f"{fmt(s['recall_isolated'])} {fmt(s['recall_cluster'])} {s['split']:5d}" + extra)


SWEEP_HEADER = (f"{'scenario':15} {'init':7} {'method':13} {'thr':>5} {'P':>6} {'R':>6} {'F1':>6} "
                f"{'size':>6} {'R clu':>6}")


def threshold_sweep(scenario: str, init: str, run: Scored, thresholds: list[float], into: dict) -> list[str]:
    """The same predictions scored at each threshold (with and without auto scale); into["sweep"]."""
    lines = []
    for t in thresholds:
        for method, preds in (("model", run.preds), ("+ auto scale", run.scaled)):
            if preds:
                s = score(at(preds, t), run.gts)
                into.setdefault("sweep", {})[f"{method} @ {t:g}"] = s
                lines.append(f"{scenario:15} {init:7} {method:13} {t:5.2f} {fmt(s['precision'])} "
                             f"{fmt(s['recall'])} {fmt(s['f1'])} {fmt(s['size_acc'])} "
                             f"{fmt(s['recall_cluster'])}")
    return lines


def targets(results: dict) -> list[str]:
    """The quality issue's targets, judged on what segbot predicts: the auto-scale row when measured.
    Several inits: the first one's same-image and other-materials figures."""

    def shipped(v: dict) -> dict:
        return v.get("auto_scale") or v["model"]

    lines = []
    same = next((v for k, v in results.items() if k[0] == "same image"), None)
    if same:
        m = shipped(same)
        met = m["precision"] >= 0.9 and m["recall"] >= 0.85 and (m["size_acc"] or 0) >= 0.93
        lines.append(f"same image: P {m['precision']:.3f} (>= 0.90), R {m['recall']:.3f} (>= 0.85), "
                     f"size acc {fmt(m['size_acc'])} (>= 0.93): {'met' if met else 'not met'}")
    fig = next((v for k, v in results.items() if k[0] == "figure series"), None)
    if fig:
        m = shipped(fig)
        met = (m["precision"] >= 0.9 and m["recall"] >= 0.85 and (m["recall_cluster"] or 0) >= 0.8
               and (m["size_acc"] or 0) >= 0.95)
        lines.append(f"figure series: P {m['precision']:.3f} (>= 0.90), R {m['recall']:.3f} (>= 0.85), "
                     f"R in clusters {fmt(m['recall_cluster'])} (>= 0.80), size acc {fmt(m['size_acc'])} "
                     f"(>= 0.95): {'met' if met else 'not met'}")
    other = next((v for k, v in results.items() if k[0] == "other materials"), None)
    if other:
        f1 = shipped(other)["f1"]
        lines.append(f"other materials: F1 {f1:.3f} (>= 0.70): {'met' if f1 >= 0.7 else 'not met'}")
    tuned = results.get(("correction round", "v2 fine-tuned"))
    if tuned:
        m, first = tuned["model"], results[("correction round", "v1")]["model"]
        met = "met" if m["precision"] >= 0.93 and m["recall"] >= 0.93 else "not met"
        lines.append(f"after one correction round: P {first['precision']:.3f} -> {m['precision']:.3f}, "
                     f"R {first['recall']:.3f} -> {m['recall']:.3f} (both >= 0.93): {met}")
    for (scenario, init), v in results.items():
        if "baseline" not in v:
            continue
        fb = v["baseline"]["f1"]
        ratio = shipped(v)["f1"] / fb if fb else float("inf")
        lines.append(f"{scenario} ({init}): F1 {ratio:.2f}x the baseline's (>= 1.3x): "
                     f"{'met' if ratio >= 1.3 else 'not met'}")
    return lines


def dump(run: Scored, path: Path) -> None:
    """The run's predictions (at the lowest threshold) and ground truth, without the images: levers
    that act after the detector (merging, thresholds) are then scored offline on the same models."""
    import pickle

    from annotations.model import AnnotatedImage

    def bare(anns: list) -> list:  # the images stay with the ground truth only
        return [AnnotatedImage(name=a.name, image=np.zeros((1, 1, 3), np.uint8), instances=a.instances)
                for a in anns]

    payload = {"preds": bare(run.preds), "scaled": bare(run.scaled), "gts": run.gts}
    path.write_bytes(pickle.dumps(payload))


def rescore(paths: list[Path], threshold: float, figures: list[str]) -> None:
    """Dumped runs scored again: as they are and with the fragment merge (inference.fragments) under a
    few rule sets; `figures`: only the images whose name holds one of these stems (empty: all)."""
    import dataclasses
    import pickle

    from inference.fragments import FragmentRules, merge_fragments

    variants = {"as predicted": None, "fragments (default)": FragmentRules(),
                "  + halves": FragmentRules(halves=True),
                "  halves only": FragmentRules(nested=2.0, halves=True),
                "  no blob rule": FragmentRules(blob_cover=2.0),
                "  blob cover 0.3": FragmentRules(blob_cover=0.3), "  nested 0.8": FragmentRules(nested=0.8)}
    print(f"{'dump':28} {'variant':22} {'P':>6} {'R':>6} {'F1':>6} {'size':>6} {'R clu':>6} {'split':>5} "
          f"{'merged':>6}")
    for path in paths:
        payload = pickle.loads(path.read_bytes())
        for key in ("preds", "scaled"):
            pairs = [(p, g) for p, g in zip(payload[key], payload["gts"], strict=False)
                     if not figures or any(f in g.name for f in figures)]
            if not pairs:
                continue
            preds, gts = at([p for p, _ in pairs], threshold, merge=False), [g for _, g in pairs]
            for name, rules in variants.items():
                merged, out = 0, preds
                if rules is not None:
                    out = []
                    for p in preds:
                        kept, n = merge_fragments(p.instances, rules)
                        merged += n
                        out.append(dataclasses.replace(p, instances=kept))
                s = score(out, gts)
                print(f"{path.stem + ' ' + key:28} {name:22} {fmt(s['precision'])} {fmt(s['recall'])} "
                      f"{fmt(s['f1'])} {fmt(s['size_acc'])} {fmt(s['recall_cluster'])} {s['split']:5d} "
                      f"{merged:6d}")


def chart(points: list[tuple[str, str, float, float]], path: Path) -> None:
    """F1 against training minutes, one marker per scenario and colour per init."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    markers = {"same image": "o", "same series": "s", "other materials": "^"}
    colours = {"random": "tab:blue", "base": "tab:orange"}
    for scenario, init, minutes, f1 in points:
        ax.scatter(minutes, f1, marker=markers.get(scenario, "x"), color=colours.get(init, "tab:gray"), s=50,
                   label=f"{scenario}, {init}")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=8)
    ax.set_xlabel("training minutes per model (CPU)")
    ax.set_ylabel("F1 (centre rule) on unseen particles")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--quick", action="store_true", help="2 same-image models, 1 series, 5 other images")
    parser.add_argument("--iterations", type=int, default=None,
                        help="default 300 (--quick: 150); 0: segbot's own budget "
                             "(segmodel.options.resolve_iterations)")
    parser.add_argument("--arch", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--inits", default="random",
                        help="comma list: random, base (SEGBOT_BASE_MODEL); init:N trains N iterations "
                             "(0: segbot's budget), e.g. base:0,base:600,random:600")
    parser.add_argument("--threshold", type=float, default=DEFAULT_SCORE_THRESHOLD, help="default: segbot's")
    parser.add_argument("--copy-paste", type=float, default=0.0,
                        help="probability a training sample gets labelled objects pasted (0 = off)")
    parser.add_argument("--pile", type=float, default=0.0,
                        help="share of the pasted objects laid partly over a neighbour (copy-paste piles)")
    parser.add_argument("--holdout", action="store_true",
                        help="train with the held-out crop as segbot does (the card is checked per figure)")
    parser.add_argument("--auto-scale", action="store_true",
                        help="also predict with PredictOptions.auto_scale (same models): a row each")
    parser.add_argument("--sweep", default="",
                        help="more score thresholds to score the same predictions at, e.g. 0.6,0.7,0.8,0.9")
    parser.add_argument("--scenarios", default="same image,same series,figure series,other materials")
    parser.add_argument("--figures", type=int, default=5, help="figure series: how many figures (default 5)")
    parser.add_argument("--correction", type=int, default=0,
                        help="also a correction round on this many of the figures (v1 + one model per arm)")
    parser.add_argument("--arms", default="scratch,half",
                        help="correction round: the v2s, comma list of scratch (left half, from scratch), "
                             "half (left half, fine-tuned from v1), suggested (annotations.suggest's crops), "
                             "kept (its crops from the kept outlines alone, the rule before), "
                             "random (as many crops at random); each fine-tuned except scratch")
    parser.add_argument("--centre-rule", action="store_true",
                        help="correction round: suggested/random crops hold only the particles centred in "
                             "them (default: every particle reaching into them, as a complete crop)")
    parser.add_argument("--random-seeds", type=int, default=2, help="correction round: random arms' seeds")
    parser.add_argument("--keep", type=Path, default=None,
                        help="correction round: keep v1 and each v2 in this folder; a later run reuses "
                             "those it would train the same (training time then reads 0)")
    parser.add_argument("--skip-figures", type=int, default=0,
                        help="correction round: leave out this many of the first figures")
    parser.add_argument("--tuned-iterations", type=int, default=None,
                        help="correction round: iterations of the fine-tuned v2 (default: --iterations)")
    parser.add_argument("--out", type=Path, default=Path("bench-scenarios"),
                        help="folder for the JSON and chart")
    parser.add_argument("--rescore", type=Path, nargs="*", default=None,
                        help="score dumped runs (*.pkl) again, with the fragment merge; no training")
    parser.add_argument("--only", default="", help="--rescore: comma list of image stems to keep")
    parser.add_argument("--raw", action="store_true",
                        help="predict without the fragment merge (the dumps then show it with --rescore)")
    args = parser.parse_args(argv)
    global RAW
    RAW = args.raw
    if args.rescore:
        rescore(args.rescore, args.threshold, [f for f in args.only.split(",") if f])
        return

    from bench_speed import hardware

    from segmodel.options import TrainOptions

    # None = segbot's own budget (the trainer decides per model)
    iterations = (args.iterations or None) if args.iterations is not None else (150 if args.quick else 300)
    n_same, n_groups, limit = (2, 1, 5) if args.quick else (6, 2, 20)
    stems = sorted(p.stem for p in (args.data / "images").glob("*.png"))
    print("bench_scenarios: same image / same series / other materials, model vs Otsu + watershed")
    print(f"hardware : {hardware()}")
    print(f"budget   : arch {args.arch}, {iterations or 'segbot'} iterations per model, "
          f"threshold {args.threshold}, "
          f"copy-paste {args.copy_paste} (piles {args.pile}), holdout {args.holdout}, "
          f"{'quick' if args.quick else 'full'}")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, str], dict] = {}
    rows: list[str] = []
    points: list[tuple[str, str, float, float]] = []
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    sweep = [float(t) for t in args.sweep.split(",") if t.strip()]
    low = min([args.threshold, *sweep])  # predicted once at the lowest, then filtered by score
    sweep_rows: list[str] = []
    for init in [i.strip() for i in args.inits.split(",")]:
        # "base:600": an init with its own budget (0: segbot's), so budgets compare in one run
        start, _, budget = init.partition(":")
        budget_iterations = (int(budget) or None) if budget else iterations
        options = TrainOptions(arch=args.arch, iterations=budget_iterations, device=args.device,
                               holdout=args.holdout, init=start, copy_paste=args.copy_paste,
                               copy_paste_pile=args.pile)
        for scenario in wanted:
            t0 = time.perf_counter()
            if scenario == "same image":
                run = same_image(richest(stems, args.data, n_same), args.data, options, low, args.auto_scale)
            elif scenario == "same series":
                groups = series_groups(args.data)[:n_groups]
                run = same_series(groups, args.data, options, low, args.auto_scale)
            elif scenario == "figure series":
                figures = figure_series(args.data, args.figures)
                run = figure_series_run(figures, options, low, args.auto_scale)
            elif scenario == "other materials":
                run = other_materials(args.data, options, low, limit, args.auto_scale)
            else:
                raise SystemExit(f"unknown scenario {scenario!r}")
            if not run.models:
                print(f"  {scenario}: nothing to run")
                continue
            model, base = score(at(run.preds, args.threshold), run.gts), score(run.baseline, run.gts)
            results[(scenario, init)] = {"model": model, "baseline": base, "models": run.models,
                                         "labels": run.labels, "train_s": run.train_s,
                                         "predict_s_per_mp": run.predict_s / max(run.megapixels, 1e-9),
                                         "n_gt": sum(len(g.instances) for g in run.gts)}
            rows.append(table_row(scenario, f"model ({init})", model, run, budget_iterations))
            dump(run, args.out / f"{scenario.replace(' ', '-')}-{init}.pkl")
            if run.scaled:
                scaled = score(at(run.scaled, args.threshold), run.gts)
                results[(scenario, init)]["auto_scale"] = scaled
                results[(scenario, init)]["auto_scale_s_per_mp"] = run.scaled_s / max(run.megapixels, 1e-9)
                rows.append(table_row("", "  + auto scale", scaled, None, None)
                            + f" {'':6} {'':6} {'':9} {run.scaled_s / max(run.megapixels, 1e-9):6.1f}")
            rows.append(table_row("", "Otsu + watershed", base, None, None))
            points.append((scenario, init, run.train_s / 60 / run.models, model["f1"]))
            if sweep:
                sweep_rows.extend(threshold_sweep(scenario, init, run, sorted({args.threshold, *sweep}),
                                                  results[(scenario, init)]))
            print(f"  {scenario} ({init}) done in {(time.perf_counter() - t0) / 60:.1f} min")
    if args.correction:
        # v1 starts from the first of --inits (the correction's v2 arms fine-tune v1 or start afresh)
        options = TrainOptions(arch=args.arch, iterations=iterations, device=args.device, holdout=False,
                               init=args.inits.split(",")[0].split(":")[0].strip(),
                               copy_paste=args.copy_paste)
        figures = figure_series(args.data, args.figures)[:args.correction]
        rounds = correction_rounds(figures, options, args.threshold, args.tuned_iterations or iterations,
                                   [a.strip() for a in args.arms.split(",") if a.strip()], args.random_seeds,
                                   args.out, not args.centre_rule, args.keep, args.skip_figures)
        for name, run in (("v1", rounds.first), *rounds.arms.items()):
            s = score(run.preds, run.gts)
            results[("correction round", name)] = {"model": s, "labels": run.labels, "train_s": run.train_s}
            budget = iterations if name in ("v1", ARMS["scratch"]) else args.tuned_iterations or iterations
            rows.append(table_row("correction" if name == "v1" else "", name, s, run, budget))
            dump(run, args.out / f"correction-{name.replace(' ', '-')}.pkl")
        pooled = {"figure": "pooled", "arms": {
            name: {"added": sum(r["arms"][name]["added"] for r in rounds.figures),
                   "area": float(np.mean([r["arms"][name]["area"] for r in rounds.figures])),
                   "score": results[("correction round", name)]["model"]}
            for name in rounds.figures[0]["arms"]}} if rounds.figures else None
        arm_rows = arm_table(rounds.figures + ([pooled] if pooled else []))
        results[("correction round", "per figure")] = rounds.figures
    print()
    print(HEADER)
    for line in rows:
        print(line)
    if args.correction:
        print("\ncorrection round per arm (area: crops' share of the extra panel; dF1: over v1)")
        for line in arm_rows:
            print(line)
    if sweep_rows:
        print("\n" + SWEEP_HEADER)
        for line in sweep_rows:
            print(line)
    print()
    for line in targets(results):
        print(line)
    (args.out / "scenarios.json").write_text(json.dumps({f"{k[0]} | {k[1]}": v for k, v in results.items()},
                                                        indent=1))
    chart(points, args.out / "f1_vs_minutes.png")
    print(f"\nwrote {args.out / 'scenarios.json'} and {args.out / 'f1_vs_minutes.png'}")


if __name__ == "__main__":
    main()
