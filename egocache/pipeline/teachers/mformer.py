"""MotionFormer (Patrick et al., "Keeping Your Eye on the Ball: Trajectory Attention in Video
Transformers", NeurIPS 2021) re-implemented in plain torch, state-dict compatible with the released
checkpoints of facebookresearch/Motionformer (weights: CC-BY-NC 4.0 per that repository's README).

Facts matched against the official code (written anew here, nothing copied):
- slowfast/models/video_model_builder.py, VisionTransformer: a 2-D `patch_embed` (Conv2d, always
  built for 224 px, unused when the temporal patch size > 1, but present in every state dict) and a
  `patch_embed_3d` (Conv3d, kernel = stride = (PATCH_SIZE_TEMP, p, p)) that tokenises the clip;
  `cls_token` (1,1,D); spatial `pos_embed` (1, 1+(224/p)^2, D) tiled over the temporal tokens, plus
  `temp_embed` (1, TEMPORAL_RESOLUTION, D) repeated per patch; the CLS token gets pos_embed[:, 0]
  only; for a crop other than 224 the spatial part is resized bicubically by grid/14. LayerNorm
  eps 1e-6 everywhere; `norm`, then the CLS token, then `pre_logits` = Sequential(fc: Linear(D, D),
  act: Tanh) (USE_MLP, HEAD_ACT tanh); classifier `head0`, `head1`, ... when there are several
  heads (EPIC: [97, 300]), `head` when there is one; the official forward applies softmax at eval,
  which we never do (logits are cached). Init: trunc-normal(0.02) Linear weights, zero biases,
  trunc-normal cls_token/pos_embed, zero temp_embed; slowfast/models/build.py inflates the 2-D patch
  kernel into the centre temporal slice of patch_embed_3d (we do the same with the random 2-D init).
- slowfast/models/vit_helper.py, Block: pre-norm, x + drop_path(attn(norm1(x))), x +
  drop_path(mlp(norm2(x))); Mlp: fc1 -> GELU -> fc2 (biased). TrajectoryAttention: qkv, proj_q
  (D->D) and proj_kv (D->2D) biased with QKV_BIAS (True in the configs), head_dim**-0.5 scaling;
  the CLS query attends to all tokens (CLS included, no dropout); each patch query attends to the
  patch keys of every frame with a softmax per frame (attn_drop here), giving one trajectory token
  per frame; proj_q of the query's own-frame token against the k half of proj_kv over the trajectory
  tokens, softmax over frames, scaled. With USE_ORIGINAL_TRAJ_ATTN_CODE (default True, the released
  checkpoints) the temporal step averages the trajectory tokens themselves; otherwise the v half of
  proj_kv. proj_kv is evaluated whole in both paths, as the official code does, so FLOPs match the
  published ~370 GFLOPs per 16x224^2 view.
- configs/EK/motionformer_224_16x4.yaml: 16 frames at stride 4, crop 224, mean = std = 0.5,
  PATCH_SIZE_TEMP 2, TEMPORAL_RESOLUTION 8, D 768, depth 12, 12 heads, MLP ratio 4, DROP_PATH 0.2.
- slowfast/datasets/utils.py retry_load_images reads frames with cv2.imdecode (BGR) and never
  converts them (EPIC-Kitchens, SSv2 loaders); the Kinetics loader decodes RGB with PyAV. Hence the
  EPIC checkpoint expects BGR input.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from egocache.errors import CheckpointError, EgocacheError
from egocache.pipeline.teachers.base import Teacher, TeacherSpec

LN_EPS = 1e-6
EK_URL = "https://dl.fbaipublicfiles.com/motionformer/ek_motionformer_224_16x4.pyth"
LICENCE = "CC-BY-NC 4.0"
BGR_DATASETS = ("Epickitchens", "Ssv2")  # official loaders that feed OpenCV's BGR frames


# --- blocks -----------------------------------------------------------------------------------------

class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zero the branch for a random subset of samples and rescale the rest by 1/(1-p)."""
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Position-wise feed-forward."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class PatchEmbed2D(nn.Module):
    """Per-frame patch projection; kept because every official state dict holds it (unused here)."""

    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)


