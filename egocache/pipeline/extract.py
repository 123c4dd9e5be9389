"""The extraction pass: manifest -> clip table -> shard tasks (in process or on dask) -> Zarr cache + summary.

Rows of the cache are the manifest's clips in manifest order (sorted by video, then time), cut into
shards of `shard_size` consecutive rows; one task extracts and writes one shard (extract_worker.py).
`workers` <= 1 without a scheduler runs every task in this process (no cluster start-up, no pickling);
`workers` >= 2 starts a dask LocalCluster of that many single-threaded worker processes, and
`scheduler` uses an existing dask.distributed cluster. With device "cuda" every task asks for the
resource GPU=1, so workers must declare `resources={"GPU": 1}` (the local cluster does) and two tasks
never share a model. The run holds the cache's extraction lock, skips shards already marked done
(resume after a kill) and writes its summary into the cache (`_egocache/extract/zarr.json`, a zarr
group whose attributes hold it, so plain zarr lists the cache without warnings). A local cluster
spawns processes: a script calling `extract` with workers >= 2 needs the `if __name__ == "__main__":`
guard (the `egocache` command has it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from egocache import __version__
from egocache.core.device import resolve_device
from egocache.errors import CacheError, ClipError, ConfigError, EgocacheError, ManifestError
from egocache.pipeline.extract_worker import (STAGES, ShardJob, ShardResult, TeacherKey, check_teacher_heads,
                                              load_teacher, run_shard, shared_heads)
from egocache.pipeline.datasets.preflight import Preflight
from egocache.pipeline.options import ExtractOptions
from egocache.pipeline.sampling import clip_seconds, clip_span_frames, student_positions

SUMMARY_FILE = "_egocache/extract/zarr.json"   # a zarr group node, so zarr lists the cache without warnings


@dataclass
class ExtractSummary:
    """Outcome of a run; counts and failures cover the whole cache, timings this run only."""

    cache: str
    teacher: str
    clips: int
    clips_ok: int
    clips_failed: int
    shards: int
    shards_run: int
    shards_resumed: int
    seconds: float
    clips_per_s: float
    frames_decoded_per_clip: float
    frames_spanned_per_clip: float
    stage_seconds: dict[str, float]
    summary_file: str
    group: str = ""                                              # an added teacher's group (teachers/<name>)
    failures: list[str] = field(default_factory=list)
    manifest_problems: list[str] = field(default_factory=list)
    clips_without_imu: int = 0                                   # ok clips flagged imu_present 0
    without_imu: list[str] = field(default_factory=list)         # "clip_id: why" (this run's shards)
    clips_without_audio: int = 0                                 # ok clips flagged audio_present 0
    without_audio: list[str] = field(default_factory=list)       # "clip_id: why" (this run's shards)
    preflight: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def clip_table(clips: list[Any], heads: list[str], seconds: float) -> dict[str, np.ndarray]:
    """The cache's clip table: ids, split, start/end of each `seconds`-long clip, a label column per head."""
    half = seconds / 2.0
    table: dict[str, np.ndarray] = {
        "clip_id": np.array([c.clip_id for c in clips], dtype=str),
        "segment_id": np.array([c.segment_id for c in clips], dtype=str),
        "video_id": np.array([c.video_id for c in clips], dtype=str),
        "split": np.array([c.split for c in clips], dtype=str),
        "start_s": np.array([c.centre_s - half for c in clips], dtype=np.float64),
        "end_s": np.array([c.centre_s + half for c in clips], dtype=np.float64),
    }
    for h in heads:
        table[f"label_{h}"] = np.array([c.labels.get(h, -1) for c in clips], dtype=np.int64)
    return table


