"""The rewards (paper Sec. 4.1): VideoScore, the toy world's exact reward, and an offline pixel proxy.

A reward is what prune.py ranks blocks by (Sec. 3.2), what curate.py's pair rule compares
(Sec. 3.3) and what evaluate.py reports (Table 1). Every reward has one interface:
`reward = load_reward(name)`, then `reward(videos, prompts, static=None)` on uint8 videos
(B, F, H, W, 3) returns a dict of (B,) float arrays, one per dimension in DIMENSIONS, plus "total"
(their mean, the paper's "VideoScore total") and, from VideoScore, "factual_consistency". Prompts
labelled static score dynamic_degree = 0: the paper's revised dynamic score (Sec. 4.1), applied to
every reward.

Rewards (REWARDS):
  videoscore  TIGER-Lab/VideoScore-v1.1 (48 frames; --reward_path TIGER-Lab/VideoScore for v1, 16 frames):
              an Idefics2 backbone with a linear regression head, scores on its 1-4 scale; pre-processed
              and run as the official inference (bf16 on every device; --reward_dtype fp32 for float32).
  pixel       pixel statistics for smoke runs, in [0, 1]; no text alignment (NaN). Not a stand-in for
              VideoScore in any report.
  shapes      the toy world's exact reward (toy/shapes_world.py), imported when it is first loaded.

Which reward a CLI uses when not told follows the model (defaults.py):

    python evaluate.py --model tiny --out runs/demo/full --eval_prompts 8      # pixel
    python evaluate.py --model animatediff --out runs/NAME/full                 # videoscore
    python evaluate.py --model tiny --reward videoscore --reward_path DIR --out runs/demo/full
"""
import functools
import os

from infra import residency
from infra.cli import UserError
from infra.ranks import default_device

import numpy as np
import torch

from analysis.dimensions import DIMENSIONS  # also read as rewards.DIMENSIONS

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

    def modules(self):
        """The torch modules the reward runs: VideoScore's model; none for the pixel and shapes rewards."""
        model = getattr(self.score_fn, "model", None)
        return [model] if isinstance(model, torch.nn.Module) else []

    def take_turns(self, residency):
        """Share the accelerator with the video model (infra/residency.py): the reward's weights stay
        at home on the CPU except while it scores."""
        residency.add("reward", self.modules())
        if hasattr(self.score_fn, "take_turns"):          # VideoScore: scoring in less memory (its take_turns)
            self.score_fn.take_turns()
        self.score_fn = residency.guard(self.score_fn, "reward")
        return self

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


def per_video(scores, n):
    """A reward's result {key: (B,) array} for n videos -> n dicts {key: float}, one per video;
    a ValueError when the reward did not return n scores of a key (a custom score function)."""
    arrays = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in scores.items()}
    for k, v in arrays.items():
        if len(v) != n:
            raise ValueError(f"reward returned {len(v)} {k!r} scores for {n} videos")
    return [{k: float(v[i]) for k, v in arrays.items()} for i in range(n)]


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


