"""The collapse alarm (analysis/alarm.py): the rule on hand-made metric sequences, and the rule
the shipped selection stages choose is the one the code holds."""
import math
import os

from conftest import ROOT

from analysis import alarm


def rows(ratios, ref=0.01):
    """metrics.jsonl rows whose err_w is `ratio` x ref_err_w, after the w_sft rule's step-0 line."""
    return [{"step": 0, "w_sft": 1e4}] + [{"step": i + 1, "err_w": r * ref, "ref_err_w": ref, "loss": 1.0}
                                          for i, r in enumerate(ratios)]


def test_fires_on_the_last_step_of_the_first_window_above_the_ratio():
    assert (alarm.WINDOW, alarm.RATIO) == (3, 2.5)
    assert alarm.fired_at(rows([1.0, 2.6, 2.6, 2.6, 2.6])) == 4          # steps 2, 3, 4 above: fires at 4
    assert alarm.fired_at(rows([2.6, 2.6, 1.0, 2.6, 2.6, 1.0, 3.0])) is None   # never 3 in a row
    assert alarm.fired_at(rows([2.5, 2.5, 2.5, 2.5])) is None                  # at the ratio is not above it
    assert alarm.fired_at(rows([2.6, 2.6, 1.0, 9.0, 9.0, 9.0, 9.0])) == 6


def test_a_non_finite_step_ends_the_streak_and_the_alarm_fires_once():
    assert alarm.fired_at(rows([3.0, 3.0, math.nan, 3.0, 3.0])) is None
    assert alarm.fired_at(rows([3.0, 3.0, math.inf, 3.0, 3.0])) is None   # a step redpo skips (no update)
    a = alarm.CollapseAlarm(window=2, ratio=2.0)
    lines = [a.update(r) for r in rows([3.0, 3.0, 3.0, 1.0, 3.0, 3.0])]
    assert [i for i, line in enumerate(lines) if line] == [2]    # row 2 is step 2: one warning line
    assert lines[2].startswith("warning: collapse alarm at step 2") and "\n" not in lines[2]
    assert a.fired_at == 2


def test_streak_value_is_the_highest_ratio_that_fires():
    r = rows([1.0, 3.0, 4.0, 2.0, 5.0])
    assert alarm.streak_value(r, 1) == 5.0
    assert alarm.streak_value(r, 2) == 3.0          # min(3, 4)
    assert alarm.streak_value(r, 3) == 2.0          # min(3, 4, 2), min(4, 2, 5)
    assert alarm.streak_value(r, 9) == -math.inf
    for w in (1, 2, 3):   # the definition: fires just below it, not at it
        v = alarm.streak_value(r, w)
        assert alarm.fired_at(r, w, v - 1e-9) is not None and alarm.fired_at(r, w, v) is None


def test_choose_rule_by_hand():
    def stage(method, ratios):
        return {"method": method, "metrics": rows(ratios)}
    # ReDPO's largest value per window: 1: 3.0, 2: 1.6, 3: 1.58 -> settles at window 2 (1.6 - 1.58 < 0.05);
    # DPO's at window 2: 2.2 -> the smallest multiple of 0.5 above it, 2.5
    stages = [stage("redpo", [1.2, 1.6, 1.58, 1.6, 3.0, 1.0, 1.0, 1.0, 1.0]), stage("dpo", [2.2, 2.2, 1.0] + [1.0] * 6)]
    assert alarm.choose_rule(stages) == (2, 2.5)


def test_the_shipped_selection_stages_choose_the_rule_the_code_holds():
    runs, sweep = os.path.join(ROOT, "docs/shapes/runs"), os.path.join(ROOT, "docs/shapes/sweep/runs")
    selection = [s for s in alarm.read_stages(runs) if not s["last"]] + alarm.read_stages(sweep)
    assert len(selection) == 125 and all(s["drop"] > -alarm.COLLAPSE_DROP for s in selection)
    assert alarm.choose_rule(selection) == (alarm.WINDOW, alarm.RATIO)


def test_the_shipped_page_is_what_the_command_writes():
    out = os.path.join(ROOT, "docs/shapes/alarm.md")
    text = alarm.page(os.path.join(ROOT, "docs/shapes/runs"), os.path.join(ROOT, "docs/shapes/sweep/runs"), out)
    with open(out) as f:
        assert f.read() == text
    assert "**3 of 4 collapsed stages flagged**" in text and "**0 false alarms**" in text
