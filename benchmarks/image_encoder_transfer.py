"""Do pretrained image-encoder weights give better frozen features for the synthetic benchmark than random init?

    python benchmarks/image_encoder_transfer.py --weights enc.pth [--weights other.pth] [--data DIR]
        [--videos 32] [--duration 40] [--random-seeds 0,1,2] [--frame-size 64] [--threads 1]

Makes (or reuses, in --data) a synthetic dataset the size of the demo's (`egocache synth`: 32 videos of
40 s at 160x120, seed 0), cuts its clips as the demo's extraction does (three per training segment,
--eval-clips per validation segment), and decodes each clip's centre student frame (N=1) at --frame-size through
the pipeline's frame plan, so the pixels are those a student sees. Every encoder (each --weights file,
and a random-init ResNet-18 per --random-seeds seed) is frozen in eval mode and turns each frame into
its 512-d feature. Two probes are fitted on the training clips' features (standardised by the training
statistics) and scored per validation segment (--eval-clips clips spread over it, scores summed, as the
benchmark averages clip predictions): nearest centroid, and multinomial logistic regression (L2 1e-3,
full-batch L-BFGS). Printed per encoder and head: top-1 overall, on the appearance verbs
(wash, cut, pour: one frame shows them) and on the motion-pair verbs (one frame cannot tell take from
put, so about half of those is the ceiling). The image set of the weights is never these videos.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from egocache.pipeline.datasets import load_manifest
from egocache.pipeline.frames import FramePlan, decode_clip_frames
from egocache.student.models import ImageEncoder
from egocache.student.resnet import load_image_weights
from egocache.synth import APPEARANCE_VERBS, MOTION_PAIRS, synthesize


def frames_and_labels(data: Path, frame_size: int, eval_clips: int) -> dict[str, dict[str, np.ndarray]]:
    """Per split: the clips' centre frames (n, s, s, 3) uint8, labels per head and segment codes; class
    names under "names"."""
    train, val = str(data / "EPIC_100_train.csv"), str(data / "EPIC_100_validation.csv")
    manifest = load_manifest("epic100", [train, val], str(data), train_clips=3, eval_clips=eval_clips)
    plan = FramePlan(16, 4, frame_size, (0.5,), frame_size, teacher_frames=False)
    out: dict[str, dict[str, list]] = {s: {"frames": [], "verb": [], "noun": [], "segment": []}
                                       for s in ("train", "validation")}
    by_video: dict[str, list] = {}
    for clip in manifest.clips:
        by_video.setdefault(clip.video_path, []).append(clip)
    for path, clips in by_video.items():
        decoded, _, _ = decode_clip_frames(path, [c.centre_s for c in clips], plan)
        for clip, res in zip(clips, decoded):
            if isinstance(res, Exception):
                continue
            rows = out[clip.split]
            rows["frames"].append(res.student[0])
            rows["verb"].append(clip.labels["verb"])
            rows["noun"].append(clip.labels["noun"])
            rows["segment"].append(clip.segment_id)
    arrays = {s: {k: np.asarray(v) for k, v in rows.items()} for s, rows in out.items()}
    for rows in arrays.values():
        rows["segment"] = np.unique(rows["segment"], return_inverse=True)[1]
    arrays["names"] = {h: np.asarray(manifest.class_names[h]) for h in ("verb", "noun")}
    return arrays


@torch.no_grad()
def features(encoder: ImageEncoder, frames: np.ndarray) -> np.ndarray:
    """Frozen (eval-mode) 512-d features of uint8 frames (n, s, s, 3)."""
    encoder.eval()
    return np.concatenate([encoder(torch.from_numpy(frames[i:i + 128])[:, None])[:, 0].numpy()
                           for i in range(0, len(frames), 128)])


def logistic_probs(xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray, classes: int) -> np.ndarray:
    """Validation class probabilities of an L2-regularised multinomial logistic regression (L-BFGS)."""
    x, y = torch.from_numpy(xtr).double(), torch.from_numpy(ytr)
    w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 1e-3 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return torch.softmax(torch.from_numpy(xva).double() @ w + b, 1).numpy()


def centroid_scores(xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray, classes: int) -> np.ndarray:
    """Minus the squared distance of each validation feature to each class's training centroid."""
    cent = np.stack([xtr[ytr == c].mean(0) if (ytr == c).any() else np.full(xtr.shape[1], np.inf)
                     for c in range(classes)])
    return -((xva[:, None, :] - cent[None]) ** 2).sum(-1)