def frames_in_chunks(model, n):
    """Idefics2's image path, the vision tower (SigLIP) and the connector (the modality projection and
    the perceiver), on at most `n` frames a call, the outputs joined. Each frame goes through both on
    its own, so the scores are the same to float rounding, while they hold n frames' activations at a
    time instead of every frame's (Wan: 48 frames at 480 x 832, 2006 patches each; docs/memory)."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling
    vision, connector = model.model.vision_model, model.model.connector
    whole_vision = getattr(vision, "whole_forward", vision.forward)
    whole_connector = getattr(connector, "whole_forward", connector.forward)
    vision.whole_forward, connector.whole_forward = whole_vision, whole_connector

    def vision_in_chunks(pixel_values, patch_attention_mask=None, **kwargs):
        mask = lambda i: None if patch_attention_mask is None else patch_attention_mask[i:i + n]   # noqa: E731
        return BaseModelOutputWithPooling(last_hidden_state=torch.cat([
            whole_vision(pixel_values=pixel_values[i:i + n], patch_attention_mask=mask(i), **kwargs).last_hidden_state
            for i in range(0, len(pixel_values), n)]))

    def connector_in_chunks(image_hidden_states, attention_mask):
        return torch.cat([whole_connector(image_hidden_states[i:i + n], attention_mask[i:i + n])
                          for i in range(0, len(image_hidden_states), n)])
    vision.forward, connector.forward = vision_in_chunks, connector_in_chunks


VIDEOSCORE_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def videoscore_dtype(dtype=None):
    """VideoScore's compute dtype: bf16 by default on every device, as the official inference
    (examples/run_videoscore.py loads it with torch_dtype=torch.bfloat16, on GPU and CPU alike);
    "fp32" (or torch.float32) on request. Accepts None, "bf16", "fp32" or a torch dtype."""
    if dtype is None:
        return torch.bfloat16
    if isinstance(dtype, torch.dtype) and dtype in VIDEOSCORE_DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in VIDEOSCORE_DTYPES:
        return VIDEOSCORE_DTYPES[dtype]
    raise UserError(f"VideoScore dtype must be one of {', '.join(VIDEOSCORE_DTYPES)}, not {dtype!r}")


def videoscore_config(path):
    """The checkpoint's Idefics2Config with the perceiver's RMSNorm epsilon taken from the text
    config, as the official model does (Mantis' Idefics2PerceiverLayer / Idefics2PerceiverResampler
    read config.text_config.rms_norm_eps, 1e-5 for VideoScore). transformers 5 reads
    config.perceiver_config.rms_norm_eps instead, and a config saved by the transformers 4.41 stack
    has no such key, so it would fall back to 1e-6."""
    from transformers import AutoConfig
    config = AutoConfig.from_pretrained(path)
    config.perceiver_config.rms_norm_eps = config.text_config.rms_norm_eps
    return config


def videoscore_processor(path, image_seq_len):
    """The Idefics2 processor as the official stack (transformers 4.41) applied it.

    Tokenizer: the checkpoint's own tokenizer.json pipeline, run as the `tokenizers` library runs
    it (PreTrainedTokenizerFast loads the file as written). transformers 5's LlamaTokenizer
    rebuilds the normalizer and pre-tokenizer itself; for a file in the legacy format (normalizer
    Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer) that changes how the spaces between the
    frames' image tokens, and the trailing space whose hidden state the head reads, tokenize.
    Images: resized with PIL (backend "pil"), as 4.41's Idefics2ImageProcessor did; transformers 5
    would pick the torchvision backend wherever torchvision is installed. No image splitting: one
    frame, one image. `image_seq_len`: <image> tokens per frame (the perceiver's latents)."""
    from transformers import AutoImageProcessor, Idefics2Processor, PreTrainedTokenizerFast
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    tokenizer.padding_side = "right"               # the head reads the last non-pad token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token
    image_processor = AutoImageProcessor.from_pretrained(path, backend="pil")
    image_processor.do_image_splitting = False
    return Idefics2Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=image_seq_len)


