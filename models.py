"""Which text-to-video models exist, and how to load, run and cut them (DESIGN.md, "Models").

The one file that knows diffusers' class names. Every other script goes through `load(name)`:

    python models.py --model tiny --prompt "a red car driving on a road" --out samples
    python models.py --model animatediff --prompt "a corgi running on the beach" --out samples
    python models.py --model tiny-videocrafter2 --prompt "a red car driving on a road" --out samples
    python models.py --model videocrafter2 --path checkpoints/videocrafter2 --prompt "a corgi running" --out samples

A loaded model offers: `generate(prompts, seeds)` -> (uint8 frames (B, F, H, W, 3), clean latents
(B, C, F, h, w)); `noise_pred(x_t, t, prompts_or_embeds)`; `add_noise(x_0, eps, t)`; `blocks()`, the
prunable blocks (AnimateDiff: the 21 motion modules, paper Sec. 4.1; VideoCrafter2: the 63 residual
layers of its U-Net, `videocrafter2_block_paths`); `skip(names)`, which turns
blocks into identity without copying the model (Sec. 3.2's importance search); `remove(names)`,
which deletes them structurally; `save(dir)`, which `load(name, path=dir)` reads back; and
`trainable_parameters()` (AnimateDiff: the motion modules; the spatial SD 1.5 UNet stays frozen;
VideoCrafter2: the whole UNet).

Below the models: the few torchrun and file helpers that every script shares.
"""
import argparse
import atexit
import contextlib
import functools
import json
import os
import shutil
import sys
import tempfile
from collections import OrderedDict

import torch
import torch.distributed as dist
from torch import nn


class UserError(Exception):
    """Bad input: the CLI prints the message on one line and exits with status 2."""


# ---------------------------------------------------------------------------------------------
# Model configurations
# ---------------------------------------------------------------------------------------------

ANIMATEDIFF_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
ANIMATEDIFF_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"

# guoyww/animatediff-motion-adapter-v1-5-2's config.json: 21 motion modules, 453,209,280 parameters.
ANIMATEDIFF_ADAPTER_CONFIG = dict(
    block_out_channels=(320, 640, 1280, 1280), motion_layers_per_block=2,
    motion_mid_block_layers_per_block=1, motion_num_attention_heads=8,
    motion_norm_num_groups=32, motion_max_seq_length=32, use_motion_mid_block=True)

# SD 1.5's unet/config.json (the frozen spatial backbone of AnimateDiff).
SD15_UNET_CONFIG = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)

# AnimateDiff's DDIM settings (its inference config): linear betas 0.00085-0.012, no clipping.
ANIMATEDIFF_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
    clip_sample=False, timestep_spacing="linspace", steps_offset=1, set_alpha_to_one=False)

# The `tiny` model: the same AnimateDiff classes at toy size (7 motion modules), random weights.
TINY_UNET_CONFIG = dict(
    sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
    cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
TINY_ADAPTER_CONFIG = dict(
    block_out_channels=(32, 64), motion_layers_per_block=1, motion_mid_block_layers_per_block=1,
    motion_num_attention_heads=4, motion_norm_num_groups=32, motion_max_seq_length=32,
    use_motion_mid_block=True)
TINY_VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    layers_per_block=1, norm_num_groups=32, sample_size=32)
TINY_TEXT_CONFIG = dict(
    vocab_size=514, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
    pad_token_id=1)
TINY_SEED = 0

# What `generate` does when not told otherwise, per model.
DEFAULTS = {
    "animatediff": dict(num_frames=16, steps=25, guidance=7.5, height=512, width=512, fps=8),
    "tiny": dict(num_frames=8, steps=4, guidance=7.5, height=32, width=32, fps=4),
    "toy": dict(num_frames=8, steps=20, guidance=1.0, height=16, width=16, fps=4),
    # VideoCrafter's scripts/run_text2video.sh: 16 frames at 320x512, DDIM 50 steps with eta 1,
    # guidance 12, fps condition 28 (`fps_cond`); written out at 10 fps (inference.py's savefps).
    "videocrafter2": dict(num_frames=16, steps=50, guidance=12.0, height=320, width=512, fps=10,
                          eta=1.0, fps_cond=28),
    "tiny-videocrafter2": dict(num_frames=8, steps=4, guidance=12.0, height=32, width=32, fps=4,
                               eta=1.0, fps_cond=28),
}

STUDENT_FILE = "vip_model.json"       # marks a directory written by VideoModel.save
STUDENT_WEIGHTS = "trainable.safetensors"


# ---------------------------------------------------------------------------------------------
# The model object
# ---------------------------------------------------------------------------------------------

class RemovedBlock(nn.Module):
    """Stands where a pruned residual block was. diffusers indexes its module lists, so the slot
    stays; the block was residual (out = x + f(x)), so without f it passes x through."""

    def forward(self, hidden_states, *args, **kwargs):
        return _identity(hidden_states, **kwargs)


def _identity(hidden_states, *args, **kwargs):
    """A residual block without its branch. diffusers' transformers are called with
    return_dict=False and indexed with [0], so for them the identity returns a 1-tuple."""
    return (hidden_states,) if kwargs.get("return_dict", True) is False else hidden_states


