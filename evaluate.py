"""Sec. 4.1: the rewards (VideoScore and an offline proxy), evaluation of a model, and the Table-1 report.

Every reward has one interface (DESIGN.md, "Rewards"): `reward = load_reward(name)`, then
`reward(videos, prompts, static=None)` on uint8 videos (B, F, H, W, 3) returns a dict of (B,) float
arrays, one per dimension in DIMENSIONS, plus "total" (their mean, the paper's "VideoScore total")
and, from VideoScore, "factual_consistency". Prompts labelled static score dynamic_degree = 0: the
paper's revised dynamic score (Sec. 4.1), applied to every reward.

    python evaluate.py --model tiny --reward pixel --prompts prompts/eval_prompts.csv --out runs/demo/full --limit 8
    python evaluate.py --model animatediff --out runs/NAME/full                      # VideoScore-v1.1
    python evaluate.py --model animatediff --student runs/NAME/stage_1/student --out runs/NAME/stage_1
    torchrun --nproc_per_node 4 evaluate.py --model animatediff --out runs/NAME/full  # prompts sharded
    python evaluate.py --report runs/NAME                 # runs/NAME/report.md + side-by-side video grids
    python evaluate.py --report runs/A runs/B --out runs  # several methods (runs) in one table

Rewards (REWARDS):
  videoscore  TIGER-Lab/VideoScore-v1.1 (48 frames; --reward-path TIGER-Lab/VideoScore for v1, 16 frames):
              an Idefics2 backbone with a linear regression head, scores on its 1-4 scale.
  pixel       pixel statistics for smoke runs, in [0, 1]; no text alignment (NaN). Not a stand-in for
              VideoScore in any report.
  shapes      the toy world's exact reward (toy/shapes.py): one line in REWARDS once that file lands.

An evaluation writes OUT/eval.json (per-dimension mean and 95% t-interval over prompts, parameter
counts, TFLOPs per generated video, latency) and OUT/videos.npz (the first few videos, for the grids).
"""
import argparse
import csv
import functools
import json
import math
import os
import statistics
import time

import numpy as np
import torch
from tqdm import tqdm

import models
from models import UserError

DIMENSIONS = ("visual_quality", "temporal_consistency", "dynamic_degree", "text_alignment")
DEFAULT_PROMPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompts", "eval_prompts.csv")

# ---------------------------------------------------------------------------------------------
# Prompt files: .txt (one a line), .csv (a prompt/caption/name column, optional static), .json
# ---------------------------------------------------------------------------------------------

PROMPT_KEYS = ("prompt", "caption", "name")    # WebVid's csv calls its caption column "name"
TRUE_WORDS = ("true", "1", "yes", "y", "t", "static")
FALSE_WORDS = ("false", "0", "no", "n", "f", "dynamic")


def parse_static(value, where):
    """A static/dynamic label: True, False, or None (unlabelled)."""
    if value is None or isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("", "none", "null"):
        return None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise UserError(f"{where}: static must be true/false (or empty for unlabelled), not {value!r}")


def _row(item, where):
    """A prompt-file entry (a string or a dict) -> {"prompt": str, "static": bool or None}."""
    if isinstance(item, str):
        return {"prompt": item.strip(), "static": None}
    if isinstance(item, dict):
        keys = [k for k in PROMPT_KEYS if k in item]
        if not keys:
            raise UserError(f"{where}: no {'/'.join(PROMPT_KEYS)} field; add the caption under 'prompt'")
        return {"prompt": str(item[keys[0]]).strip(), "static": parse_static(item.get("static"), where)}
    raise UserError(f"{where}: expected a string or an object with a 'prompt', got {type(item).__name__}")