def cache_attrs(opts: ExtractOptions, device: str, spec: Any, checkpoint_sha: str | None, manifest: Any
                ) -> dict[str, Any]:
    """What a student needs to know about the cache's contents, as JSON-ready root attributes.

    The writer adds the teacher's feature_dim and heads (with class names) and the frame geometry.
    """
    from egocache.pipeline.audio import AUDIO_DTYPE, audio_attrs
    from egocache.pipeline.imu import CHANNELS, IMU_RATE_HZ, IMU_WINDOW
    from egocache.pipeline.extract_worker import INIT_SEED

    t, stride = int(spec.num_frames), int(spec.frame_stride)
    return {
        "teacher": {
            "name": opts.teacher, "tag": spec.tag, "config": dict(spec.config),
            "checkpoint_sha256": checkpoint_sha, "init_seed": None if checkpoint_sha else INIT_SEED,
            "overrides": dict(opts.teacher_overrides), "num_frames": t, "img_size": int(spec.img_size),
            "mean": list(spec.mean), "std": list(spec.std), "bgr": bool(spec.bgr), "input": spec.input,
            **({"aux_video": dict(spec.aux_video)} if spec.aux_video else {}),
            "device": device, "precision": "bfloat16-autocast" if device == "cuda" else "float32",
        },
        "sampling": {"t": t, "stride": stride, "clip_seconds": clip_seconds(t, stride),
                     "clip_span_frames_at_30fps": clip_span_frames(30.0, t, stride),
                     "eval_clips": opts.eval_clips, "train_clips": opts.train_clips},
        "imu": {"rate_hz": IMU_RATE_HZ, "window": IMU_WINDOW, "channels": list(CHANNELS), "centred": True,
                "mode": opts.imu, "units": manifest.imu_units, "keep_backwards": opts.imu_keep_backwards},
        "source": {"dataset": manifest.dataset, "manifest_sha256": manifest.sha256,
                   "annotations": [os.path.basename(a) for a in opts.annotations],
                   "motion_pair_verbs": manifest.motion_pair_verbs, "protocol": opts.protocol,
                   "selection": dataclasses.asdict(manifest.selection), "split_seed": manifest.selection.split_seed,
                   "frames_source": opts.frames_source},
        "extract": {"tool": "egocache", "version": __version__},
        **({} if opts.audio == "none" else {"audio": audio_attrs(clip_seconds(t, stride), opts.audio, AUDIO_DTYPE)}),
    }


def teacher_info(key: TeacherKey) -> tuple[Any, str | None]:
    """The teacher's spec and checkpoint sha256, computed where the tasks run (a worker on a cluster)."""
    from egocache.pipeline.teachers import checkpoint_sha256

    spec = load_teacher(key).spec
    return spec, (checkpoint_sha256(key.checkpoint) if key.checkpoint else None)


class LocalRunner:
    """Runs tasks one after another in this process."""

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args), here."""
        return fn(*args)

    def map_unordered(self, fn: Callable[[ShardJob], ShardResult], jobs: list[ShardJob]
                      ) -> Iterator[ShardResult]:
        """fn over jobs, results as they finish."""
        for job in jobs:
            yield fn(job)


class DaskRunner:
    """Runs tasks on a dask.distributed cluster, one per worker process, GPU=1 each with cuda."""

    def __init__(self, client: Any, resources: dict[str, int] | None):
        self.client = client
        self.resources = resources

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) on a worker."""
        return self.client.submit(fn, *args, pure=False, resources=self.resources).result()

    def map_unordered(self, fn: Callable[[ShardJob], ShardResult], jobs: list[ShardJob]
                      ) -> Iterator[ShardResult]:
        """fn over jobs on the workers (first shards first), results as they finish; leftovers cancelled."""
        from dask.distributed import as_completed

        run = uuid.uuid4().hex[:8]
        futures = [self.client.submit(fn, job, resources=self.resources, priority=-i,
                                      key=f"egocache-shard-{job.shard}-{run}")
                   for i, job in enumerate(jobs)]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            self.client.cancel([f for f in futures if not f.done()])