class VideoModel:
    """A text-to-video diffusion pipeline with the surface V.I.P. needs (see the module docstring).

    `pipe` is a diffusers pipeline whose `unet` holds the prunable blocks; `source` is what
    `save` records so that `load` can rebuild the same base before applying the saved weights.
    """

    def __init__(self, name, pipe, source, block_paths, trainable, defaults):
        self.name = name
        self.pipe = pipe
        self.source = source              # {"path": ..., "adapter": ...}: how to rebuild the base
        self.block_paths = list(block_paths)
        self.trainable = trainable        # predicate on a UNet parameter name
        self.defaults = dict(defaults)
        self.removed = []
        for p in self.pipe.unet.parameters():
            p.requires_grad_(False)       # redpo.py turns on trainable_parameters() of the student
        for m in (self.pipe.vae, self.pipe.text_encoder):
            if m is not None:
                m.requires_grad_(False)
        self.pipe.set_progress_bar_config(disable=True)

    # --- the pieces -----------------------------------------------------------------------
    @property
    def unet(self):
        return self.pipe.unet

    @property
    def scheduler(self):
        return self.pipe.scheduler

    @property
    def device(self):
        return self.pipe.unet.device

    def to(self, device):
        self.pipe.to(device)
        return self

    # --- running --------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, prompts):
        """Prompts -> text-encoder hidden states (B, L, D) (the same as the pipeline's)."""
        embeds, _ = self.pipe.encode_prompt(list(prompts), self.device, 1, False)
        return embeds

    @torch.no_grad()
    def generate(self, prompts, seeds, num_frames=None, steps=None, guidance=None,
                 height=None, width=None):
        """One video per (prompt, seed). Returns uint8 frames (B, F, H, W, 3) as numpy and the
        final clean latents (B, C, F, h, w) as a float32 CPU tensor. Each video draws its noise
        from its own seeded CPU generator, so a video does not depend on its batch."""
        d = self.defaults
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        latents = self.pipe(
            prompt=list(prompts), num_frames=num_frames or d["num_frames"],
            num_inference_steps=steps or d["steps"],
            guidance_scale=d["guidance"] if guidance is None else guidance,
            height=height or d["height"], width=width or d["width"],
            generator=generators, output_type="latent").frames  # (B, C, F, h, w)
        return self.decode(latents), latents.float().cpu()

    @torch.no_grad()
    def decode(self, latents):
        """Clean latents (B, C, F, h, w) -> uint8 frames (B, F, H, W, 3)."""
        video = self.pipe.decode_latents(latents.to(self.device, self.pipe.vae.dtype))  # (B, 3, F, H, W) in [-1, 1]
        video = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return video.permute(0, 2, 3, 4, 1).cpu().numpy()

    def noise_pred(self, x_t, t, prompts_or_embeds, unet=None):
        """eps_theta(x_t, t, c) for training. x_t: (B, C, F, h, w); t: (B,) or int.
        UNetMotionModel folds frames into the batch, so the text embeddings repeat once per frame.
        `unet`: call this wrapper of self.unet instead (redpo.py passes its DDP module)."""
        if isinstance(prompts_or_embeds, torch.Tensor):
            embeds = prompts_or_embeds
        else:
            embeds = self.encode(prompts_or_embeds)
        num_frames = x_t.shape[2]
        embeds = embeds.to(x_t.device, x_t.dtype).repeat_interleave(num_frames, dim=0)  # (B*F, L, D)
        return (unet or self.unet)(x_t, t, encoder_hidden_states=embeds).sample

    def add_noise(self, x_0, eps, t):
        """The forward process q(x_t | x_0) of this model's training: x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps."""
        return self.scheduler.add_noise(x_0, eps, t)

    @property
    def num_train_timesteps(self):
        return self.scheduler.config.num_train_timesteps

    # --- pruning --------------------------------------------------------------------------
    def blocks(self):
        """Ordered dict name -> module of the prunable blocks still in the model."""
        return OrderedDict((p, self.unet.get_submodule(p)) for p in self.block_paths
                           if p not in self.removed)

    def _check_names(self, names):
        blocks = self.blocks()
        for n in names:
            if n not in blocks:
                state = "already removed" if n in self.removed else "not a block of this model"
                raise UserError(f"block {n!r} is {state}; valid blocks: {', '.join(blocks)}")
        return blocks

    @contextlib.contextmanager
    def skip(self, names):
        """Turn `names` into identity inside the `with` (no copy: an instance-level forward
        shadows the class's), and restore them exactly on exit."""
        blocks = self._check_names(names)
        for n in names:
            blocks[n].forward = _identity
        try:
            yield self
        finally:
            for n in names:
                del blocks[n].forward

    def remove(self, names):
        """Delete blocks structurally: their parameters leave the model for good."""
        self._check_names(names)
        for n in names:
            parent_path, _, child = n.rpartition(".")   # "down_blocks.0.attentions", "1" (or "", "transformer_in")
            setattr(self.unet.get_submodule(parent_path), child, RemovedBlock())
            self.removed.append(n)

    # --- training -------------------------------------------------------------------------
    def trainable_named_parameters(self):
        return [(n, p) for n, p in self.unet.named_parameters() if self.trainable(n)]

    def trainable_parameters(self):
        return [p for _, p in self.trainable_named_parameters()]

    def num_parameters(self):
        """Parameter counts: the whole pipeline, the denoiser, and its trainable (prunable) part."""
        count = lambda ps: sum(p.numel() for p in ps)
        parts = [self.pipe.unet, self.pipe.vae, self.pipe.text_encoder]
        return {"total": sum(count(m.parameters()) for m in parts if m is not None),
                "unet": count(self.unet.parameters()),
                "trainable": count(self.trainable_parameters())}

    def save(self, out_dir):
        """Write what rebuilds this model: the source, the removed blocks and the trainable
        weights (the frozen rest comes from the source). Atomic: a temp folder, then rename."""
        from safetensors.torch import save_file
        meta = {"model": self.name, "source": self.source, "removed": self.removed,
                "num_parameters": self.num_parameters()}
        with atomic_dir(out_dir) as tmp:
            state = {n: p.detach().float().cpu().contiguous() for n, p in self.trainable_named_parameters()}
            save_file(state, os.path.join(tmp, STUDENT_WEIGHTS))
            write_json(os.path.join(tmp, STUDENT_FILE), meta)

    def load_saved(self, path, meta):
        self.remove(meta["removed"])
        return self.load_weights(path)

    def load_weights(self, path):
        """Copy the trainable weights saved in `path` (by `save`) into this model."""
        from safetensors.torch import load_file
        meta = read_json(os.path.join(path, STUDENT_FILE))
        state = load_file(os.path.join(path, STUDENT_WEIGHTS))
        expected = {n for n, _ in self.trainable_named_parameters()}
        if set(state) != expected:
            raise UserError(f"{path}: its weights do not match a {self.name} model with blocks "
                            f"{meta['removed']} removed; it was written by another version or model")
        params = dict(self.trainable_named_parameters())
        with torch.no_grad():
            for n, v in state.items():
                params[n].copy_(v)
        return self


# ---------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------

def _motion_block_paths(unet):
    """The motion modules of a UNetMotionModel, in forward order (down, mid, up)."""
    paths = [n for n, m in unet.named_modules() if type(m).__name__ == "AnimateDiffTransformer3D"]
    order = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
    return sorted(paths, key=lambda p: (order[p.split(".")[0]], [int(s) for s in p.split(".") if s.isdigit()]))


def _is_motion_param(name):
    return ".motion_modules." in name


