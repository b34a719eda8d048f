"""Wan2.1-T2V-1.3B, a flow-matching video diffusion transformer, and `tiny-wan`, the same classes at toy size.

The paper's models are eps-prediction U-Nets (Sec. 4.1); Wan is trained by flow matching (rectified
flow): x_t = (1 - sigma) x_0 + sigma eps with sigma = t / 1000, and the network predicts the
velocity v = eps - x_0. Everything V.I.P. needs from a model is written here in those terms:
  - the parts: diffusers' WanTransformer3DModel, AutoencoderKLWan, UMT5EncoderModel and tokenizer,
    held by a WanPipeline (`Wan-AI/Wan2.1-T2V-1.3B-Diffusers` or a local copy in that layout);
  - the prunable blocks: the transformer's 30 WanTransformerBlocks, each self-attention +
    cross-attention + FFN on a residual stream, so a block can go whole (`blocks.0` ... `blocks.29`);
    ReDPO trains the whole transformer, 1,418,996,800 parameters, 46,440,704 per block;
  - ReDPO's flow form (redpo.py's docstring): `add_noise` is the flow forward process,
    `training_target` the velocity, `sample_timesteps` draws t as Wan is fine-tuned;
  - the sampler: WanPipeline's (UniPC on flow sigmas, shift 3.0, two transformer calls per step for
    classifier-free guidance 5.0), written out so each video draws its noise from its own generator
    and the text encoder can stay off the accelerator; tests/test_wan.py checks it against WanPipeline.
`tiny-wan` builds the same classes in code with seeded random weights (6 blocks), for CPU runs.

    python -m models --model tiny-wan --prompt "a red car driving on a road" --out samples
    python -m models --model wan --prompt "a corgi running on the beach" --out samples
    python -m models --model wan --path checkpoints/Wan2.1-T2V-1.3B-Diffusers --out samples   # a local copy
"""
import os

from infra.cli import UserError

import torch

from models import DEFAULTS, VideoModel, looks_local

WAN_HUB = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
WAN_PARTS = ("transformer", "vae", "text_encoder", "tokenizer")   # the hub layout's folders read here

# Wan-AI/Wan2.1-T2V-1.3B-Diffusers' transformer/config.json: width 12 x 128 = 1536, FFN 8960, text
# dim 4096 (UMT5-XXL), 30 blocks; 1,418,996,800 parameters (tests/test_wan.py counts them on "meta").
WAN_TRANSFORMER_CONFIG = dict(
    patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)

# The sampler of diffusers' Wan docs: UniPC on flow-matching sigmas, shift 3.0 ("the default value is
# 3.0 for Wan"; "5.0 for 720P, 3.0 for 480P" in WanPipeline's example), as the hub checkpoint ships it.
WAN_SCHEDULER = dict(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
                     flow_shift=3.0)
# Wan's own text settings (Wan2.1 wan/configs/shared_config.py): 512 UMT5 tokens, the encoder in bf16,
# and the negative prompt wan/text2video.py uses when none is given.
WAN_TEXT_LEN = 512
WAN_NEGATIVE_PROMPT = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
                       "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，"
                       "形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")
# Training timesteps as DiffSynth-Studio (ModelScope's trainer for Wan) draws them: an index uniform over
# the 1000 training steps of its "Wan" flow schedule, sigma = shift s / (1 + (shift - 1) s) with
# s = 1 - index / 1000 and shift 5 (diffsynth/diffusion/flow_match.py set_timesteps_wan, loss.py
# FlowMatchSFTLoss); t = 1000 sigma. Its per-t loss weight is not taken: Eq. 1 folds the weight into beta.
WAN_TRAIN_SHIFT = 5.0

# tiny-wan: the same classes at toy size (6 blocks, 16 latent channels as Wan's VAE), random weights.
TINY_WAN_TRANSFORMER_CONFIG = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
    text_dim=32, freq_dim=32, ffn_dim=32, num_layers=6, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=32)
TINY_WAN_VAE_CONFIG = dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
TINY_WAN_TEXT_CONFIG = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                            relative_attention_num_buckets=8, dropout_rate=0.0, feed_forward_proj="gated-gelu",
                            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
TINY_WAN_SEED = 0


