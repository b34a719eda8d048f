"""Nothing generated twice: the eval set once per model state and (prompt, seed), the
text encoder once per prompt in training, and every score the same as without the reuse."""
import collections
import copy
import hashlib
import json
import os

from infra import cost, disk

import numpy as np
import pytest
import torch

import evaluate
import models
import prune
import redpo
import rewards
import vip_loop
from models.videocrafter2 import VideoCrafter2
from toy.shapes_model import ToyModel

PROMPTS = ["a red car driving on a road", "a cat sleeping on a sofa"]
SEEDS = [3, 4]
GEN = {"steps": 1}
# The 2-stage tiny loop the end-to-end tests share (here, test_vip_loop.py, conftest.tiny_loop): 2
# eval prompts, 4 pool prompts, 2 sampler steps (with 1 no curation pair passes the rule).
TINY_LOOP = ["--model", "tiny", "--reward", "pixel", "--stages", "2", "--blocks", "2",
             "--eval_prompts", "2", "--pool_prompts", "4", "--steps", "2"]


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny")


def model_state(model):
    """What a video depends on besides (prompt, seed, settings): the blocks that are gone (removed,
    or skipped for the search) and the weights of the rest."""
    skipped = [n for n, b in model.blocks().items() if "forward" in vars(b)]
    h = hashlib.sha256()
    for n, p in model.trainable_named_parameters():
        if not any(n.startswith(b + ".") for b in skipped):
            h.update(n.encode())
            h.update(p.detach().cpu().numpy().tobytes())
    return tuple(sorted(model.removed + skipped)), h.hexdigest()[:16]


def count_generations(patch, label=tuple):
    """Counter of label() + (model state, prompt, seed) over every generate call of every model
    class, except the latency measurement's (a timing, not a video anyone scores). `patch`:
    monkeypatch.setattr in a test, setattr in a benchmark (bench/bench_loop.py)."""
    counts, timing = collections.Counter(), []

    def counting(generate):
        def counted(self, prompts, seeds, **kw):
            if not timing:
                counts.update(label() + (model_state(self), p, int(s)) for p, s in zip(prompts, seeds))
            return generate(self, prompts, seeds, **kw)
        return counted

    def timed(measure):
        def measured(*args, **kw):
            timing.append(True)
            try:
                return measure(*args, **kw)
            finally:
                timing.pop()
        return measured

    for cls in (models.VideoModel, ToyModel, VideoCrafter2):
        if "generate" in vars(cls):
            patch(cls, "generate", counting(cls.generate))
    patch(cost, "measure_latency", timed(cost.measure_latency))
    return counts


@pytest.fixture
def generations(monkeypatch):
    return count_generations(monkeypatch.setattr)


def without_reuse(monkeypatch):
    """The loop with no generation reused: the base candidate generated, eval_pruned.json generated
    again by vip_loop, the prompts encoded per batch."""
    stage = prune.prune_stage

    def regenerate_pruned_row(*args, **kw):
        record = stage(*args, **kw)
        out_dir = args[3] if len(args) > 3 else kw["out_dir"]
        for name in ("eval_pruned.json", "videos_pruned.npz"):
            os.remove(os.path.join(out_dir, name))
        return record

    monkeypatch.setattr(prune, "reusable_scores", lambda *a, **kw: None)
    monkeypatch.setattr(prune, "prune_stage", regenerate_pruned_row)
    monkeypatch.setattr(redpo, "encode_prompts", lambda *a, **kw: None)


def same_eval(a, b):
    """Two eval.json files with the same videos and scores (latency and TFLOPs are measured)."""
    ja, jb = disk.read_json(a), disk.read_json(b)
    for key in ("per_video", "scores", "params", "generation", "reward", "num_videos"):
        assert ja[key] == jb[key], (a, key)
    va, vb = np.load(evaluate.videos_path(a)), np.load(evaluate.videos_path(b))
    assert np.array_equal(va["frames"], vb["frames"]) and list(va["prompts"]) == list(vb["prompts"])


def same_prune(a, b):
    ja, jb = disk.read_json(a), disk.read_json(b)
    for key in set(ja) | set(jb):
        if key != "latency_s":
            assert ja[key] == jb[key], (a, key)


# --- prune.py: the base candidate from the previous row, the pruned row from the search --------

