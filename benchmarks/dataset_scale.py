"""The per-clip training Dataset at the seed's scale, against one COCO file, a bare JPEG decode and 1 rank.

1. start-up: labels for 170,000 clips x 10 frames (1.7M images, ~5 boxes each) as per-clip files plus a
   manifest and its columnar index (as ``dataengine dataset build`` writes them; also without the index),
   against the same labels as one COCO JSON that ``pycocotools`` loads in ``__init__`` (what
   torchvision's ``CocoDetection`` does). For each, in a fresh process: the time until a shuffled
   DataLoader with 2 workers yields its first batch, and the peak RSS (and PSS) of main + 2 workers.
   JPEGs exist only for the frames the first batches read: the labels are what is measured.
2. loader: frames/s of our Dataset in a DataLoader (decoding at the detector's input size, as training
   does) against a bare full-size JPEG decode of the same 720p frames; the ratio of each round.
3. DDP on the CPU: samples/s of a short torchrun training job with 1 and with 2 gloo processes.

``python -m benchmarks.dataset_scale [--scale 0.05]``; ``--scale 1`` is the full 1.7M images (about 2 GB
of files, written to a temporary folder that is deleted afterwards).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.stats import load_text, spread

if TYPE_CHECKING:
    from dataengine.formats import ClipAnnotations
    from dataengine.training.columns import ManifestColumns

FULL_CLIPS = 170_000
FRAMES_PER_CLIP = 10
CLIPS_PER_VIDEO = 20
BOXES_PER_FRAME = 5
CREATED_AT = "2026-11-22T00:00:00Z"
CLASSES = ["person", "bed", "wheelchair"]
BATCH = 8
CHUNK = 500  # clips per generator task; the COCO subsets are multiples of it
WORKERS = 2
INPUT_SIZE = (192, 256)  # the default recipe's image_min_size / image_max_size
Row = tuple[str, float, float, str]


# Generating the labels ---------------------------------------------------------------------------
#
# The labels are those the engine writes: each clip's file is what ``formats.save_annotations`` writes
# (``ClipAnnotations.to_json_bytes``), each manifest line is ``ManifestEntry.to_json_line``, and the
# index is ``training.columns.write_index_for`` of the manifest's columns. At 17M images the engine's own
# serialiser (pure-Python JSON with indent, about 4 ms a clip here) would take hours, so the bulk path
# formats the same bytes from templates and builds the index's columns from arrays, without parsing the
# manifest; tests/unit/test_dataset_scale_bulk.py checks that both give byte-identical files, manifest
# lines and index. Only the files of the clips the measured batches read are written to disk (as for the
# JPEGs), through ``save_annotations`` itself; the manifest names every clip with the SHA-256 of the
# bytes its file has.


def clip_id(c: int) -> str:
    return f"{c // CLIPS_PER_VIDEO:016x}-{(c % CLIPS_PER_VIDEO) * 100:07d}"


def split_of(c: int) -> str:
    """One video in ten is held out (``val``), so the train split is a selection, as in a real dataset."""
    return "val" if (c // CLIPS_PER_VIDEO) % 10 == 9 else "train"


def _chunk_boxes(start: int, stop: int) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Boxes per frame ``(clips, FRAMES_PER_CLIP)`` and the top-left corners of all of them, in order, of
    clips ``[start, stop)`` of the chunk at ``start``: drawn for the whole chunk, so a clip's labels do not
    depend on how many clips the manifest has."""
    if start % CHUNK or not start < stop <= start + CHUNK:
        raise ValueError(f"clips [{start}, {stop}) are not within one chunk of {CHUNK}")
    rng = np.random.default_rng(start)
    counts = rng.integers(BOXES_PER_FRAME - 2, BOXES_PER_FRAME + 3, size=(CHUNK, FRAMES_PER_CLIP))
    total = int(counts.sum())
    xs, ys = rng.integers(0, 560, size=total), rng.integers(0, 280, size=total)
    used = int(counts[: stop - start].sum())
    return counts[: stop - start], xs[:used], ys[:used]


