"""Which text-to-video models exist, and how to load, run and cut them (paper Sec. 4.1, "Models").

The surface every script uses, whatever the model. Each family lives in its own file and is
imported on first `load` of one of its names (LOADERS): AnimateDiff and `tiny` in
models/animatediff.py, VideoCrafter2 and `tiny-videocrafter2` in models/videocrafter2.py, and the
toy world's teacher `toy` next to its world in toy/shapes_model.py.

    python -m models --model toy --prompt "a red circle moving left" --out samples
    python -m models --model tiny --prompt "a red car driving on a road" --out samples
    python -m models --model animatediff --prompt "a corgi running on the beach" --out samples
    python -m models --model tiny-videocrafter2 --prompt "a red car driving on a road" --out samples
    python -m models --model videocrafter2 --path checkpoints/videocrafter2 --prompt "a corgi running" --out samples

A loaded model offers: `generate(prompts, seeds)` -> (uint8 frames (B, F, H, W, 3), clean latents
(B, C, F, h, w)); `noise_pred(x_t, t, prompts_or_embeds)`; `add_noise(x_0, eps, t)`; `blocks()`, the
prunable blocks (AnimateDiff: the 21 motion modules, paper Sec. 4.1; VideoCrafter2: the 63 residual
layers of its U-Net, `videocrafter2_block_paths`); `skip(names)`, which turns
blocks into identity without copying the model (Sec. 3.2's importance search); `remove(names)`,
which deletes them structurally; `save(dir)`, which `load(name, path=dir)` reads back; and
`trainable_parameters()` (AnimateDiff: the motion modules; the spatial SD 1.5 UNet stays frozen;
VideoCrafter2: the whole UNet).

With `add_lora(rank)` the model is a LoRA student over the teacher's weights (models/lora.py): `remove`
skips blocks instead of deleting them, the trainable parameters are the adapter's, `save` writes the
adapter and the removed blocks, and `teacher()` is M0 on the same weights (every block, the adapter off).
With `take_turns(residency)` (--lora on a GPU) its weights stay on the CPU except while a call runs them,
and the reward's while it scores (infra/residency.py).
"""
import contextlib
import functools
import importlib
import os
import threading
from collections import OrderedDict

from infra.cli import UserError
from infra.disk import atomic_dir, load_safetensors, read_json, write_json
from infra.ranks import default_device

import torch
from torch import nn

from models import lora