def read_prompts(path):
    """Read a prompt file -> [{"prompt": str, "static": bool or None}], in file order.
    .txt: one prompt a line (blank lines skipped). .csv: a column `prompt`, `caption` or `name`
    (WebVid), optional `static` (true/false). .json: a list of strings or of such objects."""
    if not os.path.isfile(path):
        raise UserError(f"no such prompt file: {path}; pass --prompts a .txt, .csv or .json file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".txt":
        with open(path, encoding="utf-8") as f:
            rows = [_row(line, f"{path}:{i + 1}") for i, line in enumerate(f) if line.strip()]
    elif ext == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = [c.strip().lower() for c in reader.fieldnames or []]
            if not any(k in fields for k in PROMPT_KEYS):
                raise UserError(f"{path}: no column named {', '.join(PROMPT_KEYS)} (found {fields})")
            rows = [_row({k.strip().lower(): v for k, v in r.items() if k is not None}, f"{path}:{i + 2}")
                    for i, r in enumerate(reader)]
    elif ext == ".json":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON list of prompts (strings or objects)")
        rows = [_row(item, f"{path}[{i}]") for i, item in enumerate(data)]
    else:
        raise UserError(f"{path}: unknown prompt file type {ext!r}; use .txt, .csv or .json")
    rows = [r for r in rows if r["prompt"]]
    if not rows:
        raise UserError(f"{path} holds no prompts")
    return rows


# ---------------------------------------------------------------------------------------------
# Statistics: the mean and a 95% Student-t confidence interval over prompts
# ---------------------------------------------------------------------------------------------

def t_two_sided_cdf(t, df):
    """P(|T| < t) for Student's t with integer df, in closed form (Abramowitz & Stegun 26.7.3-4):
    theta = atan(t / sqrt(df)); odd df: (2/pi)(theta + sin(theta) sum_j a_j cos^(2j+1) theta),
    a_0 = 1, a_j = a_(j-1) 2j / (2j+1); even df: sin(theta) sum_j b_j cos^(2j) theta, b_0 = 1,
    b_j = b_(j-1) (2j-1) / (2j); the powers of cos(theta) run up to df - 2."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        a, power, total = 1.0, c, 0.0
        for j in range((df - 1) // 2):          # cos^1 ... cos^(df-2)
            if j > 0:
                a *= 2 * j / (2 * j + 1)
                power *= c * c
            total += a * power
        return 2 / math.pi * (theta + s * total)
    b, power, total = 1.0, 1.0, 0.0
    for j in range(df // 2):                    # cos^0 ... cos^(df-2)
        if j > 0:
            b *= (2 * j - 1) / (2 * j)
            power *= c * c
        total += b * power
    return s * total


def t_quantile(df, level=0.95):
    """The t with P(|T| < t) = level (df = 4, level 0.95: 2.776). Bisection on the exact CDF;
    above df = 200 the Cornish-Fisher expansion around the normal quantile (error < 1e-6)."""
    if df > 200:
        z = statistics.NormalDist().inv_cdf((1 + level) / 2)
        return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
    lo, hi = 0.0, 1.0
    while t_two_sided_cdf(hi, df) < level:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_two_sided_cdf(mid, df) < level else (lo, mid)
    return (lo + hi) / 2


def mean_ci(values, level=0.95):
    """(mean, half width of the level t-interval) over the finite values: mean +- t_(n-1) s / sqrt(n).
    NaN (a dimension a reward does not measure) is left out; fewer than two values: half width NaN."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), float("nan")
    return float(v.mean()), float(t_quantile(len(v) - 1, level) * v.std(ddof=1) / math.sqrt(len(v)))


# ---------------------------------------------------------------------------------------------
# Rewards: the shared wrapper and the paper's revised dynamic score
# ---------------------------------------------------------------------------------------------

def apply_static_rule(scores, static):
    """The revised dynamic score (Sec. 4.1): prompts labelled static get dynamic_degree 0.
    `static`: a list of True / False / None (unlabelled, left as scored) or None. Returns a copy."""
    scores = dict(scores)
    if static is None:
        return scores
    dynamic = np.array(scores["dynamic_degree"], dtype=np.float64)
    if len(static) != len(dynamic):
        raise ValueError(f"{len(static)} static labels for {len(dynamic)} videos")
    dynamic[[bool(s) for s in static]] = 0.0
    scores["dynamic_degree"] = dynamic
    return scores


def total_score(scores):
    """The mean of the four paper dimensions; a dimension the reward does not measure (NaN) is left out."""
    stacked = np.stack([np.asarray(scores[d], dtype=np.float64) for d in DIMENSIONS])   # (4, B)
    finite = np.isfinite(stacked)
    with np.errstate(invalid="ignore"):
        return np.where(finite, stacked, 0).sum(0) / finite.sum(0)


class Reward:
    """`reward(videos, prompts, static=None)` -> {dimension: (B,) float64, ..., "total": (B,)}.
    Wraps a score function `(videos, prompts) -> {dimension: (B,)}`: checks the input, applies the
    static rule, and adds the total. `note` (the score function's first docstring line) says what
    the numbers are; eval.json and the report carry it."""

    def __init__(self, name, score_fn, source=None):
        self.name = name
        self.source = source          # the weights it was loaded from, where that varies (videoscore)
        self.score_fn = score_fn
        doc = (score_fn.__doc__ or name).strip()
        self.note = " ".join(doc.split("\n\n")[0].split())

    def __call__(self, videos, prompts, static=None):
        videos = np.asarray(videos)
        if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] != 3:
            raise ValueError(f"videos must be uint8 (B, F, H, W, 3), got {videos.dtype} {videos.shape}")
        if len(prompts) != len(videos):
            raise ValueError(f"{len(prompts)} prompts for {len(videos)} videos")
        raw = self.score_fn(videos, list(prompts))
        missing = [d for d in DIMENSIONS if d not in raw]
        if missing:
            raise ValueError(f"reward {self.name!r} returned no {missing}")
        scores = {k: np.asarray(v, dtype=np.float64).reshape(len(videos)) for k, v in raw.items() if k != "total"}
        scores = apply_static_rule(scores, static)
        scores["total"] = total_score(scores)
        return scores


# ---------------------------------------------------------------------------------------------
# The pixel proxy (smoke runs only)
# ---------------------------------------------------------------------------------------------

