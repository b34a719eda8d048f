"""The toy world's model: toy/shapes.py's teacher as a V.I.P. model (`models.load("toy")`).

The same surface as every model (models/__init__.py), for the shapes world (toy/shapes_world.py).
The model: AnimateDiff's architecture (diffusers' UNetMotionModel: spatial ResNet/attention
blocks plus 10 motion modules, the prunable blocks) in pixel space (no VAE: at 16x16 a VAE would
cost more training time than the whole UNet and buy nothing), a word-level tokenizer over the
grammar's words (20 tokens) and a 1-layer CLIPTextModel, trained jointly. Choices, each made on evidence:
  * cross-attention only at 8x8 and 4x4, channels (16, 32, 64): profiled on one core, spatial
    attention over 256 tokens at 16x16 took 40% of a 2-4 s step; without it a step is ~1 s.
  * "latents" x_0 = frames / 127.5, in [0, 2]: black, the background, is 0, so a model that is
    not yet precise at high noise still lands on the empty background instead of grey noise.
  * the UNet predicts v = sqrt(a_t) eps - sqrt(1 - a_t) x_0 and ToyModel.noise_pred returns
    eps = sqrt(a_t) v + sqrt(1 - a_t) x_t, so redpo.loss, noise_pred and add_noise mean exactly
    what they mean for AnimateDiff. Why v: an eps-UNet's x_0 estimate (x_t - sqrt(1 - a_t) eps) /
    sqrt(a_t) multiplies its error by 13 at t = 950; after 300 steps ours denoised well from
    t = 500 but sampled noise from x_T.
  * cosine schedule (squaredcos_cap_v2; AnimateDiff's linear latent schedule leaves signal at
    t = T for pixels), DDIM with 20 "trailing" steps (the first at t = 999), x_0 clipped to
    [-2, 2]. Trained with 10% empty prompts, so classifier-free guidance is there, but the default
    is 1 (none, and half the cost): at step 1800 the eval-prompt total reward was 0.765 at
    guidance 1, 0.755 at 2, 0.371 at 3 and 0.039 at 5 (guidance drives pixels into saturation).

TOY_CONFIG is this architecture; the shipped teacher in toy/teacher/ records it in its config.json,
and toy/shapes.py trains it.

    python -m models --model toy --prompt "a red circle moving left" --out samples
    python -c "import models; m = models.load('toy')"     # the shipped teacher
    OMP_NUM_THREADS=1 python toy/shapes.py train          # trains it (75 min on one core)
"""
import os

from infra.cli import UserError
from infra.disk import load_safetensors, read_json

import torch

from models import DEFAULTS, VideoModel
from models.animatediff import checkpoint_by_block, is_motion_param, motion_block_paths
from toy.shapes_world import MAX_TOKENS, SIZE, VOCAB

TEACHER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "teacher")   # the shipped teacher
TEACHER_FIX = "pass --path a complete toy teacher folder, or train one with `python toy/shapes.py train`"
TOY_CONFIG_FILE = "config.json"
TOY_WEIGHTS = "model.safetensors"

# Cross-attention only at 8x8 and 4x4 with 16/32/64 channels: a training step costs about half of
# what attention at 16x16 would (the docstring's first choice). Motion modules at every level (10 blocks to prune).
TOY_CONFIG = {
    "unet": dict(
        sample_size=SIZE, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(16, 32, 64), norm_num_groups=8, cross_attention_dim=32,
        num_attention_heads=4, motion_num_attention_heads=4, motion_max_seq_length=16,
        use_motion_mid_block=True,
        down_block_types=("DownBlockMotion", "CrossAttnDownBlockMotion", "CrossAttnDownBlockMotion"),
        up_block_types=("CrossAttnUpBlockMotion", "CrossAttnUpBlockMotion", "UpBlockMotion")),
    "text_encoder": dict(
        vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, bos_token_id=0, eos_token_id=1,
        pad_token_id=1),
    "scheduler": dict(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
        clip_sample=True, clip_sample_range=2.0, set_alpha_to_one=True, steps_offset=0,
        timestep_spacing="trailing"),
    "unet_predicts": "v_prediction",    # ToyModel.noise_pred turns it into eps
    "vocab": VOCAB,
    "max_tokens": MAX_TOKENS,
}   # sampling defaults (8 frames, 16x16, 20 DDIM steps, guidance 1): models.DEFAULTS["toy"]


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

    parallel_generate = True    # generate keeps its state (the scheduler's) per call: infra/parallel.py may run two at once

    def __init__(self, name, pipe, source, block_paths, trainable, defaults, vocab, max_tokens,
                 unet_predicts="epsilon"):
        super().__init__(name, pipe, source, block_paths, trainable, defaults)
        self.vocab = {w: i for i, w in enumerate(vocab)}
        self.max_tokens = max_tokens
        self.unet_predicts = unet_predicts       # "epsilon" or "v_prediction"; noise_pred gives eps

    def noise_pred(self, x_t, t, prompts_or_embeds, unet=None):
        """eps_theta(x_t, t, c), as for every model. The toy UNet predicts v (the module docstring says why):
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
            eps = self.guided_noise_pred(x, t, cond, uncond, guidance)
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        return self.decode(x), x.float().cpu()

    @torch.no_grad()
    def decode(self, latents):
        """x_0 = frames / 127.5 (black = 0; shapes_world.to_x0) -> uint8 (B, F, H, W, 3)."""
        video = (latents.float().clamp(0, 2) * 127.5).round().to(torch.uint8)
        return video.permute(0, 2, 3, 4, 1).cpu().numpy()


def toy_model(config, state=None, seed=0, source=None):
    """Build the toy model from its config (TOY_CONFIG or a teacher's config.json):
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
    pipe = ToyPipe(checkpoint_by_block(unet).eval(), text_encoder.eval(), DDIMScheduler(**config["scheduler"]))
    return ToyModel("toy", pipe, source or {"path": None, "adapter": None}, motion_block_paths(unet),
                    is_motion_param, DEFAULTS["toy"], config["vocab"], config["max_tokens"],
                    config.get("unet_predicts", "epsilon"))


def load_toy(name, path, adapter, dtype):
    path = path or TEACHER_DIR
    files = [os.path.join(path, f) for f in (TOY_CONFIG_FILE, TOY_WEIGHTS)]
    if not all(os.path.isfile(f) for f in files):
        raise UserError(f"{path} holds no toy teacher ({TOY_CONFIG_FILE} + {TOY_WEIGHTS}); "
                        "train one with `python toy/shapes.py train` or pass its directory")
    model = toy_model(read_json(files[0], TEACHER_FIX), load_safetensors(files[1], TEACHER_FIX),
                      source={"path": os.path.abspath(path), "adapter": None})
    model.name = name
    if dtype is not None:
        model.pipe.to(dtype=dtype)
    return model
