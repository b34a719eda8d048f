"""What one generation costs (the paper's Param, TFLOPs and latency columns, Sec. 4.1): parameters,
TFLOPs of the denoiser counted by torch's FlopCounterMode, and seconds per video.

No paper step: evaluate.py adds these to an eval.json (`with_cost`) and prune.py to prune.json,
before and after the cut.
"""
import time

import numpy as np
import torch


def parameter_counts(model):
    """Parameters: the whole pipeline, the denoiser, the prunable blocks still in it, the trained
    part (the paper's Param column: AnimateDiff's motion modules, VideoCrafter2's whole UNet), and
    how many blocks were removed."""
    counts = model.num_parameters()
    prunable = sum(block_sizes(model).values())
    return {"total": counts["total"], "unet": counts["unet"], "prunable": prunable,
            "trainable": counts["trainable"], "removed_blocks": len(model.removed)}


def block_sizes(model):
    """Parameters of each prunable block still in the model (a LoRA student's: as merged, the adapter's
    A and B not counted; models/lora.py)."""
    return {n: sum(p.numel() for name, p in b.named_parameters() if ".lora_A." not in name and ".lora_B." not in name)
            for n, b in model.blocks().items()}


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
    x_t = torch.zeros(1, *model.latent_shape(num_frames, height, width),
                      device=model.device, dtype=model.unet.dtype)            # (1, C, F, h, w)
    embeds = model.encode([""])
    t = torch.tensor([model.num_train_timesteps // 2], device=model.device)
    with torch.no_grad(), model.as_exported(), FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        model.noise_pred(x_t, t, embeds)   # a LoRA student: as merged
    forward = counter.get_total_flops() / 1e12
    cfg = 2 if guidance > 1 else 1
    return {"tflops": forward * steps * cfg, "unet_forward_tflops": forward, "steps": steps, "cfg_factor": cfg,
            "note": "one denoiser forward (batch 1) measured with FlopCounterMode x steps x CFG factor; "
                    "text encoder and VAE decode not counted"}


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(model, prompt, seed, repeats=1, **gen_kw):
    """Seconds to generate one video at batch 1 (after a warm-up), median of `repeats`. The warm-up
    is one sampler step: every op at batch 1's shapes runs once, at a tenth of a generation's cost."""
    model.generate([prompt], [seed], **dict(gen_kw, steps=1))
    times = []
    for _ in range(repeats):
        _sync(model.device)
        start = time.perf_counter()
        model.generate([prompt], [seed], **gen_kw)
        _sync(model.device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))
