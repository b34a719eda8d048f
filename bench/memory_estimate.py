"""GPU memory of one ReDPO step (paper Sec. 3.4.1) per model preset, measured on a CPU and extrapolated.

What one step holds on the GPU (redpo.train with the preset's batch of pairs per process, bf16 autocast):
the student and the teacher denoisers (float32 weights, as vip_loop.py loads them), both models' VAEs
(they sit on the GPU for generation), the student's gradients and AdamW's two moments (foreach, CUDA's
default, whose temporaries are counted), and the step's activations and temporaries. The text encoder is
not on the GPU: its outputs are cached per prompt before training (redpo.encode_prompts), and for Wan it
lives on the CPU.

How. Weights are counted exactly from the real configs on the meta device. Everything the step itself
allocates (activations saved for backward, temporaries, autocast's bf16 weight copies, gradients,
optimizer state) is measured: one step is run twice on the CPU under a TorchDispatchMode that adds up
the bytes of every tensor storage created inside it while it is alive (LiveBytes), keeping the peak of
each phase: the loss and its backward (which grows with tokens), and AdamW's update (which does not).
Each phase is extrapolated on its own; the step's peak is the larger of the two.
The CPU runs the same ops at the same dtypes (CPU autocast to bf16; CPU attention is a flash kernel that
keeps O(tokens) like CUDA's), so these bytes are what the GPU allocates, less the CUDA context (~0.5 GB)
and the caching allocator's slack (typically 5-15%), which the table leaves out.
  - Wan: real-size blocks (width 1536, FFN 8960, 4096-d text), L = 1 and 2 blocks, at N = 64 and 128
    tokens per video. The loss phase is fitted exactly as M(L, N) = a + b N + L (c N + d) (d: a block's
    gradients, moments, bf16 copies and its text keys/values; c N: what a block keeps per token) and
    extrapolated to L = 30 blocks and N = 21 x 30 x 52 = 32,760 tokens (81 x 480 x 832); a fifth run
    (L = 2, N = 256) checks the fit. The optimizer phase is linear in L.
  - AnimateDiff, VideoCrafter2: the whole real-size UNet, at 2 and 4 latent frames of 16 x 16; a U-Net's
    activations are linear in frames (a + b F, every layer's size scales with F) and in pixels at fixed
    frames (checked with a third run); extrapolated to 16 frames of 64 x 64 (AnimateDiff) and 40 x 64
    (VideoCrafter2). These runs take minutes on one CPU core.

    OMP_NUM_THREADS=1 python bench/memory_estimate.py --model wan            # ~2 min on one core
    OMP_NUM_THREADS=1 python bench/memory_estimate.py --model all --out docs/wan/memory.json
"""
import argparse
import os
import sys
import types
import weakref

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import runtime  # noqa: E402  before torch: it sets how torch's CPU threads wait

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402

GIB = 2 ** 30
WAN_TOKENS = 21 * 30 * 52        # (81 - 1) / 4 + 1 latent frames, 480 / 16 x 832 / 16 patches


class LiveBytes(TorchDispatchMode):
    """Bytes of the tensor storages created inside the mode and still alive (`now`), and the most at
    once during each phase (`peaks[phase]`, the phase named by setting `phase`). Storages made before
    entering it (weights, inputs) are not counted."""

    def __init__(self):
        super().__init__()
        self.seen = weakref.WeakSet()
        self.now, self.phase, self.peaks = 0, None, {}

    def _free(self, nbytes):
        self.now -= nbytes

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                st = t.untyped_storage()
                if st not in self.seen and st.nbytes():
                    self.seen.add(st)
                    self.now += st.nbytes()
                    weakref.finalize(st, self._free, st.nbytes())
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), self.now)
        return out


def count(module):
    return sum(p.numel() for p in module.parameters())


def stub(model_class, unet_attr, unet, scheduler, *extra):
    """A project VideoModel around just a denoiser (no VAE, no text encoder: the step gets cached text)."""
    pipe = types.SimpleNamespace(vae=None, text_encoder=None, scheduler=scheduler,
                                 set_progress_bar_config=lambda **kw: None, **{unet_attr: unet})
    return model_class(*extra[:1], pipe, {"path": None, "adapter": None}, *extra[1:])