SSIM_C1, SSIM_C2 = 0.01 ** 2, 0.03 ** 2     # SSIM's stabilisers for intensities in [0, 1]
SHARPNESS_SCALE = 0.05                      # mean |Laplacian| at which sharpness reaches 1 - 1/e


def pixel_scores(videos, prompts=None):
    """Pixel-statistics proxy for smoke runs, in [0, 1] (not VideoScore; text_alignment is NaN:
    pixels cannot tell, so the total averages the other three).

    dynamic_degree: mean |x_(f+1) - x_f| over pixels, channels and adjacent frames (0 for a still video).
    temporal_consistency: mean global SSIM of adjacent grey frames, clipped to [0, 1] (1 for a still
    video; flicker and jumps lower it). visual_quality: (sharpness + contrast) / 2 with sharpness =
    1 - exp(-mean |4-neighbour Laplacian| / 0.05) and contrast = min(1, 2 std) of the grey frames.
    """
    x = videos.astype(np.float32) / 255                                    # (B, F, H, W, 3)
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)           # (B, F, H, W)
    B, F = grey.shape[:2]
    if F > 1:
        dynamic = np.abs(x[:, 1:] - x[:, :-1]).mean(axis=(1, 2, 3, 4))
        a, b = grey[:, :-1].reshape(B, F - 1, -1), grey[:, 1:].reshape(B, F - 1, -1)
        mu_a, mu_b = a.mean(-1), b.mean(-1)
        var_a, var_b = a.var(-1), b.var(-1)
        cov = ((a - mu_a[..., None]) * (b - mu_b[..., None])).mean(-1)
        ssim = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)
                / ((mu_a ** 2 + mu_b ** 2 + SSIM_C1) * (var_a + var_b + SSIM_C2)))  # (B, F-1)
        consistency = np.clip(ssim, 0, 1).mean(1)
    else:
        dynamic, consistency = np.zeros(B), np.ones(B)
    laplacian = (4 * grey[..., 1:-1, 1:-1] - grey[..., :-2, 1:-1] - grey[..., 2:, 1:-1]
                 - grey[..., 1:-1, :-2] - grey[..., 1:-1, 2:])
    sharpness = 1 - np.exp(-np.abs(laplacian).mean(axis=(1, 2, 3)) / SHARPNESS_SCALE)
    contrast = np.minimum(1.0, 2 * grey.reshape(B, F, -1).std(-1).mean(1))
    return {"visual_quality": (sharpness + contrast) / 2, "temporal_consistency": consistency,
            "dynamic_degree": dynamic, "text_alignment": np.full(B, np.nan)}


# ---------------------------------------------------------------------------------------------
# VideoScore (TIGER-Lab): Idefics2 + a linear regression head over the last non-pad token
# ---------------------------------------------------------------------------------------------

VIDEOSCORE_DEFAULT = "TIGER-Lab/VideoScore-v1.1"
VIDEOSCORE_MAX_FRAMES = {"TIGER-Lab/VideoScore": 16, "TIGER-Lab/VideoScore-v1.1": 48}
# The order of the head's five outputs (VideoScore's model card and examples/run_videoscore.py).
VIDEOSCORE_ASPECTS = ("visual_quality", "temporal_consistency", "dynamic_degree", "text_alignment",
                      "factual_consistency")
# The official regression query (VideoScore's examples/run_videoscore.py), then one <image> per frame.
VIDEOSCORE_QUERY = "\n".join([
    "",
    "Suppose you are an expert in judging and evaluating the quality of AI-generated videos,",
    "please watch the following frames of a given video and see the text prompt for generating the video,",
    "then give scores from 5 different dimensions:",
    "(1) visual quality: the quality of the video in terms of clearness, resolution, brightness, and color",
    "(2) temporal consistency, both the consistency of objects or humans and the smoothness of motion or movements",
    "(3) dynamic degree, the degree of dynamic changes",
    "(4) text-to-video alignment, the alignment between the text prompt and the video content",
    "(5) factual consistency, the consistency of the video content with the common-sense and factual knowledge",
    "",
    "for each dimension, output a float number from 1.0 to 4.0,",
    "the higher the number is, the better the video performs in that sub-score, ",    # (sic) the space
    "the lowest 1.0 means Bad, the highest 4.0 means Perfect/Real (the video is like a real video)",
    "Here is an output example:",
    "visual quality: 3.2",
    "temporal consistency: 2.7",
    "dynamic degree: 4.0",
    "text-to-video alignment: 2.3",
    "factual consistency: 1.8",
    "",
    'For this video, the text prompt is "{text_prompt}",',
    "all the frames of video are as follows:",
    "",
])


def videoscore_query(prompt, num_frames):
    """The text VideoScore reads: the regression query with the prompt, then `<image> ` per frame."""
    return VIDEOSCORE_QUERY.format(text_prompt=prompt) + "<image> " * num_frames