@contextlib.contextmanager
def open_runner(workers: int, scheduler: str | None, device: str) -> Iterator[LocalRunner | DaskRunner]:
    """In-process runner for workers <= 1 without a scheduler, else a dask runner (local or remote)."""
    if scheduler is None and workers <= 1:
        yield LocalRunner()
        return
    from dask.distributed import Client, LocalCluster

    resources = {"GPU": 1} if device == "cuda" else None
    with contextlib.ExitStack() as stack:
        if scheduler is not None:
            client = stack.enter_context(Client(scheduler))
            if resources and not any(w.get("resources", {}).get("GPU")
                                     for w in client.scheduler_info()["workers"].values()):
                raise EgocacheError(f"no worker of the dask cluster at {scheduler} declares the resource "
                                    "GPU; start workers with `--resources GPU=1` (one per GPU)")
        else:
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, resources=resources,
                dashboard_address=None, silence_logs=logging.ERROR))
            client = stack.enter_context(Client(cluster))
        yield DaskRunner(client, resources)


def _progress(total: int, initial: int, enabled: bool) -> Any:
    """A tqdm bar over clips (rate in clips/s and ETA), on stderr."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="clip", desc="extract", disable=not enabled,
                dynamic_ncols=True, smoothing=0.1)


def run_jobs(runner: LocalRunner | DaskRunner, jobs: list[ShardJob], *, total: int, initial: int,
             strict: bool, progress: bool) -> list[ShardResult]:
    """Run every shard job with a progress bar; with `strict`, stop at the first failed clip (ClipError)."""
    results: list[ShardResult] = []
    failed = 0
    with _progress(total, initial, progress) as bar:
        for res in runner.map_unordered(run_shard, jobs):
            results.append(res)
            failed += len(res.failures)
            bar.update(res.clips)
            bar.set_postfix(failed=failed, refresh=False)
            if strict and res.failures:
                clip_id, reason = res.failures[0]
                raise ClipError(f"{clip_id}: {reason} (stopped by --strict)")
    return results


def preflight(opts: ExtractOptions) -> Preflight:
    """What `extract --dry-run` reports: the manifest's sources and splits, nothing decoded or written."""
    manifest = opts.load_manifest()
    assert manifest.preflight is not None
    return manifest.preflight