def _animatediff_pipe(path, adapter, dtype):
    """SD 1.5 (hub id or local dir in the hub layout) + a motion adapter -> AnimateDiffPipeline."""
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter
    for p in (path, adapter):
        if _looks_local(p) and not os.path.isdir(p):
            raise UserError(f"no such directory: {p}; pass a hub id or an existing directory")
    try:
        motion_adapter = MotionAdapter.from_pretrained(adapter, torch_dtype=dtype)
        pipe = AnimateDiffPipeline.from_pretrained(path, motion_adapter=motion_adapter, torch_dtype=dtype)
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"could not load AnimateDiff from {path!r} + {adapter!r} ({first}); "
                        "download the weights first or pass --path to a local copy") from e
    pipe.scheduler = DDIMScheduler(**ANIMATEDIFF_SCHEDULER)
    return pipe


def build_animatediff_unet(unet_config=SD15_UNET_CONFIG, adapter_config=ANIMATEDIFF_ADAPTER_CONFIG):
    """A UNetMotionModel with random weights from configs (the default: real-size AnimateDiff,
    SD 1.5 + v1-5-2 adapter). Under `with torch.device("meta"):` it allocates nothing."""
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
    return UNetMotionModel.from_unet2d(UNet2DConditionModel(**unet_config), MotionAdapter(**adapter_config))


def _looks_local(p):
    return p.startswith((".", "/", "~")) or os.path.exists(p) or p.count("/") != 1


