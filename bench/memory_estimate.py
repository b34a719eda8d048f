"""GPU memory of one ReDPO step (paper Sec. 3.4.1) per model preset, measured on a CPU and extrapolated.

What one step holds on the GPU (redpo.train with the preset's batch of pairs per process, bf16 autocast):
the student's and the teacher's denoiser and VAE (float32, as vip_loop.py loads them), for the U-Nets
also both CLIP text encoders (Wan's UMT5 stays on the CPU; every text encoder's outputs are cached per
prompt before training, redpo.encode_prompts), the student's gradients, AdamW's two moments and its
foreach temporaries, and the step's activations and temporaries.

How. Weights are counted exactly from the real configs on the meta device. What the step allocates is
measured on the whole real-size denoiser (every block, real widths; random weights) running the real
`redpo.batch_loss` and backward under a TorchDispatchMode (LiveBytes) that adds up the bytes of every
tensor storage created inside it while it is alive, and writes that sum down after every op: a trace of
the step's live bytes. The CPU runs the same ops at the same dtypes (CPU autocast to bf16; CPU attention
is a flash kernel that keeps O(tokens), as CUDA's), so these are the bytes the GPU allocates, less the
CUDA context (~0.5 GB) and the caching allocator's slack (typically 5-15%), which the table leaves out.
  - Sizes. The step runs at two small latent sizes; every other size runs the same ops in the same order
    and every tensor is a + b x in x = frames x height x width of the latent (tokens for Wan: the
    activations, the checkpointed block inputs; attention is O(x); the gradients and autocast's bf16
    weight copies are a). So the trace is extrapolated op by op, linearly in x, to the preset's size,
    and its maximum is the loss phase's peak, wherever in the step it falls (the end of the forward, the
    start of the backward with every checkpointed input alive, or its end with every gradient). A third
    size checks the prediction.
  - RAM. The teacher shares the student's weights (it runs under no_grad, so it adds only its transient
    activations; the bf16 casts of its weights, per op on the GPU, are the student's cached ones here:
    at most one weight's copy, < 30 MB, less). AdamW's moments are 8 bytes per trained parameter and
    alive through the second step's loss phase: added, not run, where they would not fit in RAM (Wan,
    VideoCrafter2: the whole denoiser is trained). The AdamW phase holds the gradients, both moments and
    one foreach temporary (the sqrt of the second moment): 16 bytes per trained parameter; AnimateDiff's
    runs the real optimizer step and checks that count.

    OMP_NUM_THREADS=1 python bench/memory_estimate.py --model wan --checkpointing on
    OMP_NUM_THREADS=1 python bench/memory_estimate.py --model all --checkpointing on --out docs/memory/memory.json
    OMP_NUM_THREADS=1 python bench/memory_estimate.py --model wan --lora 16 --out docs/memory/memory.json   # one 24 GB GPU
    OMP_NUM_THREADS=1 python bench/memory_estimate.py --model animatediff --lora 16 --scoring --out docs/memory/memory.json
"""
import argparse
import contextlib
import os
import sys
import time
import types
import weakref

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from infra import cli, disk

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402

GIB = 2 ** 30
MIB = 2 ** 20


class LiveBytes(TorchDispatchMode):
    """Bytes of the tensor storages created inside the mode and still alive (`now`), written down after
    every op (`trace`). Storages made before entering it (weights, inputs) are not counted, nor is an op's
    output on one of its inputs' storage (a view such as a Linear weight's transpose, an in-place op)."""

    def __init__(self):
        super().__init__()
        self.seen = weakref.WeakSet()
        self.now, self.trace = 0, []

    def _free(self, nbytes):
        self.now -= nbytes

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor) and t.device.type != "meta"}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                st = t.untyped_storage()
                if st not in self.seen and st.nbytes() and st.data_ptr() not in inputs:
                    self.seen.add(st)
                    self.now += st.nbytes()
                    weakref.finalize(st, self._free, st.nbytes())
        self.trace.append(self.now)
        return out


def count(module):
    return sum(p.numel() for p in module.parameters())


def stub(model_class, unet_attr, unet, scheduler, *extra):
    """A project VideoModel around just a denoiser (no VAE, no text encoder: the step gets cached text)."""
    pipe = types.SimpleNamespace(vae=None, text_encoder=None, scheduler=scheduler,
                                 set_progress_bar_config=lambda **kw: None, **{unet_attr: unet})
    return model_class(*extra[:1], pipe, {"path": None, "adapter": None}, *extra[1:])


