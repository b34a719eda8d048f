"""VideoScore scores equal the official inference.

The official stack is TIGER-Lab's examples/run_videoscore.py on transformers 4.41 with Mantis'
Idefics2ForSequenceClassification: the processor's tokenizer runs the checkpoint's tokenizer.json as
written, images are resized with PIL, attention is eager, the perceiver's RMSNorm epsilon is the
text config's, the model runs in bf16, and the head is read at the last token. Each of those is
written here independently of rewards.py (the `tokenizers` library, PIL and numpy, the
transformers Idefics2Model called directly) and compared with what rewards.py computes.
"""
import json
import os

from infra.cli import UserError

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken, Tokenizer, models as tk_models, normalizers, pre_tokenizers, processors

import rewards
import tiny_checkpoints

FAKE, IMAGE = "<fake_token_around_image>", "<image>"
SPECIAL = ["<unk>", "<s>", "</s>"]
ADDED = [FAKE, IMAGE, "<end_of_utterance>"]
PROMPTS = ["a cat", 'the "quick" fox — naïve café 🐈, at  two  spaces', "sky"]


# --- the reference, written from the official sources ------------------------------------------

def expand_images_4_41(text, image_seq_len):
    """transformers 4.41 Idefics2Processor.__call__: each <image> becomes
    <fake><image> * image_seq_len<fake>, then doubled <fake> are merged."""
    text = text.replace(IMAGE, FAKE + IMAGE * image_seq_len + FAKE)
    return text.replace(FAKE + FAKE, FAKE)


def pixel_values_4_41(frame, shortest_edge, longest_edge, mean, std):
    """transformers 4.41 Idefics2ImageProcessor on one uint8 (H, W, 3) frame, no splitting:
    get_resize_output_image_size, PIL bilinear resize, rescale (float64 * 1/255 -> float32),
    normalize ((x - mean) / std in float32). Returns (3, H', W') float32."""
    height, width = frame.shape[:2]
    aspect_ratio = width / height
    if width >= height and width > longest_edge:
        width, height = longest_edge, int(longest_edge / aspect_ratio)
    elif height > width and height > longest_edge:
        height, width = longest_edge, int(longest_edge * aspect_ratio)
    height, width = max(height, shortest_edge), max(width, shortest_edge)
    resized = np.asarray(Image.fromarray(frame).resize((width, height), resample=Image.BILINEAR))
    x = (resized.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    return x.transpose(2, 0, 1)


def official_scores(path, videos, prompts, dtype):
    """Mantis' Idefics2ForSequenceClassification.forward, one video at a time as run_videoscore.py
    does: Idefics2Model (eager attention, perceiver eps = text rms_norm_eps) on ids from the
    `tokenizers` library and pixel values from the PIL path, the linear head on every position,
    pooled at (argmax(ids == pad) - 1) mod L (the last token when there is no padding)."""
    from transformers import Idefics2Config, Idefics2Model
    config = Idefics2Config.from_pretrained(path)
    config.perceiver_config.rms_norm_eps = config.text_config.rms_norm_eps
    # Built in `dtype` as from_pretrained(torch_dtype=...) builds it: weights in dtype, the rotary
    # frequencies (a float32 buffer in Mistral) left in float32; a .to(dtype) would round them.
    model = Idefics2Model._from_config(config, attn_implementation="eager", dtype=dtype).eval()
    state = load_file(os.path.join(path, "model.safetensors"))
    model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    assert model.text_model.rotary_emb.inv_freq.dtype == torch.float32
    weight, bias = state["score.weight"].to(dtype), state["score.bias"].to(dtype)
    tokenizer = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    pad_id = tokenizer.token_to_id("<unk>")
    pre = json.load(open(os.path.join(path, "preprocessor_config.json")))
    seq_len = config.perceiver_config.resampler_n_latents
    out = []
    with torch.no_grad():
        for video, prompt in zip(videos, prompts):
            text = rewards.VIDEOSCORE_QUERY.format(text_prompt=prompt) + "<image> " * len(video)  # run_videoscore.py
            ids = torch.tensor([tokenizer.encode(expand_images_4_41(text, seq_len)).ids])
            pixels = torch.from_numpy(np.stack([
                pixel_values_4_41(f, pre["size"]["shortest_edge"], pre["size"]["longest_edge"],
                                  pre["image_mean"], pre["image_std"]) for f in video]))[None]   # (1, F, 3, H, W)
            hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels,
                           pixel_attention_mask=torch.ones(pixels.shape[:2] + pixels.shape[-2:], dtype=torch.bool),
                           use_cache=False).last_hidden_state
            logits = torch.nn.functional.linear(hidden, weight, bias)                  # (1, L, 5)
            last = (torch.eq(ids, pad_id).int().argmax(-1) - 1) % ids.shape[-1]
            out.append(logits[0, last[0]].float())
    return torch.stack(out).numpy()