def build_tiny_tokenizer():
    """A byte-level CLIP tokenizer with no merges: every character is one token (offline, in memory).
    Its 514 ids fit TINY_TEXT_CONFIG's vocabulary."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    alphabet = sorted(ByteLevel.alphabet())
    vocab.update({c: i + 2 for i, c in enumerate(alphabet)})
    vocab.update({c + "</w>": i + 2 + len(alphabet) for i, c in enumerate(alphabet)})
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_tiny_components():
    """The `tiny` model's parts, built in code from TINY_* configs with seeded random weights:
    the SD 1.5 layout (unet, vae, text_encoder, tokenizer, scheduler) plus a motion adapter."""
    from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    tokenizer = build_tiny_tokenizer()
    fork = torch.random.fork_rng()
    with fork:
        torch.manual_seed(TINY_SEED)
        parts = dict(
            unet=UNet2DConditionModel(**TINY_UNET_CONFIG),
            vae=AutoencoderKL(**TINY_VAE_CONFIG),
            text_encoder=CLIPTextModel(CLIPTextConfig(**TINY_TEXT_CONFIG)),
            tokenizer=tokenizer,
            scheduler=DDIMScheduler(**ANIMATEDIFF_SCHEDULER),
            motion_adapter=MotionAdapter(**TINY_ADAPTER_CONFIG))
    return parts


def save_tiny_hub_layout(out_dir):
    """Write the tiny model as a hub checkout would look: out_dir/base (SD 1.5 layout) and
    out_dir/adapter (a MotionAdapter). `load("animatediff", path=base, adapter=adapter)` reads it."""
    from diffusers import StableDiffusionPipeline
    parts = build_tiny_components()
    adapter = parts.pop("motion_adapter")
    sd = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                 requires_safety_checker=False)
    sd.save_pretrained(os.path.join(out_dir, "base"))
    adapter.save_pretrained(os.path.join(out_dir, "adapter"))
    return os.path.join(out_dir, "base"), os.path.join(out_dir, "adapter")


def _load_animatediff(name, path, adapter, dtype):
    path = path or ANIMATEDIFF_BASE
    adapter = adapter or ANIMATEDIFF_ADAPTER
    pipe = _animatediff_pipe(path, adapter, dtype)
    source = {"path": _abs_if_local(path), "adapter": _abs_if_local(adapter)}
    return VideoModel(name, pipe, source, _motion_block_paths(pipe.unet), _is_motion_param,
                      DEFAULTS["animatediff"])


def _load_tiny(name, path, adapter, dtype):
    from diffusers import AnimateDiffPipeline
    parts = build_tiny_components()
    pipe = AnimateDiffPipeline(**parts)
    if dtype is not None:
        pipe.to(dtype=dtype)
    return VideoModel(name, pipe, {"path": None, "adapter": None}, _motion_block_paths(pipe.unet),
                      _is_motion_param, DEFAULTS["tiny"])


# The `toy` model: toy/shapes.py's teacher (pixel-space AnimateDiff architecture, word tokenizer).
TOY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toy", "teacher")
TOY_CONFIG_FILE = "config.json"
TOY_WEIGHTS = "model.safetensors"


class ToyPipe:
    """The pieces of the toy model, with the few pipeline methods VideoModel uses (no VAE)."""

    vae_scale_factor = 1  # pixel space: the "latents" are the frames

    def __init__(self, unet, text_encoder, scheduler):
        self.unet, self.text_encoder, self.scheduler, self.vae = unet, text_encoder, scheduler, None

    def to(self, device=None, dtype=None):
        for m in (self.unet, self.text_encoder):
            m.to(device=device, dtype=dtype)
        return self

    def set_progress_bar_config(self, **kwargs):
        pass


class ToyModel(VideoModel):
    """VideoModel in pixel space: the "latents" are the frames / 127.5, in [0, 2] (B, 3, F, H, W),
    prompts are word-tokenized over the grammar's vocabulary, and sampling is DDIM with
    classifier-free guidance (the empty prompt is the unconditional one)."""

    def __init__(self, name, pipe, source, block_paths, trainable, defaults, vocab, max_tokens,
                 unet_predicts="epsilon"):
        super().__init__(name, pipe, source, block_paths, trainable, defaults)
        self.vocab = {w: i for i, w in enumerate(vocab)}
        self.max_tokens = max_tokens
        self.unet_predicts = unet_predicts       # "epsilon" or "v_prediction"; noise_pred gives eps

    def noise_pred(self, x_t, t, prompts_or_embeds, unet=None):
        """eps_theta(x_t, t, c), as for every model. The toy UNet predicts v (toy/shapes.py says why):
        v = sqrt(a_t) eps - sqrt(1 - a_t) x_0 and x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps give
        eps = sqrt(a_t) v + sqrt(1 - a_t) x_t."""
        out = super().noise_pred(x_t, t, prompts_or_embeds, unet)
        if self.unet_predicts == "epsilon":
            return out
        t = torch.as_tensor(t, device=x_t.device).reshape(-1)
        a_t = self.scheduler.alphas_cumprod.to(x_t.device)[t].to(x_t.dtype).reshape(-1, 1, 1, 1, 1)
        return a_t.sqrt() * out + (1 - a_t).sqrt() * x_t

    def tokenize(self, prompts):
        """Words -> ids (B, max_tokens): <bos> words <eos>, padded with <eos>; unknown words -> <unk>."""
        ids = torch.full((len(prompts), self.max_tokens), self.vocab["<eos>"], dtype=torch.long)
        for i, prompt in enumerate(prompts):
            words = [self.vocab.get(w, self.vocab["<unk>"]) for w in prompt.lower().split()]
            row = [self.vocab["<bos>"]] + words[:self.max_tokens - 2] + [self.vocab["<eos>"]]
            ids[i, :len(row)] = torch.tensor(row)
        return ids.to(self.device)

    @torch.no_grad()
    def encode(self, prompts):
        return self.pipe.text_encoder(self.tokenize(list(prompts))).last_hidden_state  # (B, L, D)

    @torch.no_grad()
    def generate(self, prompts, seeds, num_frames=None, steps=None, guidance=None,
                 height=None, width=None):
        """DDIM (eta = 0) from x_T ~ N(0, I) drawn per video from its own seeded CPU generator;
        eps = eps_u + guidance * (eps_c - eps_u). Returns (uint8 (B, F, H, W, 3), x_0 (B, 3, F, H, W))."""
        from diffusers import DDIMScheduler
        d = self.defaults
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        guidance = d["guidance"] if guidance is None else guidance
        shape = (3, num_frames or d["num_frames"], height or d["height"], width or d["width"])
        x = torch.stack([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(s)))
                         for s in seeds]).to(self.device, self.unet.dtype)       # x_T (B, 3, F, H, W)
        scheduler = DDIMScheduler.from_config(self.scheduler.config)            # own state per call
        scheduler.set_timesteps(steps or d["steps"])
        cond = self.encode(prompts)
        uncond = self.encode([""] * len(prompts))
        for t in scheduler.timesteps:
            if guidance == 1:
                eps = self.noise_pred(x, t, cond)
            else:
                eps_u, eps_c = self.noise_pred(torch.cat([x, x]), t, torch.cat([uncond, cond])).chunk(2)
                eps = eps_u + guidance * (eps_c - eps_u)
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        return self.decode(x), x.float().cpu()

    @torch.no_grad()
    def decode(self, latents):
        """x_0 = frames / 127.5 (black = 0; toy/shapes.py's to_x0) -> uint8 (B, F, H, W, 3)."""
        video = (latents.float().clamp(0, 2) * 127.5).round().to(torch.uint8)
        return video.permute(0, 2, 3, 4, 1).cpu().numpy()


def toy_model(config, state=None, seed=0, source=None):
    """Build the toy model from its config (toy/shapes.py's TOY_CONFIG or a teacher's config.json):
    a UNetMotionModel in pixel space and a CLIPTextModel, with `state` (names "unet.*",
    "text_encoder.*") or else seeded random weights (the untrained baseline)."""
    from diffusers import DDIMScheduler, UNetMotionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet = UNetMotionModel(**config["unet"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**config["text_encoder"]))
    if state is not None:
        for prefix, module in (("unet.", unet), ("text_encoder.", text_encoder)):
            part = {k[len(prefix):]: v.float() for k, v in state.items() if k.startswith(prefix)}
            missing, unexpected = module.load_state_dict(part, strict=False)
            buffers = {n for n, _ in module.named_buffers()}    # fixed sinusoids, position ids
            if unexpected or set(missing) - buffers:
                raise UserError(f"toy weights do not fit the config: missing {sorted(set(missing) - buffers)[:3]}, "
                                f"unexpected {unexpected[:3]}; the weights and config.json come from different runs")
    pipe = ToyPipe(unet.eval(), text_encoder.eval(), DDIMScheduler(**config["scheduler"]))
    return ToyModel("toy", pipe, source or {"path": None, "adapter": None}, _motion_block_paths(unet),
                    _is_motion_param, DEFAULTS["toy"], config["vocab"], config["max_tokens"],
                    config.get("unet_predicts", "epsilon"))


def _load_toy(name, path, adapter, dtype):
    from safetensors.torch import load_file
    path = path or TOY_DIR
    files = [os.path.join(path, f) for f in (TOY_CONFIG_FILE, TOY_WEIGHTS)]
    if not all(os.path.isfile(f) for f in files):
        raise UserError(f"{path} holds no toy teacher ({TOY_CONFIG_FILE} + {TOY_WEIGHTS}); "
                        "train one with `python toy/shapes.py train` or pass its directory")
    model = toy_model(read_json(files[0]), load_file(files[1]), source={"path": os.path.abspath(path),
                                                                       "adapter": None})
    model.name = name
    if dtype is not None:
        model.pipe.to(dtype=dtype)
    return model


# ---------------------------------------------------------------------------------------------
# VideoCrafter2 (LVDM) as diffusers' 3D UNet plus its fps embedding (paper Table 1: 1.413B params)
# ---------------------------------------------------------------------------------------------

# VideoCrafter's configs/inference_t2v_512_v2.0.yaml in diffusers' terms. LVDM's UNetModel with
# model_channels 320 x channel_mult (1, 2, 4, 4), num_res_blocks 2, attention at ds 1, 2, 4,
# num_head_channels 64, context_dim 1024, use_linear, temporal_conv (a temporal conv after every
# ResNet), temporal_attention (a temporal transformer after every spatial one), addition_attention
# (`transformer_in`) and fps_cond (`fps_embedding`) is, layer for layer, UNet3DConditionModel with
# these settings plus the fps embedding: 1,413,284,420 parameters either way. (UNet3D passes its
# `attention_head_dim` to the blocks as a head count and they swap it back: heads = channels // 64
# of 64 channels each, as LVDM's num_head_channels.)
VIDEOCRAFTER2_UNET_CONFIG = dict(
    in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    cross_attention_dim=1024, attention_head_dim=64, norm_num_groups=32, norm_eps=1e-5,
    down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
    up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3)

# LVDM's "linear" betas are linear in sqrt(beta) (make_beta_schedule): diffusers' "scaled_linear".
# DDIM timesteps as LVDM's make_ddim_timesteps("uniform"): 1, 1 + T/S, ... ("leading", offset 1);
# the last step lands on alphas_cumprod[0], LVDM's ddim_alphas_prev[0] (set_alpha_to_one=False).
VIDEOCRAFTER2_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    clip_sample=False, timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False)
VIDEOCRAFTER2_SCALE = dict(scale_a=1.0, scale_b=0.7, mid_step=400)  # LatentDiffusion(use_scale=True, scale_b=0.7)
VIDEOCRAFTER2_LATENT_SCALE = 0.18215   # scale_factor: the UNet's x_0 is 0.18215 * the VAE latent
OPENCLIP_PENULTIMATE = 23              # FrozenOpenCLIPEmbedder(layer="penultimate"): layer 23 of ViT-H's 24
VIDEOCRAFTER2_PARTS = ("unet", "vae", "text_encoder", "tokenizer")  # the converted layout's folders
VAE_CHUNK = 8                          # frames per VAE decode call