def clip_annotations(start: int, stop: int) -> list[ClipAnnotations]:
    """The typed labels of clips ``[start, stop)`` (a chunk: the random draws are per chunk)."""
    from dataengine.formats import Box, ClipAnnotations, Frame

    counts, xs, ys = _chunk_boxes(start, stop)
    out, k = [], 0
    for i, c in enumerate(range(start, stop)):
        frames = []
        for f in range(FRAMES_PER_CLIP):
            boxes = []
            for b in range(int(counts[i, f])):
                x, y = float(xs[k]), float(ys[k])
                label = CLASSES[(c + f + b) % len(CLASSES)]
                boxes.append(Box(label, (x, y, x + 60.0, y + 70.0), track=b, origin="human"))
                k += 1
            frames.append(Frame(index=f, image=f"frames/{f:06d}.jpg", width=640, height=360, boxes=boxes))
        out.append(
            ClipAnnotations(clip_id=clip_id(c), version=1, source="review", classes=CLASSES, frames=frames,
                            created_at=CREATED_AT)
        )  # fmt: skip
    return out


_BOX = (
    '        {\n          "label": "%s",\n          "origin": "human",\n          "score": null,\n'
    '          "track": %d,\n          "xyxy": [\n            %d.0,\n            %d.0,\n'
    "            %d.0,\n            %d.0\n          ]\n        }"
)
_FRAME = (
    '    {\n      "boxes": %s,\n      "height": 360,\n      "image": "frames/%06d.jpg",\n'
    '      "index": %d,\n      "width": 640\n    }'
)
_DOC = (
    '{\n  "classes": [\n%s\n  ],\n  "clip_id": "%s",\n  "created_at": "%s",\n  "frames": [\n%s\n  ],\n'
    '  "parent_version": null,\n  "producer": {},\n  "schema": "dataengine.clip-annotations/1",\n'
    '  "source": "review",\n  "version": 1\n}\n'
)
_CLASSES_JSON = ",\n".join(f'    "{name}"' for name in CLASSES)


def annotation_bytes(start: int, stop: int) -> list[bytes]:
    """The bytes ``save_annotations`` writes for clips ``[start, stop)``, formatted from templates."""
    counts, xs, ys = _chunk_boxes(start, stop)
    out, k = [], 0
    for i, c in enumerate(range(start, stop)):
        frames = []
        for f in range(FRAMES_PER_CLIP):
            n = int(counts[i, f])
            boxes = [
                _BOX % (CLASSES[(c + f + b) % len(CLASSES)], b, x, y, x + 60, y + 70)
                for b, x, y in zip(range(n), xs[k : k + n].tolist(), ys[k : k + n].tolist(), strict=True)
            ]
            k += n
            frames.append(_FRAME % ("[\n" + ",\n".join(boxes) + "\n      ]" if boxes else "[]", f, f))
        out.append((_DOC % (_CLASSES_JSON, clip_id(c), CREATED_AT, ",\n".join(frames))).encode())
    return out


def manifest_line(c: int, uri: str, sha256: str, n_boxes: int) -> str:
    """``ManifestEntry.to_json_line`` of clip ``c``, formatted directly."""
    cid = clip_id(c)
    frames = ",".join(str(f) for f in range(FRAMES_PER_CLIP))
    return (
        f'{{"annotation_version":1,"clip_id":"{cid}","frames":[{frames}],"height":360,"n_boxes":{n_boxes},'
        f'"n_frames":{FRAMES_PER_CLIP},"sha256":"{sha256}","split":"{split_of(c)}","uri":"{uri}",'
        f'"video_id":"{cid[:16]}","width":640}}'
    )


def _generate_chunk(
    url: str, start: int, stop: int, coco: bool
) -> tuple[str, bytes, int, list[dict[str, Any]]]:
    """Manifest lines, SHA-256 digests and box count of clips [start, stop), and their frames for COCO."""
    prefix = f"{url}/annotations/"
    datas = annotation_bytes(start, stop)
    counts = _chunk_boxes(start, stop)[0]
    digests = [hashlib.sha256(d).digest() for d in datas]
    lines = [
        manifest_line(c, f"{prefix}{clip_id(c)}/v0001.json", digest.hex(), int(counts[c - start].sum()))
        for c, digest in zip(range(start, stop), digests, strict=True)
    ]
    frames_out = []
    if coco:  # the COCO reference's labels, from the same typed labels
        frames_out = [
            {"clip_id": a.clip_id, "frames": a.to_dict()["frames"]} for a in clip_annotations(start, stop)
        ]
    return "\n".join(lines) + "\n", b"".join(digests), int(counts.sum()), frames_out