def step_trace(student, teacher, batch, checkpointing, run_optimizer):
    """One ReDPO step as redpo.train runs it (redpo.batch_loss under bf16 autocast, backward, AdamW
    foreach) under LiveBytes. Returns {"trace": live bytes after each op of the loss and backward,
    "backward_at": the op where the backward starts, "optimizer": the AdamW step's peak or None}."""
    import defaults
    import redpo
    params = student.trainable_parameters()
    for p in params:
        p.requires_grad_(True)
    if checkpointing:
        student.unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(params, lr=defaults.PAPER["lr"], foreach=True)
    marks = {}
    pred = teacher.noise_pred

    def teacher_pred(*args, **kwargs):   # writes down where the teacher's forward starts
        marks["teacher_at"] = len(live.trace)
        return pred(*args, **kwargs)
    teacher.noise_pred = teacher_pred
    with LiveBytes() as live:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = redpo.batch_loss(student.noise_pred, teacher, batch, "redpo", defaults.PAPER["beta"], defaults.PAPER["w_sft"])
        backward_at = len(live.trace)
        loss.backward()
        trace = list(live.trace)
        del loss
        if run_optimizer:
            optimizer.step()
    del teacher.noise_pred
    if checkpointing:
        student.unet.disable_gradient_checkpointing()
    return {"trace": trace, "teacher_at": marks["teacher_at"], "backward_at": backward_at,
            "optimizer": max(live.trace[len(trace):]) if run_optimizer else None}


def make_batch(pairs, latent, t, text_len, text_dim, text_dtype):
    g = torch.Generator().manual_seed(0)
    return {"x_w": torch.randn(pairs, *latent, generator=g), "x_l": torch.randn(pairs, *latent, generator=g),
            "eps": torch.randn(pairs, *latent, generator=g), "t": torch.tensor(t[:pairs]),
            "prompts": ["a"] * pairs, "embeds": torch.randn(pairs, text_len, text_dim, generator=g).to(text_dtype)}


def extrapolate(trace_a, trace_b, x_a, x_b, x):
    """Each op's live bytes, linear in the latent size x through (x_a, trace_a) and (x_b, trace_b)."""
    if len(trace_a) != len(trace_b):
        raise RuntimeError(f"the two sizes ran different ops ({len(trace_a)} and {len(trace_b)}); "
                           "choose sizes without a dimension of 1 at any level")
    return [a + (b - a) * (x - x_a) / (x_b - x_a) for a, b in zip(trace_a, trace_b)]


def where(trace, teacher_at, backward_at):
    """The peak's place in the step, in words."""
    i = max(range(len(trace)), key=trace.__getitem__)
    part, start, end = (("the student's forward", 0, teacher_at) if i < teacher_at else
                        ("the teacher's forward", teacher_at, backward_at) if i < backward_at else
                        ("the backward", backward_at, len(trace)))
    return f"{part}, {100 * (i - start) / (end - start):.0f}% through it"


def part_peaks(trace, teacher_at, backward_at):
    """The most live bytes in each part of the step."""
    return {"student_forward": max(trace[:teacher_at]), "teacher_forward": max(trace[teacher_at:backward_at]),
            "backward": max(trace[backward_at:])}


# ---------------------------------------------------------------------------------------------
# Per model: the real-size denoiser, the sizes it runs at, the weights on the GPU
# ---------------------------------------------------------------------------------------------
# latent: (C, F, H, W) per video, F x H x W the extrapolated size x. Sizes: two for the fit and a
# check, none with a side of 1 at any level (8 x 8 patches or U-Net levels of 2 x 2 at the least),
# small enough that two real-size runs fit in 24 GiB of RAM. full: the preset's latent (models.DEFAULTS:
# 16 frames of 512 x 512 for AnimateDiff, 16 of 320 x 512 for VideoCrafter2, 81 of 480 x 832 for Wan).
# adamw: run the real optimizer step (its moments fit in RAM only for AnimateDiff's 453M trained
# parameters).
MODELS = {
    "wan": dict(latent=16, t=[700.0, 300.0], text=(512, 4096, torch.bfloat16), sizes=[(2, 8, 16), (2, 16, 16), (2, 16, 32)],
                full=(21, 60, 104), adamw=False),
    "animatediff": dict(latent=4, t=[700, 300], text=(77, 768, torch.float32), sizes=[(2, 16, 16), (4, 16, 16), (2, 24, 24)],
                        full=(16, 64, 64), adamw=True),
    "videocrafter2": dict(latent=4, t=[700, 300], text=(77, 1024, torch.float32), sizes=[(2, 16, 16), (4, 16, 16), (2, 24, 24)],
                          full=(16, 40, 64), adamw=False),
}