# ---------------------------------------------------------------------------------------------
# Flow matching (pure functions)
# ---------------------------------------------------------------------------------------------

def flow_add_noise(x_0, eps, t, num_train_timesteps=1000):
    """The flow forward process: x_t = (1 - sigma) x_0 + sigma eps, sigma = t / T (Wan's t is 1000 sigma).
    x_0, eps: (B, C, F, h, w); t: (B,) or a number."""
    sigma = torch.as_tensor(t, device=x_0.device, dtype=torch.float32).reshape(-1) / num_train_timesteps
    sigma = sigma.reshape((-1,) + (1,) * (x_0.dim() - 1))                  # (B, 1, 1, 1, 1)
    return ((1 - sigma) * x_0.float() + sigma * eps.float()).to(x_0.dtype)


def shifted_sigma(s, shift):
    """The flow-matching time shift: sigma = shift s / (1 + (shift - 1) s); more steps at high noise."""
    return shift * s / (1 + (shift - 1) * s)


def flow_train_timesteps(n, generator, shift=WAN_TRAIN_SHIFT, num_train_timesteps=1000):
    """n training timesteps (float, in (0, 1000]): index ~ U{0..T-1}, t = T shifted_sigma(1 - index / T)."""
    index = torch.randint(0, num_train_timesteps, (n,), generator=generator)
    return num_train_timesteps * shifted_sigma(1 - index.double() / num_train_timesteps, shift).float()


def wan_block_paths(transformer):
    """The transformer blocks, in forward order."""
    return [f"blocks.{i}" for i in range(len(transformer.blocks))]


def _whole_transformer(name):
    """ReDPO trains every transformer weight (as the whole UNet for VideoCrafter2)."""
    return True


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------