# k = 2 without greedy is vip_loop's own stage: test_loop_generates_each_eval_video_once... runs it twice.
@pytest.mark.parametrize("k,greedy", [(1, False), (2, True)])
def test_prune_stage_generates_each_state_once_and_scores_as_before(tiny, tmp_path, monkeypatch, k, greedy):
    reward = rewards.load_reward("pixel")
    base_eval = evaluate.with_cost(evaluate.evaluate_model(tiny, reward, (PROMPTS, SEEDS, None), **GEN), tiny, **GEN)  # the previous row
    evaluate.save_eval(base_eval, str(tmp_path / "base.json"))
    base_eval = disk.read_json(str(tmp_path / "base.json"))             # as vip_loop reads it
    old = copy.deepcopy(tiny)
    search = dict(gen_kw=GEN, batch_size=2, progress=False)
    old_record = prune.prune_stage(old, prune.SearchSet(reward, PROMPTS, SEEDS, **search), k, str(tmp_path / "old"),
                                   greedy=greedy)

    counts = count_generations(monkeypatch.setattr)
    new = copy.deepcopy(tiny)
    record = prune.prune_stage(new, prune.SearchSet(reward, PROMPTS, SEEDS, base_eval=base_eval, **search), k,
                               str(tmp_path / "new"), greedy=greedy)

    assert set(counts.values()) == {1}                       # nothing twice, within the stage ...
    assert (model_state(tiny), PROMPTS[0], SEEDS[0]) not in counts  # ... nor the previous row's model
    assert record["latency_s"]["before"] == base_eval["latency"]["seconds_per_video"]
    same_prune(str(tmp_path / "old" / "prune.json"), str(tmp_path / "new" / "prune.json"))
    assert record["removed"] == old_record["removed"] == new.removed
    # The pruned row is what generating the pruned model afresh gives, video for video.
    fresh = copy.deepcopy(tiny)
    fresh.remove(record["removed"])
    evaluate.save_eval(evaluate.evaluate_model(fresh, reward, (PROMPTS, SEEDS, None), **GEN), str(tmp_path / "fresh.json"))
    same_eval(str(tmp_path / "new" / "eval_pruned.json"), str(tmp_path / "fresh.json"))
    same_eval(str(tmp_path / "old" / "eval_pruned.json"), str(tmp_path / "fresh.json"))


@pytest.mark.parametrize("k,greedy", [(1, False), (2, False)])
def test_prune_stage_on_a_larger_target_set_generates_the_search_videos_once(tiny, tmp_path, monkeypatch, k,
                                                                              greedy):
    """vip_loop's toy preset: the search on the first eval seed, the pruned row on all of them. With
    one block per search the pruned model's search videos are part of its row: not made again."""
    reward = rewards.load_reward("pixel")
    monkeypatch.setattr(prune, "KEEP_VIDEOS", 2)   # k = 1: every video kept for the grid is a search video
    target = (PROMPTS * 2, SEEDS + [s + 1000 for s in SEEDS], None)
    full = evaluate.evaluate_model(tiny, reward, target, **GEN)
    counts = count_generations(monkeypatch.setattr)
    model = copy.deepcopy(tiny)
    search = prune.SearchSet(reward, PROMPTS, SEEDS, full_scores=full["scores"], gen_kw=GEN, batch_size=2, progress=False,
                          target_set=target)
    record = prune.prune_stage(model, search, k, str(tmp_path / "p"), greedy=greedy)
    assert set(counts.values()) == {1}
    pruned_state = model_state(model)
    assert sum(n for (state, _, _), n in counts.items() if state == pruned_state) == len(target[0])
    assert record["target_videos"] == 4
    fresh = copy.deepcopy(tiny)
    fresh.remove(record["removed"])
    fresh_eval = evaluate.evaluate_model(fresh, reward, target, keep_videos=2, batch_size=2, **GEN)  # same batches
    evaluate.save_eval(fresh_eval, str(tmp_path / "fresh.json"))
    same_eval(str(tmp_path / "p" / "eval_pruned.json"), str(tmp_path / "fresh.json"))


def test_reusable_scores_only_for_the_same_prompts_seeds_settings_reward_and_model(tiny):
    reward = rewards.load_reward("pixel")
    result = json.loads(json.dumps(disk.json_safe(
        evaluate.evaluate_model(tiny, reward, (PROMPTS, SEEDS, None), keep_videos=0, **GEN))))
    got = prune.reusable_scores(result, tiny, prune.SearchSet(reward, PROMPTS[::-1], SEEDS[::-1], gen_kw=GEN))
    assert got["total"] == [v["scores"]["total"] for v in result["per_video"][::-1]]
    assert np.isnan(got["text_alignment"]).all()                 # null in the json: not measured
    assert prune.reusable_scores(None, tiny, prune.SearchSet(reward, PROMPTS, SEEDS, gen_kw=GEN)) is None
    assert prune.reusable_scores(result, tiny, prune.SearchSet(reward, PROMPTS, [3, 5], gen_kw=GEN)) is None
    assert prune.reusable_scores(result, tiny, prune.SearchSet(reward, PROMPTS, SEEDS, gen_kw={"steps": 3})) is None
    assert prune.reusable_scores(result, tiny, prune.SearchSet(reward, PROMPTS, SEEDS, static=[True, False], gen_kw=GEN)) is None
    assert prune.reusable_scores(result, tiny, prune.SearchSet(rewards.load_reward("shapes"), PROMPTS, SEEDS, gen_kw=GEN)) is None
    cut = copy.deepcopy(tiny)
    cut.remove([next(iter(cut.blocks()))])
    assert prune.reusable_scores(result, cut, prune.SearchSet(reward, PROMPTS, SEEDS, gen_kw=GEN)) is None


# --- redpo.py: the text encoder once per prompt -----------------------------------------------