# What `generate` does when not told otherwise, per model.
DEFAULTS = {
    "animatediff": dict(num_frames=16, steps=25, guidance=7.5, height=512, width=512, fps=8),
    "tiny": dict(num_frames=8, steps=4, guidance=7.5, height=16, width=16, fps=4),   # 8x8 latents: the suite's model
    "toy": dict(num_frames=8, steps=20, guidance=1.0, height=16, width=16, fps=4),
    # VideoCrafter's scripts/run_text2video.sh: 16 frames at 320x512, DDIM 50 steps with eta 1,
    # guidance 12, fps condition 28 (`fps_cond`); written out at 10 fps (inference.py's savefps).
    "videocrafter2": dict(num_frames=16, steps=50, guidance=12.0, height=320, width=512, fps=10,
                          eta=1.0, fps_cond=28),
    "tiny-videocrafter2": dict(num_frames=8, steps=4, guidance=12.0, height=16, width=16, fps=4,
                               eta=1.0, fps_cond=28),
    # Wan2.1's T2V defaults (generate.py, wan/configs/shared_config.py; WanPipeline's too): 81 frames at
    # 480x832, 50 steps, guidance 5.0, written out at 16 fps; the sampler (UniPC, shift 3.0 for 480p)
    # and the negative prompt are models/wan.py's WAN_SCHEDULER and WAN_NEGATIVE_PROMPT.
    "wan": dict(num_frames=81, steps=50, guidance=5.0, height=480, width=832, fps=16),
    "tiny-wan": dict(num_frames=9, steps=4, guidance=5.0, height=32, width=32, fps=4),
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


# Which blocks `skip` makes identity, per thread: _SKIPPED.blocks on each thread, and per block
# how many threads skip it now and the instance forward it had before (None: the class's).
_SKIPPED = threading.local()
_SKIPPING, _SKIPPING_LOCK = {}, threading.Lock()


def _skippable(block, forward):
    """The forward `skip` gives a block: identity on a thread that skips it, `forward` on the others."""
    def dispatch(*args, **kwargs):
        if block in getattr(_SKIPPED, "blocks", ()):
            return _identity(*args, **kwargs)
        return forward(*args, **kwargs)
    return dispatch


def count_parameters(module):
    """The parameters of `module` (a block, a denoiser) but a LoRA adapter's: its size once merged."""
    return sum(p.numel() for n, p in module.named_parameters() if not lora.is_lora_param(n))


def checkpoint_whole_blocks(blocks, enable):
    """Gradient checkpointing block by block: each of `blocks` (a U-Net's down, mid and up blocks) keeps
    only its inputs in the forward and runs again in the backward (enable=False: its own forward back)."""
    for block in blocks:
        block.__dict__.pop("forward", None)
        if enable:
            block.forward = functools.partial(_checkpointed, block)


def _checkpointed(block, *args, **kwargs):
    """`block`'s own forward under activation checkpointing while gradients are on (torch's
    non-reentrant checkpoint, which passes keyword arguments on)."""
    from torch.utils.checkpoint import checkpoint
    forward = type(block).forward.__get__(block)
    if torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


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
        self.lora = None                  # the adapter's rank once add_lora (models/lora.py) put one in
        self.residency = None             # set by take_turns: the accelerator it shares (infra/residency.py)
        for p in self.unet.parameters():
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
        if self.residency is not None:   # where it runs, even while its weights wait on the CPU
            return self.residency.device
        # The first weight's device: diffusers' ModelMixin.device walks every module for offload hooks
        # (10 ms a call on a toy model, called per batch).
        return next(self.unet.parameters()).device

    def to(self, device):
        self.pipe.to(device)
        return self

    def parts(self):
        """The pipeline's modules by what needs them (infra/residency.py's groups): "video", the
        denoiser and the VAE (and AnimateDiff's motion adapter); "text", the text encoder."""
        modules = {n: m for n, m in vars(self.pipe).items() if isinstance(m, nn.Module)}
        return {"video": [m for n, m in modules.items() if not n.startswith("text_encoder")],
                "text": [m for n, m in modules.items() if n.startswith("text_encoder")]}

    def take_turns(self, residency):
        """Share the accelerator with the reward (infra/residency.py): the weights stay at home on the
        CPU except while a call runs them. Generating, decoding and encoding bring the whole model in;
        training's noise_pred (on text embeddings encoded before its first step) the model without its
        text encoder."""
        self.residency = residency
        for name, modules in self.parts().items():
            residency.add(name, modules)
        for method in ("generate", "decode", "encode"):
            setattr(self, method, residency.guard(getattr(self, method), "video", "text"))
        self.noise_pred = residency.guard(self.noise_pred, "video")
        return self

    def make_resident(self):
        """The weights on the model's device now (with take_turns; else they are there already): a
        training run's AdamW and its resumed state go where the steps will run."""
        if self.residency is not None:
            self.residency.use("video", "text")

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

    def embeddings(self, prompts_or_embeds):
        """Text-encoder hidden states (B, L, D): encoded from prompts, or passed through as given."""
        if isinstance(prompts_or_embeds, torch.Tensor):
            return prompts_or_embeds
        return self.encode(prompts_or_embeds)

    def noise_pred(self, x_t, t, prompts_or_embeds, unet=None):
        """eps_theta(x_t, t, c) for training. x_t: (B, C, F, h, w); t: (B,) or int.
        UNetMotionModel folds frames into the batch, so the text embeddings repeat once per frame.
        `unet`: call this wrapper of self.unet instead (redpo.py passes its DDP module)."""
        embeds = self.embeddings(prompts_or_embeds)
        num_frames = x_t.shape[2]
        embeds = embeds.to(x_t.device, x_t.dtype).repeat_interleave(num_frames, dim=0)  # (B*F, L, D)
        return (unet or self.unet)(x_t, t, encoder_hidden_states=embeds).sample

    def guided_noise_pred(self, x_t, t, cond, uncond, guidance):
        """Classifier-free guidance for samplers written here: eps = eps_u + guidance * (eps_c - eps_u),
        both halves in one batch; guidance 1 is eps_c alone, one forward."""
        if guidance == 1:
            return self.noise_pred(x_t, t, cond)
        eps_u, eps_c = self.noise_pred(torch.cat([x_t, x_t]), t, torch.cat([uncond, cond])).chunk(2)
        return eps_u + guidance * (eps_c - eps_u)

    def add_noise(self, x_0, eps, t):
        """The forward process q(x_t | x_0) of this model's training: x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps."""
        return self.scheduler.add_noise(x_0, eps, t)

    def training_target(self, x_0, eps, t):
        """What noise_pred regresses to in this model's training (redpo.loss's target): eps."""
        return eps

    def sample_timesteps(self, n, generator):
        """n training timesteps drawn as this model was trained: t ~ U{0..T-1}."""
        return torch.randint(0, self.num_train_timesteps, (n,), generator=generator)

    def latent_shape(self, num_frames, height, width):
        """(C, F, h, w) of the latents of a num_frames x height x width video."""
        scale = self.pipe.vae_scale_factor
        return (self.unet.config.in_channels, num_frames, height // scale, width // scale)

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
        """Turn `names` into identity inside the `with`, on this thread (infra/parallel.py generates two
        candidates of the block search at once, one a thread), and restore them exactly on exit.
        No copy: an instance-level forward shadows the class's while any thread skips the block."""
        chosen = [self._check_names(names)[n] for n in names]
        outer = getattr(_SKIPPED, "blocks", frozenset())
        with _SKIPPING_LOCK:
            for block in chosen:
                count, own = _SKIPPING.get(block, (0, vars(block).get("forward")))
                if count == 0:
                    block.forward = _skippable(block, own or block.forward)
                _SKIPPING[block] = (count + 1, own)
        _SKIPPED.blocks = outer | set(chosen)
        try:
            yield self
        finally:
            _SKIPPED.blocks = outer
            with _SKIPPING_LOCK:
                for block in chosen:
                    count, own = _SKIPPING.pop(block)
                    if count > 1:
                        _SKIPPING[block] = (count - 1, own)
                    elif own is None:
                        del block.forward
                    else:
                        block.forward = own

    def remove(self, names):
        """Delete blocks structurally: their parameters leave the model for good. A LoRA student
        skips them instead (identity, except for its teacher): the teacher still runs them."""
        blocks = self._check_names(names)
        for n in names:
            if self.lora:
                blocks[n].forward = lora.removed_forward(blocks[n], _identity)
                for p in blocks[n].parameters():
                    p.requires_grad_(False)
            else:
                parent_path, _, child = n.rpartition(".")   # "down_blocks.0.attentions", "1" (or "", "transformer_in")
                setattr(self.unet.get_submodule(parent_path), child, RemovedBlock())
            self.removed.append(n)

    # --- the LoRA student (models/lora.py) ---------------------------------------------------
    def add_lora(self, rank):
        """Make this model a LoRA student of itself: a rank-`rank` adapter (zero: nothing changes yet) on
        the layers a full-weight run trains; from now on `teacher()` is the model before it."""
        if self.lora or self.removed:
            raise UserError("add a LoRA adapter to the full model M0, once (the run's one adapter)")
        lora.add_lora(self.unet, rank, self.trainable)
        self.lora = rank
        self.lora_start = {n: p.detach().clone() for n, p in self.unet.named_parameters() if lora.is_lora_param(n)}
        return self

    def restore_lora(self, path=None):
        """This LoRA student set to the one `save` wrote in `path` (None, or not a student folder: M0
        with the adapter as add_lora made it). vip_loop.py --lora goes from stage to stage on one module."""
        for n in self.removed:
            del self.unet.get_submodule(n).forward        # lora.removed_forward's
        self.removed = []
        if path is None or not os.path.isfile(os.path.join(path, STUDENT_FILE)):
            params = dict(self.unet.named_parameters())
            with torch.no_grad():
                for n, v in self.lora_start.items():
                    params[n].copy_(v)
            return self
        meta = read_json(os.path.join(path, STUDENT_FILE))
        if (meta.get("lora") or {}).get("rank") != self.lora:
            raise UserError(f"{path} does not hold a rank-{self.lora} LoRA student of this model")
        self.remove(meta["removed"])
        return self.load_weights(path)

    @contextlib.contextmanager
    def as_teacher(self):
        """Inside, on this thread: the shared weights as M0, every block on and the adapter off."""
        with lora.teacher_mode():
            yield self

    @contextlib.contextmanager
    def as_exported(self):
        """Inside, on this thread: the adapter's own operations left out, the removed blocks still
        skipped: what the merged student (`python -m models.export`) costs to run. No-op without an adapter."""
        with lora.adapter_off() if self.lora else contextlib.nullcontext():
            yield self

    def teacher(self):
        """M0 on this LoRA student's weights (TeacherView: its generate and noise_pred run as_teacher)."""
        return TeacherView(self)

    def merge_lora(self):
        """The adapter merged into the weights and the removed blocks deleted: a full-weight student
        (models/export.py writes it)."""
        lora.merge(self.unet)
        removed, self.lora, self.removed = self.removed, None, []
        for n in removed:
            del self.unet.get_submodule(n).forward        # lora.removed_forward's
        self.remove(removed)
        return self

    # --- training -------------------------------------------------------------------------
    def trainable_named_parameters(self):
        """What training updates: the trainable part; a LoRA student's adapter in the blocks it keeps."""
        if self.lora:
            dropped = tuple(n + "." for n in self.removed)
            return [(n, p) for n, p in self.unet.named_parameters() if lora.is_lora_param(n) and not n.startswith(dropped)]
        return [(n, p) for n, p in self.unet.named_parameters() if self.trainable(n)]

    def trainable_parameters(self):
        return [p for _, p in self.trainable_named_parameters()]

    def num_parameters(self):
        """Parameter counts: the whole pipeline, the denoiser, and its trainable (prunable) part. A LoRA
        student counts as its export (models/lora.py): the removed blocks out, the adapter merged
        ("adapter": its own size); inside as_teacher, as M0."""
        count = lambda ps: sum(p.numel() for p in ps)
        if self.lora:
            dropped = () if lora.teacher_on() else tuple(n + "." for n in self.removed)
            unet = [(n, p) for n, p in self.unet.named_parameters()
                    if not lora.is_lora_param(n) and not n.startswith(dropped)]
            others = count(p for m in (self.pipe.vae, self.pipe.text_encoder) if m is not None for p in m.parameters())
            base = lambda n: n.replace(".base_layer.", ".")     # a parameter's name before the adapter came
            return {"total": count(p for _, p in unet) + others, "unet": count(p for _, p in unet),
                    "trainable": count(p for n, p in unet if self.trainable(base(n))),
                    **({} if lora.teacher_on() else {"adapter": count(self.trainable_parameters())})}
        parts = [self.unet, self.pipe.vae, self.pipe.text_encoder]
        return {"total": sum(count(m.parameters()) for m in parts if m is not None),
                "unet": count(self.unet.parameters()),
                "trainable": count(self.trainable_parameters())}

    def save(self, out_dir):
        """Write what rebuilds this model: the source, the removed blocks and the trainable
        weights (the frozen rest comes from the source). Atomic: a temp folder, then rename."""
        from safetensors.torch import save_file
        meta = {"model": self.name, "source": self.source, "removed": self.removed,
                "num_parameters": self.num_parameters(), **({"lora": {"rank": self.lora}} if self.lora else {})}
        with atomic_dir(out_dir) as tmp:
            state = {n: p.detach().float().cpu().contiguous() for n, p in self.trainable_named_parameters()}
            save_file(state, os.path.join(tmp, STUDENT_WEIGHTS))
            write_json(os.path.join(tmp, STUDENT_FILE), meta)

    def load_saved(self, path, meta):
        if meta.get("lora"):
            self.add_lora(meta["lora"]["rank"])
        self.remove(meta["removed"])
        return self.load_weights(path)

    def load_weights(self, path):
        """Copy the trainable weights saved in `path` (by `save`) into this model."""
        meta = read_json(os.path.join(path, STUDENT_FILE))
        state = load_safetensors(os.path.join(path, STUDENT_WEIGHTS))
        expected = {n for n, _ in self.trainable_named_parameters()}
        if set(state) != expected:
            raise UserError(f"{path}: its weights do not match a {self.name} model with blocks "
                            f"{meta['removed']} removed; it was written by another version or model")
        params = dict(self.trainable_named_parameters())
        with torch.no_grad():
            for n, v in state.items():
                params[n].copy_(v)
        return self


class TeacherView:
    """M0 on a LoRA student's weights (VideoModel.teacher): every call that runs the shared module
    (generate, noise_pred, the counts) runs inside as_teacher, on the calling thread; nothing is removed
    and nothing trains. Everything else is the student's (its device, source, sampler, text encoder)."""

    RUNS_THE_MODULE = ("generate", "noise_pred", "guided_noise_pred", "num_parameters")

    def __init__(self, student):
        self.student = student

    @property
    def removed(self):
        return []

    def blocks(self):
        return OrderedDict((p, self.student.unet.get_submodule(p)) for p in self.student.block_paths)

    def __getattr__(self, name):
        value = getattr(self.student, name)
        if name not in self.RUNS_THE_MODULE:
            return value

        def as_teacher(*args, **kwargs):
            with lora.teacher_mode():
                return value(*args, **kwargs)
        return as_teacher


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

# name -> "module:function(name, path, adapter, dtype)" that builds the model, imported on first use.
# Why a string: each family (and the toy world) subclasses VideoModel, so it imports this package;
# naming it here lazily is the one arrow back up, and `import models` stays free of diffusers.
LOADERS = {
    "animatediff": "models.animatediff:load_animatediff",
    "tiny": "models.animatediff:load_tiny",
    "toy": "toy.shapes_model:load_toy",
    "videocrafter2": "models.videocrafter2:load_videocrafter2",
    "tiny-videocrafter2": "models.videocrafter2:load_tiny_videocrafter2",
    "wan": "models.wan:load_wan",
    "tiny-wan": "models.wan:load_tiny_wan",
}


def _loader(name):
    module, function = LOADERS[name].split(":")
    return getattr(importlib.import_module(module), function)


def load(name, path=None, device=None, dtype=None, adapter=None, lora_rank=None):
    """Load model `name`. `path`: a hub id or local directory of the base model, or a directory
    written by `VideoModel.save` (a pruned / trained student, rebuilt from its recorded source; a LoRA
    student's folder rebuilds its adapter too). `adapter`: AnimateDiff's motion adapter (hub id or
    directory). `lora_rank`: a rank: M0 with a fresh adapter of that rank (a LoRA student of itself,
    models/lora.py), or the rank a LoRA student folder must hold. `device`: default cuda if available,
    else cpu. `dtype`: default float32; a LoRA student's frozen base bfloat16 on a GPU."""
    if name not in LOADERS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(LOADERS)}")
    _quiet_libraries()
    device = device or default_device()
    meta = None
    if path is not None and os.path.isfile(os.path.join(path, STUDENT_FILE)):
        meta = read_json(os.path.join(path, STUDENT_FILE))
        if meta["model"] != name:
            raise UserError(f"{path} holds a {meta['model']} model, not {name}; "
                            f"pass --model {meta['model']} or another directory")
        saved = (meta.get("lora") or {}).get("rank")
        if lora_rank and saved != lora_rank:
            fix = f"pass --lora {saved}" if saved else "drop --lora"
            raise UserError(f"{path} holds a {f'rank-{saved} LoRA' if saved else 'full-weight'} student, not a "
                            f"rank-{lora_rank} LoRA one; {fix}")
        lora_rank = saved
    elif path is not None and looks_local(path) and not os.path.isdir(path):
        raise UserError(f"no such directory: {path}; pass a hub id or an existing directory")
    if lora_rank and dtype is None and torch.device(device).type == "cuda":
        dtype = torch.bfloat16            # the frozen base: one copy, in bf16 (the adapter is float32)
    if meta is not None:
        model = _loader(name)(name, meta["source"]["path"], meta["source"]["adapter"], dtype)
        model.load_saved(path, meta)
    else:
        model = _loader(name)(name, path, adapter, dtype)
        if lora_rank:
            model.add_lora(lora_rank)
    model.to(device)
    return model


def looks_local(p):
    """A path, not a hub id ("owner/name")."""
    return p.startswith((".", "/", "~")) or os.path.exists(p) or p.count("/") != 1


def _quiet_libraries():
    """diffusers and transformers warn about optional packages (torchvision) and dtype casts that do
    not concern us; keep their errors, drop the noise from every CLI's output."""
    import diffusers
    import transformers
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