def build(name, meta=False):
    """The real-size student, and a teacher around the same denoiser (weights shared, see the docstring);
    `meta`: the denoiser on the meta device (for counting)."""
    from diffusers import DDIMScheduler, UniPCMultistepScheduler
    import models
    from models import animatediff, videocrafter2, wan
    builder = {"wan": wan.build_wan_transformer, "animatediff": animatediff.build_animatediff_unet,
               "videocrafter2": videocrafter2.build_videocrafter2_unet}[name]
    with torch.device("meta") if meta else contextlib.nullcontext():
        unet = builder()
    if name == "wan":
        make = lambda: stub(wan.Wan, "transformer", unet, UniPCMultistepScheduler(**wan.WAN_SCHEDULER), "wan", {})
    elif name == "animatediff":
        make = lambda: stub(models.VideoModel, "unet", unet, DDIMScheduler(**animatediff.ANIMATEDIFF_SCHEDULER),
                            "animatediff", [], animatediff.is_motion_param, {})
    else:
        make = lambda: stub(videocrafter2.VideoCrafter2, "unet", unet,
                            DDIMScheduler(**videocrafter2.VIDEOCRAFTER2_SCHEDULER), "videocrafter2", [],
                            models.DEFAULTS["videocrafter2"])
    return make(), make()


# The text encoders on the GPU in training, from the hub configs: SD 1.5's text_encoder/config.json
# (CLIP ViT-L/14) for AnimateDiff, SD 2.1's (OpenCLIP ViT-H/14, 23 layers as exported) for VideoCrafter2.
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu")
OPENCLIP_H = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                  max_position_embeddings=77, vocab_size=49408, hidden_act="gelu")
SD_VAE = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2)   # SD 1.5's and SD 2.1's vae/


def parameter_counts(name):
    """Parameters of the denoiser, of its trained part, of the VAE and of the text encoder on the GPU
    (0 for Wan's, which stays on the CPU), counted on the meta device."""
    from diffusers import AutoencoderKL, AutoencoderKLWan
    from transformers import CLIPTextConfig, CLIPTextModel
    student, _ = build(name, meta=True)
    denoiser, trained = count(student.unet), sum(p.numel() for p in student.trainable_parameters())
    with torch.device("meta"):
        if name == "wan":
            return dict(denoiser=denoiser, trained=trained, vae=count(AutoencoderKLWan()), text_encoder=0)
        text = CLIP_L if name == "animatediff" else OPENCLIP_H
        return dict(denoiser=denoiser, trained=trained, vae=count(AutoencoderKL(**SD_VAE)),
                    text_encoder=count(CLIPTextModel(CLIPTextConfig(**text))))


def measure(name, pairs, checkpointing):
    """Traces at MODELS[name]'s three sizes; the loss phase's peak at the full size, and the check."""
    spec, runs = MODELS[name], []
    torch.manual_seed(0)
    student, teacher = build(name)
    for frames, height, width in spec["sizes"]:
        start = time.time()
        batch = make_batch(pairs, (spec["latent"], frames, height, width), spec["t"] * pairs, *spec["text"])
        run = step_trace(student, teacher, batch, checkpointing, spec["adamw"] and not runs)
        student.unet.zero_grad(set_to_none=True)
        runs.append(dict(run, x=frames * height * width))
        print(f"  {name} {frames} x {height} x {width}: loss and backward peak {max(run['trace']) / MIB:.0f} MiB "
              f"({where(run['trace'], run['teacher_at'], run['backward_at'])}), {len(run['trace'])} ops, {time.time() - start:.0f} s",
              flush=True)
    (a, b, check), full = runs, spec["full"][0] * spec["full"][1] * spec["full"][2]
    predicted = extrapolate(a["trace"], b["trace"], a["x"], b["x"], full)
    return {"loss": max(predicted), "peak_at": where(predicted, a["teacher_at"], a["backward_at"]),
            "parts_gib": {k: v / GIB for k, v in part_peaks(predicted, a["teacher_at"], a["backward_at"]).items()},
            "adamw_measured": a["optimizer"], "check_measured": max(check["trace"]),
            "check_predicted": max(extrapolate(a["trace"], b["trace"], a["x"], b["x"], check["x"])),
            "sizes": [list(s) for s in spec["sizes"]], "full": list(spec["full"])}


