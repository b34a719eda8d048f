"""Benchmark: the cost of one ReDPO step against its unavoidable work.

    python bench/bench_redpo.py                    # tiny + a larger AnimateDiff-shaped config, CPU
    python bench/bench_redpo.py --configs real     # real-size AnimateDiff, random weights (a GPU)

Unavoidable: one student forward + backward on the 2B batch [x^w_t; x^l_t] and one teacher
forward on the same batch (no grad). ReDPO (redpo.batch_loss + backward) should cost <= 1.05x that.
Naive: four separate forwards (student and teacher on winners and on losers) plus a fifth teacher
forward on the winners for the SFT term, as a direct transcription of Eq. 1-3 would do.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from infra import ranks

import torch  # noqa: E402

import defaults  # noqa: E402
import models  # noqa: E402
import redpo  # noqa: E402
from models import animatediff  # noqa: E402

CONFIGS = {
    # name: (unet config, adapter config, frames, latent size, pairs per step)
    "tiny": (animatediff.TINY_UNET_CONFIG, animatediff.TINY_ADAPTER_CONFIG, 8, 16, 2),
    "medium": (dict(animatediff.TINY_UNET_CONFIG, block_out_channels=(64, 128, 256), layers_per_block=2,
                    cross_attention_dim=32,
                    down_block_types=("CrossAttnDownBlock2D",) * 2 + ("DownBlock2D",),
                    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 2),
               dict(animatediff.TINY_ADAPTER_CONFIG, block_out_channels=(64, 128, 256), motion_layers_per_block=2,
                    motion_num_attention_heads=8),
               16, 16, 2),
    "real": (dict(animatediff.SD15_UNET_CONFIG, cross_attention_dim=32), animatediff.ANIMATEDIFF_ADAPTER_CONFIG, 16, 64, 2),
}


class Bare:
    """Just enough of a VideoModel for batch_loss: a UNetMotionModel and fixed text embeddings."""

    def __init__(self, unet, embeds, scheduler):
        self.unet, self.embeds, self.scheduler = unet, embeds, scheduler

    def encode(self, prompts):
        return self.embeds[: len(prompts)]

    embeddings = models.VideoModel.embeddings
    noise_pred = models.VideoModel.noise_pred
    add_noise = models.VideoModel.add_noise


def timed(fn, device, repeats):
    fn()                                    # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def bench(name, device, repeats, checkpointing):
    from diffusers import DDIMScheduler
    unet_cfg, adapter_cfg, frames, size, B = CONFIGS[name]
    torch.manual_seed(0)
    student = animatediff.build_animatediff_unet(unet_cfg, adapter_cfg).to(device)
    teacher = animatediff.build_animatediff_unet(unet_cfg, adapter_cfg).to(device).requires_grad_(False)
    for n, p in student.named_parameters():
        p.requires_grad_(animatediff.is_motion_param(n))
    if checkpointing:
        student.enable_gradient_checkpointing()
    sched = DDIMScheduler(**animatediff.ANIMATEDIFF_SCHEDULER)
    embeds = torch.randn(2 * B, 77, unet_cfg["cross_attention_dim"], device=device)
    S, T = Bare(student, embeds, sched), Bare(teacher, embeds, sched)
    shape = (B, 4, frames, size, size)
    batch = {"x_w": torch.randn(shape, device=device), "x_l": torch.randn(shape, device=device),
             "eps": torch.randn(shape, device=device), "t": torch.randint(0, 1000, (B,), device=device),
             "prompts": ["p"] * B}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    x_t = torch.randn((2 * B,) + shape[1:], device=device)
    t2 = torch.cat([batch["t"], batch["t"]])

    def unavoidable():
        with autocast:
            out = S.noise_pred(x_t, t2, embeds)
            with torch.no_grad():
                T.noise_pred(x_t, t2, embeds)
        out.float().mean().backward()

    def ours():
        with autocast:
            l, _ = redpo.batch_loss(S.noise_pred, T, batch, "redpo", defaults.PAPER["beta"], defaults.PAPER["w_sft"])
        l.backward()

    def naive():
        with autocast:
            x_w_t = sched.add_noise(batch["x_w"], batch["eps"], batch["t"])
            x_l_t = sched.add_noise(batch["x_l"], batch["eps"], batch["t"])
            e = embeds[:B]
            s_w, s_l = S.noise_pred(x_w_t, batch["t"], e), S.noise_pred(x_l_t, batch["t"], e)
            with torch.no_grad():
                r_w, r_l = T.noise_pred(x_w_t, batch["t"], e), T.noise_pred(x_l_t, batch["t"], e)
                r_w_sft = T.noise_pred(x_w_t, batch["t"], e)
            l, _ = redpo.loss(torch.cat([s_w, s_l]), torch.cat([r_w, r_l]), torch.cat([batch["eps"]] * 2))
            l = l + 0 * ((s_w - r_w_sft) ** 2).mean()
        l.backward()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t_base = timed(unavoidable, device, repeats)
    t_ours = timed(ours, device, repeats)
    t_naive = timed(naive, device, repeats)
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    params = sum(p.numel() for p in student.parameters())
    print(f"{name:7s} ckpt={str(checkpointing):5s} params {params / 1e6:8.1f}M  batch {B} pairs x {frames}f x {size}^2: "
          f"unavoidable {t_base * 1e3:8.1f} ms | ReDPO {t_ours * 1e3:8.1f} ms ({t_ours / t_base:.3f}x) | "
          f"naive {t_naive * 1e3:8.1f} ms ({t_naive / t_base:.3f}x) | peak GPU mem {mem:.1f} GiB")


def main():
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["tiny", "medium"], choices=list(CONFIGS))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--checkpointing", action="store_true", help="also time with gradient checkpointing")
    args = p.parse_args()
    models._quiet_libraries()
    device = ranks.default_device()
    for name in args.configs:
        for ckpt in ([False, True] if args.checkpointing else [False]):
            bench(name, device, args.repeats, ckpt)


if __name__ == "__main__":
    main()
