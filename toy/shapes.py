"""A tiny text-to-video world, its exact reward and its trained teacher (DESIGN.md, toy/shapes.py).

Moving coloured shapes on black, so the whole V.I.P. loop (prune -> curate -> ReDPO -> evaluate)
runs for real on a laptop CPU with a teacher that knows something and a reward that is exact.

    python toy/shapes.py train                      # train the teacher (1 core, 75 min), writes toy/teacher/
    python toy/shapes.py sample --out docs/shapes   # teacher clips next to ground truth (gif + png strip)
    python toy/shapes.py evaluate                   # reward table: ground truth vs teacher vs untrained
    python -c "import models; m = models.load('toy')"   # the teacher, as a V.I.P. model

The world. Prompts come from a grammar "a {colour} {shape} {motion}": 6 colours x 3 shapes x
5 motions (moving left / right / up / down, staying still) = 90 prompts, 72 for training and
18 held out for evaluation (every colour, shape and motion is in both halves; the held-out
combinations are new). `render(prompt, seed)` draws 8 frames of 16x16 RGB, anti-aliased by 4x4
supersampling: the shape (about 7 px across) starts at a seeded random sub-pixel position and
moves 1 px per frame, staying fully inside the frame.

The reward (`reward(videos, prompts, static)`), each dimension in [0, 1], from the frames alone:
  * coverage c = max(R, G, B) / 255 per pixel (the renderer draws coverage x colour on black);
    the object is where c > 0.5; its centre is the c-weighted centroid, its colour sum(RGB)/sum(c).
  * visual_quality: a clean object on a clean background, the mean over frames of
    (a) fit: soft IoU sum(min(c, T)) / sum(max(c, T)) between c and the best of the three shape
    templates T rendered at the centroid (blur, smear and broken shapes lower it);
    (b) clean background: the fraction of pixels more than 1 px away from the template that are
    dark (c < 0.1) (speckle and noise lower it);
    (c) pure colour: 1 - mean distance of the object's pixels' colour (RGB / c) from the nearest
    palette colour, divided by 0.5.
  * temporal_consistency: the mean of colour stability (1 - mean distance of each frame's colour
    from the clip's median colour / 0.5), size stability (1 - std(area) / mean(area) / 0.5),
    shape stability (fraction of frames with the clip's most common shape) and smooth motion
    (1 - rms distance of the centroids from a straight-line, constant-speed fit, in px).
  * dynamic_degree: |v| / SPEED clipped to 1, v the least-squares centroid velocity (px/frame);
    the paper's revised rule (Sec. 4.1): static prompts score 0. `static` comes from the caller,
    or else from the grammar ("staying still").
  * text_alignment: the mean of colour (fraction of frames whose colour is nearest the prompt's),
    shape (fraction of frames whose best template is the prompt's) and motion (moving prompts:
    max(0, cos(v, d)) * min(1, |v| / (SPEED / 2)); static prompts: max(0, 1 - |v| / (SPEED / 2))).
  * A frame holds no object if no pixel has c > 0.5 or no template fits with soft IoU >= 0.5; such
    frames score 0 and the clip-level terms are scaled by the fraction of frames with an object.
  * total: the mean of the four.

The teacher: AnimateDiff's architecture (diffusers' UNetMotionModel: spatial ResNet/attention
blocks plus 10 motion modules, the prunable blocks) in pixel space (no VAE: at 16x16 a VAE would
cost more training time than the whole UNet and buy nothing), a word-level tokenizer over the
grammar's words (20 tokens) and a 1-layer CLIPTextModel, trained jointly. Choices, each made on evidence:
  * cross-attention only at 8x8 and 4x4, channels (16, 32, 64): profiled on one core, spatial
    attention over 256 tokens at 16x16 took 40% of a 2-4 s step; without it a step is ~1 s.
  * "latents" x_0 = frames / 127.5, in [0, 2]: black, the background, is 0, so a model that is
    not yet precise at high noise still lands on the empty background instead of grey noise.
  * the UNet predicts v = sqrt(a_t) eps - sqrt(1 - a_t) x_0 and models.ToyModel.noise_pred returns
    eps = sqrt(a_t) v + sqrt(1 - a_t) x_t, so redpo.loss, noise_pred and add_noise mean exactly
    what they mean for AnimateDiff. Why v: an eps-UNet's x_0 estimate (x_t - sqrt(1 - a_t) eps) /
    sqrt(a_t) multiplies its error by 13 at t = 950; after 300 steps ours denoised well from
    t = 500 but sampled noise from x_T.
  * cosine schedule (squaredcos_cap_v2; AnimateDiff's linear latent schedule leaves signal at
    t = T for pixels), DDIM with 20 "trailing" steps (the first at t = 999), x_0 clipped to
    [-2, 2]. Trained with 10% empty prompts, so classifier-free guidance is there, but the default
    is 1 (none, and half the cost): at step 1800 the eval-prompt total reward was 0.765 at
    guidance 1, 0.755 at 2, 0.371 at 3 and 0.039 at 5 (guidance drives pixels into saturation).
The shipped toy/teacher/ (3 MB, fp16 EMA weights + config.json recording command, seed, steps and
minutes): `OMP_NUM_THREADS=1 python toy/shapes.py train` with seed 0, 5022 steps of 8 clips in 75
min on one core shared with other jobs. `evaluate` on the 18 held-out prompts x 4 seeds: total
0.825 (ground truth 0.958, untrained 0.000); colours and shapes are right, motion direction on
held-out combinations is its weakest point.
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import models  # noqa: E402  (the repository root, also when run as `python toy/shapes.py`)

# ---------------------------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------------------------

SIZE = 16                      # frames are SIZE x SIZE
NUM_FRAMES = 8
SPEED = 1.0                    # px per frame
SUPERSAMPLE = 4                # anti-aliasing: SUPERSAMPLE^2 samples per pixel
COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0),
           "yellow": (1.0, 1.0, 0.0), "magenta": (1.0, 0.0, 1.0), "cyan": (0.0, 1.0, 1.0)}
SHAPES = ("circle", "square", "triangle")
MOTIONS = {"moving left": (-1.0, 0.0), "moving right": (1.0, 0.0), "moving up": (0.0, -1.0),
           "moving down": (0.0, 1.0), "staying still": (0.0, 0.0)}
EXTENT = 3.5                   # every shape lies within EXTENT px of its centre
VOCAB = ["<bos>", "<eos>", "<unk>", "a", *COLOURS, *SHAPES, "moving", "staying",
         "left", "right", "up", "down", "still"]
MAX_TOKENS = 8


def prompt_text(colour, shape, motion):
    return f"a {colour} {shape} {motion}"


def all_prompts():
    """The 90 prompts of the grammar, in a fixed order (colour, shape, motion)."""
    return [prompt_text(c, s, m) for c in COLOURS for s in SHAPES for m in MOTIONS]


def split_prompts():
    """(train, eval): a fifth of the combinations held out, a Latin-square-like choice so that
    every colour, shape and motion occurs in both halves."""
    train, held_out = [], []
    for ci, c in enumerate(COLOURS):
        for si, s in enumerate(SHAPES):
            for mi, m in enumerate(MOTIONS):
                (held_out if (ci + 2 * si + mi) % 5 == 0 else train).append(prompt_text(c, s, m))
    return train, held_out


def parse_prompt(prompt):
    """'a red circle moving left' -> ('red', 'circle', 'moving left'); None if not in the grammar."""
    words = prompt.lower().split()
    if len(words) != 5 or words[0] != "a" or words[1] not in COLOURS or words[2] not in SHAPES:
        return None
    motion = " ".join(words[3:])
    return (words[1], words[2], motion) if motion in MOTIONS else None


def is_static(prompt):
    parsed = parse_prompt(prompt)
    return parsed is not None and parsed[2] == "staying still"


def _inside(shape, dx, dy):
    """Point-in-shape for offsets (dx, dy) from the shape's centroid (arrays)."""
    if shape == "circle":
        return dx ** 2 + dy ** 2 <= 3.3 ** 2
    if shape == "square":
        return (np.abs(dx) <= 2.9) & (np.abs(dy) <= 2.9)
    if shape == "triangle":        # apex up; vertices (0, -3.5), (+-3.5, 1.75): centroid at 0
        return (dy <= 1.75) & (np.abs(dx) <= (dy + 3.5) / 5.25 * 3.5)
    raise ValueError(f"unknown shape {shape!r}: choose one of {', '.join(SHAPES)}")