def estimate(name, pairs, checkpointing):
    """One row: weights on the GPU, the loss phase (measured peak + AdamW's moments), the AdamW phase."""
    n = parameter_counts(name)
    weights = 4 * 2 * (n["denoiser"] + n["vae"] + n["text_encoder"])     # float32, student and teacher
    m = measure(name, pairs, checkpointing)
    loss = m.pop("loss") + 8 * n["trained"]                                # + AdamW's exp_avg, exp_avg_sq
    adamw = 16 * n["trained"]                                              # grads, 2 moments, sqrt(exp_avg_sq)
    return dict(model=name, pairs_per_gpu=pairs, gradient_checkpointing=checkpointing, params=n,
                weights_gib=weights / GIB, loss_phase_gib=loss / GIB, adamw_phase_gib=adamw / GIB,
                adamw_measured_gib=m["adamw_measured"] / GIB if m["adamw_measured"] else None,
                peak_gib=(weights + max(loss, adamw)) / GIB, loss_peak_at=m.pop("peak_at"),
                check_measured_mib=m.pop("check_measured") / MIB, check_predicted_mib=m.pop("check_predicted") / MIB,
                **m)


# ---------------------------------------------------------------------------------------------
# --lora RANK: one 24 GB GPU (models/lora.py). One copy of the denoiser, bf16, shared by the student (its
# removed blocks skipped, the adapter on) and the teacher (every block, the adapter off); the step as
# redpo.train runs it with --lora (split_backward: one video's activations at a time); generation (one
# video, with its classifier-free guidance half, then the VAE's decode); VideoScore scoring, alone on the GPU.
# ---------------------------------------------------------------------------------------------

LORA_PHASES = ("the teacher's forward", "the student's no-grad forward", "the winner's forward and backward",
               "the loser's forward and backward")


def lora_student(name, rank, meta=False):
    """The real-size denoiser in bf16 with a rank-`rank` adapter (float32) on it: the LoRA student."""
    student, _ = build(name, meta)
    student.unet.to(torch.bfloat16)
    return student.add_lora(rank)


def lora_step_trace(student, batch, checkpointing):
    """One micro-step of redpo.train with --lora (bf16 autocast): the teacher's eps_ref under no_grad (the
    same module, teacher mode), then redpo.split_backward, under LiveBytes. Returns {"trace", "marks": where
    each of LORA_PHASES starts}."""
    import defaults
    import redpo
    teacher = student.teacher()
    for p in student.trainable_parameters():
        p.requires_grad_(True)
    if checkpointing:
        student.unet.enable_gradient_checkpointing()
    marks, forward = [], student.noise_pred

    def noise_pred(*args, **kwargs):     # the teacher's calls come here too (TeacherView reads it)
        marks.append(len(live.trace))
        return forward(*args, **kwargs)
    student.noise_pred = noise_pred

    def student_pred(x_t, t, embeds):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return student.noise_pred(x_t, t, embeds)
    with LiveBytes() as live:
        x_0, eps, t, x_t, embeds = redpo.noised(teacher, batch)
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
            ref_pred = teacher.noise_pred(x_t, t, embeds)
        redpo.split_backward(student_pred, (x_t, t, embeds), teacher.training_target(x_0, eps, t), ref_pred,
                             ("redpo", defaults.PAPER["beta"], defaults.PAPER["w_sft"]))
        trace = list(live.trace)
    del student.noise_pred
    student.unet.zero_grad(set_to_none=True)
    if checkpointing:
        student.unet.disable_gradient_checkpointing()
    return {"trace": trace, "marks": marks}