def sample_frame_indices(total, max_frames):
    """VideoScore's uniform frame sampling: every frame if there are at most max_frames, else
    arange(0, total, total / max_frames) truncated to integers."""
    if total <= max_frames:
        return np.arange(total)
    return np.arange(0, total, total / max_frames).astype(int)[:max_frames]


@functools.lru_cache(maxsize=None)
def idefics2_classifier_class():
    """transformers has no Idefics2ForSequenceClassification; this is VideoScore's (Mantis') head:
    `model` (Idefics2Model) + `score` (Linear(text hidden, num_labels)), read at each sequence's last
    non-pad token. The weight names (model.*, score.*) are the hub checkpoint's. Built on first use,
    so that importing this file does not import Idefics2 (seconds)."""
    from torch import nn
    from transformers.models.idefics2.modeling_idefics2 import Idefics2Model, Idefics2PreTrainedModel

    class Idefics2ForSequenceClassification(Idefics2PreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.model = Idefics2Model(config)
            self.score = nn.Linear(config.text_config.hidden_size, config.num_labels)
            self.post_init()

        def forward(self, input_ids, attention_mask, pixel_values, pixel_attention_mask=None):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                                pixel_attention_mask=pixel_attention_mask, use_cache=False).last_hidden_state
            # The last non-pad token of each row (right padding): (B, L, D) -> (B, D) -> (B, num_labels)
            last = attention_mask.long().sum(-1) - 1
            return self.score(hidden[torch.arange(len(last), device=hidden.device), last])

    return Idefics2ForSequenceClassification


class VideoScore:
    """VideoScore (TIGER-Lab, Idefics2 regression head), on its 1-4 scale: visual quality, temporal
    consistency, dynamic degree, text alignment, factual consistency.

    `path`: a hub id or a local directory in the hub layout (config.json, model*.safetensors, the
    Idefics2 processor files). Frames are sampled uniformly up to `max_frames` (16 for VideoScore,
    48 for v1.1 and other paths; a folder named like a hub id counts as it), read without image
    splitting, one <image> token per frame.
    """

    def __init__(self, path=VIDEOSCORE_DEFAULT, device=None, dtype=None, max_frames=None, batch_size=2):
        from transformers import AutoProcessor
        self.device = torch.device(device or models.default_device())
        dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        if (path.startswith((".", "/", "~")) or os.path.exists(path)) and not os.path.isdir(path):
            raise UserError(f"no such VideoScore directory: {path}; pass a hub id or a downloaded copy")
        try:
            self.processor = AutoProcessor.from_pretrained(path)
            model, info = idefics2_classifier_class().from_pretrained(path, dtype=dtype, output_loading_info=True)
        except OSError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"could not load VideoScore from {path!r} ({first}); download it first "
                            f"(huggingface-cli download {VIDEOSCORE_DEFAULT}) and pass --reward-path DIR, "
                            "or use --reward pixel for a smoke run") from e
        missing = set(info["missing_keys"]) - {"score.bias"}
        if missing or info["mismatched_keys"]:
            raise UserError(f"{path} is not a VideoScore checkpoint: {len(missing)} missing weights "
                            f"(e.g. {sorted(missing)[:3]}), mismatched {list(info['mismatched_keys'])[:3]}")
        if "score.bias" in info["missing_keys"]:       # a head saved without bias: the bias is 0
            with torch.no_grad():
                model.score.bias.zero_()
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.processor.image_processor.do_image_splitting = False
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "right"               # the head reads the last non-pad token
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.unk_token
        hub_name = {os.path.basename(k): v for k, v in VIDEOSCORE_MAX_FRAMES.items()}   # a local copy's folder name
        self.max_frames = max_frames or hub_name.get(os.path.basename(os.path.normpath(path)), 48)
        self.batch_size = batch_size

    @torch.no_grad()
    def scores(self, videos, prompts):
        """uint8 videos (B, F, H, W, 3) and their prompts -> (B, 5) float32 in VIDEOSCORE_ASPECTS order."""
        from PIL import Image
        out = []
        for start in range(0, len(videos), self.batch_size):
            texts, images = [], []
            for video, prompt in zip(videos[start:start + self.batch_size], prompts[start:start + self.batch_size]):
                frames = [Image.fromarray(video[i]) for i in sample_frame_indices(len(video), self.max_frames)]
                texts.append(videoscore_query(prompt, len(frames)))
                images.append(frames)
            inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt").to(self.device)
            out.append(self.model(**inputs).float().cpu())
        return torch.cat(out).numpy()                                       # (B, 5)

    def __call__(self, videos, prompts):
        s = self.scores(videos, prompts)
        return {aspect: s[:, i] for i, aspect in enumerate(VIDEOSCORE_ASPECTS)}