def bulk_columns(url: str, n_clips: int, digests: bytes) -> ManifestColumns:
    """The manifest's columns, built from the clip numbers rather than by parsing the manifest."""
    from dataengine.training.columns import PackedStrings, make_columns
    from dataengine.training.manifest import SPLITS

    ids = [clip_id(c).encode() for c in range(n_clips)]
    prefix = f"{url}/annotations/".encode()
    offsets = np.arange(n_clips + 1, dtype=np.int64) * FRAMES_PER_CLIP
    return make_columns(
        clip_ids=PackedStrings.pack(ids),
        uris=PackedStrings.pack([prefix + i + b"/v0001.json" for i in ids]),
        sha256=np.frombuffer(digests, dtype=np.uint8).reshape(-1, 32).copy(),
        annotation_versions=np.ones(n_clips, dtype=np.int32),
        splits=np.array([SPLITS.index(split_of(c)) for c in range(n_clips)], dtype=np.int8),
        frame_offsets=offsets,
        frames=np.tile(np.arange(FRAMES_PER_CLIP, dtype=np.int32), n_clips),
    )


def _coco_part(chunk: list[dict[str, Any]], first_image: int, first_ann: int) -> tuple[str, str, int, int]:
    images, anns = [], []
    image_id, ann_id = first_image, first_ann
    for clip in chunk:
        for frame in clip["frames"]:
            images.append(
                json.dumps({"id": image_id, "file_name": f"clips/{clip['clip_id']}/{frame['image']}",
                            "width": 640, "height": 360})
            )  # fmt: skip
            for box in frame["boxes"]:
                x1, y1, x2, y2 = box["xyxy"]
                ann = {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": CLASSES.index(box["label"]) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
                anns.append(json.dumps(ann))
                ann_id += 1
            image_id += 1
    return ",".join(images), ",".join(anns), image_id, ann_id


def _write_coco(path: Path, image_parts: list[str], ann_parts: list[str]) -> None:
    categories = json.dumps([{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)])
    with path.open("w") as out:
        out.write('{"images":[' + ",".join(p for p in image_parts if p) + '],"annotations":[')
        out.write(",".join(p for p in ann_parts if p) + '],"categories":' + categories + "}")


def generate(root: Path, n_clips: int, coco_clips: list[int], *, write_index: bool = True) -> dict[str, Any]:
    """The manifest of ``n_clips`` clips and its index (as ``dataengine dataset build`` leaves them), with a
    process pool; and one COCO JSON of the same labels for each count in ``coco_clips`` (the first
    clips), as ``coco-{count}.json``. No annotation file is written here (:func:`write_read_clips`).
    """
    from dataengine.storage import ObjectStore
    from dataengine.training.columns import manifest_fingerprint, write_index_for

    store = ObjectStore(f"file://{root}")
    image_parts: list[str] = []
    ann_parts: list[str] = []
    image_id = ann_id = 1
    n_boxes = 0
    digests = bytearray()
    manifest_hash = hashlib.sha256()
    coco_top = max(coco_clips, default=0)
    with (root / "manifest.jsonl").open("wb") as manifest, ProcessPoolExecutor(max_workers=2) as pool:
        starts = list(range(0, n_clips, CHUNK))
        stops = [min(s + CHUNK, n_clips) for s in starts]
        # map() hands each chunk over and forgets it: the labels never pile up in this process.
        chunks = pool.map(
            _generate_chunk, [store.url] * len(starts), starts, stops, [s < coco_top for s in starts]
        )
        for start, (lines, chunk_digests, chunk_boxes, frames) in zip(starts, chunks, strict=True):
            data = lines.encode()
            manifest.write(data)
            manifest_hash.update(data)
            digests += chunk_digests
            n_boxes += chunk_boxes
            if frames:
                images, anns, image_id, ann_id = _coco_part(frames, image_id, ann_id)
                image_parts.append(images)
                ann_parts.append(anns)
                done = start + len(frames)
                if done in coco_clips:
                    _write_coco(root / f"coco-{done}.json", image_parts, ann_parts)
    if write_index:
        columns = bulk_columns(store.url, n_clips, bytes(digests))
        stamp = manifest_fingerprint(store, "manifest.jsonl")
        write_index_for(
            store, "manifest.jsonl", columns, manifest_sha256=manifest_hash.digest(), fingerprint=stamp
        )
    return {"n_clips": n_clips, "n_images": n_clips * FRAMES_PER_CLIP, "n_boxes": n_boxes}


def first_train_samples(root: Path, count: int) -> list[tuple[int, int]]:
    """``(clip, frame)`` of the first ``count`` samples the training sampler (seed 0, epoch 0) draws from
    the train split: the samples the measured batches read."""
    from dataengine.storage import ObjectStore
    from dataengine.training.columns import read_manifest_columns
    from dataengine.training.sampling import ShuffledShardSampler

    samples = read_manifest_columns(ObjectStore(f"file://{root}"), "manifest.jsonl").samples("train")
    order = ShuffledShardSampler(len(samples), seed=0).indices(0, count)
    return [samples.locate(int(i)) for i in order]


def write_read_clips(root: Path, clips_read: set[int]) -> None:
    """The annotation files of ``clips_read``, written by the engine's writer, ``save_annotations``."""
    from dataengine.formats import save_annotations
    from dataengine.storage import ObjectStore

    store = ObjectStore(f"file://{root}")
    for chunk_start in sorted({c - c % CHUNK for c in clips_read}):
        chunk = clip_annotations(chunk_start, chunk_start + CHUNK)
        for c in sorted(c for c in clips_read if chunk_start <= c < chunk_start + CHUNK):
            save_annotations(store, chunk[c - chunk_start])


def write_frames(root: Path, frames: set[tuple[int, int]]) -> None:
    """JPEGs for the ``(clip, frame)`` pairs read by the measured batches."""
    from dataengine.clips import encode_jpeg

    jpeg = encode_jpeg(np.full((360, 640, 3), 120, dtype=np.uint8))
    for c, f in frames:
        path = root / "clips" / clip_id(c) / "frames" / f"{f:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg)


def first_coco_frames(n_images: int, count: int) -> list[tuple[int, int]]:
    """``(clip, frame)`` read first by a seeded ``RandomSampler`` over the COCO file's images (the
    torchvision recipe's sampler)."""
    import torch
    from torch.utils.data import RandomSampler

    order = list(RandomSampler(range(n_images), generator=torch.Generator().manual_seed(0)))[:count]
    return [divmod(int(index), FRAMES_PER_CLIP) for index in order]


# One start-up measurement, in a fresh process ---------------------------------------------------


class CocoFrames:
    """The reference: torchvision-style ``CocoDetection``, one COCO file loaded by pycocotools."""

    def __init__(self, root: Path, path: Path) -> None:
        import contextlib
        import io

        from pycocotools.coco import COCO

        self.root = root
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(str(path))
        self.ids = sorted(self.coco.imgs)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Any:
        import torch

        from dataengine.clips import decode_jpeg

        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        anns = self.coco.imgToAnns[image_id]
        rgb = decode_jpeg((self.root / info["file_name"]).read_bytes(), source_name=info["file_name"])
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        labels = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
        return torch.from_numpy(rgb).permute(2, 0, 1), {"boxes": boxes.reshape(-1, 4), "labels": labels}


def _memory(pids: list[int]) -> tuple[float, float]:
    """(sum of peak RSS, sum of current PSS) in MB of the given processes."""
    import psutil  # type: ignore[import-untyped]

    peak = pss = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            hwm = next(line for line in status if line.startswith("VmHWM:"))
        peak += int(hwm.split()[1]) / 1024
        pss += psutil.Process(pid).memory_full_info().pss / 2**20
    return peak, pss


def child(kind: str, root: Path) -> dict[str, float]:
    """Build one dataset and its DataLoader, time the first batch, measure main + workers' memory.

    ``kind`` is ``manifest`` (or another manifest's file name) or the name of a COCO file in ``root``.
    Ours is sampled as training samples it (:class:`ShuffledShardSampler`), the COCO reference as the
    torchvision recipe does (``RandomSampler``), both seeded.
    """
    import psutil
    import torch
    from torch.utils.data import DataLoader, RandomSampler, Sampler

    from dataengine.storage import ObjectStore
    from dataengine.training.dataset import ClipFrameDataset, collate
    from dataengine.training.sampling import ShuffledShardSampler

    started = time.perf_counter()
    dataset: Any
    sampler: Sampler[int]
    if kind.startswith("manifest"):
        dataset = ClipFrameDataset(
            ObjectStore(f"file://{root}"), kind if "." in kind else "manifest.jsonl", split="train",
            classes=CLASSES, as_uint8=True,
        )  # fmt: skip
        sampler = ShuffledShardSampler(len(dataset), seed=0)
    else:
        dataset = CocoFrames(root, root / kind)
        sampler = RandomSampler(range(len(dataset)), generator=torch.Generator().manual_seed(0))
    init_s = time.perf_counter() - started
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler, num_workers=WORKERS, collate_fn=collate)
    batches = iter(loader)
    images, _ = next(batches)
    first_batch_s = time.perf_counter() - started
    workers = [p.pid for p in psutil.Process().children(recursive=True)]
    peak, pss = _memory([os.getpid(), *workers])
    main_peak, _ = _memory([os.getpid()])
    del batches
    return {"init_s": init_s, "first_batch_s": first_batch_s, "peak_rss_mb": peak, "pss_mb": pss,
            "main_peak_rss_mb": main_peak, "n_workers": len(workers), "batch": len(images),
            "n_samples": len(dataset)}  # fmt: skip


