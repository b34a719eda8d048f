"""Benchmark (one CUDA GPU): the real-size cost of V.I.P. -- does it fit, how long does it take?

Not yet run on a GPU: its logic was smoke-run on a CPU with the tiny models standing in.

    python bench/bench_gpu.py --out bench_gpu.json                         # everything, ~8 min on an H100
    python bench/bench_gpu.py --sections animatediff --out ad.json         # one model family

Random weights at the real architectures' sizes, built from configs directly on the GPU (no download):
  animatediff:   SD 1.5 UNet + VAE + CLIP ViT-L/14 text encoder + the v1-5-2 motion adapter (21 modules)
  videocrafter2: its 1.413B UNet + SD 2.1's VAE + OpenCLIP ViT-H/14 text encoder (23 layers)
and run through the project's own code (models.VideoModel.generate, redpo.batch_loss, infra/cost.py's measure_tflops).

Per family:
  generation  seconds per video at the paper's sampler, batch 1, in the dtype `models.load` uses (fp32)
              and in half precision; at batch 4, seconds per video projected to the full step count from
              2- and 4-step runs, and the largest batch that fits, predicted from the peak memory at batch 2
              and 4 (inference memory is linear in the batch)
              (per step = (t4 - t2) / 2); AnimateDiff also next to diffusers' AnimateDiffPipeline called
              directly on the same components (output_type="np", one run each).
  training    one step at the paper's batch (2 pairs), bf16 autocast, with and without gradient
              checkpointing: the unavoidable work (student fwd+bwd on 2B, teacher fwd on 2B), ReDPO
              (redpo.batch_loss + backward) and the whole step (+ grad clipping + AdamW step), each with
              its median time over --repeats and its peak GPU memory; an out-of-memory is reported as such.
Every figure goes to the --out JSON (rewritten after each measurement, so a cut-off run keeps what it got).
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from infra import cost, disk

import torch  # noqa: E402

import defaults  # noqa: E402
import models  # noqa: E402
import redpo  # noqa: E402
from models import animatediff as ad  # noqa: E402
from models import videocrafter2 as vc2  # noqa: E402

PROMPT = "a corgi running on the beach"

# The text encoders and VAE the two real models ship with (their hub config.json files).
CLIP_VIT_L_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                       num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                       projection_dim=768)
OPENCLIP_VIT_H_TEXT = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                           num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu",
                           projection_dim=1024)
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              layers_per_block=2, norm_num_groups=32, sample_size=512)


# ---------------------------------------------------------------------------------------------
# Building the real-size models on the GPU
# ---------------------------------------------------------------------------------------------

def build_animatediff(device):
    from diffusers import AnimateDiffPipeline, AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    with torch.device(device):
        pipe = AnimateDiffPipeline(
            vae=AutoencoderKL(**SD_VAE), text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_VIT_L_TEXT)),
            tokenizer=ad.build_tiny_tokenizer(), unet=UNet2DConditionModel(**ad.SD15_UNET_CONFIG),
            motion_adapter=MotionAdapter(**ad.ANIMATEDIFF_ADAPTER_CONFIG),
            scheduler=DDIMScheduler(**ad.ANIMATEDIFF_SCHEDULER))
    pipe.to(device)
    return models.VideoModel("animatediff", pipe, {"path": None, "adapter": None},
                             ad.motion_block_paths(pipe.unet), ad.is_motion_param,
                             models.DEFAULTS["animatediff"])


def build_videocrafter2(device):
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel
    with torch.device(device):
        pipe = vc2.VideoCrafter2Pipe(
            unet=vc2.build_videocrafter2_unet().eval(), vae=AutoencoderKL(**SD_VAE).eval(),
            text_encoder=CLIPTextModel(CLIPTextConfig(**OPENCLIP_VIT_H_TEXT)).eval(),
            tokenizer=ad.build_tiny_tokenizer(), scheduler=DDIMScheduler(**vc2.VIDEOCRAFTER2_SCHEDULER))
    pipe.to(device)
    return vc2.VideoCrafter2("videocrafter2", pipe, {"path": None, "adapter": None},
                                vc2.videocrafter2_block_paths(pipe.unet), models.DEFAULTS["videocrafter2"])


BUILDERS = {"animatediff": build_animatediff, "videocrafter2": build_videocrafter2}


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

def clock(fn):
    """(seconds, peak GiB) of one call of fn, synchronised, peak memory reset before."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, torch.cuda.max_memory_allocated() / 2**30