def save_tiny_videoscore(out_dir, seed=0):
    """A VideoScore-shaped checkpoint with random weights, in the hub layout (tests, offline demos):
    a tiny Idefics2 (SigLIP-style vision, perceiver, Mistral text), a byte-level Llama tokenizer built
    in memory with <image> and <fake_token_around_image>, and an Idefics2 processor (28 px, 4 tokens
    per image, no splitting). `load_reward("videoscore", path=out_dir)` reads it."""
    from transformers import Idefics2Config, Idefics2Processor, LlamaTokenizer
    from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})        # byte fallback: any text tokenizes
    tokenizer = LlamaTokenizer(vocab=vocab, merges=[])
    tokenizer.pad_token = "<unk>"
    image_processor = Idefics2ImageProcessorPil(
        do_image_splitting=False, size={"shortest_edge": 28, "longest_edge": 28},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor = Idefics2Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4)
    config = Idefics2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14),
        perceiver_config=dict(hidden_size=32, resampler_n_latents=4, resampler_depth=1, resampler_n_heads=2,
                              resampler_head_dim=8, num_key_value_heads=1),
        text_config=dict(model_type="mistral", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, pad_token_id=0),
        image_token_id=processor.image_token_id, num_labels=len(VIDEOSCORE_ASPECTS), problem_type="regression")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = idefics2_classifier_class()(config)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


# ---------------------------------------------------------------------------------------------
# The registry: name -> loader(device=None, **kw) returning a score function (videos, prompts) -> dict
# ---------------------------------------------------------------------------------------------

def _load_videoscore(device=None, path=None, **kw):
    return VideoScore(path or VIDEOSCORE_DEFAULT, device=device, **kw)


def _load_pixel(device=None, **kw):
    return pixel_scores


def _load_shapes(device=None, **kw):
    """The toy world's exact reward (toy/shapes.py)."""
    from toy import shapes
    return shapes.reward


REWARDS = {
    "videoscore": _load_videoscore,
    "pixel": _load_pixel,
    "shapes": _load_shapes,
}


def load_reward(name, device=None, **kw):
    """A Reward by name (REWARDS). kw go to the loader (videoscore: path, max_frames, batch_size, dtype)."""
    if name not in REWARDS:
        raise UserError(f"unknown reward {name!r}: choose one of {', '.join(REWARDS)}")
    return Reward(name, REWARDS[name](device=device, **kw), source=kw.get("path"))


# ---------------------------------------------------------------------------------------------
# Cost: TFLOPs per generated video and latency
# ---------------------------------------------------------------------------------------------

def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    """Q K^T and A V of one attention call: 2 b h s_q s_k d + 2 b h s_q s_k d_v (no softmax)."""
    b, h, s_q, d = query_shape
    return 2 * b * h * s_q * key_shape[2] * d + 2 * b * h * s_q * key_shape[2] * value_shape[3]


# FlopCounterMode counts the CUDA attention kernels but not the CPU one; count it the same way.
CPU_ATTENTION_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}