class Wan(VideoModel):
    """Wan through diffusers. `unet` is the transformer (the denoiser every script trains and cuts).
    The text encoder (UMT5-XXL, 5.7B parameters, more than the rest together) stays on the CPU and
    visits the accelerator only to encode prompts not seen before (Wan's text2video.py offloads it
    the same way); each prompt's output is kept, trimmed to its tokens, on the CPU."""

    def __init__(self, name, pipe, source, defaults):
        super().__init__(name, pipe, source, wan_block_paths(pipe.transformer), _whole_transformer, defaults)
        self.text_cache = {}          # prompt -> (tokens, D) on the CPU

    @property
    def unet(self):
        return self.pipe.transformer

    def to(self, device):
        self.pipe.transformer.to(device)
        self.pipe.vae.to(device)
        return self

    def parts(self):
        """infra/residency.py's groups: the text encoder is in none, it visits the accelerator by itself
        (encode)."""
        return {"video": [self.pipe.transformer, self.pipe.vae], "text": []}

    def latent_shape(self, num_frames, height, width):
        """(C, F, h, w) of a video of num_frames x height x width: Wan's VAE keeps the first frame and
        packs every next 4 into one latent frame, and shrinks 8x in space."""
        spatial, temporal = self.pipe.vae_scale_factor_spatial, self.pipe.vae_scale_factor_temporal
        return (self.unet.config.in_channels, (num_frames - 1) // temporal + 1, height // spatial, width // spatial)

    # --- text -----------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, prompts):
        """Prompts -> UMT5 hidden states (B, 512, D), zero past each prompt's tokens: what
        WanPipeline.encode_prompt returns (tests/test_wan.py)."""
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean
        new = [p for p in dict.fromkeys(prompts) if p not in self.text_cache]
        if new:
            tokens = self.pipe.tokenizer([prompt_clean(p) for p in new], padding="max_length", max_length=WAN_TEXT_LEN,
                                         truncation=True, add_special_tokens=True, return_attention_mask=True,
                                         return_tensors="pt")
            encoder = self.pipe.text_encoder
            encoder.to(self.device)
            try:
                hidden = encoder(tokens.input_ids.to(self.device), tokens.attention_mask.to(self.device)).last_hidden_state
            finally:
                encoder.to("cpu")
            for p, h, n in zip(new, hidden, tokens.attention_mask.sum(dim=1).tolist()):
                self.text_cache[p] = h[:n].cpu()
        out = torch.zeros(len(prompts), WAN_TEXT_LEN, self.pipe.text_encoder.config.d_model,
                          dtype=self.pipe.text_encoder.dtype)
        for i, p in enumerate(prompts):
            out[i, :len(self.text_cache[p])] = self.text_cache[p]
        return out.to(self.device)

    # --- the denoiser and the flow ---------------------------------------------------------
    def noise_pred(self, x_t, t, prompts_or_embeds, unet=None):
        """v_theta(x_t, t, c), the velocity (B, C, F, h, w). x_t: (B, C, F, h, w); t: (B,) or a number,
        1000 sigma. Inputs in the transformer's dtype, as WanPipeline passes them. `unet`: a wrapper of
        self.unet to call (DDP)."""
        dtype = self.unet.dtype
        embeds = self.embeddings(prompts_or_embeds).to(x_t.device, dtype)
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        return (unet or self.unet)(hidden_states=x_t.to(dtype), timestep=t, encoder_hidden_states=embeds,
                                   return_dict=False)[0]

    def add_noise(self, x_0, eps, t):
        """x_t = (1 - sigma) x_0 + sigma eps, sigma = t / 1000: the forward process of Wan's training."""
        return flow_add_noise(x_0, eps, t, self.num_train_timesteps)

    def training_target(self, x_0, eps, t):
        """What the transformer regresses to: the velocity v = d x_t / d sigma = eps - x_0."""
        return eps - x_0

    def sample_timesteps(self, n, generator):
        """n training timesteps as Wan is fine-tuned (flow_train_timesteps, WAN_TRAIN_SHIFT)."""
        return flow_train_timesteps(n, generator, WAN_TRAIN_SHIFT, self.num_train_timesteps)

    # --- sampling --------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompts, seeds, num_frames=None, steps=None, guidance=None, height=None, width=None):
        """WanPipeline's sampler: x_T ~ N(0, I) in float32 from each video's own seeded CPU generator,
        then per UniPC step v = v_u + guidance (v_c - v_u) (two transformer calls; the unconditional one
        on Wan's negative prompt). Returns uint8 frames (B, F, H, W, 3) and the clean latents
        (B, C, F, h, w) as float32 on the CPU."""
        d = self.defaults
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        num_frames, height, width = num_frames or d["num_frames"], height or d["height"], width or d["width"]
        guidance = d["guidance"] if guidance is None else guidance
        multiple = self.pipe.vae_scale_factor_spatial * self.unet.config.patch_size[1]
        if (num_frames - 1) % self.pipe.vae_scale_factor_temporal or height % multiple or width % multiple:
            raise UserError(f"Wan makes 4k + 1 frames at sizes that are multiples of {multiple}, "
                            f"not {num_frames} frames at {height}x{width}")
        shape = self.latent_shape(num_frames, height, width)
        x = torch.stack([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(s)))
                         for s in seeds]).to(self.device)                           # x_T (B, C, F, h, w)
        embeds = self.encode(list(prompts) + [WAN_NEGATIVE_PROMPT] * (len(prompts) if guidance > 1 else 0))
        cond, uncond = embeds[:len(prompts)], embeds[len(prompts):]
        scheduler = self.scheduler
        scheduler.set_timesteps(steps or d["steps"], device=self.device)
        scheduler.set_begin_index(0)
        for t in scheduler.timesteps:
            v = self.noise_pred(x, t, cond)
            if guidance > 1:
                v_u = self.noise_pred(x, t, uncond)
                v = v_u + guidance * (v - v_u)
            x = scheduler.step(v, t, x, return_dict=False)[0]
        return self.decode(x), x.float().cpu()

    @torch.no_grad()
    def decode(self, latents):
        """Clean latents (B, C, F, h, w) -> uint8 frames (B, F, H, W, 3), one video per VAE call (Wan's
        VAE already decodes one latent frame at a time with its causal cache; the batch is what would
        grow), after undoing the latent normalisation as WanPipeline does."""
        vae = self.pipe.vae
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
        videos = []
        for z in latents.split(1):
            z = z.to(self.device, vae.dtype)
            z = z / inv_std.to(z.device, z.dtype) + mean.to(z.device, z.dtype)
            video = vae.decode(z, return_dict=False)[0]                               # (1, 3, F, H, W) in [-1, 1]
            videos.append(((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
        return torch.cat(videos).permute(0, 2, 3, 4, 1).numpy()


# ---------------------------------------------------------------------------------------------
# Loading: the hub layout, and tiny-wan built in code
# ---------------------------------------------------------------------------------------------

def build_wan_transformer(config=WAN_TRANSFORMER_CONFIG):
    """A WanTransformer3DModel with random weights from a config (default: the real 1.3B). Under
    `with torch.device("meta"):` it allocates nothing."""
    from diffusers import WanTransformer3DModel
    return WanTransformer3DModel(**config)


def build_tiny_wan_tokenizer():
    """A byte-level tokenizer with no merges (every byte one token), T5's specials: <pad> 0, </s> 1
    appended to every prompt, <unk> 2. Offline, in memory; 259 ids."""
    from tokenizers import Tokenizer, decoders, models as token_models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    vocab.update({c: i + 3 for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))})
    tok = Tokenizer(token_models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=WAN_TEXT_LEN)


def build_tiny_wan_components():
    """tiny-wan's parts, built in code with seeded random weights: WanPipeline's keyword arguments."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler
    from transformers import UMT5Config, UMT5EncoderModel
    tokenizer = build_tiny_wan_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(TINY_WAN_SEED)
        return dict(transformer=build_wan_transformer(TINY_WAN_TRANSFORMER_CONFIG).eval(),
                    vae=AutoencoderKLWan(**TINY_WAN_VAE_CONFIG).eval(),
                    text_encoder=UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), **TINY_WAN_TEXT_CONFIG)).eval(),
                    tokenizer=tokenizer, scheduler=UniPCMultistepScheduler(**WAN_SCHEDULER))


def _wan_pipe(path, dtype):
    """The hub layout (a hub id or a local copy) -> WanPipeline: the transformer in `dtype` (default
    float32), the VAE in float32 (diffusers' advice for Wan), UMT5 in bfloat16 as Wan ships and runs it
    (shared_config.t5_dtype); the scheduler is WAN_SCHEDULER, built here."""
    import importlib.util
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5EncoderModel
    # WanTransformer3DModel keeps some modules in fp32, and diffusers loads such a model only through accelerate.
    if importlib.util.find_spec("accelerate") is None:
        raise UserError("loading wan needs the accelerate package (pip install accelerate): "
                        "diffusers reads Wan's transformer only through it")
    if looks_local(path):
        missing = [p + "/" for p in WAN_PARTS if not os.path.isdir(os.path.join(path, p))]
        if missing:
            raise UserError(f"{path} is not a Wan checkpoint in the diffusers layout (no {', '.join(missing)}); "
                            f"pass --path a copy of {WAN_HUB}")
    try:
        transformer = WanTransformer3DModel.from_pretrained(path, subfolder="transformer", torch_dtype=dtype or torch.float32)
        vae = AutoencoderKLWan.from_pretrained(path, subfolder="vae", torch_dtype=torch.float32)
        text_encoder = UMT5EncoderModel.from_pretrained(path, subfolder="text_encoder", dtype=torch.bfloat16)
        tokenizer = AutoTokenizer.from_pretrained(path, subfolder="tokenizer")
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"could not load Wan from {path!r} ({first}); download the weights first "
                        "or pass --path to a local copy") from e
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder.eval(), vae=vae.eval(),
                       transformer=transformer.eval(), scheduler=UniPCMultistepScheduler(**WAN_SCHEDULER))


def load_wan(name, path, adapter, dtype):
    if adapter is not None:
        raise UserError("--adapter belongs to animatediff; wan reads everything from --path")
    path = path or WAN_HUB
    pipe = _wan_pipe(path, dtype)
    return Wan(name, pipe, {"path": os.path.abspath(path) if os.path.isdir(path) else path, "adapter": None},
               DEFAULTS["wan"])


def load_tiny_wan(name, path, adapter, dtype):
    from diffusers import WanPipeline
    pipe = WanPipeline(**build_tiny_wan_components())
    if dtype is not None:
        pipe.transformer.to(dtype=dtype)
    return Wan(name, pipe, {"path": None, "adapter": None}, DEFAULTS["tiny-wan"])