def coverage(shape, cx, cy, size=SIZE):
    """Anti-aliased coverage (size, size) in [0, 1] of `shape` centred at (cx, cy), in pixel units
    (pixel (i, j) spans x in [j, j+1), y in [i, i+1))."""
    s = (np.arange(size * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    inside = _inside(shape, s[None, :] - cx, s[:, None] - cy).astype(np.float32)
    return inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def trajectory(motion, seed, num_frames=NUM_FRAMES, size=SIZE):
    """Centres (num_frames, 2) of a clip: a seeded start such that the shape stays inside."""
    rng = np.random.default_rng(seed)
    d = np.array(MOTIONS[motion]) * SPEED
    travel = d * (num_frames - 1)
    lo = EXTENT + np.maximum(0.0, -travel)
    hi = size - EXTENT - np.maximum(0.0, travel)
    start = lo + rng.random(2) * (hi - lo)
    return start[None, :] + np.arange(num_frames)[:, None] * d[None, :]


def render(prompt, seed, num_frames=NUM_FRAMES, size=SIZE):
    """The ground-truth clip of `prompt`: uint8 (num_frames, size, size, 3)."""
    parsed = parse_prompt(prompt)
    if parsed is None:
        raise models.UserError(f"prompt {prompt!r} is not in the shapes grammar; write "
                               f"'a COLOUR SHAPE MOTION' with COLOUR in {', '.join(COLOURS)}, "
                               f"SHAPE in {', '.join(SHAPES)}, MOTION in {', '.join(MOTIONS)}")
    colour, shape, motion = parsed
    frames = np.zeros((num_frames, size, size, 3), np.float32)
    for f, (cx, cy) in enumerate(trajectory(motion, seed, num_frames, size)):
        frames[f] = coverage(shape, cx, cy, size)[:, :, None] * np.array(COLOURS[colour], np.float32)
    return (frames * 255).round().astype(np.uint8)


def render_batch(prompts, seeds, num_frames=NUM_FRAMES, size=SIZE):
    return np.stack([render(p, s, num_frames, size) for p, s in zip(prompts, seeds)])


def to_x0(frames):
    """uint8 (B, F, H, W, 3) -> the model's clean sample x_0 (B, 3, F, H, W) = frames / 127.5, in
    [0, 2]: black, the background, is 0 (models.ToyModel.decode inverts it)."""
    return torch.from_numpy(frames).float().div(127.5).permute(0, 4, 1, 2, 3).contiguous()


# ---------------------------------------------------------------------------------------------
# The exact reward (the module docstring gives each dimension in one screen)
# ---------------------------------------------------------------------------------------------

DIMENSIONS = ("visual_quality", "temporal_consistency", "dynamic_degree", "text_alignment")
PALETTE = np.array(list(COLOURS.values()), np.float32)      # (6, 3)
WINDOW = EXTENT + 1.5          # px around the centre that belong to the object (and its edge)
MIN_FIT = 0.5                  # below this soft IoU with every template, a frame holds no object


def _unit(x):
    return float(np.clip(x, 0.0, 1.0))


def analyse_frame(frame):
    """One uint8 frame (H, W, 3) -> None if it holds no object, else a dict: centre (x, y), area, colour
    (RGB in [0, 1]), shape (the best template), fit, clean, purity (see the module docstring)."""
    rgb = frame.astype(np.float32) / 255
    c = rgb.max(axis=-1)                                            # coverage (H, W)
    mask = c > 0.5
    if not mask.any():
        return None
    h, w = c.shape
    ys, xs = np.mgrid[0:h, 0:w] + 0.5                               # pixel centres
    cx, cy = xs[mask].mean(), ys[mask].mean()                       # rough centre, then c-weighted
    near = (xs - cx) ** 2 + (ys - cy) ** 2 <= WINDOW ** 2
    area = c[near].sum()
    cx, cy = (c * xs)[near].sum() / area, (c * ys)[near].sum() / area
    near = (xs - cx) ** 2 + (ys - cy) ** 2 <= WINDOW ** 2
    colour = rgb[near].sum(axis=0) / c[near].sum()
    if h != w:
        raise ValueError(f"frames must be square, got {h}x{w}")
    fits = {}
    for shape in SHAPES:
        template = coverage(shape, cx, cy, h)
        fits[shape] = np.minimum(c, template).sum() / np.maximum(c, template).sum()
    shape = max(fits, key=fits.get)
    if fits[shape] < MIN_FIT:
        return None
    far = ~near
    clean = (c[far] < 0.1).mean() if far.any() else 1.0
    pixel_colour = rgb[mask] / c[mask][:, None]                     # (N, 3): what the object is painted with
    off_palette = np.linalg.norm(pixel_colour[:, None] - PALETTE[None], axis=-1).min(axis=1).mean()
    return dict(centre=np.array([cx, cy]), area=float(c[near].sum()), colour=colour, shape=shape,
                fit=float(fits[shape]), clean=float(clean), purity=_unit(1 - off_palette / 0.5))


def nearest_colour(colour):
    return list(COLOURS)[int(np.linalg.norm(PALETTE - colour[None], axis=1).argmin())]


def score_clip(frames, prompt, static=None):
    """The four dimensions for one clip uint8 (F, H, W, 3) and its prompt (module docstring)."""
    parsed = parse_prompt(prompt)
    if parsed is None:
        raise models.UserError(f"the shapes reward needs prompts from its grammar, got {prompt!r}; "
                               "use toy/shapes.py's prompts (split_prompts())")
    colour, shape, motion = parsed
    static = (motion == "staying still") if static is None else bool(static)
    found = [(f, a) for f, a in enumerate(analyse_frame(fr) for fr in frames) if a is not None]
    num_frames = len(frames)
    presence = len(found) / num_frames
    if not found:
        return {k: 0.0 for k in DIMENSIONS}
    frame_ids = np.array([f for f, _ in found], np.float32)
    a = [x for _, x in found]
    centres = np.stack([x["centre"] for x in a])                    # (N, 2)
    if len(a) >= 2:                                                 # least squares: centre = c0 + v f
        design = np.stack([np.ones_like(frame_ids), frame_ids], axis=1)
        coef, *_ = np.linalg.lstsq(design, centres, rcond=None)
        v = coef[1]
        jitter = np.sqrt(((design @ coef - centres) ** 2).sum(axis=1).mean())
    else:
        v, jitter = np.zeros(2), 0.0
    speed = np.linalg.norm(v)
    # visual quality: frame-level, missing frames count 0
    visual_quality = sum(np.mean([x["fit"], x["clean"], x["purity"]]) for x in a) / num_frames
    # temporal consistency
    colours = np.stack([x["colour"] for x in a])
    colour_stability = _unit(1 - np.linalg.norm(colours - np.median(colours, axis=0), axis=1).mean() / 0.5)
    areas = np.array([x["area"] for x in a])
    size_stability = _unit(1 - areas.std() / areas.mean() / 0.5)
    shapes_seen = [x["shape"] for x in a]
    shape_stability = max(shapes_seen.count(s) for s in SHAPES) / len(a)
    smoothness = _unit(1 - jitter / 1.0)
    temporal_consistency = presence * np.mean([colour_stability, size_stability, shape_stability, smoothness])
    # dynamic degree, with the revised rule for static prompts (Sec. 4.1)
    dynamic_degree = 0.0 if static else presence * _unit(speed / SPEED)
    # text alignment
    colour_match = sum(nearest_colour(x["colour"]) == colour for x in a) / num_frames
    shape_match = sum(s == shape for s in shapes_seen) / num_frames
    d = np.array(MOTIONS[motion])
    if motion == "staying still":
        motion_match = _unit(1 - speed / (SPEED / 2))
    else:
        motion_match = max(0.0, float(v @ d) / (speed + 1e-8)) * _unit(speed / (SPEED / 2))
    text_alignment = np.mean([colour_match, shape_match, presence * motion_match])
    return dict(visual_quality=float(visual_quality), temporal_consistency=float(temporal_consistency),
                dynamic_degree=float(dynamic_degree), text_alignment=float(text_alignment))


def reward(videos, prompts, static=None):
    """The shapes reward (evaluate.py registers it as "shapes"): uint8 videos (B, F, H, W, 3) and
    their prompts -> {dimension: (B,) float in [0, 1]} for DIMENSIONS plus "total" (their mean).
    `static`: optional bools for the revised dynamic score; default: the grammar's "staying still"."""
    videos = np.asarray(videos)
    if videos.ndim != 5 or videos.shape[-1] != 3 or videos.dtype != np.uint8:
        raise ValueError(f"videos must be uint8 (B, F, H, W, 3), got {videos.dtype} {videos.shape}")
    if len(prompts) != len(videos):
        raise ValueError(f"{len(videos)} videos but {len(prompts)} prompts")
    static = [None] * len(videos) if static is None else list(static)
    rows = [score_clip(v, p, s) for v, p, s in zip(videos, prompts, static)]
    out = {k: np.array([r[k] for r in rows], np.float64) for k in DIMENSIONS}
    out["total"] = np.mean([out[k] for k in DIMENSIONS], axis=0)
    return out


# ---------------------------------------------------------------------------------------------
# The teacher: its configuration (models.py builds it), training, sampling
# ---------------------------------------------------------------------------------------------

TEACHER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "teacher")
TRAIN_DIR = "runs/shapes_teacher"       # resume state and sample strips (not shipped)

# Profiled on 1 core (batch 16, 8 frames, 16x16): 2 levels with spatial attention at 16x16 cost
# 2.1-4.2 s/step, 40% of it CPU attention over 256 tokens; cross-attention only at 8x8 and 4x4
# with 16/32/64 channels costs 1.1 s/step. Motion modules at every level (10 blocks to prune).
TOY_CONFIG = {
    "unet": dict(
        sample_size=SIZE, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(16, 32, 64), norm_num_groups=8, cross_attention_dim=32,
        num_attention_heads=4, motion_num_attention_heads=4, motion_max_seq_length=16,
        use_motion_mid_block=True,
        down_block_types=("DownBlockMotion", "CrossAttnDownBlockMotion", "CrossAttnDownBlockMotion"),
        up_block_types=("CrossAttnUpBlockMotion", "CrossAttnUpBlockMotion", "UpBlockMotion")),
    "text_encoder": dict(
        vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, bos_token_id=0, eos_token_id=1,
        pad_token_id=1),
    "scheduler": dict(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
        clip_sample=True, clip_sample_range=2.0, set_alpha_to_one=True, steps_offset=0,
        timestep_spacing="trailing"),
    "unet_predicts": "v_prediction",    # models.ToyModel.noise_pred turns it into eps
    "vocab": VOCAB,
    "max_tokens": MAX_TOKENS,
}   # sampling defaults (8 frames, 16x16, 20 DDIM steps, guidance 1): models.DEFAULTS["toy"]


def ema_update(ema, params, decay):
    """EMA of the weights: ema <- decay * ema + (1 - decay) * theta."""
    with torch.no_grad():
        for e, p in zip(ema, params):
            e.mul_(decay).add_(p.detach(), alpha=1 - decay)


def lr_at(step, lr, warmup, total):
    """Linear warm-up, then cosine decay to lr / 10 at `total`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def frame_strip(videos, scale=4):
    """uint8 (B, F, H, W, 3) -> one PNG-able image: a row per video, frames left to right."""
    b, f, h, w, _ = videos.shape
    grid = np.full((b * (h + 1), f * (w + 1), 3), 64, np.uint8)
    for i in range(b):
        for j in range(f):
            grid[i * (h + 1):i * (h + 1) + h, j * (w + 1):j * (w + 1) + w] = videos[i, j]
    return grid.repeat(scale, 0).repeat(scale, 1)


def save_png(path, image):
    import imageio.v2 as imageio
    with models.atomic_file(path) as tmp:
        imageio.imwrite(tmp, image)


def train_teacher(args):
    """Algorithm 1 of DDPM on the renderer's clips with the v-objective: x_t = sqrt(a_t) x_0 +
    sqrt(1 - a_t) eps, loss ||v - v_theta(x_t, t, c)||^2 with v = sqrt(a_t) eps - sqrt(1 - a_t) x_0
    (= (1 + SNR_t) ||eps - eps_theta||^2 for the eps the model exposes); UNet and text encoder
    trained jointly, their EMA shipped."""
    from safetensors.torch import save_file
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = models.toy_model(TOY_CONFIG, state=None, seed=args.seed)
    unet, text_encoder = model.unet, model.pipe.text_encoder
    named = [("unet." + n, p) for n, p in unet.named_parameters()] + \
            [("text_encoder." + n, p) for n, p in text_encoder.named_parameters()]
    params = [p for _, p in named]
    for p in params:
        p.requires_grad_(True)
    unet.train(), text_encoder.train()
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    ema = [p.detach().clone() for p in params]
    step, elapsed = 0, 0.0
    state_path = os.path.join(args.work, "state.pt")
    if args.resume and os.path.isfile(state_path):
        state = torch.load(state_path, weights_only=False)
        with torch.no_grad():
            for p, v in zip(params, state["params"]):
                p.copy_(v)
            for e, v in zip(ema, state["ema"]):
                e.copy_(v)
        opt.load_state_dict(state["opt"])
        step, elapsed = state["step"], state["elapsed"]
        rng = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed at step {step} ({elapsed / 60:.1f} min)", flush=True)
    train_prompts, eval_prompts = split_prompts()
    num_t = model.num_train_timesteps
    t0, losses = time.time() - elapsed, []

    def checkpoint():
        ema_state = {n: e.half().contiguous() for (n, _), e in zip(named, ema)}
        config = dict(TOY_CONFIG, train=dict(
            command=" ".join(["python", "toy/shapes.py"] + sys.argv[1:]), seed=args.seed, step=step,
            minutes=round((time.time() - t0) / 60, 1), batch=args.batch, lr=args.lr,
            ema=args.ema, threads=torch.get_num_threads(), train_prompts=len(train_prompts)))
        with models.atomic_dir(args.out) as tmp:
            save_file(ema_state, os.path.join(tmp, "model.safetensors"))
            models.write_json(os.path.join(tmp, "config.json"), config)
        with models.atomic_file(state_path) as tmp:
            torch.save(dict(params=[p.detach() for p in params], ema=ema, opt=opt.state_dict(), step=step,
                            elapsed=time.time() - t0, rng=rng, torch_rng=torch.get_rng_state()), tmp)
        teacher = models.load("toy", path=args.out, device="cpu")
        prompts = [eval_prompts[i] for i in (0, 8)] + [train_prompts[i] for i in (20, 60)]
        videos, _ = teacher.generate(prompts, list(range(len(prompts))))
        truth = render_batch(prompts, list(range(len(prompts))))
        save_png(os.path.join(args.work, f"samples_{step:06d}.png"),
                 frame_strip(np.concatenate([videos, truth], axis=2)))

    os.makedirs(args.work, exist_ok=True)
    while step < args.steps and (time.time() - t0) < args.minutes * 60:
        idx = rng.integers(0, len(train_prompts), args.batch)
        prompts = [train_prompts[i] for i in idx]
        x_0 = to_x0(render_batch(prompts, rng.integers(0, 2 ** 31, args.batch)))   # (B, 3, F, H, W)
        cond = [("" if u < args.p_uncond else p) for p, u in zip(prompts, rng.random(args.batch))]
        eps = torch.randn_like(x_0)
        t = torch.randint(0, num_t, (args.batch,))
        x_t = model.add_noise(x_0, eps, t)
        embeds = text_encoder(model.tokenize(cond)).last_hidden_state         # (B, L, D)
        a_t = model.scheduler.alphas_cumprod[t].reshape(-1, 1, 1, 1, 1)
        v = a_t.sqrt() * eps - (1 - a_t).sqrt() * x_0
        v_pred = unet(x_t, t, encoder_hidden_states=embeds.repeat_interleave(x_0.shape[2], 0)).sample
        loss = (v_pred - v).pow(2).mean()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.lr, 200, args.steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        ema_update(ema, params, min(args.ema, (1 + step) / (10 + step)))
        losses.append(loss.item())
        if step % 50 == 0:
            print(f"step {step} loss {np.mean(losses):.4f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{(time.time() - t0) / 60:.1f} min", flush=True)
            losses = []
        if step % args.save_every == 0:
            unet.eval(), text_encoder.eval()
            checkpoint()
            unet.train(), text_encoder.train()
    unet.eval(), text_encoder.eval()
    checkpoint()
    print(f"done: step {step}, {(time.time() - t0) / 60:.1f} min, wrote {args.out}", flush=True)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def evaluate_models(prompts, num_seeds, path=None):
    """Mean reward per dimension of ground truth, the teacher and an untrained model (same config,
    seeded random weights), on every prompt x seeds 0..num_seeds-1. Returns {row: {dim: mean}}."""
    prompts_x = [p for p in prompts for _ in range(num_seeds)]
    seeds = [s for _ in prompts for s in range(num_seeds)]
    teacher = models.load("toy", path=path, device="cpu")
    untrained = models.toy_model(models.read_json(os.path.join(path or TEACHER_DIR, "config.json")))
    table = {}
    for name, make in (("ground truth", lambda: render_batch(prompts_x, seeds)),
                       ("teacher", lambda: teacher.generate(prompts_x, seeds)[0]),
                       ("untrained", lambda: untrained.generate(prompts_x, seeds)[0])):
        t0 = time.time()
        scores = reward(make(), prompts_x)
        table[name] = {k: float(v.mean()) for k, v in scores.items()}
        table[name]["seconds"] = round(time.time() - t0, 1)
    return table


def format_table(table, caption):
    keys = list(DIMENSIONS) + ["total"]
    lines = [f"| {caption} | " + " | ".join(keys) + " |", "| --- " * (len(keys) + 1) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="The shapes world: train its teacher, sample, evaluate.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the teacher on rendered clips; writes toy/teacher/")
    t.add_argument("--steps", type=int, default=6000, help="optimizer steps (default 6000)")
    t.add_argument("--minutes", type=float, default=75, help="stop after this wall time (default 75)")
    t.add_argument("--batch", type=int, default=8, help="clips per step (default 8)")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--ema", type=float, default=0.999, help="EMA decay of the shipped weights")
    t.add_argument("--p-uncond", type=float, default=0.1, help="empty-prompt rate (for guidance)")
    t.add_argument("--save-every", type=int, default=250)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true", help="continue from WORK/state.pt")
    t.add_argument("--out", default=TEACHER_DIR, help="where the teacher goes (default toy/teacher)")
    t.add_argument("--work", default=TRAIN_DIR, help=f"resume state and sample strips (default {TRAIN_DIR})")
    e = sub.add_parser("evaluate", help="reward table: ground truth vs teacher vs untrained on eval prompts")
    e.add_argument("--path", default=None, help="teacher directory (default toy/teacher)")
    e.add_argument("--seeds", type=int, default=4, help="clips per prompt (default 4)")
    e.add_argument("--split", default="eval", choices=["eval", "train"])
    e.add_argument("--out", default=None, help="also write the table as JSON here")
    s = sub.add_parser("sample", help="teacher clips beside ground truth: a gif and a png strip")
    s.add_argument("--path", default=None, help="teacher directory (default toy/teacher)")
    s.add_argument("--out", default="docs/shapes", help="output folder (default docs/shapes)")
    s.add_argument("--num", type=int, default=6, help="eval prompts to show (default 6)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 1)))
    if args.command == "train":
        train_teacher(args)
        return
    _, eval_prompts = split_prompts()
    if args.command == "sample":
        # every colour, the shapes in turn (eval_prompts holds 3 per colour, one per shape)
        prompts = [eval_prompts[(3 * i + i % 3) % len(eval_prompts)] for i in range(args.num)]
        seeds = list(range(len(prompts)))
        teacher = models.load("toy", path=args.path, device="cpu")
        videos, _ = teacher.generate(prompts, seeds)
        truth = render_batch(prompts, seeds)
        pairs = np.concatenate([videos, np.full_like(videos[:, :, :, :1], 64), truth], axis=3)  # side by side
        save_png(os.path.join(args.out, "teacher_vs_truth.png"), frame_strip(pairs))
        grid = np.concatenate(list(np.pad(pairs, ((0, 0), (0, 0), (0, 1), (0, 0), (0, 0)),
                                          constant_values=64)), axis=1)        # (F, rows, W, 3)
        models.save_video(os.path.join(args.out, "teacher_vs_truth.gif"),
                          grid.repeat(4, 1).repeat(4, 2), teacher.defaults["fps"])
        for p in prompts:
            print(p)
        print(f"wrote {args.out}/teacher_vs_truth.gif and .png (left: teacher, right: ground truth)")
        return
    prompts = (eval_prompts if args.split == "eval" else split_prompts()[0])
    table = evaluate_models(prompts, args.seeds, args.path)
    print(format_table(table, f"{len(prompts)} {args.split} prompts x {args.seeds} seeds"))
    if args.out:
        models.write_json(args.out, table)


if __name__ == "__main__":
    models.run_cli(main)