class PatchEmbed3D(nn.Module):
    """Tubelet projection (B,3,T,S,S) -> (B, T/t * (S/p)^2, D), tokens ordered time-major."""

    def __init__(self, tubelet: int, patch: int, dim: int) -> None:
        super().__init__()
        kernel = (tubelet, patch, patch)
        self.proj = nn.Conv3d(3, dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project non-overlapping tubelets and flatten them to a token sequence.

        Kernel = stride, so the Conv3d is one matrix product over the tubelets: computed that way
        (same weights, same result) it trains about 7x faster on CPU than the Conv3d kernel.
        """
        b, c, t, h, w = x.shape
        kt, kh, kw = self.proj.kernel_size
        tubes = (x.reshape(b, c, t // kt, kt, h // kh, kh, w // kw, kw)
                 .permute(0, 2, 4, 6, 1, 3, 5, 7)
                 .reshape(b, (t // kt) * (h // kh) * (w // kw), c * kt * kh * kw))
        return F.linear(tubes, self.proj.weight.reshape(self.proj.out_channels, -1), self.proj.bias)


class TrajectoryAttention(nn.Module):
    """Trajectory attention over [CLS, frame-major patch tokens] (see the module docstring)."""

    def __init__(self, dim: int, heads: int, *, qkv_bias: bool, attn_drop: float, proj_drop: float,
                 use_original_code: bool) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj_kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.use_original_code = use_original_code

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, 1+F*P, D) -> (B, 1+F*P, D) for F temporal tokens of P patches each."""
        b, n, c = x.shape
        h, d, f = self.num_heads, self.head_dim, num_frames
        s = n - 1
        p = s // f
        q, k, v = self.qkv(x).view(b, n, 3, h, d).permute(2, 0, 3, 1, 4)  # each (b, h, n, d)
        cls_out = F.scaled_dot_product_attention(q[:, :, :1], k, v)  # CLS attends to every token
        # Spatial step: every patch query against each frame's patch keys, softmax within the frame.
        queries = q[:, :, 1:].unsqueeze(2).expand(b, h, f, s, d).reshape(b, h * f, s, d)
        keys = k[:, :, 1:].reshape(b, h * f, p, d)
        values = v[:, :, 1:].reshape(b, h * f, p, d)
        drop = self.attn_drop if self.training else 0.0
        traj = F.scaled_dot_product_attention(queries, keys, values, dropout_p=drop)
        traj = traj.view(b, h, f, f, p, d)  # (b, h, trajectory frame, query frame, patch, d)
        # Temporal step: the query's own-frame trajectory token against its F trajectory tokens.
        own = traj.diagonal(dim1=2, dim2=3).permute(0, 4, 2, 1, 3).reshape(b, s, c)
        tokens = traj.permute(0, 3, 4, 2, 1, 5).reshape(b, s, f, c)  # (b, s, f, (h d))
        q2 = self.proj_q(own).view(b, s, h, d) * self.scale
        k2, v2 = self.proj_kv(tokens).view(b, s, f, 2, h, d).unbind(3)
        attn = torch.einsum("bshd,bsfhd->bshf", q2, k2).softmax(dim=-1)
        vals = tokens.view(b, s, f, h, d) if self.use_original_code else v2
        out = torch.einsum("bshf,bsfhd->bshd", attn, vals).reshape(b, s, c)
        x = torch.cat([cls_out.transpose(1, 2).reshape(b, 1, c), out], dim=1)
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    """Pre-norm transformer block with trajectory attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, *, qkv_bias: bool, drop: float,
                 attn_drop: float, drop_path: float, use_original_code: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = TrajectoryAttention(dim, heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                                        proj_drop=drop, use_original_code=use_original_code)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x + attn(norm1 x), then x + mlp(norm2 x)."""
        x = x + self.drop_path(self.attn(self.norm1(x), num_frames))
        return x + self.drop_path(self.mlp(self.norm2(x)))


# --- config ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MFormerConfig:
    """Architecture hyper-parameters; defaults are configs/EK/motionformer_224_16x4.yaml."""

    img_size: int = 224            # DATA.TRAIN_CROP_SIZE
    num_frames: int = 16           # DATA.NUM_FRAMES (input frames)
    patch_size: int = 16           # VIT.PATCH_SIZE
    tubelet: int = 2               # VIT.PATCH_SIZE_TEMP (frames per token)
    pos_img_size: int = 224        # image size the spatial pos_embed grid was built for (official: 224)
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    use_original_code: bool = True  # VIT.USE_ORIGINAL_TRAJ_ATTN_CODE
    drop_rate: float = 0.0         # VIT.DROP (MLP and projection outputs)
    attn_drop_rate: float = 0.0    # VIT.ATTN_DROPOUT (spatial attention weights)
    drop_path_rate: float = 0.0    # VIT.DROP_PATH, linear over depth (0.2 when training on EPIC)
    head_drop_rate: float = 0.0    # VIT.HEAD_DROPOUT

    @property
    def feature_dim(self) -> int:
        """Size of the clip feature (pre_logits output)."""
        return self.embed_dim

    @property
    def temporal_tokens(self) -> int:
        """Tokens along time (TEMPORAL_RESOLUTION)."""
        return self.num_frames // self.tubelet

    def check(self) -> None:
        """Raise EgocacheError naming each inconsistent geometry setting."""
        problems = []
        if self.tubelet < 2:
            problems.append(f"tubelet={self.tubelet}: the trajectory models tokenise with Conv3d "
                            "tubelets of >= 2 frames (PATCH_SIZE_TEMP)")
        elif self.num_frames % self.tubelet:
            problems.append(f"num_frames={self.num_frames} is not a multiple of tubelet={self.tubelet}")
        for key in ("img_size", "pos_img_size"):
            if getattr(self, key) % self.patch_size:
                problems.append(f"{key}={getattr(self, key)} is not a multiple of "
                                f"patch_size={self.patch_size}")
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        for key in ("drop_rate", "attn_drop_rate", "drop_path_rate", "head_drop_rate"):
            if not 0.0 <= getattr(self, key) < 1.0:
                problems.append(f"{key}={getattr(self, key)} is not in [0, 1)")
        if problems:
            raise EgocacheError("mformer config: " + "; ".join(problems))


# --- model ---------------------------------------------------------------------------------------------

def head_module_names(count: int) -> list[str]:
    """Official classifier names: `head` for one head, `head0`, `head1`, ... for several."""
    return ["head"] if count == 1 else [f"head{i}" for i in range(count)]


class MotionFormer(Teacher):
    """ViT with trajectory attention; clip feature tanh(pre_logits.fc(LN(x)[:, CLS])), logits per head."""

    def __init__(self, spec: TeacherSpec) -> None:
        super().__init__()
        cfg = MFormerConfig(**spec.config)
        cfg.check()
        self.spec, self.cfg = spec, cfg
        dim, grid = cfg.embed_dim, cfg.pos_img_size // cfg.patch_size
        self.patch_embed = PatchEmbed2D(cfg.patch_size, dim)
        self.patch_embed_3d = PatchEmbed3D(cfg.tubelet, cfg.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.temp_embed = nn.Parameter(torch.zeros(1, cfg.temporal_tokens, dim))
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            Block(dim, cfg.num_heads, cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, drop=cfg.drop_rate,
                  attn_drop=cfg.attn_drop_rate, drop_path=rate,
                  use_original_code=cfg.use_original_code)
            for rate in rates)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.pre_logits = nn.Sequential(OrderedDict([("fc", nn.Linear(dim, dim)), ("act", nn.Tanh())]))
        self.head_drop = nn.Dropout(cfg.head_drop_rate)
        self.head_names = list(spec.heads)
        self.head_modules = head_module_names(len(spec.heads))
        for module_name, classes in zip(self.head_modules, spec.heads.values()):
            self.add_module(module_name, nn.Linear(dim, classes))
        self._init_weights()

    def _init_weights(self) -> None:
        """Official init, with patch_embed_3d inflated from patch_embed's centre slice (build.py)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        with torch.no_grad():
            w3d = self.patch_embed_3d.proj.weight
            w3d.zero_()
            w3d[:, :, w3d.shape[2] // 2] = self.patch_embed.proj.weight
            self.patch_embed_3d.proj.bias.copy_(self.patch_embed.proj.bias)

    def _pos_embedding(self) -> torch.Tensor:
        """(1, 1+F*P, D): CLS position, then spatial positions tiled over time plus temp_embed."""
        cfg = self.cfg
        cls_pos, spatial = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        grid, pos_grid = cfg.img_size // cfg.patch_size, cfg.pos_img_size // cfg.patch_size
        if grid != pos_grid:
            dim = spatial.shape[-1]
            spatial = spatial.reshape(1, pos_grid, pos_grid, dim).permute(0, 3, 1, 2)
            spatial = F.interpolate(spatial, scale_factor=grid / pos_grid, mode="bicubic")
            spatial = spatial.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)
        tiled = spatial.repeat(1, cfg.temporal_tokens, 1) + self.temp_embed.repeat_interleave(
            grid * grid, dim=1)
        return torch.cat([cls_pos, tiled], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,T,S,S) preprocessed clips -> (B, D) tanh clip features."""
        cfg = self.cfg
        expected = (3, cfg.num_frames, cfg.img_size, cfg.img_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{self.spec.name}: expected input (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(x.shape)}")
        tokens = self.patch_embed_3d(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1) + self._pos_embedding()
        for block in self.blocks:
            x = block(x, cfg.temporal_tokens)
        return self.pre_logits(self.norm(x)[:, 0])

    def forward_head(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, D) features -> {head name: logits}."""
        feats = self.head_drop(feats)
        return {name: getattr(self, module)(feats)
                for name, module in zip(self.head_names, self.head_modules)}


# --- checkpoint adaptation -------------------------------------------------------------------------------

def heads_from_state(state: dict[str, torch.Tensor], default_heads: dict[str, int]) -> dict[str, int]:
    """Class counts read from a state dict's classifier weights, named like the default heads.

    The names are the defaults' when the number of heads matches (EPIC: verb, noun); otherwise the
    module names (head, head0, head1, ...) serve as head names.
    """
    count = 1 if "head.weight" in state else sum(1 for k in state if k.startswith("head")
                                                 and k.endswith(".weight") and k[4:-7].isdigit())
    if count == 0:
        raise CheckpointError("no classifier weights (head.weight or head0.weight, ...) in the state")
    modules = head_module_names(count)
    names = list(default_heads) if len(default_heads) == count else modules
    return {name: int(state[f"{m}.weight"].shape[0]) for name, m in zip(names, modules)}


def official_overrides(cfg_yaml: str) -> dict[str, Any]:
    """Teacher overrides read from an official checkpoint's YAML cfg (crop, frames, ViT sizes, BGR).

    Only the settings our architecture has are read; an attention type other than trajectory is
    refused, since the state dict would not describe this model.
    """
    try:
        cfg = yaml.safe_load(cfg_yaml)
    except yaml.YAMLError as exc:
        raise CheckpointError(f"the checkpoint's cfg is not valid YAML: {exc}") from exc
    if not isinstance(cfg, dict) or not isinstance(cfg.get("VIT"), dict):
        return {}
    vit, data = cfg["VIT"], cfg.get("DATA", {}) or {}
    if vit.get("ATTN_LAYER", "trajectory") != "trajectory":
        raise CheckpointError(f"checkpoint uses VIT.ATTN_LAYER={vit['ATTN_LAYER']!r}, "
                              "this model implements 'trajectory' only")
    pairs = {"img_size": data.get("TRAIN_CROP_SIZE"), "num_frames": data.get("NUM_FRAMES"),
             "frame_stride": data.get("SAMPLING_RATE"), "patch_size": vit.get("PATCH_SIZE"),
             "tubelet": vit.get("PATCH_SIZE_TEMP"), "embed_dim": vit.get("EMBED_DIM"),
             "depth": vit.get("DEPTH"), "num_heads": vit.get("NUM_HEADS"),
             "mlp_ratio": vit.get("MLP_RATIO"), "qkv_bias": vit.get("QKV_BIAS"),
             "use_original_code": vit.get("USE_ORIGINAL_TRAJ_ATTN_CODE", True)}
    out: dict[str, Any] = {k: v for k, v in pairs.items() if v is not None}
    if "mlp_ratio" in out:
        out["mlp_ratio"] = float(out["mlp_ratio"])
    for key in ("MEAN", "STD"):
        if isinstance(data.get(key), list) and len(data[key]) == 3:
            out[key.lower()] = tuple(float(v) for v in data[key])
    dataset = (cfg.get("TRAIN") or {}).get("DATASET")
    if dataset is not None:
        out["bgr"] = dataset in BGR_DATASETS
    return out


# --- registration defaults -------------------------------------------------------------------------------

BASE_CONFIG = MFormerConfig()
TINY_CONFIG = MFormerConfig(img_size=64, pos_img_size=64, num_frames=8, embed_dim=96, depth=2,
                            num_heads=3)


def default_spec(name: str, cfg: MFormerConfig, *, tag: str, frame_stride: int, bgr: bool,
                 source_url: str, licence: str) -> TeacherSpec:
    """A TeacherSpec for `cfg` with EPIC-100's heads (verb 97, noun 300) and mean = std = 0.5."""
    return TeacherSpec(name=name, tag=tag, num_frames=cfg.num_frames, frame_stride=frame_stride,
                       img_size=cfg.img_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), bgr=bgr,
                       feature_dim=cfg.feature_dim, heads={"verb": 97, "noun": 300},
                       config=dataclasses.asdict(cfg), source_url=source_url, licence=licence)


BASE_SPEC = default_spec("mformer", BASE_CONFIG, tag="ek100", frame_stride=4, bgr=True,
                         source_url=EK_URL, licence=LICENCE)
TINY_SPEC = default_spec("mformer-tiny", TINY_CONFIG, tag="scratch", frame_stride=8, bgr=False,
                         source_url="", licence="")