def run_child(kind: str, root: Path) -> dict[str, float]:
    """One measurement in a fresh interpreter, so that neither dataset inherits the other's memory."""
    command = [sys.executable, "-m", "benchmarks.dataset_scale", "--child", kind, "--root", str(root)]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"measuring {kind} failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    result["load_1min"] = os.getloadavg()[0]
    return result


def _fit(points: dict[int, dict[str, float]], key: str, at: int) -> float:
    """Linear inter/extrapolation of ``key`` over clip counts (time and memory grow with the labels)."""
    (x1, p1), (x2, p2) = sorted(points.items())
    slope = (p2[key] - p1[key]) / (x2 - x1)
    return p2[key] + slope * (at - x2)


def bench_startup(
    tmp: Path,
    *,
    scale: float,
    reference_scale: float,
    runs: int = 5,
    cold: bool = True,
    generate_only: bool = False,
) -> tuple[list[Row], dict[str, Any]]:
    """Ours at ``scale`` (``runs`` times, each beside an empty loader's run); pycocotools at ``scale`` too,
    or, above ``reference_scale``, measured at ``reference_scale`` and a third of it and extrapolated
    linearly (its memory would not fit beside the other jobs on a shared machine).

    The files are generated in ``tmp/startup`` unless a finished generation of the same size is there
    (``--data``: generate once outside the benchmark lock, measure under it); ``generate_only`` stops
    after generating.
    """
    n_clips = max(100, int(FULL_CLIPS * scale))
    step = CHUNK
    top = max(2 * step, round(FULL_CLIPS * reference_scale / step) * step)
    measured_ref = [n_clips] if n_clips <= top else [max(step, round(top / 3 / step) * step), top]
    root = tmp / "startup"
    done = root / "generated.json"
    from dataengine.training.columns import INDEX_FORMAT

    wanted = {"n_clips": n_clips, "index_format": INDEX_FORMAT}
    if done.is_file() and {k: json.loads(done.read_text()).get(k) for k in wanted} == wanted:
        sizes = json.loads(done.read_text())
        print(f"reusing the files generated in {root} ({sizes['generate_s']:.0f} s)")
    else:
        sizes = {**_generate_startup(root, n_clips, measured_ref), **wanted}
        done.write_text(json.dumps(sizes))
    if generate_only:
        return [], {"sizes": sizes}
    return _measure_startup(root, sizes, n_clips, measured_ref, runs=runs, cold=cold)


