"""The base model the repository ships: half-precision weights beside a manifest that says how it was made.

A fresh clone trains every user's first model from it (`init auto`), so it travels in git: the float32
bundle of `segbot weights base` is 55 MB, its float16 copy half that, which costs nothing measurable in
quality (training loads it into float32 parameters and fine-tunes). MANIFEST.json names the weights'
sha256, the data and images left out, the command and commit that built it, so anyone can rebuild and
check it (`segbot weights ship`, docs/model.md).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from core.digests import sha256_file
from segmodel.bundle import CARD, META, WEIGHTS, BundleError, load_state_dict, read_meta, write_bundle_atomic

MANIFEST = "MANIFEST.json"


def half_state(state: dict[str, Any]) -> dict[str, Any]:
    """float32 tensors as float16 (integer buffers kept); refuses a tensor float16 cannot hold."""
    import torch

    out = {}
    for key, tensor in state.items():
        if tensor.is_floating_point():
            small = tensor.to(torch.float16)
            if not bool(torch.isfinite(small).all()):
                peak = float(tensor.abs().max())
                raise BundleError(f"{key} does not fit in float16 (values up to {peak:.3g})")
            tensor = small
        out[key] = tensor.contiguous()
    return out


def ship_base_model(bundle_dir: Path, out_dir: Path, provenance: dict[str, Any]) -> dict[str, Any]:
    """Write `bundle_dir` as a shipped base model into `out_dir` (new or empty); returns the manifest.

    `provenance` holds what the bundle cannot know about itself: the command and commit that built it,
    the hardware; the rest (images, iterations, loss) is read from its bundle.json."""
    import torch

    meta = read_meta(bundle_dir)
    state = half_state(load_state_dict(Path(bundle_dir) / WEIGHTS))
    sources = list(meta.get("sources", []))
    metrics = meta.get("metrics", {})

    def fill(tmp: Path) -> None:
        torch.save(state, tmp / WEIGHTS)
        shutil.copy(Path(bundle_dir) / META, tmp / META)
        if (Path(bundle_dir) / CARD).is_file():
            shutil.copy(Path(bundle_dir) / CARD, tmp / CARD)
        manifest = {
            "weights": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS), "bytes": (tmp / WEIGHTS).stat().st_size,
            "dtype": "float16", "arch": meta.get("arch"), "classes": meta.get("classes"),
            "iterations": meta.get("iterations"), "final_loss": metrics.get("final_loss"),
            "train_seconds": meta.get("train_seconds"),
            "images": len(sources), "synthetic": sum(1 for s in sources if str(s).startswith("synthetic")),
            "sources": sources, **provenance,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")

    write_bundle_atomic(Path(out_dir), fill)
    return json.loads((Path(out_dir) / MANIFEST).read_text(encoding="utf-8"))


def verify_shipped(bundle_dir: Path) -> dict[str, Any]:
    """The manifest of a shipped base model whose weights match it; BundleError otherwise."""
    path = Path(bundle_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BundleError(f"{bundle_dir}: no readable {MANIFEST} ({error})") from None
    weights = Path(bundle_dir) / manifest.get("weights", WEIGHTS)
    if not weights.is_file():
        raise BundleError(f"{bundle_dir}: {weights.name} is missing (a partial copy?)")
    found = sha256_file(weights)
    if found != manifest.get("sha256"):
        expected = str(manifest.get("sha256"))[:12]
        raise BundleError(f"{weights}: sha256 {found[:12]}... is not the manifest's {expected}...")
    read_meta(bundle_dir)
    return manifest