@pytest.mark.parametrize("name", ["tiny", "toy", "tiny-videocrafter2"])
def test_cached_prompt_encodings_equal_the_batch_encodings(name):
    model = models.load(name)
    prompts = ["a red circle moving left", "a blue square staying still", "a red circle moving left",
               "a dog", "a cyan triangle moving up"]
    cache = redpo.encode_prompts(model, [{"prompt": p} for p in prompts], chunk=2)
    assert list(cache) == list(dict.fromkeys(prompts))
    for batch in (prompts[:2], prompts[2:4], prompts[1:], [prompts[4], prompts[0]]):
        assert torch.equal(torch.stack([cache[p] for p in batch]), model.encode(batch))


def write_pairs_folder(folder, prompts, winners, losers):
    """A pairs folder as curate.py writes it (pairs.jsonl, one latent file per winner and loser), from
    latents made here: pair i is (prompts[i], winners[i], losers[i]), seed i. Returns the folder."""
    os.makedirs(folder / "latents")
    with open(folder / "pairs.jsonl", "w") as f:
        for i, p in enumerate(prompts):
            torch.save(winners[i].clone(), folder / "latents" / f"w_{i}.pt")
            torch.save(losers[i].clone(), folder / "latents" / f"l_{i}.pt")
            f.write(json.dumps({"prompt": p, "seed": i, "winner": f"latents/w_{i}.pt", "loser": f"latents/l_{i}.pt"}) + "\n")
    return folder


def test_training_with_the_text_cache_equals_training_without(tiny, tmp_path, monkeypatch):
    student = copy.deepcopy(tiny)
    student.remove(["mid_block.motion_modules.0"])
    prompts = ["a red car driving", "a dog running", "a red car driving", "a bird flying"]
    _, x_w = tiny.generate(prompts, [0, 1, 2, 3], steps=2)
    _, x_l = student.generate(prompts, [0, 1, 2, 3], steps=2)
    pairs = write_pairs_folder(tmp_path / "pairs", prompts, x_w, x_l)
    encoded = []
    encode = models.VideoModel.encode
    monkeypatch.setattr(models.VideoModel, "encode", lambda self, ps: encoded.append(list(ps)) or encode(self, ps))

    def trained(out):
        s = copy.deepcopy(student)
        redpo.train(s, tiny, str(pairs), str(out), redpo.Settings(lr=1e-3, batch=2, epochs=2, log_every=1))
        return {n: p.detach().clone() for n, p in s.trainable_named_parameters()}

    with_cache = trained(tmp_path / "cached")
    assert encoded == [["a red car driving", "a dog running", "a bird flying"]]  # once, each prompt once
    monkeypatch.setattr(redpo, "encode_prompts", lambda *a, **kw: None)
    without = trained(tmp_path / "per_batch")
    assert len(encoded) == 1 + 4                                                 # 2 epochs x 2 steps
    assert all(torch.equal(with_cache[n], without[n]) for n in with_cache)
    rows = lambda out: [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert rows(tmp_path / "cached") == rows(tmp_path / "per_batch")


# --- vip_loop.py: a whole run, with and without the reuse ---------------------------------------

def test_loop_generates_each_eval_video_once_and_scores_as_without_reuse(tmp_path, monkeypatch, generations,
                                                                        tiny_loop):
    reuse, counts = tiny_loop                                   # the loop as it is, counted
    full = disk.read_json(str(reuse / "full" / "eval.json"))
    eval_items = {(v["prompt"], v["seed"]) for v in full["per_video"]}
    on_eval = {key: n for key, n in counts.items() if key[1:] in eval_items}
    states = collections.Counter(state for state, _, _ in on_eval)
    assert set(on_eval.values()) == {1}                        # each (model state, prompt, seed) once
    assert set(states.values()) == {len(eval_items)}           # ... and every state saw the whole set
    # M0, 7 single-block candidates; pruned; trained; 5 candidates; pruned; trained.
    assert len(states) == 1 + 7 + 1 + 1 + 5 + 1 + 1

    without_reuse(monkeypatch)
    vip_loop.main(TINY_LOOP + ["--out", str(tmp_path / "plain")])
    on_eval = [n for key, n in generations.items() if key[1:] in eval_items]
    assert max(on_eval) == 2                                    # no generation reused: M0 and each pruned model twice
    for rel in ("full/eval.json", "stage_1/eval_pruned.json", "stage_1/eval.json", "stage_2/eval_pruned.json",
                "stage_2/eval.json"):
        same_eval(str(reuse / rel), str(tmp_path / "plain" / rel))
    for k, before in ((1, "full/eval.json"), (2, "stage_1/eval.json")):
        same_prune(str(reuse / f"stage_{k}" / "prune.json"),
                   str(tmp_path / "plain" / f"stage_{k}" / "prune.json"))
        # The search's "before" latency is the previous row's, not measured again.
        assert (disk.read_json(reuse / f"stage_{k}" / "prune.json")["latency_s"]["before"]
                == disk.read_json(reuse / before)["latency"]["seconds_per_video"])
