"""AnimateDiff (the paper's main setting, Sec. 4.1) and `tiny`, the same classes at toy size.

AnimateDiff is SD 1.5's frozen spatial UNet plus a motion adapter (diffusers' UNetMotionModel); the
prunable blocks are the adapter's 21 motion modules (453,209,280 parameters, the paper's 0.453B),
and they are also what ReDPO trains. `tiny` builds the same pipeline in code with seeded random
weights (7 motion modules), so that the real code path runs in seconds on a CPU and offline.

    python -m models --model tiny --prompt "a red car driving on a road" --out samples
    python -m models --model animatediff --prompt "a corgi running on the beach" --out samples
    python -m models --model animatediff --path DIR --adapter DIR --out samples    # local copies

The tests write `tiny` as SD 1.5 + motion adapter checkouts (tests/tiny_checkpoints.py), so they
exercise the real `animatediff` loader without a download.
"""
import os
import types

from infra.cli import UserError

import torch

from models import DEFAULTS, VideoModel, checkpoint_whole_blocks, looks_local

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


def motion_block_paths(unet):
    """The motion modules of a UNetMotionModel, in forward order (down, mid, up)."""
    paths = [n for n, m in unet.named_modules() if type(m).__name__ == "AnimateDiffTransformer3D"]
    order = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
    return sorted(paths, key=lambda p: (order[p.split(".")[0]], [int(s) for s in p.split(".") if s.isdigit()]))


def checkpoint_by_block(unet):
    """Make `unet.enable_gradient_checkpointing()` checkpoint each down, mid and up block whole.
    diffusers' UNetMotionModel checkpoints only its ResNets: the spatial attentions and the motion
    modules keep every activation: one step of 2 pairs at 16 x 512 x 512 then peaks at 81 GiB, by whole
    blocks at 51 GiB (docs/memory). Returns the unet."""
    unet._set_gradient_checkpointing = types.MethodType(_by_block, unet)   # a copy.deepcopy rebinds it
    return unet


def _by_block(unet, enable=True, gradient_checkpointing_func=None):
    checkpoint_whole_blocks([*unet.down_blocks, unet.mid_block, *unet.up_blocks], enable)


def is_motion_param(name):
    return ".motion_modules." in name


def _animatediff_pipe(path, adapter, dtype):
    """SD 1.5 (hub id or local dir in the hub layout) + a motion adapter -> AnimateDiffPipeline."""
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter
    for p in (path, adapter):
        if looks_local(p) and not os.path.isdir(p):
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
    return checkpoint_by_block(UNetMotionModel.from_unet2d(UNet2DConditionModel(**unet_config),
                                                           MotionAdapter(**adapter_config)))


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


def load_animatediff(name, path, adapter, dtype):
    path = path or ANIMATEDIFF_BASE
    adapter = adapter or ANIMATEDIFF_ADAPTER
    pipe = _animatediff_pipe(path, adapter, dtype)
    source = {"path": _abs_if_local(path), "adapter": _abs_if_local(adapter)}
    checkpoint_by_block(pipe.unet)
    return VideoModel(name, pipe, source, motion_block_paths(pipe.unet), is_motion_param,
                      DEFAULTS["animatediff"])


def load_tiny(name, path, adapter, dtype):
    from diffusers import AnimateDiffPipeline
    parts = build_tiny_components()
    pipe = AnimateDiffPipeline(**parts)
    if dtype is not None:
        pipe.to(dtype=dtype)
    checkpoint_by_block(pipe.unet)
    return VideoModel(name, pipe, {"path": None, "adapter": None}, motion_block_paths(pipe.unet),
                      is_motion_param, DEFAULTS["tiny"])


def _abs_if_local(p):
    return os.path.abspath(p) if os.path.isdir(p) else p
