"""Phases that never hold two big models (infra/residency.py): with --lora on one GPU, the video model
and the reward take turns on it. No GPU here: the stand-in accelerator is the CPU by another name,
"cpu:0", on which a residency told to (on=True) decides as on a GPU, with a `move` that records what
would have gone where; on a LoRA stage's phases in the loop's order (evaluate: generate then score,
batch by batch; train; evaluate)."""
import json
import os

from infra import residency

import numpy as np
import torch

import tiny_checkpoints

import evaluate
import models
import redpo
from rewards import frames_in_chunks, load_reward

PROMPTS = ["a red car driving on a road", "a cat sitting still", "a dog running", "a bird flying"]
VIDEO, REWARD, VIDEO_ONLY = ("text", "video"), ("reward",), ("video",)


class Accelerator:
    """A stand-in accelerator: which modules are on it after each move; every move is checked."""

    def __init__(self, video_model, reward_stand_in):
        self.video = {id(m) for ms in video_model.parts().values() for m in ms}
        self.reward = {id(reward_stand_in)}
        self.on, self.moves = set(), 0

    def move(self, modules, device):
        self.moves += 1
        ids = {id(m) for m in modules}
        self.on = self.on - ids if str(device) == "cpu" else self.on | ids   # home, or the stand-in "cpu:0"
        assert not (self.on & self.video and self.on & self.reward), "the reward and the video model together"


def lora_teacher():
    return models.load("tiny", device="cpu", lora_rank=2).teacher()


def eval_set(n):
    return PROMPTS[:n], list(range(n)), None


