"""The shapes world: a tiny text-to-video world and its exact reward (the toy stand-in for Sec. 4.1).

Moving coloured shapes on black, so the whole V.I.P. loop (prune -> curate -> ReDPO -> evaluate)
runs for real on a laptop CPU with a teacher that knows something (toy/shapes_model.py, trained by
toy/shapes.py) and a reward that is exact (registered in rewards.py as `shapes`).

    python toy/shapes.py evaluate                   # reward table: ground truth vs teacher vs untrained
    python vip_loop.py                              # V.I.P. on this world (the default model, toy)
    python -m models --model toy --prompt "a red circle moving left"   # the teacher's clip of a prompt

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
"""
from infra.cli import UserError

import numpy as np
import torch

from analysis.dimensions import DIMENSIONS

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
        raise UserError(f"prompt {prompt!r} is not in the shapes grammar; write "
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
    [0, 2]: black, the background, is 0 (shapes_model.ToyModel.decode inverts it)."""
    return torch.from_numpy(frames).float().div(127.5).permute(0, 4, 1, 2, 3).contiguous()


# ---------------------------------------------------------------------------------------------
# The exact reward (the module docstring gives each dimension in one screen)
# ---------------------------------------------------------------------------------------------

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
        raise UserError(f"the shapes reward needs prompts from its grammar, got {prompt!r}; "
                        "use toy/shapes_world.py's prompts (split_prompts())")
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
    """The shapes reward (rewards.py registers it as "shapes"): uint8 videos (B, F, H, W, 3) and
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