def generation_trace(model, latent, text):
    """One sampler step's denoiser calls for one video under classifier-free guidance, no_grad, bf16, under
    LiveBytes: the U-Nets' samplers put the conditional and the unconditional halves in one batch of 2
    (VideoModel.guided_noise_pred), Wan's calls its transformer once for each (Wan.generate)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, *latent, generator=g)
    embeds = torch.randn(2, text[0], text[1], generator=g).to(text[2])
    with LiveBytes() as live, torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        teacher = model.teacher()
        if model.name == "wan":    # v_c alive through v_u's call
            [teacher.noise_pred(x[:1], 500, e) for e in embeds.split(1)]
        else:
            teacher.noise_pred(x, torch.tensor([500, 500]), embeds)
    return list(live.trace)


# Frames per VAE decode call: AnimateDiffPipeline.decode_latents' decode_chunk_size (16: the whole video),
# models/videocrafter2.py's VAE_CHUNK (8); Wan's VAE decodes the whole video in one call, one latent frame at a
# time with its causal cache (models/wan.py), in float32 (the U-Nets' SD VAE is in bf16 with the rest).
DECODE_FRAMES = {"animatediff": 16, "videocrafter2": 8, "wan": 21}
VAE_BYTES = {"animatediff": 2, "videocrafter2": 2, "wan": 4}
# Wan's decode runs a loop over the latent frames, so its traces keep all 21 and vary h x w only.
WAN_DECODE_SIZES = [(21, 4, 8), (21, 8, 8), (21, 8, 16)]


def decode_trace(vae, latent):
    """One VAE decode call of `latent` (C, F, h, w), no_grad, in the VAE's dtype, under LiveBytes: the SD VAE
    takes the frames as a batch, Wan's the video (1, C, F, h, w)."""
    from diffusers import AutoencoderKLWan
    c, f, h, w = latent
    z = torch.randn(f, c, h, w, generator=torch.Generator().manual_seed(0)).to(vae.dtype)
    if isinstance(vae, AutoencoderKLWan):
        z = z.transpose(0, 1)[None]                            # (1, C, F, h, w)
    with LiveBytes() as live, torch.no_grad():
        vae.decode(z)
    return list(live.trace)


def lora_phase(name, make_trace, full=None, what="the denoiser", sizes=None):
    """make_trace(latent) at MODELS[name]'s three sizes (or `sizes`) -> the peak extrapolated to the full size
    (`full`: another latent F x h x w), and the check."""
    spec, runs = MODELS[name], []
    for frames, height, width in sizes or spec["sizes"]:
        start = time.time()
        trace = make_trace((spec["latent"], frames, height, width))
        runs.append({"trace": trace, "x": frames * height * width})
        print(f"  {name} {frames} x {height} x {width}: peak {max(trace) / MIB:.0f} MiB, {len(trace)} ops, "
              f"{time.time() - start:.0f} s", flush=True)
    full = full or spec["full"]
    (a, b, check), full = runs, full[0] * full[1] * full[2]
    predicted = extrapolate(a["trace"], b["trace"], a["x"], b["x"], full)
    return {"peak": max(predicted), "at": max(range(len(predicted)), key=predicted.__getitem__), "in": what,
            "check_measured_mib": max(check["trace"]) / MIB,
            "check_predicted_mib": max(extrapolate(a["trace"], b["trace"], a["x"], b["x"], check["x"])) / MIB}


# VideoScore's architecture: HuggingFaceM4/idefics2-8b's config.json (VideoScore fine-tunes it, Mantis'
# Idefics2ForSequenceClassification with 5 outputs): SigLIP-SO400M at 980 px / patch 14, the 3-layer perceiver
# to 64 latents, Mistral-7B.
VIDEOSCORE_CONFIG = dict(
    vision_config=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                       image_size=980, patch_size=14),
    perceiver_config=dict(hidden_act="silu", resampler_n_latents=64, resampler_depth=3, resampler_n_heads=16,
                          resampler_head_dim=96, num_key_value_heads=4),
    text_config=dict(vocab_size=32003, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=8, rms_norm_eps=1e-5, max_position_embeddings=32768),
    image_token_id=32001, num_labels=5)


def videoscore_model(layers=None, meta=False):
    """VideoScore (rewards.idefics2_classifier_class) from VIDEOSCORE_CONFIG in bf16, eager attention as it runs;
    `layers`: that many vision and text layers instead of 27 and 32 (the real widths). Under `meta`: for counting."""
    from transformers import Idefics2Config
    import rewards
    config = {k: dict(v) if isinstance(v, dict) else v for k, v in VIDEOSCORE_CONFIG.items()}
    if layers:
        config["vision_config"]["num_hidden_layers"] = config["text_config"]["num_hidden_layers"] = layers
    config = Idefics2Config(**config)
    config._attn_implementation = "eager"
    with torch.device("meta") if meta else contextlib.nullcontext():
        return rewards.idefics2_classifier_class()(config).to(torch.bfloat16).eval()