class VideoScore:
    """VideoScore (TIGER-Lab, Idefics2 regression head), on its 1-4 scale: visual quality, temporal
    consistency, dynamic degree, text alignment, factual consistency.

    `path`: a hub id or a local directory in the hub layout (config.json, model*.safetensors, the
    Idefics2 processor files with tokenizer.json). Frames are sampled uniformly up to `max_frames`
    (16 for VideoScore, 48 for v1.1 and other paths; a folder named like a hub id counts as it),
    read without image splitting, one <image> token per frame. Pre-processing and model follow the
    official inference (videoscore_processor, videoscore_config): the tokenizer.json pipeline as
    written, PIL resizing, eager attention, bf16 (`dtype="fp32"` for float32).
    """

    def __init__(self, path=VIDEOSCORE_DEFAULT, device=None, dtype=None, max_frames=None, batch_size=2):
        self.device = torch.device(device or default_device())
        self.dtype = videoscore_dtype(dtype)
        if (path.startswith((".", "/", "~")) or os.path.exists(path)) and not os.path.isdir(path):
            raise UserError(f"no such VideoScore directory: {path}; pass a hub id or a downloaded copy")
        try:
            config = videoscore_config(path)
            # Eager attention: the official class (Mantis' Idefics2ForSequenceClassification) has no
            # SDPA path, so transformers 4.41 ran it eagerly.
            model, info = idefics2_classifier_class().from_pretrained(
                path, config=config, dtype=self.dtype, attn_implementation="eager", output_loading_info=True)
            self.processor = videoscore_processor(path, config.perceiver_config.resampler_n_latents)
        except OSError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"could not load VideoScore from {path!r} ({first}); download it first "
                            f"(huggingface-cli download {VIDEOSCORE_DEFAULT}) and pass --reward_path DIR, "
                            "or use --reward pixel for a smoke run") from e
        missing = set(info["missing_keys"]) - {"score.bias"}
        if missing or info["mismatched_keys"]:
            raise UserError(f"{path} is not a VideoScore checkpoint: {len(missing)} missing weights "
                            f"(e.g. {sorted(missing)[:3]}), mismatched {list(info['mismatched_keys'])[:3]}")
        if "score.bias" in info["missing_keys"]:       # a head saved without bias: the bias is 0
            with torch.no_grad():
                model.score.bias.zero_()
        self.model = model.to(self.device).eval().requires_grad_(False)
        hub_name = {os.path.basename(k): v for k, v in VIDEOSCORE_MAX_FRAMES.items()}   # a local copy's folder name
        self.max_frames = max_frames or hub_name.get(os.path.basename(os.path.normpath(path)), 48)
        self.batch_size = batch_size

    def take_turns(self):
        """Scoring by turns on one 24 GB GPU (Reward.take_turns): one video a call, and its image path
        one frame a call (frames_in_chunks); docs/memory: 16.2 GiB for AnimateDiff's, 19.8 for Wan's."""
        self.batch_size = 1
        frames_in_chunks(self.model, 1)

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
            inputs = self.processor(text=texts, images=images, padding=True,
                                    return_tensors="pt").to(self.model.device)   # where its turn put it
            out.append(self.model(**inputs).float().cpu())
        return torch.cat(out).numpy()                                       # (B, 5)

    def __call__(self, videos, prompts):
        s = self.scores(videos, prompts)
        return {aspect: s[:, i] for i, aspect in enumerate(VIDEOSCORE_ASPECTS)}


# ---------------------------------------------------------------------------------------------
# The registry: name -> loader(device=None, **kw) returning a score function (videos, prompts) -> dict
# ---------------------------------------------------------------------------------------------

def _load_videoscore(device=None, path=None, **kw):
    return VideoScore(path or VIDEOSCORE_DEFAULT, device=device, **kw)


def _load_pixel(device=None, **kw):
    return pixel_scores


def _load_shapes(device=None, **kw):
    """The toy world's exact reward (toy/shapes_world.py). Imported here, on first use: the world
    lives with the toy world in toy/, and importing rewards does not import it."""
    from toy import shapes_world
    return shapes_world.reward


REWARDS = {
    "videoscore": _load_videoscore,
    "pixel": _load_pixel,
    "shapes": _load_shapes,
}


def load_reward(name, device=None, **kw):
    """A Reward by name (REWARDS). kw go to the loader (videoscore: path, max_frames, batch_size, dtype
    ("bf16", the default, or "fp32")); the other rewards ignore them."""
    if name not in REWARDS:
        raise UserError(f"unknown reward {name!r}: choose one of {', '.join(REWARDS)}")
    return Reward(name, REWARDS[name](device=device, **kw), source=kw.get("path"))


def load_reward_beside(model, name, device, path=None, **kw):
    """load_reward for a run of the video model `model` on `device`: on that device, or, with --lora on
    a GPU, at home on the CPU, the two taking turns on the GPU (infra/residency.py). `path`: a local
    copy of the reward's weights (--reward_path), None for its own default."""
    turns = residency.takes_turns(model.lora, device)
    reward = load_reward(name, device="cpu" if turns else device, **({"path": path} if path else {}), **kw)
    if turns:
        residency.share(device, model, reward)
    return reward
