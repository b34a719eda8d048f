"""VideoCrafter2 (paper Sec. 4.1, Table 1: 1.413B parameters) as diffusers' 3D UNet plus its fps embedding.

VideoCrafter2 is LVDM's UNetModel (configs/inference_t2v_512_v2.0.yaml). diffusers has no pipeline
for it, so this file writes out what LVDM does differently, each against its source:
  - the UNet: UNet3DConditionModel with LVDM's settings plus its fps condition (fps_proj + MLP added
    to the time embedding; weight names fps_embedding.linear_1/2 as in the converted checkpoint);
  - q(x_t | x_0) with x_0 scaled by s_t (`scale_arr`: 1 -> 0.7 over t = 0..399), so `add_noise`
    gives ReDPO the targets VideoCrafter2 was trained with;
  - the sampler: LVDM's DDIM on its own timesteps (`lvdm_ddim_timesteps`) with the same s_t, eta 1,
    guidance 12, fps condition 28;
  - the prunable blocks: the 63 residual layers of the UNet (`videocrafter2_block_paths`), finer
    than the paper's U-Net blocks; ReDPO trains the whole UNet.
`tiny-videocrafter2` is the same code at toy size (random weights, 20 blocks) for CPU runs.

    python -m models --model tiny-videocrafter2 --prompt "a red car driving on a road" --out samples
    python -m models --model videocrafter2 --path checkpoints/videocrafter2 --prompt "a corgi running" --out samples

docs/real-models.md says how to assemble checkpoints/videocrafter2 (the converted
layout: unet/, vae/, text_encoder/, tokenizer/); the tests write the tiny one in that layout
(tests/tiny_checkpoints.py), so they exercise the real loader without a download.
"""
import functools
import os

from infra.cli import UserError

import torch

from models import DEFAULTS, VideoModel, checkpoint_whole_blocks
from models.animatediff import TINY_SEED, TINY_TEXT_CONFIG, TINY_VAE_CONFIG, build_tiny_tokenizer

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
# The scheduler gives the betas and alphas_cumprod; the DDIM timesteps are lvdm_ddim_timesteps'
# (diffusers' "leading" spacing with offset 1 equals them only when S divides 1000).
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


