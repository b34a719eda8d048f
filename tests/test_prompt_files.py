"""infra/prompt_files.py: .txt, .csv (WebVid) and .json prompt files with static labels, and the shipped
eval prompts."""
import json

import pytest

import defaults
from infra import prompt_files
from infra.cli import UserError
from infra.prompt_files import eval_seeds, make_eval_set, read_prompts


def test_read_prompts_txt_csv_json(tmp_path):
    (tmp_path / "p.txt").write_text("a red car\n\n  a blue boat  \n")
    assert read_prompts(str(tmp_path / "p.txt")) == [
        {"prompt": "a red car", "static": None}, {"prompt": "a blue boat", "static": None}]
    # WebVid's csv names its caption column "name"; static labels in several spellings, empty = unlabelled.
    (tmp_path / "webvid.csv").write_text('videoid,name,static\n1,"A cat, sleeping",true\n2,Waves,False\n3,Sky,\n')
    assert read_prompts(str(tmp_path / "webvid.csv")) == [
        {"prompt": "A cat, sleeping", "static": True}, {"prompt": "Waves", "static": False},
        {"prompt": "Sky", "static": None}]
    (tmp_path / "p.json").write_text(json.dumps(["a dog", {"caption": "a tree", "static": "static"}]))
    assert read_prompts(str(tmp_path / "p.json")) == [
        {"prompt": "a dog", "static": None}, {"prompt": "a tree", "static": True}]
    (tmp_path / "bad.csv").write_text("prompt,static\na cat,maybe\n")
    with pytest.raises(UserError, match="bad.csv:2"):
        read_prompts(str(tmp_path / "bad.csv"))
    (tmp_path / "p.yaml").write_text("- a cat\n")
    with pytest.raises(UserError, match="unknown prompt file type"):
        read_prompts(str(tmp_path / "p.yaml"))
    with pytest.raises(UserError, match="no such prompt file"):
        read_prompts(str(tmp_path / "missing.txt"))


def test_default_eval_prompts():
    rows = read_prompts(defaults.EVAL_PROMPTS)
    assert 60 <= len(rows) <= 100
    assert all(r["static"] in (True, False) for r in rows)
    assert 0.25 <= sum(r["static"] for r in rows) / len(rows) <= 0.4
    assert len({r["prompt"] for r in rows}) == len(rows)
    assert all(5 <= len(r["prompt"].split()) <= 25 for r in rows)     # the paper's 5-25 words (Sec. 3.3)


def test_eval_seeds_are_1000_j_plus_i_seed_index_first():
    assert eval_seeds(3) == [0, 1, 2]                               # one seed: prompt i at seed i
    assert eval_seeds(3, 2) == [0, 1, 2, 1000, 1001, 1002]
    assert eval_seeds(2, 3) == [0, 1, 1000, 1001, 2000, 2001]
    with pytest.raises(UserError, match="at least one seed"):
        eval_seeds(3, 0)
    items = [{"prompt": "a red car", "static": False}, {"prompt": "a quiet church", "static": True}]
    s = make_eval_set(items, 2)
    assert s == {"prompts": ["a red car", "a quiet church"] * 2, "seeds": [0, 1, 1000, 1001],
                 "static": [False, True, False, True], "per_seed": 2}


def test_search_seeds_are_apart_from_every_eval_seed():
    assert prompt_files.search_seeds(3) == [1_000_000, 1_000_001, 1_000_002]
    assert prompt_files.search_seeds(2, 2) == [1_000_000, 1_000_001, 1_001_000, 1_001_001]
    assert not set(prompt_files.search_seeds(90, 4)) & set(eval_seeds(90, 999))
    items = [{"prompt": "a red car", "static": False}, {"prompt": "a quiet church", "static": True}]
    assert prompt_files.make_search_set(items) == dict(make_eval_set(items), seeds=[1_000_000, 1_000_001])
