"""``build_dataset``: snapshot the reviewed clips as a dataset version, with its held-out set and diff.

A version is a manifest (with its columnar index, ``columns``) plus lineage rows (``datasets``,
``dataset_clips``). Splits are per video and never change once given. Two held-out evaluation sets sit
beside the versions (docs/training.md, "Two held-out sets"): the regression set (``NAME-heldout``), frozen
from the val split the first time one exists and only replaced on request, and the edge-case set
(``NAME-edgecases``), the val clips that came in through a trigger, which grows with every version that
brings new ones. Each version records what changed since the last.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dataengine.context import Context
from dataengine.errors import (
    DataEngineError,
    EmptyDatasetError,
    FormatError,
    NotFoundError,
    NothingReviewedError,
    ObjectExistsError,
    RetryableLineageError,
)
from dataengine.formats import TRUSTED_SOURCES, ClipAnnotations, sha256_hex
from dataengine.lineage import Dataset, Session
from dataengine.lineage.clips import ClipChange, clip_stages, clips_ever_in_stage, set_stages
from dataengine.lineage.datasets import (
    TrainableClip,
    create_dataset,
    dataset_id,
    dataset_members,
    earlier_splits,
    get_dataset,
    manifest_registered,
    next_dataset_version,
    trainable_clips,
)
from dataengine.lineage.quarantine import quarantine
from dataengine.progress import NO_PROGRESS, Progress
from dataengine.storage import ObjectStore
from dataengine.training.columns import index_manifest
from dataengine.training.diff import diff_members, diff_summary, write_diff
from dataengine.training.manifest import (
    DEFAULT_NAME,
    SPLITS,
    DatasetRef,
    ManifestEntry,
    assign_splits,
    dataset_ref,
    edge_cases_name,
    heldout_name,
    manifest_key,
    read_manifest,
)

#: Clip stages whose labels are final enough to train on.
DATASET_STAGES = ("reviewed", "in_dataset")


# How long a build waits for another build of the same dataset (a big one takes minutes).
_BUILD_WAIT_SECONDS = 900.0


def split_group(video_id: str, camera: str | None, split_by: str) -> str:
    """What a split keeps together: the video, or its camera (when it has one and ``split_by`` says so)."""
    return f"camera:{camera}" if split_by == "camera" and camera else video_id


def fixed_splits(session: Session, name: str, *, split_by: str = "video") -> dict[str, str]:
    """The split each group (video or camera) had in earlier versions of ``name`` or its held-out sets.

    The newest version wins; ``val`` wins within one version, so a held-out group is never trained on.
    """
    splits: dict[str, str] = {}
    names = [name, heldout_name(name), edge_cases_name(name)]
    for video_id, camera, split in earlier_splits(session, names):
        splits[split_group(video_id, camera, split_by)] = split
    return splits


#: Per clip id, its annotation file's box count per class name.
ClassBoxes = Mapping[str, Counter[str]]


def _entry(
    store: ObjectStore, item: TrainableClip, split: str, classes: Sequence[str]
) -> tuple[ManifestEntry, Counter[str]]:
    """The manifest entry of one clip, after checking its annotation file against the lineage row, and
    its box count per class."""
    data = store.read_bytes(store.key_of(item.uri))
    digest = sha256_hex(data)
    if digest != item.sha256:
        raise FormatError(
            f"{item.uri}: sha256 {digest[:12]}… differs from the lineage record {item.sha256[:12]}…; "
            "annotation files are immutable, so this file was changed or corrupted"
        )
    annotations = ClipAnnotations.from_json_bytes(data, source_name=item.uri)
    unknown = sorted({b.label for f in annotations.frames for b in f.boxes} - set(classes))
    if unknown:
        raise FormatError(
            f"{item.uri}: labels {unknown} are not among the configured classes {list(classes)}"
        )
    frames = sorted(annotations.frames, key=lambda f: f.index)
    entry = ManifestEntry(
        clip_id=item.clip_id,
        video_id=item.video_id,
        annotation_version=item.version,
        uri=item.uri,
        sha256=digest,
        split=split,
        frames=tuple(f.index for f in frames),
        width=frames[0].width if frames else 0,
        height=frames[0].height if frames else 0,
        n_boxes=annotations.n_boxes,
    )
    return entry, Counter(b.label for f in annotations.frames for b in f.boxes)


def _class_boxes(
    entries: Sequence[ManifestEntry], boxes: ClassBoxes, classes: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Boxes per class name in each split: the class balance a model trained on the version sees."""
    totals: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    for entry in entries:
        totals[entry.split].update(boxes.get(entry.clip_id, Counter()))
    return {split: {name: int(total[name]) for name in classes} for split, total in totals.items()}