def measure_tflops(model, num_frames, height, width, steps, guidance):
    """TFLOPs to generate one video: one denoiser forward at batch 1, counted by
    torch.utils.flop_counter.FlopCounterMode, times `steps`, times 2 when classifier-free guidance
    (guidance > 1) runs the conditional and unconditional halves. Text encoder and VAE not counted."""
    from torch.utils.flop_counter import FlopCounterMode
    scale = model.pipe.vae_scale_factor
    unet = model.unet
    x_t = torch.zeros(1, unet.config.in_channels, num_frames, height // scale, width // scale,
                      device=model.device, dtype=unet.dtype)                  # (1, C, F, h, w)
    embeds = model.encode([""])
    t = torch.tensor([model.num_train_timesteps // 2], device=model.device)
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        model.noise_pred(x_t, t, embeds)
    forward = counter.get_total_flops() / 1e12
    cfg = 2 if guidance > 1 else 1
    return {"tflops": forward * steps * cfg, "unet_forward_tflops": forward, "steps": steps, "cfg_factor": cfg,
            "note": "one denoiser forward (batch 1) measured with FlopCounterMode x steps x CFG factor; "
                    "text encoder and VAE decode not counted"}


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(model, prompt, seed, repeats=1, **gen_kw):
    """Seconds to generate one video at batch 1 (after a warm-up), median of `repeats`."""
    model.generate([prompt], [seed], **gen_kw)
    times = []
    for _ in range(repeats):
        _sync(model.device)
        start = time.perf_counter()
        model.generate([prompt], [seed], **gen_kw)
        _sync(model.device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def parameter_counts(model):
    """Parameters: the whole pipeline, the denoiser, the prunable blocks still in it, the trained
    part (the paper's Param column: AnimateDiff's motion modules, VideoCrafter2's whole UNet), and
    how many blocks were removed."""
    counts = model.num_parameters()
    prunable = sum(p.numel() for block in model.blocks().values() for p in block.parameters())
    return {"total": counts["total"], "unet": counts["unet"], "prunable": prunable,
            "trainable": counts["trainable"], "removed_blocks": len(model.removed)}


# ---------------------------------------------------------------------------------------------
# Evaluation: generate the eval set (fixed seeds, sharded over ranks), score it, summarise
# ---------------------------------------------------------------------------------------------

def generation_settings(model, num_frames=None, steps=None, guidance=None, height=None, width=None):
    """The sampler settings `generate` will use (the model's defaults where not given)."""
    d = model.defaults
    given = dict(num_frames=num_frames, steps=steps, guidance=guidance, height=height, width=width)
    settings = {k: d[k] if v is None else v for k, v in given.items()}
    settings["fps"] = d.get("fps", 8)
    return settings


def evaluate_model(model, reward, prompts, seeds, static=None, keep_videos=4, batch_size=4, measure=True,
                   **gen_kw):
    """Generate one video per (prompt, seed), score it, and summarise: the eval.json content.

    Generation and scoring are sharded over torchrun ranks (models.shard / models.gather); the
    result is the same on every rank. Keys: "scores" {dimension: {"mean", "ci95" (half width of
    the 95% t-interval over prompts), "n"}}, "per_video", "params", "tflops" and "latency" (when
    `measure`), "generation", "reward", "reward_note". "videos" holds the first `keep_videos`
    uint8 videos with their prompts and seeds: `save_eval` writes them to videos*.npz beside the
    json and leaves them out of it.
    """
    if len(prompts) != len(seeds) or not prompts:
        raise ValueError(f"need one seed per prompt and at least one prompt, got {len(prompts)} and {len(seeds)}")
    static = list(static) if static is not None else [None] * len(prompts)
    settings = generation_settings(model, **gen_kw)
    gen = {k: settings[k] for k in ("num_frames", "steps", "guidance", "height", "width")}
    rank, _ = models.rank_world()
    mine = models.shard(list(zip(prompts, seeds, static)))
    indexed = []
    for start in tqdm(range(0, len(mine), batch_size), desc="evaluate", disable=rank != 0):
        batch = mine[start:start + batch_size]
        p, s, st = [x[1][0] for x in batch], [x[1][1] for x in batch], [x[1][2] for x in batch]
        frames, _ = model.generate(p, s, **gen)
        scores = reward(frames, p, static=st)
        for j, (i, _) in enumerate(batch):
            indexed.append((i, {"prompt": p[j], "seed": int(s[j]), "static": st[j],
                                "scores": {k: float(v[j]) for k, v in scores.items()},
                                "video": frames[j] if i < keep_videos else None}))
    per_video = models.gather(indexed)
    kept = [v.pop("video") for v in per_video]
    names = list(per_video[0]["scores"]) if per_video else list(DIMENSIONS) + ["total"]
    summary = {}
    for k in names:
        mean, half = mean_ci([v["scores"][k] for v in per_video])
        summary[k] = {"mean": mean, "ci95": half, "n": len(per_video)}
    result = {"model": model.name, "reward": getattr(reward, "name", "custom"),
              "reward_note": getattr(reward, "note", ""),
              "num_videos": len(per_video), "generation": settings, "scores": summary,
              "params": parameter_counts(model), "per_video": per_video}
    if measure:
        cost = None
        if rank == 0:
            cost = {"tflops": measure_tflops(model, **gen),
                    "latency": {"seconds_per_video": measure_latency(model, prompts[0], seeds[0], **gen),
                                "batch": 1, "device": str(model.device)}}
        result.update(models.broadcast(cost))
    videos = [(v["prompt"], v["seed"], f) for v, f in zip(per_video, kept) if f is not None]
    result["videos"] = {"prompts": [x[0] for x in videos], "seeds": [x[1] for x in videos],
                        "frames": np.stack([x[2] for x in videos]) if videos else None}
    return result


def json_safe(obj):
    """NaN / inf -> None (strict JSON), numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def videos_path(json_path):
    """Where the kept videos of an eval json live: eval.json -> videos.npz, eval_pruned.json -> videos_pruned.npz."""
    d, stem = os.path.split(os.path.splitext(json_path)[0])
    name = "videos" + stem[len("eval"):] if stem.startswith("eval") else stem + "_videos"
    return os.path.join(d, name + ".npz")


def save_eval(result, json_path):
    """Rank 0 writes `result` (from evaluate_model) to json_path, and its videos beside it
    (videos_path); other ranks write nothing. Both writes are atomic."""
    if models.rank_world()[0] != 0:
        return
    result = dict(result)
    videos = result.pop("videos", None)
    models.write_json(json_path, json_safe(result))
    if videos and videos["frames"] is not None:
        path = videos_path(json_path)
        with models.atomic_file(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, frames=videos["frames"], prompts=np.array(videos["prompts"]),
                                seeds=np.array(videos["seeds"]))


# ---------------------------------------------------------------------------------------------
# The report: Table 1's shape, plus side-by-side video grids
# ---------------------------------------------------------------------------------------------

METHOD_NAMES = {"redpo": "ReDPO", "sft": "SFT", "dpo": "DPO"}
COLUMN_NAMES = {"visual_quality": "Visual Quality", "temporal_consistency": "Temporal Consistency",
                "dynamic_degree": "Dynamic Degree", "text_alignment": "Text Alignment"}


def _fmt(x, digits=3):
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _stage_dirs(run_dir):
    """[(k, path)] of runs/NAME/stage_k, by k."""
    if not os.path.isdir(run_dir):
        return []
    stages = [(int(n.split("_", 1)[1]), os.path.join(run_dir, n)) for n in os.listdir(run_dir)
              if n.startswith("stage_") and n.split("_", 1)[1].isdigit()]
    return sorted(stages)


def report_rows(run_dir):
    """Table-1 rows of one run: [(model, stage, method, eval dict, json path)]: the full model,
    then per stage the pruned model (eval_pruned.json) and the trained one (eval.json)."""
    config_path = os.path.join(run_dir, "config.json")
    config = models.read_json(config_path) if os.path.isfile(config_path) else {}
    method = METHOD_NAMES.get(str(config.get("method", "")).lower(), config.get("method") or "trained")
    rows = []
    full = os.path.join(run_dir, "full", "eval.json")
    if os.path.isfile(full):
        rows.append(("Full", "-", full))
    for k, stage in _stage_dirs(run_dir):
        for name, label in (("eval_pruned.json", "Pruned"), ("eval.json", method)):
            if os.path.isfile(os.path.join(stage, name)):
                rows.append((f"Stage {k}", label, os.path.join(stage, name)))
    out = []
    for stage, label, path in rows:
        result = models.read_json(path)
        model_name = config.get("model") or result.get("model", "?")
        out.append((model_name, stage, label, result, path))
    return out


def video_grid(videos, separator=2):
    """Side-by-side frames: [(F, H, W, 3) uint8, ...] -> (F, H, sum W + gaps, 3), white gaps between."""
    frames = min(len(v) for v in videos)
    height = max(v.shape[1] for v in videos)
    gap = np.full((frames, height, separator, 3), 255, dtype=np.uint8)
    parts = []
    for i, v in enumerate(videos):
        if i:
            parts.append(gap)
        pad = np.full((frames, height, v.shape[2], 3), 255, dtype=np.uint8)
        pad[:, :v.shape[1]] = v[:frames]
        parts.append(pad)
    return np.concatenate(parts, axis=2)


def _load_videos(json_path):
    path = videos_path(json_path)
    if not os.path.isfile(path):
        return None
    with np.load(path) as z:
        return {"frames": z["frames"], "prompts": [str(p) for p in z["prompts"]], "seeds": [int(s) for s in z["seeds"]]}


def write_grids(run_dir, out_dir, max_videos=2):
    """teacher | pruned | trained for the same prompt and seed, per stage: mp4 + gif under
    out_dir/grids. Returns [(stage, prompt, gif path)]; skips stages whose videos are missing or
    were generated from other prompts / seeds."""
    full = os.path.join(run_dir, "full", "eval.json")
    teacher = _load_videos(full)
    fps = models.read_json(full).get("generation", {}).get("fps", 8) if os.path.isfile(full) else 8
    made = []
    if teacher is None:
        return made
    name = os.path.basename(os.path.normpath(run_dir))
    for k, stage in _stage_dirs(run_dir):
        pruned = _load_videos(os.path.join(stage, "eval_pruned.json"))
        trained = _load_videos(os.path.join(stage, "eval.json"))
        if pruned is None or trained is None:
            continue
        n = min(max_videos, len(teacher["seeds"]), len(pruned["seeds"]), len(trained["seeds"]))
        for i in range(n):
            keys = {(v["prompts"][i], v["seeds"][i]) for v in (teacher, pruned, trained)}
            if len(keys) != 1:
                continue
            grid = video_grid([teacher["frames"][i], pruned["frames"][i], trained["frames"][i]])
            stem = os.path.join(out_dir, "grids", f"{name}_stage{k}_{i}")
            models.save_video(stem + ".mp4", grid, fps)
            models.save_video(stem + ".gif", grid, fps)
            made.append((k, teacher["prompts"][i], stem + ".gif"))
    return made


def write_report(run_dirs, out_path):
    """Write report.md in Table 1's shape for one or more runs (one run = one method): rows Full,
    then Stage k Pruned / Stage k <method>; columns the four dimensions, their average and the
    trained parameters (millions). Then cost and uncertainty, and the video grids. Returns the text."""
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    header = ["Model", "Stage", "Method"] + [COLUMN_NAMES[d] for d in DIMENSIONS] + ["Average", "Param (M)"]
    lines = ["# V.I.P. results", ""]
    rows = [(run, row) for run in run_dirs for row in report_rows(run)]
    if not rows:
        raise UserError(f"no eval.json under {', '.join(run_dirs)}; run evaluate.py (or vip_loop.py) first")
    rewards = sorted({(r[3].get("reward", "?"), r[3].get("reward_note", "")) for _, r in rows})
    for name, note in rewards:
        lines.append(f"Scores: `{name}` reward. {note}")
        if name == "pixel":
            lines.append("**The pixel proxy is for smoke runs only; these numbers are not VideoScore.**")
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, (model_name, stage, method, result, _) in rows:
        s = result["scores"]
        cells = [model_name, stage, method] + [_fmt(s[d]["mean"]) for d in DIMENSIONS]
        cells += [_fmt(s["total"]["mean"]), _fmt(result["params"]["trainable"] / 1e6)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Average: the mean of the four dimensions (VideoScore total). Param: the trained part "
              "(AnimateDiff: the motion modules; VideoCrafter2: the whole UNet). Static prompts score dynamic degree 0.",
              "", "| Run | Stage | Method | Average +- 95% CI | Videos | TFLOPs / video | Latency (s / video) |",
              "|---|---|---|---|---|---|---|"]
    for run, (_, stage, method, result, _) in rows:
        total = result["scores"]["total"]
        tflops = result.get("tflops", {}).get("tflops")
        tflops = "n/a" if tflops is None else f"{tflops:.4g}"
        latency = result.get("latency", {}).get("seconds_per_video")
        lines.append(f"| {os.path.basename(os.path.normpath(run))} | {stage} | {method} | "
                     f"{_fmt(total['mean'])} +- {_fmt(total['ci95'])} | {result['num_videos']} | "
                     f"{tflops} | {_fmt(latency, 2)} |")
    grids = [(run, g) for run in run_dirs for g in write_grids(run, out_dir)]
    if grids:
        lines += ["", "## Teacher | pruned | trained (same prompt and seed)", ""]
        for run, (k, prompt, gif) in grids:
            rel = os.path.relpath(gif, out_dir)
            lines.append(f"- {os.path.basename(os.path.normpath(run))}, stage {k}: \"{prompt}\"  ")
            lines.append(f"  ![{prompt}]({rel}) ([mp4]({os.path.splitext(rel)[0]}.mp4))")
    text = "\n".join(lines) + "\n"
    with models.atomic_file(out_path) as tmp, open(tmp, "w") as f:
        f.write(text)
    return text


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Evaluate a text-to-video model with a reward (eval.json), "
                                            "or write the Table-1 report of runs (--report).")
    p.add_argument("--model", default="tiny", help=f"one of {', '.join(models.LOADERS)} (default: tiny)")
    p.add_argument("--path", default=None, help="hub id or directory of the base model")
    p.add_argument("--adapter", default=None, help="AnimateDiff motion adapter (hub id or directory)")
    p.add_argument("--student", default=None, help="a saved student (pruned / trained) to evaluate instead")
    p.add_argument("--reward", default="videoscore", help=f"one of {', '.join(REWARDS)} (default: videoscore)")
    p.add_argument("--reward-path", default=None, help=f"VideoScore hub id or directory (default: {VIDEOSCORE_DEFAULT})")
    p.add_argument("--prompts", default=DEFAULT_PROMPTS, help="a .txt, .csv or .json prompt file")
    p.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    p.add_argument("--seed", type=int, default=0, help="prompt i uses seed + i")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--out", default=None, help="output folder (eval.json, videos.npz; with --report: report.md)")
    p.add_argument("--report", nargs="+", metavar="RUN", default=None, help="write report.md for these runs")
    return p.parse_args(argv)


def print_summary(result):
    for k, v in result["scores"].items():
        print(f"  {k:22s} {_fmt(v['mean'])} +- {_fmt(v['ci95'])}  (n={v['n']})")
    params = result["params"]
    print(f"  params: {params['total']:,} total, {params['prunable']:,} prunable "
          f"({params['removed_blocks']} blocks removed)")
    if "tflops" in result:
        print(f"  {result['tflops']['tflops']:.4f} TFLOPs per video ({result['tflops']['note']}); "
              f"{result['latency']['seconds_per_video']:.2f} s per video on {result['latency']['device']}")
    print(f"  reward: {result['reward']}: {result['reward_note']}")


def main(argv=None):
    args = parse_args(argv)
    if args.report:
        out = os.path.join(args.out or args.report[0], "report.md")
        write_report(args.report, out)
        print(f"wrote {out}")
        return
    if args.out is None:
        raise UserError("pass --out DIR for eval.json (or --report RUN to write a report)")
    if args.reward not in REWARDS:
        raise UserError(f"unknown reward {args.reward!r}: choose one of {', '.join(REWARDS)}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, not {args.limit}")
    rows = read_prompts(args.prompts)[:args.limit]
    rank, _, device = models.dist_setup()
    model = models.load(args.model, path=args.student or args.path, adapter=args.adapter, device=device)
    reward_kw = {"path": args.reward_path} if args.reward_path else {}
    reward = load_reward(args.reward, device=device, **reward_kw)
    result = evaluate_model(model, reward, [r["prompt"] for r in rows], [args.seed + i for i in range(len(rows))],
                            static=[r["static"] for r in rows], batch_size=args.batch_size, steps=args.steps)
    result["config"] = vars(args)
    save_eval(result, os.path.join(args.out, "eval.json"))
    if rank == 0:
        print(f"wrote {os.path.join(args.out, 'eval.json')}: {result['num_videos']} videos of {args.model}"
              f"{' (' + args.student + ')' if args.student else ''}")
        print_summary(result)
    models.barrier()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    models.run_cli(main)