def _generate_startup(root: Path, n_clips: int, measured_ref: list[int]) -> dict[str, Any]:
    """The start-up benchmark's files in ``root`` (emptied first)."""
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    started = time.perf_counter()
    sizes = generate(root, n_clips, measured_ref)
    # What the first batches read (2 workers prefetch 2 batches each, and more): their labels and JPEGs.
    read = first_train_samples(root, 4 * BATCH * WORKERS)
    write_read_clips(root, {c for c, _ in read} | {0})
    frames = set(read) | {(0, f) for f in range(FRAMES_PER_CLIP)}
    for count in measured_ref:
        frames |= set(first_coco_frames(count * FRAMES_PER_CLIP, 4 * BATCH * WORKERS))
    write_frames(root, frames)
    sizes["manifest_mb"] = (root / "manifest.jsonl").stat().st_size / 2**20
    sizes["index_mb"] = (root / "manifest.index.npz").stat().st_size / 2**20
    with (root / "manifest.jsonl").open() as full:
        (root / "manifest-1.jsonl").write_text(full.readline())
    sizes["generate_s"] = time.perf_counter() - started
    return sizes


def _measure_startup(
    root: Path, sizes: dict[str, Any], n_clips: int, measured_ref: list[int], *, runs: int, cold: bool
) -> tuple[list[Row], dict[str, Any]]:
    """The timed part of :func:`bench_startup`, on the files generated in ``root``."""
    rounds = []
    for _ in range(runs):
        # The floor first: torch and 2 workers with one clip (an empty loader), then ours.
        rounds.append((run_child("manifest-1.jsonl", root), run_child("manifest", root)))
    ours = {k: statistics.median(r[1][k] for r in rounds) for k in rounds[0][1]}
    baseline = {k: statistics.median(r[0][k] for r in rounds) for k in rounds[0][0]}
    added_peak = spread([o["peak_rss_mb"] - b["peak_rss_mb"] for b, o in rounds])
    added_main = spread([o["main_peak_rss_mb"] - b["main_peak_rss_mb"] for b, o in rounds])
    added_pss = spread([o["pss_mb"] - b["pss_mb"] for b, o in rounds])
    first = spread([o["first_batch_s"] for _, o in rounds])
    init = spread([o["init_s"] for _, o in rounds])
    loads = spread([o["load_1min"] for _, o in rounds])
    print(
        f"ours, {sizes['n_images']:,} images ({int(ours['n_samples']):,} in the train split), {runs} runs: "
        f"first batch {first} s, __init__ {init} s; added over an empty loader: peak RSS {added_peak} MB "
        f"(main {added_main} MB), PSS {added_pss} MB; 1-min load {loads}"
    )
    cold_run: dict[str, float] = {}
    if cold:
        # The same manifest under a name with no index: a dataset built before indexes existed, read the
        # first time (the Dataset parses it and writes its index).
        (root / "manifest-cold.jsonl").write_bytes((root / "manifest.jsonl").read_bytes())
        cold_run = run_child("manifest-cold.jsonl", root)
    refs = {c: run_child(f"coco-{c}.json", root) for c in measured_ref}
    for c in measured_ref:
        refs[c]["coco_mb"] = (root / f"coco-{c}.json").stat().st_size / 2**20
    if len(measured_ref) == 1:
        ref, note = refs[n_clips], "measured"
    else:
        keys = ("first_batch_s", "peak_rss_mb", "pss_mb")
        ref = {k: _fit(refs, k, n_clips) for k in keys}
        note = (
            "extrapolated from " + " and ".join(f"{c * FRAMES_PER_CLIP:,}" for c in measured_ref) + " images"
        )
    what = f"{sizes['n_images']:,} images, {sizes['n_boxes']:,} boxes"
    rows = [
        (f"start-up to first batch, {what} (1/s, median)", 1 / ours["first_batch_s"],
         1 / ref["first_batch_s"], f"pycocotools COCO() in __init__, {note}"),
        (f"peak RSS main+{WORKERS} workers (1/GB)", 1024 / ours["peak_rss_mb"], 1024 / ref["peak_rss_mb"],
         "same, sum of VmHWM"),
        (f"PSS main+{WORKERS} workers (1/GB)", 1024 / ours["pss_mb"], 1024 / ref["pss_mb"],
         "same, sum of PSS"),
        ("peak RSS above an empty loader (1/GB)", 1024 / max(1.0, added_peak.median),
         1024 / (ref["peak_rss_mb"] - baseline["peak_rss_mb"]), "same, minus torch + 2 workers with 1 clip"),
    ]  # fmt: skip
    if cold_run:
        without = 1 / cold_run["first_batch_s"]
        what_cold = "same; ours parses the manifest and writes the index"
        rows.insert(1, ("same, first read of a manifest without its index (1/s)", without,
                        1 / ref["first_batch_s"], what_cold))  # fmt: skip
    raw = {"sizes": sizes, "rounds": rounds, "first_batch_s": str(first), "init_s": str(init),
           "added_peak_rss_mb": str(added_peak), "added_main_peak_rss_mb": str(added_main),
           "added_pss_mb": str(added_pss), "load_1min": str(loads), "ours_without_index": cold_run,
           "reference": ref, "reference_measured": refs}  # fmt: skip
    return rows, raw