def _counts(entries: Sequence[ManifestEntry], classes: Sequence[str]) -> dict[str, Any]:
    def count(split: str | None, what: str) -> int:
        chosen = [e for e in entries if split is None or e.split == split]
        if what == "clips":
            return len(chosen)
        return sum(e.n_frames if what == "frames" else e.n_boxes for e in chosen)

    return {
        "n_clips": count(None, "clips"),
        "n_train": count("train", "clips"),
        "n_val": count("val", "clips"),
        "n_frames": count(None, "frames"),
        "n_train_frames": count("train", "frames"),
        "n_val_frames": count("val", "frames"),
        "n_boxes": count(None, "boxes"),
        "n_videos": len({e.video_id for e in entries}),
        "n_val_videos": len({e.video_id for e in entries if e.split == "val"}),
        "classes": list(classes),
    }


def _latest(session: Session, name: str) -> Dataset | None:
    try:
        return get_dataset(session, name)
    except NotFoundError:
        return None


def _members(session: Session, ident: str) -> dict[str, int]:
    return {m.clip_id: m.annotation_version for m in dataset_members(session, ident)}


def _unchanged(session: Session, name: str, members: Mapping[str, int]) -> Dataset | None:
    """The newest version of ``name`` when its members are exactly ``members``."""
    latest = _latest(session, name)
    return latest if latest is not None and _members(session, latest.id) == dict(members) else None


def _write_manifest(session: Session, store: ObjectStore, key: str, data: bytes) -> None:
    """Write a new manifest; a leftover from a run that died before registering it is replaced."""
    try:
        store.write_bytes(key, data, exclusive=True)
    except ObjectExistsError:
        if manifest_registered(session, store.uri(key)):
            raise
        store.write_bytes(key, data)


def _manifest_bytes(entries: Sequence[ManifestEntry]) -> bytes:
    return "".join(e.to_json_line() + "\n" for e in entries).encode("utf-8")


#: The stratum of the new groups that bring clips found by a trigger: a few of them go to val, so the
#: edge-case set grows with every build that brings enough of them.
TRIGGERED = "(came in through a trigger)"


def _collect_entries(
    ctx: Context,
    candidates: Sequence[TrainableClip],
    fixed: Mapping[str, str],
    triggered: set[str],
    progress: Progress,
) -> tuple[list[ManifestEntry], list[tuple[TrainableClip, str]], dict[str, Counter[str]]]:
    """Each readable candidate's manifest entry with its split, the refused ones, and boxes per class.

    The files are read before the split is drawn: the split is stratified by the classes each group
    shows, and by whether a new group brings clips found by a trigger (clip ids in ``triggered``).
    """
    split_by = ctx.settings.split_by
    groups = {c.clip_id: split_group(c.video_id, c.camera, split_by) for c in candidates}
    entries: list[ManifestEntry] = []
    refused: list[tuple[TrainableClip, str]] = []
    boxes: dict[str, Counter[str]] = {}
    progress.start("dataset build: reading labels", len(candidates))
    for item in candidates:
        try:
            entry, boxes[item.clip_id] = _entry(ctx.store, item, "train", ctx.settings.classes)
        except DataEngineError as exc:
            refused.append((item, str(exc)))
        else:
            entries.append(entry)
        progress.advance()
    classes_of: dict[str, set[str]] = {}
    for entry in entries:
        shown = {name for name, n in boxes[entry.clip_id].items() if n > 0}
        group = groups[entry.clip_id]
        if entry.clip_id in triggered and group not in fixed:
            shown.add(TRIGGERED)
        classes_of.setdefault(group, set()).update(shown)
    splits = assign_splits(
        {groups[e.clip_id] for e in entries} | {groups[item.clip_id] for item, _ in refused},
        val_fraction=ctx.settings.val_fraction,
        fixed=fixed,
        classes_of=classes_of,
        min_class_videos=ctx.settings.split_min_class_videos,
    )
    return [replace(e, split=splits[groups[e.clip_id]]) for e in entries], refused, boxes