def extract(opts: ExtractOptions, *, log: Callable[[str], None] = lambda line: None) -> ExtractSummary:
    """Extract every clip of the annotations into the cache (resuming a partial one); return the summary.

    `log` receives the preflight summary before any decoding starts.
    """
    from egocache.cache import CacheWriter, extraction_lock
    from egocache.core.files import is_url

    t_start = time.perf_counter()
    device = str(resolve_device(opts.device))
    manifest = opts.load_manifest()
    assert manifest.preflight is not None
    log(manifest.preflight.summary())
    if opts.strict and manifest.problems:
        raise ManifestError(f"{manifest.problems[0]} (stopped by --strict; "
                            f"{len(manifest.problems)} annotation problem(s) in all)")
    if not manifest.clips:
        raise ManifestError(f"no clips in {', '.join(opts.annotations)}"
                            + (f": {manifest.problems[0]}" if manifest.problems else ""))
    heads = list(manifest.class_names)
    positions, frame_sets, first_last = student_positions(opts.frames, opts.first_last,
                                                          tuple(opts.frame_selections))
    frames_for_n = frame_sets["uniform"]
    checkpoint = os.path.abspath(opts.checkpoint) if opts.checkpoint else None
    cache_heads = tuple((h, len(manifest.class_names[h])) for h in heads)
    # with a checkpoint (or as an external model) the teacher keeps the heads it was trained with; the
    # cache stores the dataset's
    from egocache.pipeline.teachers import is_spec_file, teacher_reference

    key = TeacherKey(teacher_reference(opts.teacher), checkpoint,
                     () if checkpoint or is_spec_file(opts.teacher) else cache_heads,
                     tuple(sorted(opts.teacher_overrides)), device)
    cache = opts.cache if is_url(opts.cache) else os.path.abspath(opts.cache)
    with extraction_lock(cache) as lease, open_runner(opts.workers, opts.scheduler, device) as runner:
        spec, checkpoint_sha = runner.call(teacher_info, key)
        attrs = cache_attrs(opts, device, spec, checkpoint_sha, manifest)
        existing = existing_teacher(cache)
        if existing is not None and not same_teacher(existing, attrs["teacher"]):
            summary = add_teacher(opts, cache, manifest, key, spec, attrs, runner, lease, log=log)
            summary.seconds = round(time.perf_counter() - t_start, 3)
            lease.check()
            write_summary(summary)
            return summary
        check_teacher_heads(spec.heads, cache_heads, opts.checkpoint or opts.teacher)
        if spec.input == "audio" and opts.audio != "required":
            opts = audio_required(opts, log)
            attrs = cache_attrs(opts, device, spec, checkpoint_sha, manifest)
        attrs["sampling"]["frame_sets"] = {sel: {str(n): idx for n, idx in by_n.items()}
                                           for sel, by_n in frame_sets.items()}
        table = clip_table(manifest.clips, heads, attrs["sampling"]["clip_seconds"])
        writer = CacheWriter.create(
            cache, clips=table, feature_dim=spec.feature_dim,
            heads={h: list(manifest.class_names[h]) for h in heads}, frame_size=opts.frame_size,
            frame_positions=positions, frames_for_n=frames_for_n, first_last=first_last, attrs=attrs,
            shard_size=opts.shard_size, frame_codec=opts.frame_codec, aux=dict(spec.aux))
        done = writer.done_shards()
        jobs = [ShardJob(cache=cache, shard=i, clips=tuple(manifest.clips[writer.shard_slice(i)]),
                         teacher=key, heads=cache_heads, frame_size=opts.frame_size, positions=tuple(positions),
                         batch_size=opts.batch_size, decode_threads=opts.decode_threads, imu_mode=opts.imu,
                         keep_backwards_imu=opts.imu_keep_backwards, torch_threads=opts.torch_threads,
                         lease=lease.token, audio_mode=opts.audio,
                         audio_seconds=float(attrs["sampling"]["clip_seconds"]))
                for i in range(writer.num_shards) if i not in done]
        summary, status, present = run_and_summarize(runner, jobs, opts, cache, manifest, writer.num_shards,
                                                     len(done), t_start)
        write_video_outputs(cache, status, log=log)
        summary.clips_without_imu = int(((status == 1) & (present == 0)).sum()) if present is not None else 0
        audio_present = read_audio_present(cache)
        if audio_present is not None:
            summary.clips_without_audio = int(((status == 1) & (audio_present == 0)).sum())
        lease.check()
        write_summary(summary)
    return summary


def audio_required(opts: ExtractOptions, log: Callable[[str], None]) -> ExtractOptions:
    """`opts` under --audio required, for a teacher whose input is the clips' audio (a clip without its
    audio window has nothing to run it on); ConfigError under --audio none."""
    if opts.audio == "none":
        raise ConfigError(f"--teacher {opts.teacher} takes the clips' audio, and --audio none reads none; "
                          "use --audio required")
    log(f"--teacher {opts.teacher} takes the clips' audio: extracting under --audio required "
        "(a clip without its audio window fails)")
    return dataclasses.replace(opts, audio="required")


def run_and_summarize(runner: LocalRunner | DaskRunner, jobs: list[ShardJob], opts: ExtractOptions, cache: str,
                      manifest: Any, shards: int, resumed: int, t_start: float, group: str = ""
                      ) -> tuple[ExtractSummary, np.ndarray, np.ndarray | None]:
    """Run the shard jobs, then summarise the outcome of every clip of the cache (or of its added
    teacher `group`); also returns each clip's status and imu_present (None where there is none)."""
    todo = sum(len(j.clips) for j in jobs)
    t_run = time.perf_counter()
    results = run_jobs(runner, jobs, total=len(manifest.clips), initial=len(manifest.clips) - todo,
                       strict=opts.strict, progress=opts.progress)
    run_s = time.perf_counter() - t_run
    status, errors, present = read_outcome(cache, group=group)
    summary = summarize(cache, opts.teacher, manifest, results, status, errors, shards=shards, resumed=resumed,
                        run_s=run_s, total_s=time.perf_counter() - t_start)
    return summary, status, present