# tiny-videocrafter2: the same classes at toy size (20 prunable blocks, every kind), random weights.
TINY_VIDEOCRAFTER2_UNET_CONFIG = dict(
    sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
    cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
    down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"))


def videocrafter2_scale_arr(num_timesteps=1000, scale_a=1.0, scale_b=0.7, mid_step=400):
    """LVDM's scale_arr s_t (LatentDiffusion with use_scale): linear from scale_a at t = 0 to
    scale_b at t = mid_step - 1, then scale_b. (T,) float32, as LVDM's buffer."""
    ramp = torch.linspace(scale_a, scale_b, mid_step, dtype=torch.float64)
    return torch.cat([ramp, torch.full((num_timesteps - mid_step,), scale_b, dtype=torch.float64)]).float()


def scaled_add_noise(x_0, eps, t, alphas_cumprod, scale_arr):
    """q(x_t | x_0) of VideoCrafter2's training (LVDM q_sample with use_scale):
    x_t = sqrt(a_t) * s_t * x_0 + sqrt(1 - a_t) * eps. x_0, eps: (B, C, F, h, w); t: (B,) or int."""
    t = torch.as_tensor(t, device=x_0.device).long().reshape(-1)
    shape = (-1,) + (1,) * (x_0.dim() - 1)                            # (B, 1, 1, 1, 1)
    a_t = alphas_cumprod.to(x_0.device, torch.float32)[t].reshape(shape)
    s_t = scale_arr.to(x_0.device, torch.float32)[t].reshape(shape)
    x_t = a_t.sqrt() * s_t * x_0.float() + (1 - a_t).sqrt() * eps.float()
    return x_t.to(x_0.dtype)


def scaled_ddim_step(x_t, eps, t, t_prev, alphas_cumprod, scale_arr, eta, noise):
    """One step t -> t_prev of LVDM's DDIMSampler.p_sample_ddim with use_scale (t_prev < 0 is the
    last step: it lands on alphas_cumprod[0] and scale_arr[0], as LVDM's *_prev[0]):
        x_0    = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t) / s_t
        sigma  = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        x_prev = sqrt(a_prev) s_prev x_0 + sqrt(1 - a_prev - sigma^2) eps + sigma * noise
    Returns (x_prev, x_0)."""
    a_t, a_prev = float(alphas_cumprod[t]), float(alphas_cumprod[max(t_prev, 0)])
    s_t, s_prev = float(scale_arr[t]), float(scale_arr[max(t_prev, 0)])
    x_0 = (x_t - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5 / s_t
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
    x_prev = a_prev ** 0.5 * s_prev * x_0 + (1 - a_prev - sigma ** 2) ** 0.5 * eps + sigma * noise
    return x_prev, x_0


def _checkpointed(block, *args, **kwargs):
    """`block`'s own forward under activation checkpointing while gradients are on."""
    from torch.utils.checkpoint import checkpoint
    forward = type(block).forward.__get__(block)
    if torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


@functools.lru_cache(maxsize=None)
def videocrafter2_unet_class():
    """VideoCrafter2's UNet class: UNet3DConditionModel plus LVDM's fps condition,
    emb = time_embedding(sinusoid(t)) + fps_embedding(sinusoid(fps)), then repeated per frame
    (openaimodel3d.UNetModel.forward). The fps weights are named as in the converted checkpoint
    (fps_embedding.linear_1 / linear_2). Made on first use: `import models` stays free of diffusers."""
    from diffusers import UNet3DConditionModel
    from diffusers.configuration_utils import register_to_config
    from diffusers.models.embeddings import TimestepEmbedding, Timesteps

    class VideoCrafter2UNet(UNet3DConditionModel):
        _supports_gradient_checkpointing = True

        @register_to_config
        def __init__(self, sample_size=None, in_channels=4, out_channels=4,
                     down_block_types=VIDEOCRAFTER2_UNET_CONFIG["down_block_types"],
                     up_block_types=VIDEOCRAFTER2_UNET_CONFIG["up_block_types"],
                     block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1,
                     mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32, norm_eps=1e-5,
                     cross_attention_dim=1024, attention_head_dim=64, num_attention_heads=None,
                     time_cond_proj_dim=None):
            super().__init__(
                sample_size=sample_size, in_channels=in_channels, out_channels=out_channels,
                down_block_types=down_block_types, up_block_types=up_block_types,
                block_out_channels=block_out_channels, layers_per_block=layers_per_block,
                downsample_padding=downsample_padding, mid_block_scale_factor=mid_block_scale_factor,
                act_fn=act_fn, norm_num_groups=norm_num_groups, norm_eps=norm_eps,
                cross_attention_dim=cross_attention_dim, attention_head_dim=attention_head_dim,
                num_attention_heads=num_attention_heads, time_cond_proj_dim=time_cond_proj_dim)
            c = block_out_channels[0]
            self.fps_proj = Timesteps(c, True, 0)        # LVDM's timestep_embedding: [cos, sin]
            self.fps_embedding = TimestepEmbedding(c, 4 * c, act_fn=act_fn)
            self.fps = DEFAULTS["videocrafter2"]["fps_cond"]
            self.time_embedding.register_forward_hook(self._add_fps_embedding)

        def _add_fps_embedding(self, module, args, emb):
            fps = torch.as_tensor(self.fps, device=emb.device).expand(emb.shape[0])   # (B,)
            return emb + self.fps_embedding(self.fps_proj(fps).to(emb.dtype))         # (B, 4 C)

        def forward(self, sample, timestep, encoder_hidden_states, *args,
                    fps=DEFAULTS["videocrafter2"]["fps_cond"], **kwargs):
            """UNet3DConditionModel.forward, conditioned also on `fps` (int or (B,)): the frame
            rate the video is meant to play at."""
            self.fps = fps
            return super().forward(sample, timestep, encoder_hidden_states, *args, **kwargs)

        def _set_gradient_checkpointing(self, enable=True, gradient_checkpointing_func=None):
            """diffusers' 3D blocks carry a gradient_checkpointing flag but never read it: checkpoint
            each down, mid and up block whole instead (LVDM trains with use_checkpoint). The blocks
            take keyword arguments, which diffusers' positional `gradient_checkpointing_func` cannot
            pass on, so torch's non-reentrant checkpoint (the same function) is called directly."""
            for block in [*self.down_blocks, self.mid_block, *self.up_blocks]:
                block.__dict__.pop("forward", None)
                if enable:
                    block.forward = functools.partial(_checkpointed, block)

    return VideoCrafter2UNet


def build_videocrafter2_unet(config=VIDEOCRAFTER2_UNET_CONFIG):
    """A VideoCrafter2 UNet with random weights from a config (default: the real size). Under
    `with torch.device("meta"):` it allocates nothing."""
    return videocrafter2_unet_class()(**config)


def _forward_order(path, block):
    """The paths of a 3D UNet block's layers, in the order its forward runs them."""
    if path == "mid_block":    # resnet, temp_conv, then (attention, temp_attention, resnet, temp_conv)*
        layers = [("resnets", 0), ("temp_convs", 0)]
        for j in range(len(block.attentions)):
            layers += [("attentions", j), ("temp_attentions", j), ("resnets", j + 1), ("temp_convs", j + 1)]
    else:                      # (resnet, temp_conv, attention, temp_attention)* ; no attention in plain blocks
        layers = [(kind, j) for j in range(len(block.resnets))
                  for kind in ("resnets", "temp_convs", "attentions", "temp_attentions") if hasattr(block, kind)]
    return [f"{path}.{kind}.{j}" for kind, j in layers]


def _is_residual_layer(module):
    """out = x + f(x) with x's shape: then deleting f keeps the forward valid."""
    kind = type(module).__name__
    if kind == "ResnetBlock2D":
        return not module.use_in_shortcut and not (module.up or module.down) and module.output_scale_factor == 1
    return kind in ("TemporalConvLayer", "Transformer2DModel", "TransformerTemporalModel")


def videocrafter2_block_paths(unet):
    """VideoCrafter2's prunable blocks, in forward order. The rule: a block can go iff it is
    residual, out = x + f(x) with x's shape, so that without f every shape and skip connection
    stays as it was. That admits every temporal conv, every spatial and temporal transformer
    (with `transformer_in`), and the ResNets with as many channels out as in (no conv_shortcut,
    no resampling, output scale 1): the down-block ResNets other than the two that widen,
    and the mid-block ResNets. It leaves the widening ResNets, every up-block ResNet (it eats the
    concatenated skip input, so its output width is not its input's), the down/up samplers,
    conv_in/conv_out and the time/fps embeddings. VideoCrafter2: 63 blocks."""
    paths = ["transformer_in"]
    for i, block in enumerate(unet.down_blocks):
        paths += _forward_order(f"down_blocks.{i}", block)
    paths += _forward_order("mid_block", unet.mid_block)
    for i, block in enumerate(unet.up_blocks):
        paths += _forward_order(f"up_blocks.{i}", block)
    return [p for p in paths if _is_residual_layer(unet.get_submodule(p))]


def _whole_unet(name):
    """VideoCrafter2 retrains its whole UNet (the paper prunes entire U-Net blocks)."""
    return True


class VideoCrafter2Pipe:
    """VideoCrafter2's parts (VideoModel.pipe). No diffusers pipeline runs LVDM's sampler, so
    VideoCrafter2.generate writes it out; this only holds and moves the parts."""

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler):
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self.scheduler = scheduler
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)   # 8 (tiny: 2)
        self.progress = False

    def to(self, device=None, dtype=None):
        for m in (self.unet, self.vae, self.text_encoder):
            m.to(device=device, dtype=dtype)
        return self

    def set_progress_bar_config(self, disable=False):
        self.progress = not disable