# --- tiny tokenizers in the two tokenizer.json formats of Llama / Mistral ---------------------

def tiny_tokenizer(style):
    """Idefics2's special and added tokens over a tiny vocabulary with byte fallback. "legacy":
    normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, BPE (Mistral's tokenizer.json as
    Idefics2 ships it). "metaspace": pre-tokenizer Metaspace(prepend_scheme="first"), no
    normalizer, Unigram (the newer format)."""
    pieces = ["▁", "▁▁", "a", "c", "e", "h", "t", "▁t", "▁a", "he", "at", "▁the", "▁cat"]
    if style == "legacy":
        vocab = {t: i for i, t in enumerate(SPECIAL)}
        vocab.update({f"<0x{b:02X}>": len(SPECIAL) + b for b in range(256)})
        vocab.update({p: len(vocab) + i for i, p in enumerate(pieces)})
        merges = [("▁", "▁"), ("▁", "t"), ("▁", "a"), ("h", "e"), ("a", "t"), ("▁t", "he"), ("▁", "c")]
        vocab["▁c"] = len(vocab)
        merges.append(("▁c", "at"))
        tok = Tokenizer(tk_models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    else:
        vocab = [(t, 0.0) for t in SPECIAL] + [(f"<0x{b:02X}>", -10.0) for b in range(256)]
        vocab += [(p, -1.0 - 0.1 * i) for i, p in enumerate(pieces)]
        tok = Tokenizer(tk_models.Unigram(vocab, unk_id=0, byte_fallback=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL + ADDED])
    return tok


def write_processor_files(folder, tokenizer):
    """tokenizer.json + the tokenizer_config.json and preprocessor_config.json that the
    transformers 4.41 stack saved with VideoScore (a LlamaTokenizer, Idefics2's image processor)."""
    os.makedirs(folder, exist_ok=True)
    tokenizer.save(os.path.join(folder, "tokenizer.json"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                   "pad_token": "<unk>", "add_bos_token": True, "add_eos_token": False, "legacy": False}, f)
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "Idefics2ImageProcessor", "do_convert_rgb": True, "do_resize": True,
                   "size": {"shortest_edge": 28, "longest_edge": 56}, "resample": 2, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
                   "image_std": [0.5, 0.5, 0.5], "do_pad": True, "do_image_splitting": False}, f)
    return folder


@pytest.mark.parametrize("style", ["legacy", "metaspace"])
def test_query_ids_equal_the_tokenizers_library(tmp_path, style):
    folder = write_processor_files(str(tmp_path / style), tiny_tokenizer(style))
    reference = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    processor = rewards.videoscore_processor(folder, image_seq_len=3)
    queries = [rewards.videoscore_query(p, n) for p, n in zip(PROMPTS, (4, 2, 1))]
    batch = processor(text=queries, padding=True, return_tensors="pt")
    pad_id = reference.token_to_id("<unk>")
    for row, mask, query in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(), queries):
        expected = reference.encode(expand_images_4_41(query, 3)).ids
        n = sum(mask)
        assert row[:n] == expected                                       # the whole query, image tokens included
        assert row[n:] == [pad_id] * (len(row) - n)                      # padded on the right only
    # The fixture exercises the spaces: the trailing space (the pooled token) follows a <fake>
    # token; the legacy normalizer turns that lone space into "▁▁", the Metaspace format into "▁".
    last = reference.encode(expand_images_4_41(queries[0], 3)).ids[-1]
    assert reference.id_to_token(last) == ("▁▁" if style == "legacy" else "▁")
    assert reference.encode(expand_images_4_41(queries[0], 3)).ids.count(reference.token_to_id(IMAGE)) == 4 * 3