def write_video_outputs(cache: str, status: np.ndarray, *, group: str = "", log: Callable[[str], None]) -> None:
    """Store the per-video outputs the cache's teacher (or added `group`) declares (cache/videos.py) once
    no clip is pending; until then a line says they wait for the rest of the extraction."""
    from egocache.cache import open_store, videos
    from egocache.cache.teachers import teacher_store

    root = open_store(cache)
    store, attrs = teacher_store(root, group)
    outputs = videos.declared(attrs["teacher"])
    if not outputs:
        return
    if (status == 0).any():
        log(f"per-video outputs {', '.join(outputs)}: written once every clip is extracted "
            f"({int((status == 0).sum())} pending)")
        return
    written = videos.write(root, store, attrs)
    assert written is not None
    log(f"per-video outputs {', '.join(outputs)}: {len(written.video_ids)} videos -> {store.url}/{videos.VIDEOS_GROUP}")


TEACHER_IDENTITY = ("name", "config", "checkpoint_sha256", "overrides")


def existing_teacher(cache: str) -> dict[str, Any] | None:
    """The teacher section of the cache at `cache` if a cache has been created there, else None."""
    from egocache.cache import open_store, read_attrs
    from egocache.cache.schema import CONTROL_GROUP

    store = open_store(cache)
    if not store.exists("zarr.json") or not store.exists(f"{CONTROL_GROUP}/zarr.json"):
        return None
    return read_attrs(store)["teacher"]


