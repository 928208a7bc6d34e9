"""GPU speed of the r50 and x101 presets: training s/it with and without AMP, peak memory, inference img/s.

Run on a GPU machine through bench/gpu.sh (which installs mmcv with CUDA ops first):

    python3 bench/bench_gpu.py --data .gpu/emps-dev [--iterations 200] [--archs r50,x101]

Training: the step of trainer.train.train_model (same model config, SGD, warm-up, gradient clipping,
segmodel.fast_ops installed as train_model installs it), on 2 x 256 px samples drawn from one
labelled centre crop of each of 4 EMPS-dev images (bench_quality's choice), random init. With
--amp both: fp32, then fp16 autocast with a GradScaler (what mmdet's AmpOptimWrapper does).
Timed per iteration with torch.cuda.synchronize after the first --warmup iterations; data
preparation (sampling, augmentation) is timed apart. Peak memory: torch.cuda.max_memory_allocated
over the timed iterations. Inference: the trained weights in a model built with mmdet's COCO test
settings (max 100 detections, score 0.05), batch 1, an EMPS image resized to 1333 x 800 (the COCO
test scale), fp32 and fp16 autocast, beside mmdetection's published Cascade Mask R-CNN figures on a
V100 (R-50-FPN 11.2 img/s, X-101-64x4d-FPN 6.7 img/s; COCO images, so other detection counts).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import time
from pathlib import Path

print = functools.partial(print, flush=True)  # progress shows up even when piped to a file
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PUBLISHED_V100 = {"r50": 11.2, "x101": 6.7}  # mmdetection model zoo, Cascade Mask R-CNN, img/s


def training_sources(data: Path):
    from bench_quality import labelled_crop, load, pick_training

    stems = sorted(p.stem for p in (data / "images").glob("*.png"))
    out = []
    for stem in pick_training(stems, data, 4):
        ann = labelled_crop(load(stem, data), 50 // 4)
        if ann is not None:
            out.append(ann)
    return out


def train(arch: str, sources, iterations: int, warmup: int, amp: bool, seed: int = 0) -> dict:
    import numpy as np
    import torch

    from segmodel import fast_ops
    from segmodel.config import build_model_config, default_lr
    from segmodel.detector import build_model
    from segmodel.options import auto_rescale
    from trainer.dataset import SampleSource, build_regions, label_stats
    from trainer.train import _classes, _lr_at, _to_batch

    torch.manual_seed(seed)
    classes = _classes(sources)
    stats = label_stats(sources)
    rescale = auto_rescale(stats.median_d_px)
    regions = build_regions(sources, classes, rescale)
    cfg = build_model_config(arch, len(classes), stats, rescale, 256)
    model = build_model(cfg)
    fast_ops.install(model, "cuda")
    model.cuda().train()
    lr = default_lr(arch)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    source = SampleSource(regions, 256, True, seed=seed)
    total = warmup + iterations
    step_s, data_s, losses = [], [], []
    torch.cuda.synchronize()
    for it in range(total):
        if it == warmup:
            torch.cuda.reset_peak_memory_stats()
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(it, total, lr, min(100, max(1, total // 10)))
        t0 = time.perf_counter()
        batch = _to_batch([source.draw() for _ in range(2)])
        t1 = time.perf_counter()
        autocast = torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext()
        data = model.data_preprocessor(batch, training=True)
        with autocast:
            loss, _ = model.parse_losses(model(**data, mode="loss"))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, max_norm=10.0)
        scaler.step(optimizer)
        scaler.update()
        value = float(loss.detach())  # synchronises, as train_model's progress does
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        if it >= warmup:
            step_s.append(t2 - t1)
            data_s.append(t1 - t0)
        losses.append(value)
        if (it + 1) % 50 == 0:
            print(f"  {arch} {'amp' if amp else 'fp32'} iteration {it + 1}/{total}, loss {value:.3f}")
    return {
        "model": model, "classes": classes, "rescale": rescale, "stats": stats,
        "s_it": statistics.median(step_s), "s_it_mean": statistics.mean(step_s),
        "data_s": statistics.median(data_s), "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        "loss_first": float(np.mean(losses[:10])), "loss_last": float(np.mean(losses[-10:])),
    }


def inference(arch: str, trained: dict, data: Path, n_images: int) -> dict:
    import cv2
    import numpy as np
    import torch
    from mmdet.structures import DetDataSample

    from segmodel import fast_ops
    from segmodel.config import build_model_config
    from segmodel.detector import build_model

    cfg = build_model_config(arch, len(trained["classes"]), trained["stats"], trained["rescale"], 256,
                             max_per_img=100)
    cfg["test_cfg"]["rcnn"]["score_thr"] = 0.05
    model = build_model(cfg)
    model.load_state_dict(trained["model"].state_dict())
    fast_ops.install(model, "cuda")
    model.cuda().eval()
    path = sorted((data / "images").glob("*.png"))[0]
    image = cv2.resize(cv2.imread(str(path), cv2.IMREAD_COLOR), (1333, 800), interpolation=cv2.INTER_LINEAR)
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
    out = {}
    for amp in (False, True):
        autocast = torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext()
        times, dets = [], 0
        for i in range(n_images + 3):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            sample = DetDataSample(metainfo=dict(img_shape=(800, 1333), ori_shape=(800, 1333),
                                                 scale_factor=(1.0, 1.0)))
            with torch.no_grad(), autocast:
                batch = model.data_preprocessor({"inputs": [pixels], "data_samples": [sample]},
                                                training=False)
                result = model(**batch, mode="predict")[0]
            torch.cuda.synchronize()
            if i >= 3:
                times.append(time.perf_counter() - t0)
                dets += len(result.pred_instances)
        out["amp" if amp else "fp32"] = (1.0 / statistics.median(times), dets / n_images)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="an EMPS-dev copy (images/, segmaps/)")
    parser.add_argument("--archs", default="r50,x101")
    parser.add_argument("--iterations", type=int, default=200, help="timed iterations per run")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--infer", type=int, default=30, help="timed inference images")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device")
    torch.backends.cudnn.benchmark = True
    import mmcv

    print(f"device   : {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, mmcv {mmcv.__version__}")
    sources = training_sources(args.data)
    print(f"data     : {len(sources)} EMPS-dev images, {sum(len(s.instances) for s in sources)} labelled "
          f"particles in one centre crop each; batch 2 x 256 px; {args.iterations} timed iterations "
          f"after {args.warmup}")
    rows = []
    for arch in args.archs.split(","):
        runs = {}
        for amp in (False, True):
            runs[amp] = train(arch, sources, args.iterations, args.warmup, amp)
            r = runs[amp]
            print(f"train {arch:4} {'amp ' if amp else 'fp32'}: {r['s_it']:.3f} s/it median "
                  f"({r['s_it_mean']:.3f} mean), data {r['data_s'] * 1000:.0f} ms/it apart, "
                  f"peak {r['peak_gib']:.2f} GiB, loss {r['loss_first']:.3f} -> {r['loss_last']:.3f}")
        infer = inference(arch, runs[True], args.data, args.infer)
        for mode, (ips, dets) in infer.items():
            print(f"infer {arch:4} {mode:4}: {ips:.1f} img/s at 1333 x 800, batch 1 ({dets:.0f} detections "
                  f"per image); mmdetection's published V100 figure {PUBLISHED_V100.get(arch, '?')} img/s")
        rows.append((arch, runs, infer))
        del runs
        torch.cuda.empty_cache()
    print("\n| preset | fp32 s/it | AMP s/it | fp32 peak GiB | AMP peak GiB | infer fp32 img/s | "
          "infer AMP img/s | published V100 img/s |")
    print("|---|---|---|---|---|---|---|---|")
    for arch, runs, infer in rows:
        print(f"| {arch} | {runs[False]['s_it']:.3f} | {runs[True]['s_it']:.3f} | "
              f"{runs[False]['peak_gib']:.2f} | {runs[True]['peak_gib']:.2f} | "
              f"{infer['fp32'][0]:.1f} | {infer['amp'][0]:.1f} | "
              f"{PUBLISHED_V100.get(arch, '?')} |")


if __name__ == "__main__":
    main()