class VideoCrafter2(VideoModel):
    """VideoCrafter2 through diffusers' 3D UNet. Where it differs from the pipelines above:
    `add_noise` and `generate`: its training scaled x_0 by s_t in q(x_t | x_0) (scale_arr), so its
    sampler is LVDM's DDIM with the same s_t, eta 1 and guidance against the empty prompt;
    `encode`: OpenCLIP ViT-H's penultimate layer, then its final layer norm; `noise_pred`: the
    embeddings stay (B, L, D) (UNet3DConditionModel repeats them per frame itself) and the fps
    condition is the sampling one; trainable: the whole UNet."""

    def __init__(self, name, pipe, source, block_paths, defaults):
        super().__init__(name, pipe, source, block_paths, _whole_unet, defaults)
        self.scale_arr = videocrafter2_scale_arr(pipe.scheduler.config.num_train_timesteps, **VIDEOCRAFTER2_SCALE)

    @torch.no_grad()
    def encode(self, prompts):
        """Prompts -> (B, 77, D): the output of text layer min(N, 23), then the final layer norm
        (LVDM's FrozenOpenCLIPEmbedder, layer "penultimate"). The CLIPTextModel exports of SD 2 and
        ModelScope keep exactly those 23 of ViT-H's layers: for them this is last_hidden_state."""
        tokens = self.pipe.tokenizer(list(prompts), padding="max_length", truncation=True,
                                     max_length=self.pipe.tokenizer.model_max_length, return_tensors="pt")
        text_encoder = self.pipe.text_encoder
        hidden = text_encoder(tokens.input_ids.to(self.device), output_hidden_states=True).hidden_states
        layer = min(text_encoder.config.num_hidden_layers, OPENCLIP_PENULTIMATE)   # hidden[0]: embeddings
        final_layer_norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm  # transformers 4 / 5
        return final_layer_norm(hidden[layer])

    def noise_pred(self, x_t, t, prompts_or_embeds, unet=None):
        """eps_theta(x_t, t, c, fps) for training. x_t: (B, C, F, h, w); t: (B,) or int; embeddings
        (B, L, D), not repeated per frame. `unet`: a wrapper of self.unet to call (DDP)."""
        if isinstance(prompts_or_embeds, torch.Tensor):
            embeds = prompts_or_embeds
        else:
            embeds = self.encode(prompts_or_embeds)
        embeds = embeds.to(x_t.device, x_t.dtype)
        return (unet or self.unet)(x_t, t, encoder_hidden_states=embeds, fps=self.defaults["fps_cond"]).sample

    def add_noise(self, x_0, eps, t):
        """q(x_t | x_0) of VideoCrafter2's training: x_t = sqrt(a_t) s_t x_0 + sqrt(1 - a_t) eps."""
        return scaled_add_noise(x_0, eps, t, self.scheduler.alphas_cumprod, self.scale_arr)

    @torch.no_grad()
    def generate(self, prompts, seeds, num_frames=None, steps=None, guidance=None,
                 height=None, width=None):
        """LVDM's DDIM with scale_arr (eta from the defaults: 1), eps = eps_u + guidance (eps_c - eps_u)
        with the empty prompt as the unconditional one. x_T and every step's noise come from the
        video's own seeded CPU generator, so a video does not depend on its batch. Returns uint8
        frames (B, F, H, W, 3) and the clean latents x_0 (B, C, F, h, w) as float32 on the CPU."""
        from diffusers import DDIMScheduler
        from tqdm import tqdm
        d = self.defaults
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        guidance = d["guidance"] if guidance is None else guidance
        factor = self.pipe.vae_scale_factor
        height, width = height or d["height"], width or d["width"]
        if height % factor or width % factor:
            raise UserError(f"height and width must be multiples of {factor}, not {height}x{width}")
        shape = (self.unet.config.in_channels, num_frames or d["num_frames"], height // factor, width // factor)
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]

        def draw():    # N(0, I) of shape (B, C, F, h, w), each video's from its own generator
            return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(self.device, self.unet.dtype)

        x = draw()                                                             # x_T
        cond = self.encode(prompts)
        uncond = self.encode([""] * len(prompts))
        scheduler = DDIMScheduler.from_config(self.scheduler.config)          # own state per call
        scheduler.set_timesteps(steps or d["steps"])
        stride = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        for t in tqdm(scheduler.timesteps.tolist(), desc="DDIM", disable=not self.pipe.progress):
            if guidance == 1:
                eps = self.noise_pred(x, t, cond)
            else:
                eps_u, eps_c = self.noise_pred(torch.cat([x, x]), t, torch.cat([uncond, cond])).chunk(2)
                eps = eps_u + guidance * (eps_c - eps_u)
            x, _ = scaled_ddim_step(x, eps, t, t - stride, scheduler.alphas_cumprod, self.scale_arr,
                                    d["eta"], draw())
        return self.decode(x), x.float().cpu()

    @torch.no_grad()
    def decode(self, latents):
        """Clean latents (B, C, F, h, w) -> uint8 frames (B, F, H, W, 3): each frame through the
        2D VAE after z / 0.18215 (LVDM's decode_first_stage_2DAE)."""
        b, _, f = latents.shape[:3]
        z = latents.to(self.device, self.pipe.vae.dtype).transpose(1, 2).flatten(0, 1)  # (B*F, C, h, w)
        z = z / VIDEOCRAFTER2_LATENT_SCALE
        video = torch.cat([self.pipe.vae.decode(chunk).sample for chunk in z.split(VAE_CHUNK)])
        video = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (B*F, 3, H, W)
        return video.unflatten(0, (b, f)).permute(0, 1, 3, 4, 2).cpu().numpy()