def videoscore_image_size(height, width, shortest=378, longest=980):
    """The frame size VideoScore's Idefics2 image processor resizes to (its default size, no splitting):
    the longest edge down to `longest`, then each edge up to at least `shortest`."""
    if width >= height and width > longest:
        height, width = int(longest * height / width), longest
    elif height > width and height > longest:
        height, width = longest, int(longest * width / height)
    return max(height, shortest), max(width, shortest)


# Text tokens of VideoScore's query besides the images' (rewards.VIDEOSCORE_QUERY, 1,163 characters, and a
# prompt): ~300 with Mistral's tokenizer (not read here: no download). Each frame adds 64 image tokens, the
# fake tokens around them and the space after "<image>".
VIDEOSCORE_TEXT_TOKENS = 300


def scoring_trace(model, videos, frames, height, width):
    """One forward of VideoScore as rewards.VideoScore.scores runs it on a batch of `videos` videos of `frames`
    frames (float32 pixels of height x width and their mask, as the processor returns them), no_grad, under
    LiveBytes: the vision tower on every frame at once, the perceiver, the language model over the tokens."""
    config, g = model.config, torch.Generator().manual_seed(0)
    image, fake = config.image_token_id, config.image_token_id - 1       # <image>, <fake_token_around_image>
    per_frame = [fake] + [image] * config.perceiver_config.resampler_n_latents + [fake, 28705]   # 28705: " "
    with LiveBytes() as live, torch.no_grad():
        text = torch.randint(2, 28000, (videos, VIDEOSCORE_TEXT_TOKENS), generator=g)
        input_ids = torch.cat([text, torch.tensor(per_frame * frames).expand(videos, -1)], dim=1)   # (B, L)
        pixel_values = torch.randn(videos, frames, 3, height, width, generator=g)                  # (B, F, 3, H, W)
        model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), pixel_values=pixel_values,
              pixel_attention_mask=torch.ones(videos, frames, height, width, dtype=torch.bool))
    return list(live.trace)


def scoring_phase(frames, height, width, videos=1, layers=(2, 3, 4)):
    """VideoScore's activation peak for one batch of `videos` videos (rewards.VideoScore's batch_size) of `frames`
    frames of height x width, its image path one frame a call (rewards.frames_in_chunks, as it runs taking turns),
    at the real widths and image size with layers[0] and layers[1] vision and text
    layers, extrapolated linearly in the layers to the text model's 32 (the vision tower's 27: the larger count,
    erring high), checked at layers[2]."""
    import rewards
    size, peaks = videoscore_image_size(height, width), []
    for n in layers:
        start = time.time()
        model = videoscore_model(layers=n, meta=True).to_empty(device="cpu")   # random values: faster than its init
        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                t.normal_(0, 0.02, generator=torch.Generator().manual_seed(0))
        rewards.frames_in_chunks(model, 1)          # as it scores taking turns (rewards.Reward.take_turns)
        peaks.append(max(scoring_trace(model, videos, frames, *size)))
        del model
        print(f"  videoscore, {n} layers, {videos} x {frames} frames of {size[0]} x {size[1]}: peak "
              f"{peaks[-1] / MIB:.0f} MiB, {time.time() - start:.0f} s", flush=True)
    line = lambda n: peaks[0] + (peaks[1] - peaks[0]) * (n - layers[0]) / (layers[1] - layers[0])
    return {"peak": line(32), "image_size": list(size), "check_measured_mib": peaks[2] / MIB,
            "check_predicted_mib": line(layers[2]) / MIB}


# The frames VideoScore reads of one of the preset's videos: all 16 (VideoScore's 16 for AnimateDiff and
# VideoCrafter2), 48 of Wan's 81 (VideoScore-v1.1's; rewards.sample_frame_indices).
SCORED_FRAMES = {"animatediff": 16, "videocrafter2": 16, "wan": 48}