def _quarantine(session: Session, ctx: Context, refused: Sequence[tuple[TrainableClip, str]]) -> None:
    for item, reason in refused:
        quarantine(
            session, kind="annotation", input=item.uri, reason=reason, stage="in_dataset",
            video_id=item.video_id, clip_id=item.clip_id, run_id=ctx.run_id,
        )  # fmt: skip


def _create(
    session: Session,
    ctx: Context,
    name: str,
    entries: Sequence[ManifestEntry],
    boxes: ClassBoxes,
    extra: dict[str, Any],
) -> Dataset:
    """Write the manifest of the next version of ``name`` and register it with its members."""
    version = next_dataset_version(session, name)
    data = _manifest_bytes(entries)
    _write_manifest(session, ctx.store, manifest_key(name, version), data)
    # The columnar index beside it makes every training rank's start-up a load instead of a parse.
    index_manifest(ctx.store, manifest_key(name, version), data)
    return create_dataset(
        session,
        name=name,
        version=version,
        manifest_uri=ctx.store.uri(manifest_key(name, version)),
        manifest_sha256=sha256_hex(data),
        counts={
            **_counts(entries, ctx.settings.classes),
            "class_boxes": _class_boxes(entries, boxes, ctx.settings.classes),
            **extra,
        },
        members=[(e.clip_id, e.annotation_version, e.split) for e in entries],
    )


@dataclass(frozen=True, slots=True)
class _Draft:
    """The version of dataset ``name`` being registered: its entries and their class counts per clip."""

    name: str
    entries: Sequence[ManifestEntry]
    boxes: ClassBoxes


def _heldout(session: Session, ctx: Context, draft: _Draft, *, rebuild: bool) -> str | None:
    """The id of the held-out set: the newest one, or a new one frozen from this version's val split."""
    name, entries, boxes = draft.name, draft.entries, draft.boxes
    existing = _latest(session, heldout_name(name))
    if existing is not None and not rebuild:
        return existing.id
    val = [e for e in entries if e.split == "val"]
    if not val:
        # Nothing to freeze (val_fraction 0, or one video): keep the old set rather than lose it.
        return existing.id if existing is not None else None
    return _create(session, ctx, heldout_name(name), val, boxes, {"heldout_of": name}).id


def _boxes_of(store: ObjectStore, entries: Sequence[ManifestEntry], boxes: ClassBoxes) -> ClassBoxes:
    """``boxes`` completed with the class counts of the entries it lacks (read from their files)."""
    found = dict(boxes)
    for entry in entries:
        if entry.clip_id not in found:
            data = store.read_bytes(store.key_of(entry.uri))
            if sha256_hex(data) != entry.sha256:
                raise FormatError(f"{entry.uri}: sha256 differs from the edge-case set's manifest")
            annotations = ClipAnnotations.from_json_bytes(data, source_name=entry.uri)
            found[entry.clip_id] = Counter(b.label for f in annotations.frames for b in f.boxes)
    return found


def _edge_cases(session: Session, ctx: Context, draft: _Draft, *, rebuild: bool) -> str | None:
    """The id of the edge-case set: the newest one grown by this version's val clips selected by a trigger.

    A clip already in the set keeps its place; when it was relabelled since, the new labels replace the
    old (a review is a correction). ``rebuild`` starts the set again from this version's val split alone.
    Returns the newest set unchanged when nothing new came in, and None while there is none.
    """
    name, boxes = draft.name, draft.boxes
    val = [e for e in draft.entries if e.split == "val"]
    triggered = clips_ever_in_stage(session, [e.clip_id for e in val], "selected")
    existing = _latest(session, edge_cases_name(name))
    chosen: dict[str, ManifestEntry] = {}
    if existing is not None and not rebuild:
        chosen = {e.clip_id: e for e in read_manifest(ctx.store, existing.manifest_uri)}
    chosen.update({e.clip_id: e for e in val if e.clip_id in triggered})
    if not chosen:
        return None
    if existing is not None and _members(session, existing.id) == {
        clip_id: e.annotation_version for clip_id, e in chosen.items()
    }:
        return existing.id
    members = [chosen[clip_id] for clip_id in sorted(chosen)]
    extra = {"edge_cases_of": name}
    return _create(
        session, ctx, edge_cases_name(name), members, _boxes_of(ctx.store, members, boxes), extra
    ).id