def build_tiny_videocrafter2_components():
    """tiny-videocrafter2's parts, built in code with seeded random weights: the VideoCrafter2
    UNet class at toy size, the tiny VAE, text encoder and tokenizer, VideoCrafter2's scheduler."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel
    with torch.random.fork_rng():
        torch.manual_seed(TINY_SEED)
        unet = build_videocrafter2_unet(TINY_VIDEOCRAFTER2_UNET_CONFIG)
        # diffusers (like LVDM) zero-inits each temporal conv's last layer, which makes it an exact
        # identity at init; give it random weights, or pruning it would be untestable.
        for m in unet.modules():
            if type(m).__name__ == "TemporalConvLayer":
                m.conv4[-1].reset_parameters()
        parts = dict(unet=unet.eval(), vae=AutoencoderKL(**TINY_VAE_CONFIG).eval(),
                     text_encoder=CLIPTextModel(CLIPTextConfig(**TINY_TEXT_CONFIG)).eval(),
                     tokenizer=build_tiny_tokenizer(), scheduler=DDIMScheduler(**VIDEOCRAFTER2_SCHEDULER))
    return parts


def save_tiny_videocrafter2_layout(out_dir):
    """Write tiny-videocrafter2 in the converted layout that `load("videocrafter2", path=out_dir)`
    reads: out_dir/{unet, vae, text_encoder, tokenizer}/, each written by save_pretrained."""
    parts = build_tiny_videocrafter2_components()
    for name in VIDEOCRAFTER2_PARTS:
        parts[name].save_pretrained(os.path.join(out_dir, name))
    return out_dir


def _videocrafter2_pipe(path, dtype):
    """The converted layout -> VideoCrafter2Pipe: unet/ (adamdad/videocrafterv2_diffusers: config.json
    + diffusion_pytorch_model.safetensors), vae/, text_encoder/, tokenizer/ (OpenCLIP ViT-H, as
    exported with SD 2.1); the scheduler is VideoCrafter2's, built here."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer
    missing = [p + "/" for p in VIDEOCRAFTER2_PARTS if not os.path.isdir(os.path.join(path, p))]
    if missing:
        raise UserError(f"{path} is not a VideoCrafter2 directory in the converted layout (no "
                        f"{', '.join(missing)}); README.md's VideoCrafter2 section says how to assemble one")
    dtype = dtype or torch.float32
    sub = lambda name: os.path.join(path, name)
    try:
        unet, info = videocrafter2_unet_class().from_pretrained(sub("unet"), torch_dtype=dtype,
                                                                output_loading_info=True)
        if info["missing_keys"]:    # diffusers would leave them on the meta device, with a warning
            raise UserError(f"{sub('unet')} lacks {len(info['missing_keys'])} VideoCrafter2 weights "
                            f"({', '.join(sorted(info['missing_keys'])[:3])}, ...): it is not the converted "
                            "VideoCrafter2 UNet (a plain UNet3D has no fps_embedding)")
        vae = AutoencoderKL.from_pretrained(sub("vae"), torch_dtype=dtype)
        text_encoder = CLIPTextModel.from_pretrained(sub("text_encoder"), dtype=dtype)
        tokenizer = CLIPTokenizer.from_pretrained(sub("tokenizer"))
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"could not load VideoCrafter2 from {path} ({first}); see README.md's "
                        "VideoCrafter2 section for the expected files") from e
    return VideoCrafter2Pipe(unet.eval(), vae.eval(), text_encoder.eval(), tokenizer,
                             DDIMScheduler(**VIDEOCRAFTER2_SCHEDULER))


