"""`egocache benchmark --ablations`: the paper's Fig. 3, Table 1, Table 4 and Fig. 4 over seeds, on any cache.

Which runs (each trained with `train-student` from the cache, once per seed):
- Fig. 3: every variant (egodistill, visonly-distill, visimu, visonly; listentolook, the ListenToLook
  baseline, when asked for with --ablation-variants on a cache with audio) at each N of `frames`.
- Table 1 (N=1): the eight rows of loss terms (KD, L1, GT) and pretraining losses (L1-, NCE-pretrain).
  The paper's extracted table lost its check marks; the rows are read from its text (§4.4): the top
  row is "multi-modal recognition with IMU" (GT only, no pretraining), then without KD (the largest
  drop), without L1, without GT, without pretraining, L1-pretrain only, NCE-pretrain only, all.
- Table 4 (N=4): frame selections uniform / random / first / last / center (cache/selections.py).
The self-supervised stage depends only on (N, frame selection, pretraining losses, seed), so each
such pretrain runs once and every distill run of that kind starts from it (visimu included: same
model and loss there; listentolook has its own, on audio: pretrain-audio-...). Every run reads the frozen image encoder's features from one shared store.
Runs are resumable steps: a rerun skips finished runs and resumes an interrupted one.

Results: per-segment hits of each run (its OUT/segments.npz) on the verb head; means over seeds with
the t interval over seeds and a paired bootstrap over segments (report/intervals.py); the orderings
the paper claims, each as a paired difference with its interval and a verdict.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from egocache.errors import EgocacheError
from egocache.report.hits import Hits, aligned, motion_subset, stack_runs, teacher_hits
from egocache.report.intervals import Estimate, difference, estimate
from egocache.report.options import ABLATION_PARTS as PARTS
from egocache.student.pool import RunJob, train_pool

VARIANTS = ("egodistill", "visonly-distill", "visimu", "visonly")   # Fig. 3's curves by default
PRETRAINED = ("egodistill", "visimu", "listentolook")              # variants with a self-supervised stage
PRETRAIN_LOSSES = {"full": {}, "l1": {"pretrain_nce": 0.0}, "nce": {"pretrain_l1": 0.0}}
SELECTIONS = ("uniform", "random", "first", "last", "center")


@dataclass(frozen=True)
class RunSpec:
    """One student setting, trained once per seed: variant, N, frame selection, loss overrides, pretrain."""

    variant: str
    frames: int
    selection: str = "uniform"
    overrides: tuple[tuple[str, Any], ...] = ()
    pretrain: str | None = "full"      # PRETRAIN_LOSSES key of the pretrain run it starts from; None: none

    @property
    def name(self) -> str:
        """Folder name under OUT/runs (the seed is a subfolder)."""
        parts = [self.variant, f"n{self.frames}"]
        if self.selection != "uniform":
            parts.append(self.selection)
        parts += [f"{k}{v:g}" for k, v in self.overrides]
        if self.pretrain is None and self.variant in PRETRAINED:
            parts.append("nopretrain")
        elif self.pretrain not in (None, "full"):
            parts.append(f"{self.pretrain}pretrain")
        return "-".join(parts)

    @property
    def pretrain_name(self) -> str | None:
        """Folder of the pretrain run it starts from (None for variants without IMU or without pretrain)."""
        if self.pretrain is None or self.variant not in PRETRAINED:
            return None
        sel = "" if self.selection == "uniform" else f"-{self.selection}"
        sensor = "-audio" if self.variant == "listentolook" else ""
        return f"pretrain{sensor}-n{self.frames}{sel}-{self.pretrain}"

    @property
    def pretrain_variant(self) -> str:
        """The variant its pretrain run trains (egodistill's serves visimu too: same model and loss)."""
        return "listentolook" if self.variant == "listentolook" else "egodistill"


TABLE1 = (  # label, (KD, L1, GT, L1-pretrain, NCE-pretrain), spec at N=1
    ("GT only (IMU as an extra input)", (0, 0, 1, 0, 0),
     RunSpec("egodistill", 1, overrides=(("alpha", 0.0), ("beta", 0.0)), pretrain=None)),
    ("without KD", (0, 1, 1, 1, 1), RunSpec("egodistill", 1, overrides=(("alpha", 0.0),))),
    ("without L1", (1, 0, 1, 1, 1), RunSpec("egodistill", 1, overrides=(("beta", 0.0),))),
    ("without GT", (1, 1, 0, 1, 1), RunSpec("egodistill", 1, overrides=(("alpha", 1.0),))),
    ("without pretraining", (1, 1, 1, 0, 0), RunSpec("egodistill", 1, pretrain=None)),
    ("L1-pretrain only", (1, 1, 1, 1, 0), RunSpec("egodistill", 1, pretrain="l1")),
    ("NCE-pretrain only", (1, 1, 1, 0, 1), RunSpec("egodistill", 1, pretrain="nce")),
    ("EgoDistill (all)", (1, 1, 1, 1, 1), RunSpec("egodistill", 1)),
)
PAPER_TABLE1_EPIC = (35.04, 39.33, 42.20, 43.17, 41.21, 42.30, 43.51, 44.95)
PAPER_TABLE4_EPIC = {"uniform": 52.43, "random": 48.48, "first": 46.40, "last": 41.72, "center": 44.85}


def fig3_specs(frames: tuple[int, ...], variants: tuple[str, ...] = VARIANTS) -> list[RunSpec]:
    """Every variant at every N (Fig. 3's curves)."""
    return [RunSpec(v, n, pretrain="full" if v in PRETRAINED else None) for v in variants for n in frames]


def table4_specs() -> list[RunSpec]:
    """EgoDistill at N=4 with each frame selection (Table 4)."""
    return [RunSpec("egodistill", 4, selection=s) for s in SELECTIONS]


def plan(parts: tuple[str, ...], frames: tuple[int, ...], variants: tuple[str, ...] = VARIANTS) -> list[RunSpec]:
    """The distinct runs the asked parts need, in a stable order."""
    specs: list[RunSpec] = []
    if "fig3" in parts:
        specs += fig3_specs(frames, variants)
    if "table1" in parts:
        specs += [spec for _, _, spec in TABLE1]
    if "table4" in parts:
        specs += table4_specs()
    return list(dict.fromkeys(_canonical(s) for s in specs))


def _canonical(spec: RunSpec) -> RunSpec:
    """One spelling per setting: variants without IMU have no pretrain."""
    return spec if spec.variant in PRETRAINED else dataclasses.replace(spec, pretrain=None)


# --- running -------------------------------------------------------------------------------------

def _run_all(jobs: list[tuple[str, dict[str, Any]]], out: Path, *, workers: int, threads: int,
             log: Callable[[str], None]) -> None:
    """Train every (name, config) job, `workers` at a time, each logging to OUT/logs/NAME.log."""
    began = time.perf_counter()

    def done(i: int, name: str, result: dict[str, Any]) -> None:
        acc = "" if result.get("top1_acc") is None else f", top-1 {100 * result['top1_acc']:.1f}%"
        log(f"[ablations] {i}/{len(jobs)} {name} finished{acc} ({time.perf_counter() - began:.0f} s)")

    count = iter(range(1, len(jobs) + 1))
    train_pool([RunJob(name, values) for name, values in jobs], workers=workers, threads=threads, logs=out / "logs",
               done=lambda job, result, _: done(next(count), job.name, result), log=log, what="ablation run")


def run_dir(out: Path, name: str, seed: int) -> Path:
    """OUT/runs/NAME/seedK."""
    return out / "runs" / name / f"seed{seed}"


def train_runs(cache: str, out: Path, specs: list[RunSpec], seeds: tuple[int, ...], base: dict[str, Any], *,
               workers: int = 1, threads: int = 1, log: Callable[[str], None] = print) -> None:
    """Every pretrain run first, then every distill run, for every seed (each skipped when finished)."""
    from egocache.student.config import TrainConfig

    common = {**base, "cache": cache, "features_dir": str(out / "features")}
    pretrains: dict[str, dict[str, Any]] = {}
    distills: list[tuple[str, dict[str, Any]]] = []
    for seed in seeds:
        for spec in specs:
            values = {**common, "variant": spec.variant, "frames": spec.frames, "frame_selection": spec.selection,
                      "seed": seed, **dict(spec.overrides), "out": str(run_dir(out, spec.name, seed))}
            if spec.pretrain_name is not None:
                pre = run_dir(out, spec.pretrain_name, seed)
                pretrains[f"{spec.pretrain_name}/seed{seed}"] = {
                    **common, "variant": spec.pretrain_variant, "frames": spec.frames,
                    "frame_selection": spec.selection,
                    "seed": seed, **PRETRAIN_LOSSES[spec.pretrain], "stage": "pretrain", "out": str(pre)}
                values.update(stage="distill", init=str(pre / "pretrain" / "last.pt"))
            else:
                values.update(stage="distill" if spec.variant in PRETRAINED else "all")
            distills.append((f"{spec.name}/seed{seed}", values))
    for _, values in [*pretrains.items(), *distills]:
        TrainConfig.from_dict(values)          # every setting checked before hours of training
    log(f"[ablations] {len(specs)} settings x {len(seeds)} seeds: {len(pretrains)} pretrain and "
        f"{len(distills)} distill runs under {out / 'runs'} ({workers} at a time)")
    _run_all([(k.replace("/", "-"), v) for k, v in pretrains.items()], out, workers=workers, threads=threads,
             log=log)
    _run_all([(k.replace("/", "-"), v) for k, v in distills], out, workers=workers, threads=threads, log=log)


# --- collecting ----------------------------------------------------------------------------------

def collect_hits(out: Path, spec_name: str, seeds: tuple[int, ...], head: str, class_names: list[str]) -> Hits:
    """The setting's hits over its seeds' runs, one column per seed, on the same segments."""
    from egocache.student.evaluate import SEGMENTS_FILE

    return stack_runs([run_dir(out, spec_name, seed) / SEGMENTS_FILE for seed in seeds], head, class_names)


# --- the whole command ---------------------------------------------------------------------------

@dataclass
class AblationResult:
    """Where the report went, and its rows and orderings."""

    files: dict[str, Path]
    rows: list[Any]
    claims: list[Any]


def run_ablations(cache: str, out: str, *, seeds: tuple[int, ...] = (0, 1, 2), parts: tuple[str, ...] = PARTS,
                  frames: tuple[int, ...] = (1, 2, 4), base: dict[str, Any] | None = None, workers: int = 1,
                  threads: int = 1, skip_verify: bool = False, log: Callable[[str], None] = print,
                  variants: tuple[str, ...] = VARIANTS) -> AblationResult:
    """Train every run the asked parts need (resumably) and write the report under `out`; `variants` are
    Fig. 3's curves."""
    from egocache.cache import open_cache, read_attrs
    from egocache.cache.verify import ensure_verified

    read_attrs(cache)
    ensure_verified(cache, skip=skip_verify, warn=lambda m: print(m, file=sys.stderr))
    info = open_cache(cache)
    if "validation" not in info.splits:
        raise EgocacheError(f"{cache}: no validation split to evaluate the ablations on")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise EgocacheError(f"--ablation-parts: {', '.join(unknown)} not among {', '.join(PARTS)}")
    from egocache.student.variants import list_variants

    wrong = [v for v in variants if v not in list_variants()]
    if wrong or not variants:
        raise EgocacheError(f"--ablation-variants: {', '.join(wrong) or 'none given'}; known: "
                            f"{', '.join(list_variants())}")
    if "listentolook" in variants and "fig3" in parts and info.audio is None:
        raise EgocacheError(f"{cache}: has no audio (extracted with --audio none, or before audio), so Fig. 3 "
                            "cannot have its listentolook curve; re-extract with --audio optional or leave it out")
    root = Path(out)
    frames = tuple(sorted(frames))
    specs = plan(tuple(parts), frames, tuple(variants))
    _check_frames(cache, info.sampling, specs)
    base = {"freeze_image_encoder": True, "num_workers": 0, "device": "cpu", "eval_every": 10_000,
            **(base or {}), "skip_verify": skip_verify}
    train_runs(cache, root, specs, tuple(seeds), base, workers=workers, threads=threads, log=log)
    return write_ablations(cache, root, specs, tuple(seeds), tuple(parts), tuple(frames), base,
                           variants=tuple(variants))


def _check_frames(cache: str, sampling: dict[str, Any], specs: list[RunSpec]) -> None:
    """Refuse (one line) a cache that lacks the stored frames some run needs."""
    from egocache.cache.selections import available_selections, selection_indices

    missing = sorted({f"{s.selection} N={s.frames}" for s in specs
                      if selection_indices(sampling, s.selection, s.frames) is None})
    if missing:
        have = "; ".join(f"{sel} N in {ns}" for sel, ns in available_selections(sampling).items())
        raise EgocacheError(f"{cache}: the ablations need stored frames for frame selection {', '.join(missing)}; "
                            f"the cache has {have} (extract --frames 1,2,4 --frame-selections "
                            f"{','.join(SELECTIONS)})")


def _gflops(out: Path, spec: RunSpec, seed: int, frame_size: int) -> float:
    """GFLOPs per clip of the run's student (counted on its checkpoint)."""
    from egocache.report.benchmark import load_student
    from egocache.report.measure import student_cost

    student, _ = load_student(run_dir(out, spec.name, seed))
    return student_cost(student, frame_size)[0]


def write_ablations(cache: str, out: Path, specs: list[RunSpec], seeds: tuple[int, ...], parts: tuple[str, ...],
                    frames: tuple[int, ...], base: dict[str, Any], *,
                    variants: tuple[str, ...] = VARIANTS) -> AblationResult:
    """Collect every run's per-segment hits and write the report, tables, orderings and figures."""
    from egocache.cache import open_cache
    from egocache.report.ablation_report import Row, plot_curves, write_report
    from egocache.pipeline.teachers import list_teachers
    from egocache.report.benchmark import teacher_row
    from egocache.report.plots import plot_per_class_gain

    info = open_cache(cache)
    head = "verb" if "verb" in info.heads else next(iter(info.heads))
    names = list(info.heads[head])
    motion_verbs = info.source.get("motion_pair_verbs") or []
    motion_ids = {names.index(v) for v in motion_verbs if v in names}
    frame_size = int(info.sampling["frame_size"])
    hits = {s.name: collect_hits(out, s.name, seeds, head, names) for s in specs}
    teacher = teacher_hits(cache, head)

    def est(h: Hits) -> tuple[Estimate, Estimate | None]:
        return estimate(h.hits), estimate(motion_subset(h, motion_ids).hits) if motion_ids else None

    heads = {h: len(v) for h, v in info.heads.items()}
    known = info.teacher["name"] in list_teachers() and {"config", "num_frames", "img_size", "bgr"} <= set(info.teacher)
    t_cost = teacher_row(info.teacher["name"], info.teacher, heads, None, device=None, batch=1, repeats=1,
                         latency=False).gflops if known else None     # a teacher egocache cannot build: cost unknown
    t_top1, t_motion = est(teacher)
    rows = [Row("teacher", info.teacher["name"], "teacher", None, "", t_cost, t_top1, t_motion, "",
                paper=77.28)]

    def row(table: str, label: str, spec: RunSpec, paper: float | None = None) -> Row:
        top1, motion = est(hits[spec.name])
        return Row(table, label, spec.variant, spec.frames, spec.selection,
                   _gflops(out, spec, seeds[0], frame_size), top1, motion, spec.name, paper)

    paper_fig3 = {("egodistill", 1): 44.95, ("visonly-distill", 1): 37.20}
    if "fig3" in parts:
        rows += [row("fig3", f"{s.variant} N={s.frames}", _canonical(s), paper_fig3.get((s.variant, s.frames)))
                 for s in fig3_specs(frames, variants)]
    if "table1" in parts:
        rows += [row("table1", label, _canonical(s), p) for (label, _, s), p in zip(TABLE1, PAPER_TABLE1_EPIC)]
    if "table4" in parts:
        rows += [row("table4", s.selection, s, PAPER_TABLE4_EPIC[s.selection]) for s in table4_specs()]
    claims = _claims(hits, teacher, motion_ids, parts, frames)
    ltl = hits.get(_canonical(RunSpec("listentolook", frames[0])).name)
    ego = hits.get(RunSpec("egodistill", frames[0]).name)
    if "fig3" in parts and ltl is not None and ego is not None:      # the paper: IMU beats audio
        from egocache.report.ablation_report import Claim

        claims.append(Claim(f"EgoDistill > ListenToLook (N={frames[0]})", difference(*aligned(ego, ltl))))
    plots: dict[str, Path] = {}
    gains: dict[str, float] = {}
    if "fig3" in parts:
        plots["fig3"] = plot_curves(rows, out / "fig3_accuracy_vs_gflops.png")
        ego, vis = hits.get(RunSpec("egodistill", frames[0]).name), \
            hits.get(_canonical(RunSpec("visonly-distill", frames[0])).name)
        if ego is not None and vis is not None:
            gains = {c: ego.per_class[c] - vis.per_class[c] for c in ego.per_class if c in vis.per_class}
            plots["fig4"] = plot_per_class_gain(
                gains, out / f"fig4_per_class_gain_n{frames[0]}.png",
                title=f"Per-class top-1 gain of EgoDistill over VisOnly-Distill (N={frames[0]}, {len(seeds)} seeds)")
    facts = {"cache": cache, "seeds": list(seeds), "parts": list(parts), "frames": list(frames),
             "fig3_variants": list(variants),
             "head": head, "motion_pair_verbs": motion_verbs, "validation_segments": int(len(teacher.segment_ids)),
             "student_settings": {k: v for k, v in sorted(base.items())}}
    check = {label: marks for label, marks, _ in TABLE1}
    files = write_report(out, rows, claims, title=f"egocache ablations: {cache}", facts=facts, check=check,
                         gains=gains, plots=plots)
    return AblationResult(files=files, rows=rows, claims=claims)


def _claims(hits: dict[str, Hits], teacher: Hits, motion_ids: set[int], parts: tuple[str, ...],
            frames: tuple[int, ...]) -> list[Any]:
    """The paper's orderings among the runs that exist, each as a paired difference."""
    from egocache.report.ablation_report import Claim

    out: list[Claim] = []

    def claim(text: str, a: Hits, b: Hits) -> None:
        out.append(Claim(text, difference(*aligned(a, b))))

    n = frames[0]
    get = {v: hits.get(_canonical(RunSpec(v, n, pretrain="full")).name) for v in VARIANTS}
    if "fig3" in parts and all(get.values()):
        claim(f"teacher > EgoDistill (N={n})", teacher, get["egodistill"])
        for v in ("visonly-distill", "visimu", "visonly"):
            claim(f"teacher > {v} (N={n})", teacher, get[v])
        claim(f"EgoDistill > VisIMU (N={n})", get["egodistill"], get["visimu"])
        claim(f"EgoDistill > VisOnly-Distill (N={n})", get["egodistill"], get["visonly-distill"])
        claim(f"VisOnly-Distill >= VisOnly (N={n})", get["visonly-distill"], get["visonly"])
        if motion_ids:
            m = {v: motion_subset(h, motion_ids) for v, h in get.items()}
            rest = {v: motion_subset(h, motion_ids, inside=False) for v, h in get.items()}
            claim(f"teacher > EgoDistill on the motion pairs (N={n})", motion_subset(teacher, motion_ids),
                  m["egodistill"])
            claim(f"EgoDistill > VisOnly-Distill on the motion pairs (N={n})", m["egodistill"], m["visonly-distill"])
            claim(f"EgoDistill > VisOnly-Distill on the other verbs (N={n})", rest["egodistill"],
                  rest["visonly-distill"])
            a, b = aligned(m["egodistill"], m["visonly-distill"])
            c, d = aligned(rest["egodistill"], rest["visonly-distill"])
            gain_m, gain_r = a.mean() - b.mean(), c.mean() - d.mean()
            out.append(Claim(f"the IMU gain is larger on the motion pairs ({100 * gain_m:+.1f}) than on the "
                             f"other verbs ({100 * gain_r:+.1f})", _gain_gap(a, b, c, d)))
    if "table1" in parts:
        full = hits[RunSpec("egodistill", 1).name]
        for label, _, spec in TABLE1[:-1]:
            claim(f"EgoDistill (all) > {label}", full, hits[_canonical(spec).name])
        no_kd, no_l1 = hits[TABLE1[1][2].name], hits[TABLE1[2][2].name]
        claim("without L1 > without KD (KD is the largest drop)", no_l1, no_kd)
    if "table4" in parts:
        uni = hits[RunSpec("egodistill", 4).name]
        for s in table4_specs()[1:]:
            claim(f"uniform > {s.selection} (N=4)", uni, hits[s.name])
    return out


def _gain_gap(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> Estimate:
    """(mean a - mean b) - (mean c - mean d): two disjoint segment sets, bootstrapped independently."""
    from egocache.report.intervals import BOOTSTRAP_SEED, CONFIDENCE, RESAMPLES, seed_interval

    rng = np.random.default_rng(BOOTSTRAP_SEED)
    ia = rng.integers(0, len(a), size=(RESAMPLES, len(a)))
    ic = rng.integers(0, len(c), size=(RESAMPLES, len(c)))
    draws = (a[ia].mean(axis=(1, 2)) - b[ia].mean(axis=(1, 2))) - (c[ic].mean(axis=(1, 2)) - d[ic].mean(axis=(1, 2)))
    lo, hi = np.quantile(draws, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    per_seed = (a.mean(0) - b.mean(0)) - (c.mean(0) - d.mean(0))
    return Estimate(mean=float((a.mean() - b.mean()) - (c.mean() - d.mean())), seeds=seed_interval(per_seed),
                    segments=(float(lo), float(hi)), n_seeds=a.shape[1], n_segments=len(a) + len(c))
