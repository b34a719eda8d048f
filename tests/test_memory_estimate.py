"""bench/memory_estimate.py: its live-bytes counter (what an op allocates, and only that) and the
flags of its scoring trace."""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import memory_estimate  # noqa: E402


def test_live_bytes_counts_new_storages_not_views_or_in_place_ops_of_older_ones():
    layer, x = torch.nn.Linear(64, 32), torch.randn(4, 64)
    with memory_estimate.LiveBytes() as live:
        y = layer(x)              # the weight's transpose is a view of a weight made before: 0 new bytes
        y.add_(1).view(-1)        # in place and a view of y: 0 new bytes
        z = y * 2
        del z
    assert max(live.trace) == 2 * 4 * 32 * 4         # y and z, float32
    assert live.now == 4 * 32 * 4                    # z freed, y alive


def test_scoring_only_needs_the_row_file_and_scoring_goes_with_one_preset(tmp_path, capsys):
    for argv in (["--model", "wan", "--lora", "16", "--scoring", "--scoring_only"],                        # no --out
                 ["--model", "wan", "--lora", "16", "--scoring", "--scoring_only", "--out", str(tmp_path / "x.json")],
                 ["--model", "all", "--lora", "16", "--scoring"], ["--model", "wan", "--scoring"]):
        with pytest.raises(SystemExit) as e:
            memory_estimate.parse_args(argv)
        assert e.value.code == 2 and "--scoring" in capsys.readouterr().err
    assert memory_estimate.parse_args(["--model", "wan", "--lora", "16", "--scoring"]).scoring
    assert memory_estimate.SCORED_FRAMES == {"animatediff": 16, "videocrafter2": 16, "wan": 48}
