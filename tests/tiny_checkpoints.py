"""Tiny random-weight checkpoints written in the real hub layouts, so that the tests run the real
loaders (`models.load("animatediff" | "videocrafter2" | "wan", path=...)`, `load_reward("videoscore", path=...)`)
offline and in seconds."""
import os

from infra import disk

import torch

import rewards
from models import animatediff, videocrafter2, wan

IDEFICS2_SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
IDEFICS2_ADDED_TOKENS = ("<fake_token_around_image>", "<image>", "<end_of_utterance>")


def save_tiny_hub_layout(out_dir):
    """Write the tiny model as a hub checkout would look: out_dir/base (SD 1.5 layout) and
    out_dir/adapter (a MotionAdapter). `load("animatediff", path=base, adapter=adapter)` reads it."""
    from diffusers import StableDiffusionPipeline
    parts = animatediff.build_tiny_components()
    adapter = parts.pop("motion_adapter")
    sd = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                 requires_safety_checker=False)
    sd.save_pretrained(os.path.join(out_dir, "base"))
    adapter.save_pretrained(os.path.join(out_dir, "adapter"))
    return os.path.join(out_dir, "base"), os.path.join(out_dir, "adapter")


def save_tiny_videocrafter2_layout(out_dir):
    """Write tiny-videocrafter2 in the converted layout that `load("videocrafter2", path=out_dir)`
    reads: out_dir/{unet, vae, text_encoder, tokenizer}/, each written by save_pretrained."""
    parts = videocrafter2.build_tiny_videocrafter2_components()
    for name in videocrafter2.VIDEOCRAFTER2_PARTS:
        parts[name].save_pretrained(os.path.join(out_dir, name))
    return out_dir


def build_tiny_videoscore_tokenizer():
    """A tiny tokenizer in the format of Idefics2's tokenizer.json (Mistral's, "legacy"): normalizer
    Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, BPE with byte fallback (any text tokenizes),
    "<s> $A", and <fake_token_around_image>, <image>, <end_of_utterance> as special added tokens.
    Its vocabulary has "▁" and "▁▁", so how the spaces between image tokens are split shows in the ids."""
    from tokenizers import AddedToken, Tokenizer, models as tk_models, normalizers, processors
    vocab = {t: i for i, t in enumerate(IDEFICS2_SPECIAL_TOKENS)}
    vocab.update({f"<0x{b:02X}>": len(vocab) + b for b in range(256)})
    for piece in ("▁", "▁▁", "a", "e", "h", "t", "▁t", "▁a", "he", "▁the"):
        vocab[piece] = len(vocab)
    merges = [("▁", "▁"), ("▁", "t"), ("▁", "a"), ("h", "e"), ("▁t", "he")]
    tokenizer = Tokenizer(tk_models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True,
                                        byte_fallback=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                             special_tokens=[("<s>", 1)])
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True)
                                  for t in IDEFICS2_SPECIAL_TOKENS + IDEFICS2_ADDED_TOKENS])
    return tokenizer


def save_tiny_videoscore(out_dir, seed=0):
    """A VideoScore-shaped checkpoint with random weights, in the hub layout (tests, offline demos):
    a tiny Idefics2 (SigLIP-style vision, perceiver, Mistral text), a legacy-format tokenizer.json
    (build_tiny_videoscore_tokenizer) and an Idefics2 processor (28 px, 4 tokens per image, no
    splitting). Laid out as the transformers 4.41 stack wrote VideoScore: tokenizer_config.json names
    LlamaTokenizer, the image processor has its own preprocessor_config.json, and the perceiver
    config has no rms_norm_eps (the text config's 1e-5 applies).
    `load_reward("videoscore", path=out_dir)` reads it."""
    from transformers import Idefics2Config, Idefics2Processor, PreTrainedTokenizerFast
    from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=build_tiny_videoscore_tokenizer(), unk_token="<unk>",
                                        bos_token="<s>", eos_token="</s>", pad_token="<unk>")
    image_processor = Idefics2ImageProcessorPil(
        do_image_splitting=False, size={"shortest_edge": 28, "longest_edge": 28},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor = Idefics2Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4)
    config = Idefics2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14),
        perceiver_config=dict(hidden_size=32, resampler_n_latents=4, resampler_depth=1, resampler_n_heads=2,
                              resampler_head_dim=8, num_key_value_heads=1),
        text_config=dict(model_type="mistral", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, pad_token_id=0,
                         rms_norm_eps=1e-5),
        image_token_id=processor.image_token_id, num_labels=len(rewards.VIDEOSCORE_ASPECTS), problem_type="regression")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = rewards.idefics2_classifier_class()(config)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    image_processor.save_pretrained(out_dir)       # preprocessor_config.json, beside processor_config.json
    for name, edit in (("config.json", lambda c: c["perceiver_config"].pop("rms_norm_eps")),
                       ("tokenizer_config.json", lambda c: c.update(tokenizer_class="LlamaTokenizer", legacy=False,
                                                                   add_bos_token=True, add_eos_token=False)),
                       ("processor_config.json", lambda c: c.pop("image_processor"))):
        saved = disk.read_json(os.path.join(out_dir, name))
        edit(saved)
        disk.write_json(os.path.join(out_dir, name), saved)
    return out_dir


def save_tiny_wan_hub_layout(out_dir):
    """tiny-wan written as the hub checkout looks (WanPipeline.save_pretrained: model_index.json,
    transformer/, vae/, text_encoder/, tokenizer/, scheduler/)."""
    from diffusers import WanPipeline
    WanPipeline(**wan.build_tiny_wan_components()).save_pretrained(out_dir)
    return out_dir