def step_bytes(student, teacher, batch, checkpointing, steps=2):
    """Peak bytes allocated by `steps` ReDPO steps, per phase: "loss" (redpo.batch_loss and backward:
    activations, gradients, and from the second step AdamW's moments) and "optimizer" (AdamW foreach)."""
    import redpo
    params = student.trainable_parameters()
    for p in params:
        p.requires_grad_(True)
    if checkpointing:
        student.unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(params, lr=6e-6, foreach=True)
    with LiveBytes() as live:
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            live.phase = "loss"
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss, _ = redpo.batch_loss(student, teacher, batch, "redpo", 5000.0, 1e4)
            loss.backward()
            live.phase = "optimizer"
            optimizer.step()
    return live.peaks


def make_batch(pairs, latent, text_len, text_dim, timesteps):
    g = torch.Generator().manual_seed(0)
    return {"x_w": torch.randn(pairs, *latent, generator=g), "x_l": torch.randn(pairs, *latent, generator=g),
            "eps": torch.randn(pairs, *latent, generator=g), "t": torch.tensor(timesteps[:pairs]),
            "prompts": ["a"] * pairs, "embeds": torch.randn(pairs, text_len, text_dim, generator=g)}


# ---------------------------------------------------------------------------------------------
# Per model: the denoiser at a reduced size, the real static memory
# ---------------------------------------------------------------------------------------------

def wan_models(layers):
    from diffusers import UniPCMultistepScheduler
    from models import wan
    config = dict(wan.WAN_TRANSFORMER_CONFIG, num_layers=layers)
    make = lambda: stub(wan.Wan, "transformer", wan.build_wan_transformer(config),
                        UniPCMultistepScheduler(**wan.WAN_SCHEDULER), "wan", {})
    return make(), make()


def measure_wan(pairs, checkpointing):
    """Fit M(L, N) = a + b N + L (c N + d) on real-size blocks; returns (fit, check, prediction at full size)."""
    from models import wan
    runs, opt = {}, {}
    for layers, frames, width in ((1, 1, 16), (1, 2, 16), (2, 1, 16), (2, 2, 16), (2, 2, 32)):
        torch.manual_seed(0)
        student, teacher = wan_models(layers)
        tokens = frames * 8 * width // 2
        batch = make_batch(pairs, (16, frames, 16, width), wan.WAN_TEXT_LEN, 4096, [700.0, 300.0])
        batch["embeds"] = batch["embeds"].bfloat16()     # UMT5's output dtype, as redpo caches it
        peaks = step_bytes(student, teacher, batch, checkpointing)
        runs[(layers, tokens)], opt[layers] = peaks["loss"], peaks["optimizer"]
        print(f"  wan L={layers} N={tokens}: loss {peaks['loss'] / 2**20:.1f} MiB, "
              f"optimizer {peaks['optimizer'] / 2**20:.1f} MiB", flush=True)
    n1, n2 = 64, 128
    b_plus_c = (runs[(1, n2)] - runs[(1, n1)]) / (n2 - n1)
    b_plus_2c = (runs[(2, n2)] - runs[(2, n1)]) / (n2 - n1)
    c, b = b_plus_2c - b_plus_c, 2 * b_plus_c - b_plus_2c
    d = runs[(2, n1)] - runs[(1, n1)] - c * n1
    a = runs[(1, n1)] - b * n1 - (c * n1 + d)
    fit = lambda L, N: a + b * N + L * (c * N + d)
    optimizer = opt[1] + 29 * (opt[2] - opt[1])                     # no token dependence: per block, linear in L
    return {"check": (runs[(2, 256)], fit(2, 256)), "loss": fit(30, WAN_TOKENS), "optimizer": optimizer}


def unet_models(name):
    from diffusers import DDIMScheduler
    import models
    from models import animatediff, videocrafter2
    if name == "animatediff":
        make = lambda: stub(models.VideoModel, "unet", animatediff.build_animatediff_unet(),
                            DDIMScheduler(**animatediff.ANIMATEDIFF_SCHEDULER), "animatediff",
                            [], animatediff.is_motion_param, {})
        return make, (4, 16, 64, 64), 768
    make = lambda: stub(videocrafter2.VideoCrafter2, "unet", videocrafter2.build_videocrafter2_unet(),
                        DDIMScheduler(**videocrafter2.VIDEOCRAFTER2_SCHEDULER), "videocrafter2", [],
                        models.DEFAULTS["videocrafter2"])
    return make, (4, 16, 40, 64), 1024