def lvdm_ddim_timesteps(steps, num_train_timesteps=1000):
    """LVDM's DDIM timesteps (lvdm/models/utils_diffusion.py, make_ddim_timesteps("uniform")) and
    the timestep each one steps to (DDIMSampler.make_schedule / make_ddim_sampling_parameters).
        timesteps = range(0, T, T // S) + 1        ascending; sampling runs them in reverse
        previous  = [0] + timesteps[:-1]           alphas_prev[0] = alphas_cumprod[0], likewise scale_arr
    When S does not divide T this is more than S steps: S = 30 gives 31, from t = 991 down to 1
    (LVDM left the length check commented out). Returns (timesteps, previous), lists of ints."""
    if not 1 <= steps <= num_train_timesteps:
        raise UserError(f"DDIM steps must be between 1 and {num_train_timesteps}, not {steps}")
    timesteps = [t + 1 for t in range(0, num_train_timesteps, num_train_timesteps // steps)]
    return timesteps, [0] + timesteps[:-1]


def scaled_ddim_step(x_t, eps, t, t_prev, alphas_cumprod, scale_arr, eta, noise):
    """One step t -> t_prev of LVDM's DDIMSampler.p_sample_ddim with use_scale. t_prev is the
    previous entry of lvdm_ddim_timesteps (0 for the first: the last step lands on alphas_cumprod[0]
    and scale_arr[0], LVDM's *_prev[0]; a negative t_prev is read as 0):
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


@functools.lru_cache(maxsize=None)
def videocrafter2_unet_class():
    """VideoCrafter2's UNet class: UNet3DConditionModel plus LVDM's fps condition,
    emb = time_embedding(sinusoid(t)) + fps_embedding(sinusoid(fps)), then repeated per frame
    (openaimodel3d.UNetModel.forward). The fps weights are named as in the converted checkpoint
    (fps_embedding.linear_1 / linear_2). Made on first use: importing this file does not import diffusers."""
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
            checkpoint_whole_blocks([*self.down_blocks, self.mid_block, *self.up_blocks], enable)

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
    """VideoCrafter2 through diffusers' 3D UNet. Where it differs from AnimateDiff's pipeline:
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
        embeds = self.embeddings(prompts_or_embeds).to(x_t.device, x_t.dtype)
        return (unet or self.unet)(x_t, t, encoder_hidden_states=embeds, fps=self.defaults["fps_cond"]).sample

    def add_noise(self, x_0, eps, t):
        """q(x_t | x_0) of VideoCrafter2's training: x_t = sqrt(a_t) s_t x_0 + sqrt(1 - a_t) eps."""
        return scaled_add_noise(x_0, eps, t, self.scheduler.alphas_cumprod, self.scale_arr)

    @torch.no_grad()
    def generate(self, prompts, seeds, num_frames=None, steps=None, guidance=None,
                 height=None, width=None):
        """LVDM's DDIM with scale_arr (eta from the defaults: 1) on lvdm_ddim_timesteps(steps), eps =
        eps_u + guidance (eps_c - eps_u) with the empty prompt as the unconditional one. x_T and every
        step's noise come from the video's own seeded CPU generator, so a video does not depend on
        its batch. Returns uint8 frames (B, F, H, W, 3) and the clean latents x_0 (B, C, F, h, w) as
        float32 on the CPU."""
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
        timesteps, previous = lvdm_ddim_timesteps(steps or d["steps"], self.num_train_timesteps)
        for t, t_prev in tqdm(list(zip(timesteps, previous))[::-1], desc="DDIM", disable=not self.pipe.progress):
            eps = self.guided_noise_pred(x, t, cond, uncond, guidance)
            x, _ = scaled_ddim_step(x, eps, t, t_prev, self.scheduler.alphas_cumprod, self.scale_arr,
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


def _videocrafter2_pipe(path, dtype):
    """The converted layout -> VideoCrafter2Pipe: unet/ (adamdad/videocrafterv2_diffusers: config.json
    + diffusion_pytorch_model.safetensors), vae/, text_encoder/, tokenizer/ (OpenCLIP ViT-H, as
    exported with SD 2.1); the scheduler is VideoCrafter2's, built here."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer
    missing = [p + "/" for p in VIDEOCRAFTER2_PARTS if not os.path.isdir(os.path.join(path, p))]
    if missing:
        raise UserError(f"{path} is not a VideoCrafter2 directory in the converted layout (no "
                        f"{', '.join(missing)}); docs/real-models.md says how to assemble one")
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
        raise UserError(f"could not load VideoCrafter2 from {path} ({first}); see docs/real-models.md's "
                        "VideoCrafter2 section for the expected files") from e
    return VideoCrafter2Pipe(unet.eval(), vae.eval(), text_encoder.eval(), tokenizer,
                             DDIMScheduler(**VIDEOCRAFTER2_SCHEDULER))


def load_videocrafter2(name, path, adapter, dtype):
    if path is None:
        raise UserError("videocrafter2 needs --path: a directory in the converted layout (unet/, vae/, "
                        "text_encoder/, tokenizer/); docs/real-models.md says how to make one")
    if adapter is not None:
        raise UserError("--adapter belongs to animatediff; videocrafter2 reads everything from --path")
    if not os.path.isdir(path):
        raise UserError(f"no such directory: {path}; videocrafter2 loads a local directory in the "
                        "converted layout (see docs/real-models.md), not a hub id")
    pipe = _videocrafter2_pipe(path, dtype)
    return VideoCrafter2(name, pipe, {"path": os.path.abspath(path), "adapter": None},
                         videocrafter2_block_paths(pipe.unet), DEFAULTS["videocrafter2"])


def load_tiny_videocrafter2(name, path, adapter, dtype):
    pipe = VideoCrafter2Pipe(**build_tiny_videocrafter2_components())
    if dtype is not None:
        pipe.to(dtype=dtype)
    return VideoCrafter2(name, pipe, {"path": None, "adapter": None}, videocrafter2_block_paths(pipe.unet),
                         DEFAULTS["tiny-videocrafter2"])