# Loader speed ---------------------------------------------------------------------------------


def _frames_720p(n: int) -> list[np.ndarray[Any, np.dtype[np.uint8]]]:
    from dataengine.synthetic import SyntheticScene

    scene = SyntheticScene(seed=3, width=1280, height=720, n_frames=n)
    return [rgb for _, rgb, _ in scene.frames()]


def bench_loader(tmp: Path, *, n_clips: int = 12, repeats: int = 5) -> tuple[list[Row], dict[str, Any]]:
    """Our Dataset in a DataLoader (0 workers, shuffled) against decoding the same JPEG bytes in a loop."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from dataengine import clips, formats
    from dataengine.formats import Box, ClipAnnotations, Frame
    from dataengine.storage import ObjectStore
    from dataengine.training.dataset import ClipFrameDataset, collate
    from dataengine.training.manifest import ManifestEntry

    store = ObjectStore(f"file://{tmp / 'loader'}")
    rgbs = _frames_720p(FRAMES_PER_CLIP)
    lines, keys = [], []
    for c in range(n_clips):
        cid = clip_id(c)
        frames = []
        for f, rgb in enumerate(rgbs):
            store.write_bytes(clips.frame_key(cid, f), clips.encode_jpeg(rgb))
            keys.append(clips.frame_key(cid, f))
            boxes = [Box("person", (10.0 * b, 20.0, 10.0 * b + 80, 300.0), origin="human") for b in range(5)]
            frames.append(Frame(index=f, image=clips.frame_name(f), width=1280, height=720, boxes=boxes))
        saved = formats.save_annotations(
            store, ClipAnnotations(clip_id=cid, version=1, source="review", classes=CLASSES, frames=frames)
        )
        frame_ids = tuple(range(FRAMES_PER_CLIP))
        entry = ManifestEntry(cid, cid[:16], 1, saved.uri, saved.sha256, "train", frame_ids, 1280, 720, 50)
        lines.append(entry.to_json_line())
    store.write_text("manifest.jsonl", "\n".join(lines) + "\n")
    # Decoded for the default recipe's detector input (image_min_size 192, image_max_size 256), as
    # training and evaluation do.
    dataset = ClipFrameDataset(
        store, "manifest.jsonl", split="train", classes=CLASSES, as_uint8=True, input_size=INPUT_SIZE
    )
    n = len(dataset)

    def loader_pass() -> float:
        sampler = RandomSampler(range(n), generator=torch.Generator().manual_seed(1))
        started = time.perf_counter()
        for _ in DataLoader(dataset, batch_size=BATCH, sampler=sampler, num_workers=0, collate_fn=collate):
            pass
        return n / (time.perf_counter() - started)

    def bare_pass() -> float:
        started = time.perf_counter()
        for key in keys:
            clips.decode_jpeg(store.read_bytes(key), source_name=key)
        return n / (time.perf_counter() - started)

    # Alternate the two: on a shared machine the load drifts within seconds, and running all of one and
    # then all of the other handed that drift to whichever ran in the quieter moment. Ratio per round.
    before = load_text()
    rounds = [(loader_pass(), bare_pass()) for _ in range(repeats)]
    ratios = spread([ours / bare for ours, bare in rounds])
    ours, ref = statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds)
    print(f"loader / full-size decode, {repeats} rounds: {ratios}; {before} before, {load_text()} after")
    row = (f"loader at the detector's size, {n} shuffled 720p frames (frames/s, median)", ours, ref,
           "bare read + full-size JPEG decode, same frames")  # fmt: skip
    return [row], {"frames": n, "loader_fps": ours, "bare_fps": ref, "rounds": rounds, "ratio": str(ratios)}


# DDP scaling ----------------------------------------------------------------------------------


def bench_ddp(tmp: Path, *, n_clips: int = 16) -> tuple[list[Row], dict[str, Any]]:
    """Samples/s of one epoch of a torchrun job (gloo, CPU, tiny detector) with 1 and 2 processes."""
    from dataengine import clips, formats
    from dataengine.formats import ClipAnnotations, Frame
    from dataengine.storage import ObjectStore
    from dataengine.synthetic import SyntheticScene
    from dataengine.training.manifest import ManifestEntry
    from dataengine.training.runner import RECIPE, run_torchrun, torchrun_command

    store = ObjectStore(f"file://{tmp / 'ddp'}")
    scene = SyntheticScene(seed=5, width=320, height=240, n_frames=n_clips * 4)
    lines = []
    rendered = list(scene.frames())
    for c in range(n_clips):
        cid = clip_id(c)
        frames = []
        for f in range(4):
            _, rgb, boxes = rendered[c * 4 + f]
            store.write_bytes(clips.frame_key(cid, f), clips.encode_jpeg(rgb))
            frames.append(Frame(index=f, image=clips.frame_name(f), width=320, height=240, boxes=boxes))
        saved = formats.save_annotations(
            store, ClipAnnotations(clip_id=cid, version=1, source="review", classes=CLASSES, frames=frames)
        )
        lines.append(ManifestEntry(cid, cid[:16], 1, saved.uri, saved.sha256, "train", (0, 1, 2, 3),
                                   320, 240, saved.n_boxes).to_json_line())  # fmt: skip
    store.write_text("manifest.jsonl", "\n".join(lines) + "\n")
    cores = os.cpu_count() or 1
    rates = {}
    # (processes, threads each): as the launcher runs them (all cores shared out), and one thread each.
    for nproc, threads in ((1, cores), (1, 1), (2, max(1, cores // 2))):
        args = {"arch": "tiny_fasterrcnn", "init_model_id": "", "warm_start": False, "classes": CLASSES,
                "min_size": 192, "max_size": 256, "epochs": 2, "warm_epochs": 2, "batch_size": 4,
                "lr": 0.02, "seed": 0, "nproc": nproc, **RECIPE}  # fmt: skip
        model_id = f"m-bench-{nproc}x{threads}"
        command = torchrun_command(args, store_url=store.url, manifest_uri=store.uri("manifest.jsonl"),
                                   dataset_id="bench@1", model_id=model_id, device="cpu")  # fmt: skip
        run_torchrun(command, {**os.environ, "OMP_NUM_THREADS": str(threads)}, what=f"ddp bench {model_id}")
        record = store.read_json(f"models/{model_id}/training.json")
        last = record["epochs"][-1]  # the second epoch: start-up and first-touch costs are behind
        rates[f"{nproc}x{threads}"] = record["n_train_frames"] / last["seconds"]
    two = rates[f"2x{max(1, cores // 2)}"]
    rows = [
        (f"DDP gloo CPU, 2 procs, {n_clips * 4} frames/epoch (samples/s)", two, rates[f"1x{cores}"],
         f"1 process, {cores} threads"),
        (f"DDP gloo CPU, 2 procs, {n_clips * 4} frames/epoch (samples/s)", two, rates["1x1"],
         "1 process, 1 thread"),
    ]  # fmt: skip
    return rows, {"samples_per_s": rates}


def print_table(rows: list[Row]) -> None:
    print(f"{'benchmark':<66} {'ours':>10} {'reference':>10} {'ratio':>8}  reference")
    for name, ours, reference, what in rows:
        print(f"{name:<66} {ours:>10.2f} {reference:>10.2f} {ours / reference:>8.2f}  {what}")
    print("ratio = ours / reference; higher is better in every row.")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dataset_scale", description=__doc__)
    parser.add_argument("--scale", type=float, default=0.02, help="fraction of the 170,000 clips (1 = full)")
    parser.add_argument(
        "--reference-scale", type=float, default=0.3,
        help="largest scale at which pycocotools is measured; above it, it is extrapolated (memory)",
    )  # fmt: skip
    parser.add_argument("--only", choices=["startup", "loader", "ddp"], action="append")
    parser.add_argument(
        "--runs", type=int, default=5, help="start-up runs of ours (each beside an empty loader)"
    )
    parser.add_argument(
        "--no-cold", action="store_true", help="skip the first read of a manifest without index"
    )
    parser.add_argument(
        "--data", type=Path,
        help="keep the generated files in this folder (reused by the next run of the same size)",
    )  # fmt: skip
    parser.add_argument(
        "--generate-only", action="store_true", help="only generate the start-up files (with --data)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="also print the raw measurements as JSON")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.root)))
        return
    rows, raw = run(
        scale=args.scale,
        reference_scale=args.reference_scale,
        only=args.only,
        runs=args.runs,
        cold=not args.no_cold,
        data=args.data,
        generate_only=args.generate_only,
    )
    if args.generate_only:
        return
    print_table(rows)
    if args.json:
        print(json.dumps(raw, indent=2, default=str))


def run(
    *,
    scale: float,
    reference_scale: float = 0.3,
    only: list[str] | None = None,
    runs: int = 5,
    cold: bool = True,
    data: Path | None = None,
    generate_only: bool = False,
) -> tuple[list[Row], dict[str, Any]]:
    """Every selected part in a temporary folder, deleted afterwards (or in ``data``, kept); the table
    rows and raw numbers."""
    parts: dict[str, Callable[[Path], tuple[list[Row], dict[str, Any]]]] = {
        "startup": lambda t: bench_startup(
            t,
            scale=scale,
            reference_scale=reference_scale,
            runs=runs,
            cold=cold,
            generate_only=generate_only,
        ),
        "loader": bench_loader,
        "ddp": bench_ddp,
    }
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    if generate_only:
        only = ["startup"]
    with tempfile.TemporaryDirectory(prefix="dataengine-dsbench-") as tmp:
        for name, part in parts.items():
            if only is None or name in only:
                new_rows, raw[name] = part(data if data is not None and name == "startup" else Path(tmp))
                rows += new_rows
    return rows, raw


if __name__ == "__main__":
    main()