def is_oom(e):
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def free():
    import gc
    gc.collect()
    torch.cuda.empty_cache()


def gen_figures(model, name, record, save, compare_diffusers):
    d = model.defaults
    steps = d["steps"]
    gen = lambda b, s: model.generate([PROMPT] * b, list(range(b)), steps=s)       # noqa: E731
    clock(lambda: gen(1, 2))                                                        # warm-up
    dtype = str(model.unet.dtype).replace("torch.", "")
    t, mem = clock(lambda: gen(1, steps))
    record["generation"] = {"settings": {k: d[k] for k in ("num_frames", "height", "width", "steps", "guidance")},
                            dtype: {"batch1_s_per_video": t, "batch1_peak_gib": mem}}
    print(f"{name} generate ({dtype}) batch 1, {steps} steps: {t:.1f} s/video, peak {mem:.1f} GiB", flush=True)
    save()
    if compare_diffusers:
        def direct():
            model.pipe(prompt=[PROMPT], num_frames=d["num_frames"], num_inference_steps=steps,
                       guidance_scale=d["guidance"], height=d["height"], width=d["width"],
                       generator=[torch.Generator("cpu").manual_seed(0)], output_type="np")
        t_d, _ = clock(direct)
        record["generation"][dtype]["diffusers_pipeline_s_per_video"] = t_d
        record["generation"][dtype]["ratio_ours_to_diffusers"] = t / t_d
        print(f"{name} diffusers AnimateDiffPipeline directly: {t_d:.1f} s/video; ours / diffusers = {t / t_d:.3f}",
              flush=True)
        save()
    record["tflops_per_video"] = cost.measure_tflops(model, d["num_frames"], d["height"], d["width"], steps,
                                                         d["guidance"])
    save()
    for half in (torch.float16, torch.bfloat16):
        model.pipe.to(dtype=half)
        key = str(half).replace("torch.", "")
        clock(lambda: gen(1, 2))
        t_h, mem_h = clock(lambda: gen(1, steps))
        entry = {"batch1_s_per_video": t_h, "batch1_peak_gib": mem_h}
        record["generation"][key] = entry
        print(f"{name} generate ({key}) batch 1: {t_h:.1f} s/video, peak {mem_h:.1f} GiB", flush=True)
        save()
    for dt in (torch.float32, torch.float16):
        model.pipe.to(dtype=dt)
        key = str(dt).replace("torch.", "")
        try:
            t2a, mem_a = clock(lambda: gen(2, 2))
            t2b, mem_b = clock(lambda: gen(4, 2))
            t4b, _ = clock(lambda: gen(4, 4))
        except Exception as e:                              # noqa: BLE001 (only out-of-memory is expected)
            if not is_oom(e):
                raise
            free()
            record["generation"][key]["batch4"] = "out of memory"
            continue
        per_video_gib = (mem_b - mem_a) / 2                 # inference memory grows linearly with the batch
        fixed_gib = mem_a - 2 * per_video_gib
        total_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
        max_batch = int((0.95 * total_gib - fixed_gib) // per_video_gib) if per_video_gib > 0 else None
        per_step = (t4b - t2b) / 2
        projected = (t4b + (steps - 4) * per_step) / 4
        record["generation"][key].update({
            "peak_gib_batch2": mem_a, "peak_gib_batch4": mem_b, "gib_per_extra_video": per_video_gib,
            "max_batch_predicted": max_batch, "batch4_s_per_video_projected": projected,
            "batch4_s_per_step": per_step})
        print(f"{name} generate ({key}) batch 4: {projected:.1f} s/video (projected to {steps} steps from 2 and 4); "
              f"peak {mem_a:.1f} / {mem_b:.1f} GiB at batch 2 / 4 -> largest batch that fits ~{max_batch}", flush=True)
        save()
        free()
    model.pipe.to(dtype=torch.float32)


def train_figures(student, teacher, name, record, save, repeats, pairs=2):
    """One ReDPO step at the paper's batch, bf16 autocast, with / without gradient checkpointing."""
    d = student.defaults
    scale = student.pipe.vae_scale_factor
    shape = (pairs, student.unet.config.in_channels, d["num_frames"], d["height"] // scale, d["width"] // scale)
    g = torch.Generator("cpu").manual_seed(0)
    dev = student.device
    batch = {"x_w": torch.randn(shape, generator=g).to(dev), "x_l": torch.randn(shape, generator=g).to(dev),
             "eps": torch.randn(shape, generator=g).to(dev),
             "t": torch.randint(0, 1000, (pairs,), generator=g).to(dev), "prompts": [PROMPT] * pairs}
    params = student.trainable_parameters()
    for p in params:
        p.requires_grad_(True)
    preset = defaults.PRESETS[name]   # the paper's lr, beta and w_sft for this model
    optimizer = torch.optim.AdamW(params, lr=preset["lr"])
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16)
    x_t = torch.randn((2 * pairs,) + shape[1:], device=dev)
    t2 = torch.cat([batch["t"], batch["t"]])
    embeds = torch.cat([teacher.encode(batch["prompts"])] * 2)

    def unavoidable():
        with autocast:
            out = student.noise_pred(x_t, t2, embeds)
            with torch.no_grad():
                teacher.noise_pred(x_t, t2, embeds)
        out.float().mean().backward()
        optimizer.zero_grad(set_to_none=True)

    def ours():
        with autocast:
            loss, stats = redpo.batch_loss(student.noise_pred, teacher, batch, "redpo", preset["beta"], preset["w_sft"])
        loss.backward()
        optimizer.zero_grad(set_to_none=True)
        assert all(map(lambda v: v == v, stats.values())), stats     # finite (not NaN) in bf16

    def step():
        with autocast:
            loss, _ = redpo.batch_loss(student.noise_pred, teacher, batch, "redpo", preset["beta"], preset["w_sft"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    record["training"] = {"pairs_per_step": pairs, "latent_shape": list(shape),
                          "trainable_params": sum(p.numel() for p in params)}
    for ckpt in (False, True):
        if ckpt:
            student.unet.enable_gradient_checkpointing()
        key = "checkpointing" if ckpt else "no_checkpointing"
        entry = record["training"][key] = {}
        for label, fn in (("unavoidable", unavoidable), ("redpo", ours), ("step", step)):
            try:
                clock(fn)                                                   # warm-up (AdamW allocates its state)
                runs = [clock(fn) for _ in range(repeats)]
                entry[label] = {"s": statistics.median(r[0] for r in runs), "peak_gib": max(r[1] for r in runs)}
                print(f"{name} train ckpt={ckpt} {label:11s}: {entry[label]['s'] * 1e3:8.0f} ms, "
                      f"peak {entry[label]['peak_gib']:.1f} GiB", flush=True)
            except Exception as e:                                          # noqa: BLE001
                if not is_oom(e):
                    raise
                optimizer.zero_grad(set_to_none=True)
                free()
                entry[label] = {"oom": True}
                print(f"{name} train ckpt={ckpt} {label:11s}: out of memory", flush=True)
            save()
        if "s" in entry.get("redpo", {}) and "s" in entry.get("unavoidable", {}):
            entry["ratio_redpo_to_unavoidable"] = entry["redpo"]["s"] / entry["unavoidable"]["s"]
            print(f"{name} train ckpt={ckpt} ReDPO / unavoidable = {entry['ratio_redpo_to_unavoidable']:.3f}")
        if ckpt:
            student.unet.disable_gradient_checkpointing()
    optimizer = None                     # frees AdamW's state (the closures above hold the name)
    for p in params:
        p.requires_grad_(False)
    save()


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--sections", nargs="+", default=["animatediff", "videocrafter2"], choices=list(BUILDERS))
    p.add_argument("--parts", nargs="+", default=["generation", "training"], choices=["generation", "training"])
    p.add_argument("--repeats", type=int, default=3, help="timed training steps per variant (median)")
    p.add_argument("--out", default="bench_gpu.json")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("error: this benchmark needs a CUDA GPU; on a CPU run bench/bench_redpo.py instead")
    models._quiet_libraries()
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
              "total_gib": torch.cuda.get_device_properties(0).total_memory / 2**30}

    def save():
        with disk.atomic_file(args.out) as tmp, open(tmp, "w") as f:
            json.dump(result, f, indent=2)

    print(f"{result['gpu']}, {result['total_gib']:.0f} GiB, torch {result['torch']}", flush=True)
    for name in args.sections:
        start = time.perf_counter()
        record = result[name] = {}
        model = BUILDERS[name]("cuda")
        record["params"] = model.num_parameters()
        print(f"{name}: {record['params']}", flush=True)
        if "generation" in args.parts:
            gen_figures(model, name, record, save, compare_diffusers=name == "animatediff")
        if "training" in args.parts:
            teacher = BUILDERS[name]("cuda")
            train_figures(model, teacher, name, record, save, args.repeats)
            del teacher
        record["bench_wall_s"] = time.perf_counter() - start
        save()
        del model
        free()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