def test_image_resizing_is_the_pil_path(tmp_path, monkeypatch):
    import transformers
    folder = write_processor_files(str(tmp_path / "p"), tiny_tokenizer("legacy"))
    original = transformers.AutoImageProcessor.from_pretrained
    asked = []

    def spy(*args, **kwargs):
        asked.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoImageProcessor, "from_pretrained", spy)
    processor = rewards.videoscore_processor(folder, image_seq_len=3)
    assert [kw.get("backend") for kw in asked] == ["pil"]               # never torchvision, installed or not
    assert type(processor.image_processor).__name__ == "Idefics2ImageProcessorPil"
    rng = np.random.RandomState(0)
    for shape in [(20, 90, 3), (70, 24, 3), (40, 40, 3), (12, 12, 3)]:   # wide, tall, inside the bounds, too small
        frames = rng.randint(0, 256, (2,) + shape, dtype=np.uint8)
        out = processor(text=[rewards.videoscore_query("a cat", 2)], images=[[Image.fromarray(f) for f in frames]],
                        return_tensors="np")
        expected = np.stack([pixel_values_4_41(f, 28, 56, [0.5] * 3, [0.5] * 3) for f in frames])
        assert out["pixel_values"].shape == (1,) + expected.shape
        np.testing.assert_array_equal(out["pixel_values"][0], expected)


def test_perceiver_eps_attention_and_dtype(tmp_path):
    path = tiny_checkpoints.save_tiny_videoscore(str(tmp_path / "vs"))
    saved = json.load(open(os.path.join(path, "config.json")))
    assert "rms_norm_eps" not in saved["perceiver_config"] and saved["text_config"]["rms_norm_eps"] == 1e-5

    def perceiver_eps(scorer):
        resampler = scorer.model.model.connector.perceiver_resampler
        return {m.variance_epsilon for m in resampler.modules() if type(m).__name__ == "Idefics2RMSNorm"}

    scorer = rewards.load_reward("videoscore", path=path).score_fn
    assert perceiver_eps(scorer) == {1e-5}
    # The official class reads the text config's epsilon even where the perceiver config names one.
    saved["perceiver_config"]["rms_norm_eps"] = 1e-6
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(saved, f)
    assert perceiver_eps(rewards.load_reward("videoscore", path=path).score_fn) == {1e-5}

    model = scorer.model
    configs = [model.config, model.model.vision_model.config, model.model.connector.perceiver_resampler.config,
               model.model.text_model.config]
    assert [c._attn_implementation for c in configs] == ["eager"] * 4
    # bf16 on every device (this is a CPU) unless fp32 is asked for.
    assert scorer.dtype == torch.bfloat16 and {p.dtype for p in model.parameters()} == {torch.bfloat16}
    fp32 = rewards.load_reward("videoscore", path=path, dtype="fp32").score_fn
    assert {p.dtype for p in fp32.model.parameters()} == {torch.float32}
    assert rewards.videoscore_dtype(torch.float32) == torch.float32
    with pytest.raises(UserError, match="bf16, fp32"):
        rewards.videoscore_dtype("fp16")


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_scores_equal_the_official_inference(tmp_path, dtype):
    path = tiny_checkpoints.save_tiny_videoscore(str(tmp_path / "vs"))
    weights = os.path.join(path, "model.safetensors")
    state = load_file(weights)
    state["score.weight"] = state["score.weight"] * 50            # outputs that vary with the input
    state["score.bias"] = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    save_file(state, weights, metadata={"format": "pt"})
    rng = np.random.RandomState(1)
    videos = rng.randint(0, 256, (3, 5, 32, 48, 3), dtype=np.uint8)   # 32x48: resized to 28x28
    torch_dtype = rewards.VIDEOSCORE_DTYPES[dtype]

    expected = official_scores(path, videos, PROMPTS, torch_dtype)
    assert np.abs(expected[0] - expected[1]).max() > 0.05               # the head sees the input
    # fp32: equal up to float rounding (the head applied to one row, not to every position); bf16:
    # within one bf16 step (8 significant bits), where the same rounding shows at 2^-7 of the value.
    tol = dict(rtol=1e-6, atol=1e-5) if dtype == "fp32" else dict(rtol=2 ** -7, atol=0)
    for batch_size in (1, 3):                                            # 3: padded on the right
        reward = rewards.load_reward("videoscore", path=path, dtype=dtype, batch_size=batch_size)
        out = reward(videos, PROMPTS)
        got = np.stack([out[a] for a in rewards.VIDEOSCORE_ASPECTS], axis=1)   # (B, 5)
        np.testing.assert_allclose(got, expected, **tol)