def _load_videocrafter2(name, path, adapter, dtype):
    if path is None:
        raise UserError("videocrafter2 needs --path: a directory in the converted layout (unet/, vae/, "
                        "text_encoder/, tokenizer/); README.md's VideoCrafter2 section says how to make one")
    if adapter is not None:
        raise UserError("--adapter belongs to animatediff; videocrafter2 reads everything from --path")
    if not os.path.isdir(path):
        raise UserError(f"no such directory: {path}; videocrafter2 loads a local directory in the "
                        "converted layout (see README.md), not a hub id")
    pipe = _videocrafter2_pipe(path, dtype)
    return VideoCrafter2(name, pipe, {"path": os.path.abspath(path), "adapter": None},
                         videocrafter2_block_paths(pipe.unet), DEFAULTS["videocrafter2"])


def _load_tiny_videocrafter2(name, path, adapter, dtype):
    pipe = VideoCrafter2Pipe(**build_tiny_videocrafter2_components())
    if dtype is not None:
        pipe.to(dtype=dtype)
    return VideoCrafter2(name, pipe, {"path": None, "adapter": None}, videocrafter2_block_paths(pipe.unet),
                         DEFAULTS["tiny-videocrafter2"])


def _abs_if_local(p):
    return os.path.abspath(p) if os.path.isdir(p) else p


LOADERS = {"animatediff": _load_animatediff, "tiny": _load_tiny, "toy": _load_toy,
           "videocrafter2": _load_videocrafter2, "tiny-videocrafter2": _load_tiny_videocrafter2}


def load(name, path=None, device=None, dtype=None, adapter=None):
    """Load model `name`. `path`: a hub id or local directory of the base model, or a directory
    written by `VideoModel.save` (a pruned / trained student, rebuilt from its recorded source).
    `adapter`: AnimateDiff's motion adapter (hub id or directory). `device`: default cuda if
    available, else cpu. `dtype`: default float32."""
    if name not in LOADERS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(LOADERS)}")
    _quiet_libraries()
    if path is not None and os.path.isfile(os.path.join(path, STUDENT_FILE)):
        meta = read_json(os.path.join(path, STUDENT_FILE))
        if meta["model"] != name:
            raise UserError(f"{path} holds a {meta['model']} model, not {name}; "
                            f"pass --model {meta['model']} or another directory")
        model = LOADERS[name](name, meta["source"]["path"], meta["source"]["adapter"], dtype)
        model.load_saved(path, meta)
    else:
        if path is not None and _looks_local(path) and not os.path.isdir(path):
            raise UserError(f"no such directory: {path}; pass a hub id or an existing directory")
        model = LOADERS[name](name, path, adapter, dtype)
    return model.to(device or default_device())


def _quiet_libraries():
    """diffusers and transformers warn about optional packages (torchvision) and dtype casts that do
    not concern us; keep their errors, drop the noise from every CLI's output."""
    import diffusers
    import transformers
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()


def default_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------------------------
# Distribution: torchrun sets RANK / WORLD_SIZE; without it everything runs as rank 0 of 1.
# ---------------------------------------------------------------------------------------------

def dist_setup():
    """Join the torchrun group if there is one (nccl on GPU, gloo on CPU). Returns (rank, world, device)."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        # Leave the group before the interpreter tears down: an undestroyed gloo group can abort
        # the process at exit ("terminate called without an active exception") after all work is done.
        atexit.register(dist.destroy_process_group)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def rank_world():
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def shard(items):
    """This rank's share of `items` (round robin), with their indices."""
    rank, world = rank_world()
    return [(i, x) for i, x in enumerate(items) if i % world == rank]


def gather(indexed):
    """Gather every rank's [(index, value)] and return the values in index order, on all ranks."""
    if dist.is_initialized():
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, indexed)
        indexed = [x for part in parts for x in part]
    return [v for _, v in sorted(indexed, key=lambda iv: iv[0])]


def broadcast(obj):
    """Rank 0's `obj` on every rank."""
    if dist.is_initialized():
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return obj


def barrier():
    if dist.is_initialized():
        dist.barrier()


# ---------------------------------------------------------------------------------------------
# Files: atomic writes, so that a crash never leaves half a file behind.
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_file(path):
    """Yield a temp path beside `path` (same extension) to write to; on success it becomes `path`
    in one rename (mode 0644), on failure it is removed. Readers never see half a file."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, obj):
    with atomic_file(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2)


def read_json(path):
    with open(path) as f:
        return json.load(f)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temp folder beside `path`; on success it replaces `path` in one rename."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(path), prefix=".tmp-")
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        if os.path.isdir(path):
            old = tmp + ".old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)


def save_video(path, frames, fps=8):
    """uint8 frames (F, H, W, 3) -> an .mp4 or .gif, written atomically."""
    import imageio.v2 as imageio
    with atomic_file(path) as tmp:
        if path.endswith(".gif"):
            imageio.mimsave(tmp, list(frames), duration=1000 / fps, loop=0)
        else:
            imageio.mimsave(tmp, list(frames), fps=fps, macro_block_size=1)


def run_cli(main):
    """Run `main()`; a UserError becomes one line on stderr and exit status 2, not a traceback."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


# ---------------------------------------------------------------------------------------------
# CLI: generate a few videos
# ---------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Generate videos with a V.I.P. model (uint8 mp4 + gif).")
    p.add_argument("--model", default="tiny", help=f"one of {', '.join(LOADERS)} (default: tiny)")
    p.add_argument("--path", default=None, help="hub id or directory of the base model, or a saved student")
    p.add_argument("--adapter", default=None, help="AnimateDiff motion adapter (hub id or directory)")
    p.add_argument("--prompt", action="append", help="a prompt (repeat the flag for more)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    p.add_argument("--out", default="samples")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    prompts = args.prompt or ["a red car driving on a road"]
    model = load(args.model, path=args.path, adapter=args.adapter)
    n = model.num_parameters()
    print(f"{args.model}: {n['total']:,} parameters, {len(model.blocks())} prunable blocks "
          f"({n['trainable']:,} trainable) on {model.device}")
    frames, latents = model.generate(prompts, [args.seed + i for i in range(len(prompts))], steps=args.steps)
    for i, prompt in enumerate(prompts):
        stem = os.path.join(args.out, f"{args.model}_{args.seed + i}_{'_'.join(prompt.split())[:40]}")
        save_video(stem + ".mp4", frames[i], model.defaults["fps"])
        save_video(stem + ".gif", frames[i], model.defaults["fps"])
        print(f"wrote {stem}.mp4 and .gif: frames {tuple(frames[i].shape)}, latents {tuple(latents[i].shape)}")


if __name__ == "__main__":
    run_cli(main)