def same_teacher(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two teacher sections describe the same model and weights (so a run resumes, not adds)."""
    return all(json.dumps(a.get(k), sort_keys=True) == json.dumps(b.get(k), sort_keys=True) for k in TEACHER_IDENTITY)


def group_name(opts: ExtractOptions) -> str:
    """The name of the group an added teacher gets: --teacher-name, else the registered name or spec stem."""
    from pathlib import Path

    from egocache.pipeline.teachers import is_spec_file

    if opts.teacher_name:
        return opts.teacher_name
    return Path(opts.teacher).stem if is_spec_file(opts.teacher) else opts.teacher


def check_same_clips(cache: str, manifest: Any) -> None:
    """CacheError unless the manifest's clips are the cache's rows: same ids, splits and centres, in order."""
    from egocache.cache import open_store
    from egocache.cache.info import zarr_group
    from egocache.cache.schema import read_array

    store = open_store(cache)
    group = zarr_group(store)()
    ids = read_array(group, "clip_id", store.url).tolist()
    splits = read_array(group, "split", store.url).tolist()
    centres = (read_array(group, "start_s", store.url) + read_array(group, "end_s", store.url)) / 2
    mine = [c.clip_id for c in manifest.clips]
    if ids != mine:
        first = next((i for i, (a, b) in enumerate(zip(ids, mine)) if a != b), min(len(ids), len(mine)))
        raise CacheError(f"{cache}: the annotations give other clips than the cache holds ({len(mine)} clips, the "
                         f"cache {len(ids)}; first difference at row {first}); a teacher is added for the cache's "
                         "own clips: give the annotations and data options it was extracted with")
    moved = [i for i, (a, c) in enumerate(zip(splits, manifest.clips)) if a != c.split]
    if moved:
        raise CacheError(f"{cache}: clip {ids[moved[0]]} is in split {splits[moved[0]]!r} in the cache but "
                         f"{manifest.clips[moved[0]].split!r} in the annotations (another split seed or protocol?)")
    far = np.flatnonzero(np.abs(centres - np.array([c.centre_s for c in manifest.clips])) > 1e-6)
    if len(far):
        raise CacheError(f"{cache}: clip {ids[far[0]]} is centred at {centres[far[0]]:.6f} s in the cache but "
                         f"{manifest.clips[far[0]].centre_s:.6f} s in the annotations")


def add_teacher(opts: ExtractOptions, cache: str, manifest: Any, key: TeacherKey, spec: Any,
                attrs: dict[str, Any], runner: LocalRunner | DaskRunner, lease: Any,
                log: Callable[[str], None]) -> ExtractSummary:
    """Add the teacher of `opts` to the existing cache as the group teachers/<name>: decode each clip
    for it with the cache's own frame plan (the pixels a fresh extraction with it would give it), run
    it and write its outputs shard by shard, resumable; frames and IMU are left as they are."""
    from egocache.cache import open_store, read_attrs
    from egocache.cache.teachers import TeacherGroupWriter, group_key

    root = read_attrs(open_store(cache))
    name = group_name(opts)
    check_same_clips(cache, manifest)
    cache_heads = root["teacher"]["heads"]
    kept = shared_heads(spec.heads, tuple((h, len(n)) for h, n in cache_heads.items()), opts.checkpoint or opts.teacher)
    heads = {h: cache_heads[h] for h, _ in kept}
    log(f"{cache}: its teacher is {root['teacher']['name']}; adding {opts.teacher} as teachers/{name} "
        f"(heads {', '.join(heads)}); frames and IMU are kept")
    teacher = {**attrs["teacher"], "feature_dim": int(spec.feature_dim), "heads": heads, "aux": dict(spec.aux)}
    sampling = {k: attrs["sampling"][k] for k in ("t", "stride", "clip_seconds", "clip_span_frames_at_30fps")}
    writer = TeacherGroupWriter.create(cache, name, teacher=teacher, sampling=sampling)
    done = writer.done_shards()
    sam = root["sampling"]
    # an audio teacher reads each clip's audio window from the video, as a fresh extraction with it would
    audio_input = ({"audio_mode": "required", "audio_seconds": float(attrs["sampling"]["clip_seconds"])}
                   if spec.input == "audio" else {})
    jobs = [ShardJob(cache=cache, shard=i, clips=tuple(manifest.clips[writer.shard_slice(i)]), teacher=key,
                     heads=tuple((h, len(n)) for h, n in heads.items()), frame_size=int(sam["frame_size"]),
                     positions=tuple(sam["positions"]), batch_size=opts.batch_size,
                     decode_threads=opts.decode_threads, imu_mode="none", torch_threads=opts.torch_threads,
                     lease=lease.token, group=name, **audio_input)
            for i in range(writer.num_shards) if i not in done]
    summary, status, _ = run_and_summarize(runner, jobs, opts, cache, manifest, writer.num_shards, len(done),
                                           time.perf_counter(), group=name)
    write_video_outputs(cache, status, group=name, log=log)
    summary.group = name
    summary.summary_file = f"{cache}/{group_key(name)}/{SUMMARY_FILE}"
    return summary


def read_outcome(cache: str, group: str = "") -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """Status (0 pending, 1 ok, 2 failed), failure reason and (new caches) imu_present of every clip, of
    the cache's own teacher or of the added teacher `group`."""
    from egocache.cache.info import zarr_group
    from egocache.cache.rows import read_small_column
    from egocache.cache.schema import array_specs, read_array
    from egocache.cache.teachers import teacher_store

    store, attrs = teacher_store(cache, group)
    group = zarr_group(store)
    present = (read_small_column(store, group, attrs, "imu_present")
               if any(s.name == "imu_present" for s in array_specs(attrs)) else None)
    return (read_small_column(store, group, attrs, "status"), read_array(group(), "error", store.url).tolist(),
            present)


def read_audio_present(cache: str) -> np.ndarray | None:
    """Every clip's audio_present flag, or None for a cache without audio."""
    from egocache.cache import open_store, read_attrs
    from egocache.cache.info import zarr_group
    from egocache.cache.rows import read_small_column
    from egocache.cache.schema import audio_specs

    store = open_store(cache)
    attrs = read_attrs(store)
    return read_small_column(store, zarr_group(store), attrs, "audio_present") if audio_specs(attrs) else None


def summarize(cache: str, teacher: str, manifest: Any, results: list[ShardResult], status: np.ndarray,
              errors: list[str], *, shards: int, resumed: int, run_s: float, total_s: float
              ) -> ExtractSummary:
    """Summary of a run: outcome per clip over the whole cache (status/errors), work and time of this run."""
    run_clips = sum(r.clips for r in results)
    stage = {s: round(sum(r.seconds[s] for r in results), 3) for s in STAGES}
    failed_rows = np.flatnonzero(status != 1)
    return ExtractSummary(
        cache=cache, teacher=teacher, clips=len(status), clips_ok=int((status == 1).sum()),
        clips_failed=len(failed_rows), shards=shards, shards_run=len(results),
        shards_resumed=resumed, seconds=round(total_s, 3),
        clips_per_s=round(run_clips / run_s, 3) if run_s > 0 else 0.0,
        frames_decoded_per_clip=round(sum(r.frames_decoded for r in results) / max(run_clips, 1), 2),
        frames_spanned_per_clip=round(sum(r.frames_spanned for r in results) / max(run_clips, 1), 2),
        stage_seconds=stage, summary_file=f"{cache}/{SUMMARY_FILE}",
        failures=[f"{manifest.clips[i].clip_id}: {errors[i] or 'not extracted'}" for i in failed_rows],
        manifest_problems=list(manifest.problems),
        without_imu=[f"{cid}: {why}" for r in results for cid, why in r.without_imu],
        without_audio=[f"{cid}: {why}" for r in results for cid, why in r.without_audio],
        preflight=manifest.preflight.to_dict() if manifest.preflight else {})


def write_summary(summary: ExtractSummary) -> None:
    """Write the summary into its cache (or its teacher group) as the attributes of the zarr group
    `_egocache/extract` there."""
    from egocache.cache import open_store
    from egocache.cache.teachers import group_key
    from egocache.cache.writer import write_meta

    store = open_store(summary.cache)
    store = store.child(group_key(summary.group)) if summary.group else store
    write_meta(store, SUMMARY_FILE, {"zarr_format": 3, "node_type": "group",
                                     "attributes": {"summary": summary.to_dict()}})


def read_summary(cache: str, group: str = "") -> dict[str, Any]:
    """The summary the last extraction into `cache` (or of its added teacher `group`) wrote (CacheError if
    there is none)."""
    from egocache.cache import open_store
    from egocache.cache.teachers import group_key

    store = open_store(cache)
    store = store.child(group_key(group)) if group else store
    try:
        return json.loads(store.read(SUMMARY_FILE))["attributes"]["summary"]
    except (OSError, ValueError, KeyError) as exc:
        raise CacheError(f"{store.where(SUMMARY_FILE)}: no readable extraction summary ({exc})") from exc


def format_summary(summary: ExtractSummary, max_lines: int = 20) -> str:
    """Human-readable summary: counts, speed, decode work, time per stage, first failures and problems."""
    s = summary
    lines = [
        f"cache {s.cache}{f' teacher {s.group}' if s.group else ''}: {s.clips_ok}/{s.clips} clips ok, {s.clips_failed} failed "
        f"({s.shards_run} shards extracted, {s.shards_resumed} already done)",
        f"{s.seconds:.1f} s, {s.clips_per_s:.2f} clips/s; frames decoded per clip "
        f"{s.frames_decoded_per_clip:.1f} (spanned {s.frames_spanned_per_clip:.1f})",
        "time: " + ", ".join(f"{k} {v:.1f} s" for k, v in s.stage_seconds.items()),
    ]
    if s.clips_without_imu:
        lines.append(f"{s.clips_without_imu} ok clips have no IMU window (imu_present 0; IMU students skip them)")
    if s.clips_without_audio:
        lines.append(f"{s.clips_without_audio} ok clips have no audio window (audio_present 0; audio students "
                     "skip them)")
    for title, items in (("failed clips", s.failures), ("clips kept without IMU", s.without_imu),
                         ("clips kept without audio", s.without_audio),
                         ("annotation problems", s.manifest_problems)):
        if items:
            lines.append(f"{title} ({len(items)}):")
            lines += [f"  {item}" for item in items[:max_lines]]
            if len(items) > max_lines:
                lines.append(f"  ... {len(items) - max_lines} more in the summary file")
    lines.append(f"summary: {s.summary_file}")
    return "\n".join(lines)