def measure_unet(name, pairs, checkpointing):
    """Activations linear in frames at 16 x 16 (2 and 4 frames), then scaled by pixels (checked at 24 x 24)."""
    make, full, text_dim = unet_models(name)
    runs, opt = {}, 0
    for frames, side in ((2, 16), (4, 16), (2, 24)):
        torch.manual_seed(0)
        student, teacher = make(), make()
        peaks = step_bytes(student, teacher, make_batch(pairs, (4, frames, side, side), 77, text_dim, [700, 300]),
                           checkpointing)
        runs[(frames, side)], opt = peaks["loss"], max(opt, peaks["optimizer"])
        print(f"  {name} F={frames} {side}x{side}: loss {peaks['loss'] / 2**20:.1f} MiB, "
              f"optimizer {peaks['optimizer'] / 2**20:.1f} MiB", flush=True)
    per_frame = (runs[(4, 16)] - runs[(2, 16)]) / 2                 # activation bytes per frame at 16 x 16
    fixed = runs[(2, 16)] - 2 * per_frame                           # gradients, moments, bf16 weight copies
    scaled = lambda frames, pixels: fixed + per_frame * frames * pixels / 256
    return {"check": (runs[(2, 24)], scaled(2, 24 * 24)), "loss": scaled(full[1], full[2] * full[3]),
            "optimizer": opt}


def static_bytes(name):
    """Float32 weights on the GPU: the student's and the teacher's denoiser and both models' VAEs."""
    from diffusers import AutoencoderKL, AutoencoderKLWan
    with torch.device("meta"):
        if name == "wan":
            from models import wan
            denoiser, vae = count(wan.build_wan_transformer()), count(AutoencoderKLWan())
        else:
            make, _, _ = unet_models(name)
            denoiser = count(make().unet)
            vae = count(AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                                      up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2))
    return {"denoiser_params": denoiser, "vae_params": vae, "weights": 4 * (2 * denoiser + 2 * vae)}


def estimate(name, pairs, checkpointing):
    measured = measure_wan(pairs, checkpointing) if name == "wan" else measure_unet(name, pairs, checkpointing)
    static = static_bytes(name)
    step = max(measured["loss"], measured["optimizer"])
    return dict(model=name, pairs_per_gpu=pairs, gradient_checkpointing=checkpointing, **static,
                weights_gib=static["weights"] / GIB, loss_phase_gib=measured["loss"] / GIB,
                optimizer_phase_gib=measured["optimizer"] / GIB, total_gib=(static["weights"] + step) / GIB,
                check_measured_mib=measured["check"][0] / 2**20, check_predicted_mib=measured["check"][1] / 2**20)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Estimate the GPU memory of one ReDPO step per preset, measured on a CPU.")
    p.add_argument("--model", default="wan", choices=["wan", "animatediff", "videocrafter2", "all"],
                   help="which preset to estimate (default: wan)")
    p.add_argument("--pairs", type=int, default=2, help="pairs per GPU per step (default: 2, the paper's batch)")
    p.add_argument("--checkpointing", default="both", choices=["on", "off", "both"],
                   help="gradient checkpointing of the student in the step (default: both, one row each)")
    p.add_argument("--out", default=None, help="also write the rows to this JSON file (default: print only)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    names = ["wan", "animatediff", "videocrafter2"] if args.model == "all" else [args.model]
    rows = []
    for name in names:
        for checkpointing in {"off": (False,), "on": (True,), "both": (False, True)}[args.checkpointing]:
            row = estimate(name, args.pairs, checkpointing)
            rows.append(row)
            print(f"{name}, {args.pairs} pairs, checkpointing {'on' if checkpointing else 'off'}: weights "
                  f"{row['weights_gib']:.1f} GiB + max(loss and backward {row['loss_phase_gib']:.1f}, optimizer "
                  f"{row['optimizer_phase_gib']:.1f}) GiB = {row['total_gib']:.1f} GiB "
                  f"(fit check: measured {row['check_measured_mib']:.0f} MiB, predicted {row['check_predicted_mib']:.0f} MiB)",
                  flush=True)
    if args.out:
        runtime.write_json(args.out, rows)


if __name__ == "__main__":
    runtime.run_cli(main)