def scoring_row(name, traced=True):
    """The scoring phase's fields of a row: VideoScore's weights (bf16, counted on the meta device) and,
    `traced`, its activations for one of the preset's videos (scoring_phase at SCORED_FRAMES and the pixel
    size: the VAE's 8 x upsampling of the latent)."""
    spec, weights = MODELS[name], 2 * count(videoscore_model(meta=True))
    if not traced:
        return dict(scoring_weights_gib=weights / GIB)
    sc = scoring_phase(SCORED_FRAMES[name], *(8 * x for x in spec["full"][1:]))
    return dict(scoring_weights_gib=weights / GIB, scoring_gib=(weights + sc["peak"]) / GIB,
                scoring_activations_gib=sc["peak"] / GIB,
                scoring_frames=SCORED_FRAMES[name], scoring_image_size=sc["image_size"],
                scoring_check_measured_mib=sc["check_measured_mib"], scoring_check_predicted_mib=sc["check_predicted_mib"])


def estimate_lora(name, rank, checkpointing, scoring=False):
    """One row for one 24 GB GPU: the weights (one bf16 denoiser, the VAE and text encoder in bf16, the
    float32 adapter), the step of 1 pair (split_backward; AdamW's moments and the gradients of the adapter
    added), generation, and VideoScore's weights (8B, bf16, counted on the meta device) for scoring on its own;
    `scoring`: also scoring's activations for one video of the preset's (scoring_phase; 16 frames): with --lora on
    a GPU, VideoScore scores one video a call (rewards.Reward.take_turns)."""
    n = parameter_counts(name)
    torch.manual_seed(0)
    student = lora_student(name, rank)
    adapter = sum(p.numel() for p in student.trainable_parameters())
    weights = 2 * (n["denoiser"] + n["text_encoder"]) + VAE_BYTES[name] * n["vae"] + 4 * adapter
    spec = MODELS[name]
    marks = {}

    def step(latent):
        run = lora_step_trace(student, make_batch(1, latent, spec["t"], *spec["text"]), checkpointing)
        marks.update(marks=run["marks"])
        return run["trace"]
    s = lora_phase(name, step)
    phase = LORA_PHASES[max(i for i, m in enumerate(marks["marks"]) if m <= s["at"])]
    g = lora_phase(name, lambda latent: generation_trace(student, latent, spec["text"]))
    from diffusers import AutoencoderKL, AutoencoderKLWan
    vae = AutoencoderKLWan() if name == "wan" else AutoencoderKL(**SD_VAE)
    vae = vae.to(torch.bfloat16 if VAE_BYTES[name] == 2 else torch.float32).eval()
    frames = min(DECODE_FRAMES[name], spec["full"][0])
    d = lora_phase(name, lambda latent: decode_trace(vae, latent), (frames,) + tuple(spec["full"][1:]), "the VAE's decode",
                   WAN_DECODE_SIZES if name == "wan" else None)
    denoiser_call, decode = g, d
    g = max(g, d, key=lambda phase: phase["peak"])
    step_bytes = weights + s["peak"] + 8 * adapter             # + AdamW's exp_avg and exp_avg_sq of the adapter
    return dict(model=name, lora=rank, pairs_per_gpu=1, gradient_checkpointing=checkpointing,
                params=dict(n, adapter=adapter), weights_gib=weights / GIB,
                step_gib=step_bytes / GIB, step_peak_at=phase,
                step_check_measured_mib=s["check_measured_mib"], step_check_predicted_mib=s["check_predicted_mib"],
                generation_gib=(weights + g["peak"]) / GIB, generation_peak_in=g["in"],
                generation_check_measured_mib=g["check_measured_mib"], generation_check_predicted_mib=g["check_predicted_mib"],
                generation_denoiser_gib=(weights + denoiser_call["peak"]) / GIB, generation_decode_gib=(weights + decode["peak"]) / GIB,
                generation_checks_mib={phase["in"]: [phase["check_measured_mib"], phase["check_predicted_mib"]]
                                       for phase in (denoiser_call, decode)},
                **scoring_row(name, traced=scoring), sizes=[list(x) for x in spec["sizes"]], full=list(spec["full"]))