def _mark_members(session: Session, ctx: Context, row: Dataset, entries: Sequence[ManifestEntry]) -> None:
    """Move each member clip to ``in_dataset``; a clip already there gets an event naming the version.

    One bulk write for every member (``set_stages``): the same rows as a ``set_stage`` or
    ``record_event`` per clip, without three round trips per clip."""
    stages = clip_stages(session, [entry.clip_id for entry in entries])
    changes = [
        ClipChange(
            entry.clip_id,
            "in_dataset",
            {"dataset_id": row.id, "annotation_version": entry.annotation_version, "split": entry.split},
            moves=stages.get(entry.clip_id) != "in_dataset",
        )
        for entry in entries
    ]
    set_stages(session, changes, run_id=ctx.run_id, actor=ctx.actor)


def _register(
    session: Session,
    ctx: Context,
    name: str,
    entries: Sequence[ManifestEntry],
    boxes: ClassBoxes,
    *,
    rebuild_heldout: bool,
) -> Dataset:
    previous = _latest(session, name)
    before = _members(session, previous.id) if previous is not None else {}
    draft = _Draft(name, entries, boxes)
    heldout = _heldout(session, ctx, draft, rebuild=rebuild_heldout)
    edge_cases = _edge_cases(session, ctx, draft, rebuild=rebuild_heldout)
    version = next_dataset_version(session, name)
    diff = diff_members(
        before, {e.clip_id: e.annotation_version for e in entries},
        base=previous.id if previous else None, target=dataset_id(name, version),
    )  # fmt: skip
    write_diff(ctx.store, name, version, diff)
    row = _create(
        session, ctx, name, entries, boxes,
        {"heldout": heldout, "edge_cases": edge_cases, "diff": diff_summary(diff)},
    )  # fmt: skip
    _mark_members(session, ctx, row, entries)
    return row


def build_dataset(
    ctx: Context, *, name: str = DEFAULT_NAME, rebuild_heldout: bool = False, progress: Progress = NO_PROGRESS
) -> DatasetRef:
    """Snapshot every reviewed clip with trusted labels as a new version of dataset ``name``.

    Returns the newest existing version unchanged (``created=False``) when its members are the same
    (clip, annotation version) pairs and no held-out rebuild is asked for. Clips whose annotation file
    is unreadable are quarantined. ``rebuild_heldout`` freezes a new regression set from the val split
    and starts the edge-case set again from the val clips that came in through a trigger. ``progress``
    counts the candidate clips whose annotation files are read.

    Builds of one dataset take turns (a lock in lineage): a build that started while another ran
    waits for it, then finds its version and returns it unchanged, instead of racing it for the
    version number.
    """
    with ctx.db.lock(f"dataset-build/{name}", wait_seconds=_BUILD_WAIT_SECONDS) as held:
        if not held:
            raise RetryableLineageError(
                f"another run has been building dataset {name!r} for {_BUILD_WAIT_SECONDS:.0f} s; "
                "run this build again when it has ended"
            )
        return _build(ctx, name=name, rebuild_heldout=rebuild_heldout, progress=progress)


def _build(ctx: Context, *, name: str, rebuild_heldout: bool, progress: Progress) -> DatasetRef:
    with ctx.db.session() as session:
        candidates = trainable_clips(session, stages=DATASET_STAGES, sources=TRUSTED_SOURCES)
        fixed = fixed_splits(session, name, split_by=ctx.settings.split_by)
        triggered = clips_ever_in_stage(session, [c.clip_id for c in candidates], "selected")
        same = _unchanged(session, name, {c.clip_id: c.version for c in candidates})
        if candidates and same is not None and not rebuild_heldout:
            return dataset_ref(same, created=False)
    if not candidates:
        raise NothingReviewedError(
            "nothing reviewed yet: no clip in stage reviewed or in_dataset has a trusted annotation "
            f"(source in {list(TRUSTED_SOURCES)}); review some clips, then build the dataset"
        )
    entries, refused, boxes = _collect_entries(ctx, candidates, fixed, triggered, progress)
    with ctx.db.session() as session:
        _quarantine(session, ctx, refused)
        same = _unchanged(session, name, {e.clip_id: e.annotation_version for e in entries})
        if entries and same is not None and not rebuild_heldout:
            return dataset_ref(same, created=False)
    if not entries:
        raise EmptyDatasetError(f"every candidate clip of dataset {name!r} was quarantined: {refused[0][1]}")
    with ctx.db.session() as session:
        row = _register(session, ctx, name, entries, boxes, rebuild_heldout=rebuild_heldout)
        return dataset_ref(row, created=True)