def pairs(model, out_dir, n=4):
    """n hand-made pairs of random latents at the model's size (what curate.py writes)."""
    d = models.DEFAULTS["tiny"]
    g = torch.Generator().manual_seed(0)
    os.makedirs(os.path.join(out_dir, "latents"))
    records = []
    for i in range(n):
        for side in ("w", "l"):
            torch.save(torch.randn(model.latent_shape(d["num_frames"], d["height"], d["width"]), generator=g),
                       os.path.join(out_dir, "latents", f"{side}_{i}.pt"))
        records.append({"prompt": PROMPTS[i], "seed": i, "property": "visual_quality",
                        "winner": f"latents/w_{i}.pt", "loser": f"latents/l_{i}.pt"})
    with open(os.path.join(out_dir, "pairs.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return out_dir


def test_a_lora_stage_swaps_at_phase_changes_and_never_holds_both(tmp_path):
    teacher, reward = lora_teacher(), load_reward("pixel")
    stand_in = torch.nn.Linear(2, 2)                 # VideoScore's weights (the pixel reward has none)
    accelerator = Accelerator(teacher, stand_in)
    turns = residency.share("cpu:0", teacher, reward, on=True, move=accelerator.move)
    turns.add("reward", [stand_in])

    evaluate.evaluate_model(teacher, reward, eval_set(4), batch_size=2, steps=2)   # 2 batches: generate, score each
    assert turns.swaps == [VIDEO, REWARD, VIDEO, REWARD]
    student = teacher.student
    student.remove(list(student.blocks())[:1])
    redpo.train(student, teacher, pairs(student, str(tmp_path / "pairs")), str(tmp_path / "train"),
                redpo.Settings(batch=2, grad_accum=1, max_steps=3))
    # Training: the model in (encoding the pairs' prompts), then its text encoder home for all 3 steps.
    assert turns.swaps[4:] == [VIDEO, VIDEO_ONLY]
    evaluate.evaluate_model(student, reward, eval_set(2), batch_size=2, steps=2)
    assert turns.swaps[6:] == [VIDEO, REWARD]
    assert accelerator.moves == 2 * len(turns.swaps)  # each swap: the others home, then the asked-for in
    assert accelerator.on == {id(stand_in)}


def test_on_the_cpu_nothing_moves_and_the_scores_are_the_same():
    teacher, reward = lora_teacher(), load_reward("pixel")
    alone = evaluate.evaluate_model(teacher, reward, eval_set(2), batch_size=1, steps=2)
    moved = []
    turns = residency.share("cpu", teacher, reward, move=lambda modules, device: moved.append(device))
    shared = evaluate.evaluate_model(teacher, reward, eval_set(2), batch_size=1, steps=2)
    assert moved == [] and turns.swaps == [] and not turns.on
    assert json.dumps(shared["per_video"]) == json.dumps(alone["per_video"])   # NaN text_alignment too
    assert residency.takes_turns(2, "cuda") and not residency.takes_turns(2, "cpu")
    assert not residency.takes_turns(None, "cuda")


def test_only_the_outermost_call_asks():
    """tiny-videocrafter2's generate runs its own encode and noise_pred: they move nothing; a noise_pred of
    its own (training's) sends the text encoder home."""
    model = models.load("tiny-videocrafter2", device="cpu", lora_rank=2)
    turns = residency.share("cpu:0", model, load_reward("pixel"), on=True, move=lambda modules, device: None)
    model.generate(PROMPTS[:1], [0], steps=2)
    assert turns.swaps == [VIDEO]
    with torch.no_grad():
        model.noise_pred(torch.zeros(1, *model.latent_shape(8, 16, 16)), torch.tensor([500]), PROMPTS[:1])
    assert turns.swaps == [VIDEO, VIDEO_ONLY]


def test_videoscore_takes_its_turn_one_video_a_call(tmp_path):
    """Taking turns, VideoScore scores one video a call (docs/memory: 19.8 GiB for one AnimateDiff video,
    24.1 for two) and joins the reward's group; the scores are its batched ones."""
    path = tiny_checkpoints.save_tiny_videoscore(str(tmp_path / "vs"))
    batched, turned = load_reward("videoscore", path=path), load_reward("videoscore", path=path)
    assert turned.score_fn.batch_size == 2
    calls = []
    turns = residency.share("cpu:0", models.load("tiny", device="cpu", lora_rank=2), turned, on=True,
                            move=lambda modules, device: calls.append(device))
    assert turns.groups["reward"] == [turned.score_fn.__wrapped__.model]
    assert turned.score_fn.__wrapped__.batch_size == 1
    videos = np.random.RandomState(0).randint(0, 256, (3, 4, 32, 32, 3), dtype=np.uint8)
    a, b = batched(videos, PROMPTS[:3]), turned(videos, PROMPTS[:3])
    assert turns.swaps == [REWARD] and {k: np.allclose(a[k], b[k], atol=1e-5) for k in a} == dict.fromkeys(a, True)


def test_taking_turns_videoscore_sees_one_frame_a_vision_call_and_scores_the_same(tmp_path):
    """The image path one frame a call (rewards.frames_in_chunks; Wan's 48 frames): the vision tower
    and the connector called once per frame, and the same scores to float rounding as every frame at once."""
    path = tiny_checkpoints.save_tiny_videoscore(str(tmp_path / "vs"))
    whole, turned = load_reward("videoscore", path=path), load_reward("videoscore", path=path)
    residency.share("cpu:0", models.load("tiny", device="cpu", lora_rank=2), turned, on=True, move=lambda m, d: None)
    vision = turned.score_fn.__wrapped__.model.model.vision_model
    connector = turned.score_fn.__wrapped__.model.model.connector
    sizes, inner, joined = [], vision.whole_forward, []
    vision.whole_forward = lambda pixel_values, **kw: sizes.append(len(pixel_values)) or inner(pixel_values=pixel_values, **kw)
    whole_connector = connector.whole_forward
    connector.whole_forward = lambda h, mask: joined.append(len(h)) or whole_connector(h, mask)
    frames_in_chunks(turned.score_fn.__wrapped__.model, 1)       # again: it wraps the whole path, not itself
    videos = np.random.RandomState(1).randint(0, 256, (2, 4, 32, 32, 3), dtype=np.uint8)
    a, b = whole(videos, PROMPTS[:2]), turned(videos, PROMPTS[:2])
    assert sizes == joined == [1] * 8                                    # 2 videos x 4 frames, one a call
    assert {k: np.allclose(a[k], b[k], atol=1e-5) for k in a} == dict.fromkeys(a, True)
    # The tower's own output, frame by frame against all at once: the same, and frames do differ.
    pixels = torch.randn(8, 3, 28, 28, generator=torch.Generator().manual_seed(0)).to(vision.dtype)
    with torch.no_grad():
        chunked, at_once = vision(pixel_values=pixels).last_hidden_state, inner(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(chunked, at_once)                       # bf16, as VideoScore runs
    assert chunked.shape[0] == 8 and not torch.allclose(chunked[0], chunked[1], atol=1e-3)
    mask = torch.ones(8, chunked.shape[1], dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(connector(chunked, mask), whole_connector(chunked, mask))