def merged(path, rows):
    """The rows already in `path` for other presets or settings, then `rows`."""
    key = lambda r: (r["model"], r["pairs_per_gpu"], r["gradient_checkpointing"], r.get("lora"))
    old = disk.read_json(path) if os.path.isfile(path) else []
    new = {key(r) for r in rows}
    return [r for r in old if key(r) not in new] + rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Estimate the GPU memory of one ReDPO step per preset, measured on a CPU.",
                                allow_abbrev=False)
    p.add_argument("--model", default="wan", choices=["wan", "animatediff", "videocrafter2", "all"],
                   help="which preset to estimate (default: wan)")
    p.add_argument("--pairs", type=int, default=2, help="pairs per GPU per step (default: 2, the paper's batch)")
    p.add_argument("--checkpointing", default="both", choices=["on", "off", "both"],
                   help="gradient checkpointing of the student in the step (default: both, one row each)")
    p.add_argument("--lora", type=int, default=None, metavar="RANK",
                   help="one 24 GB GPU: the LoRA student of this rank on one bf16 copy of the weights, 1 pair per step "
                        "(vip_loop.py --lora); its step, generation and scoring peaks (default: off, the full-weight step)")
    p.add_argument("--scoring", action="store_true",
                   help="with --lora: also trace VideoScore's scoring of one of the preset's videos (16 frames; Wan's 48 of 81), "
                        "its image path one frame a call (its batch with --lora) "
                        "(at 2-4 layers, extrapolated to all; ~9 min more; default: off, its weights only)")
    p.add_argument("--out", default=None, help="also write the rows to this JSON file, keeping its rows for other presets or settings "
                        "(default: print only)")
    p.add_argument("--scoring_only", action="store_true",
                   help="with --lora, --scoring and --out: trace the scoring alone and put it in the preset's row already "
                        "in --out, keeping its step and generation (default: off, the whole row)")
    args = p.parse_args(argv)
    if args.scoring and (not args.lora or args.model == "all"):
        p.error("--scoring goes with --lora and one preset (wan, animatediff or videocrafter2)")
    if args.scoring_only and not (args.scoring and args.out and os.path.isfile(args.out)):
        p.error("--scoring_only goes with --lora, --scoring and an --out file that holds the preset's row")
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    names = list(MODELS) if args.model == "all" else [args.model]
    rows = []
    for name in names:
        if args.lora and args.scoring_only:
            row = next((r for r in disk.read_json(args.out) if (r["model"], r.get("lora")) == (name, args.lora)), None)
            if row is None:
                raise SystemExit(f"error: {args.out} holds no {name} row at --lora {args.lora}; run without --scoring_only")
            row = dict(row, **scoring_row(name))
            rows.append(row)
            print(f"{name}, LoRA rank {args.lora}: scoring {row['scoring_gib']:.1f} GiB (check: measured "
                  f"{row['scoring_check_measured_mib']:.0f} MiB, predicted {row['scoring_check_predicted_mib']:.0f} MiB)",
                  flush=True)
            disk.write_json(args.out, merged(args.out, rows))
            continue
        if args.lora:
            row = estimate_lora(name, args.lora, checkpointing=True, scoring=args.scoring)
            rows.append(row)
            print(f"{name}, LoRA rank {args.lora}, 1 pair, checkpointing on: weights {row['weights_gib']:.1f} GiB; "
                  f"step {row['step_gib']:.1f} GiB (peak in {row['step_peak_at']}; check: measured "
                  f"{row['step_check_measured_mib']:.0f} MiB, predicted {row['step_check_predicted_mib']:.0f} MiB); "
                  f"generation {row['generation_gib']:.1f} GiB"
                  + (f"; scoring {row['scoring_gib']:.1f} GiB (check: measured {row['scoring_check_measured_mib']:.0f} MiB, "
                     f"predicted {row['scoring_check_predicted_mib']:.0f} MiB)" if args.scoring else ""), flush=True)
            if args.out:
                disk.write_json(args.out, merged(args.out, rows))
            continue
        for checkpointing in {"off": (False,), "on": (True,), "both": (False, True)}[args.checkpointing]:
            row = estimate(name, args.pairs, checkpointing)
            rows.append(row)
            print(f"{name}, {args.pairs} pairs, checkpointing {'on' if checkpointing else 'off'}: weights "
                  f"{row['weights_gib']:.1f} GiB + max(loss and backward {row['loss_phase_gib']:.1f} "
                  f"[peak: {row['loss_peak_at']}], AdamW {row['adamw_phase_gib']:.1f}) GiB = {row['peak_gib']:.1f} GiB "
                  f"(check: measured {row['check_measured_mib']:.0f} MiB, predicted {row['check_predicted_mib']:.0f} MiB)",
                  flush=True)
            if args.out:
                disk.write_json(args.out, merged(args.out, rows))


if __name__ == "__main__":
    cli.run_cli(main)