def scores(data: dict, feats: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per probe and head: top-1 over validation segments (clip scores averaged), overall and on the verb
    subsets."""
    mean, std = feats["train"].mean(0), feats["train"].std(0) + 1e-6
    xtr, xva = (feats["train"] - mean) / std, (feats["validation"] - mean) / std
    val = data["validation"]
    segments = val["segment"].max() + 1
    first = np.unique(val["segment"], return_index=True)[1]          # one clip of each segment, for its labels
    verbs = list(data["names"]["verb"])
    appearance = np.isin(val["verb"][first], [verbs.index(v) for v in APPEARANCE_VERBS])
    motion = np.isin(val["verb"][first], [verbs.index(v) for p in MOTION_PAIRS for v in p])
    out: dict[str, dict[str, float]] = {}
    for probe, fit in (("centroid", centroid_scores), ("logistic", logistic_probs)):
        row = {}
        for head in ("verb", "noun"):
            clip_scores = fit(xtr, data["train"][head], xva, len(data["names"][head]))
            per_segment = np.zeros((segments, clip_scores.shape[1]))
            np.add.at(per_segment, val["segment"], clip_scores)
            hit = per_segment.argmax(1) == val[head][first]
            row[head] = hit.mean()
            if head == "verb":
                row["appearance verbs"], row["motion-pair verbs"] = hit[appearance].mean(), hit[motion].mean()
        out[probe] = row
    return out


def main() -> None:
    """Parse the arguments, make the data, score every encoder, print a table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", action="append", default=[], help="torchvision-format ResNet-18 file (repeatable)")
    ap.add_argument("--data", default="/tmp/egocache-transfer-data")
    ap.add_argument("--videos", type=int, default=32)
    ap.add_argument("--duration", type=float, default=40.0)
    ap.add_argument("--random-seeds", default="0,1,2")
    ap.add_argument("--frame-size", type=int, default=64)
    ap.add_argument("--eval-clips", type=int, default=3, help="clips per validation segment (scores averaged)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = Path(args.data)
    if not (data_dir / "EPIC_100_validation.csv").exists():
        synthesize(str(data_dir), videos=args.videos, seed=0, size=(160, 120), duration_s=args.duration)
    t0 = time.perf_counter()
    data = frames_and_labels(data_dir, args.frame_size, args.eval_clips)
    print(f"frames: {len(data['train']['verb'])} training clips, {data['validation']['segment'].max() + 1} "
          f"validation segments x {args.eval_clips} clips at {args.frame_size}px ({time.perf_counter() - t0:.0f} s)")
    encoders = [(f"random init seed {s}", None, int(s)) for s in args.random_seeds.split(",") if s.strip()]
    encoders += [(w, w, 0) for w in args.weights]
    print("| encoder | probe | verb | appearance verbs | motion-pair verbs | noun |")
    print("|---|---|---|---|---|---|")
    for name, weights, seed in encoders:
        torch.manual_seed(seed)
        encoder = ImageEncoder()
        if weights is not None:
            load_image_weights(encoder.backbone, weights)
        feats = {s: features(encoder, data[s]["frames"]) for s in ("train", "validation")}
        for probe, row in scores(data, feats).items():
            print(f"| {name} | {probe} | {100 * row['verb']:.1f} | {100 * row['appearance verbs']:.1f} | "
                  f"{100 * row['motion-pair verbs']:.1f} | {100 * row['noun']:.1f} |")


if __name__ == "__main__":
    main()
