"""toy/gmm.py and toy/gmm_model.py: the Fig. 2 toy. Metrics on analytic cases, the sampler
against the closed-form denoiser of a Gaussian, pruning invariants, the loss wiring, and a quick CLI
run with its outputs."""
import copy
import json
import math
import os
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "toy"))

import gmm  # noqa: E402
import redpo  # noqa: E402
from toy import gmm_model  # noqa: E402
from conftest import run_script


def on_modes(per_mode=20):
    """Points exactly on the mode centres, per_mode of each: (K * per_mode, 2)."""
    return gmm_model.MODES.repeat_interleave(per_mode, dim=0)


def data_region(n=4000, seed=0):
    return gmm.high_density_region(gmm_model.sample_mixture(n, torch.Generator().manual_seed(seed)))


# ---------------------------------------------------------------------------------------------
# Metrics on analytic cases
# ---------------------------------------------------------------------------------------------

def test_samples_on_the_modes_have_full_precision_and_recall():
    x = on_modes()
    assert gmm.precision(x, data_region()) == 1.0
    assert gmm.recall(x) == 1.0


def test_samples_far_away_have_zero_precision_and_recall():
    x = torch.tensor([10.0, -10.0]) + 0.1 * torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    assert gmm.precision(x, data_region()) == 0.0
    assert gmm.recall(x) == 0.0
    assert gmm.nll(x) > 1000  # (10 - 2.5)^2 / (2 sigma^2) alone is ~2800 nats


def test_samples_between_two_modes_are_outside_the_region():
    a, b = gmm_model.MODES[0], gmm_model.MODES[1]
    mid = ((a + b) / 2)[None].repeat(10, 1)  # the modes are >= 12 sigma apart: the midpoint is >= 6 sigma out
    assert (a - b).norm() >= 1.2
    assert gmm.precision(mid, data_region()) == 0.0


def test_recall_counts_half_the_modes():
    x = on_modes()[: (gmm_model.K // 2) * 20]  # only the first K/2 modes
    assert gmm.recall(x) == 0.5


def test_recall_needs_a_quarter_of_the_mode_weight():
    # mode 0 gets a share just under WEIGHTS[0] / 4, every other mode plenty: K - 1 covered
    n = 10_000
    n0 = int(0.24 * gmm_model.WEIGHTS[0].item() * n)
    rest = gmm_model.MODES[1:].repeat_interleave((n - n0) // (gmm_model.K - 1) + 1, dim=0)[: n - n0]
    x = torch.cat([gmm_model.MODES[:1].repeat(n0, 1), rest])
    assert gmm.recall(x) == (gmm_model.K - 1) / gmm_model.K


def test_nll_at_a_mode_centre_is_the_closed_form():
    # every other mode is >= 12 sigma away (exp(-72) ~ 0): -log p = -log(pi_k / (2 pi sigma^2))
    x = gmm_model.MODES[3:4]
    expected = -math.log(gmm_model.WEIGHTS[3].item() / (2 * math.pi * gmm_model.SIGMA ** 2))
    assert gmm.nll(x) == pytest.approx(expected, rel=1e-5)


def test_region_drops_the_sparsest_points():
    g = torch.Generator().manual_seed(0)
    ref = torch.cat([0.05 * torch.randn(99, 2, generator=g), torch.tensor([[3.0, 3.0]])])
    centres, radii = gmm.high_density_region(ref, k=5, mass=0.95)
    assert not (centres == torch.tensor([3.0, 3.0])).all(dim=1).any()  # the outlier is dropped
    assert gmm.precision(torch.tensor([[3.0, 3.0]]), (centres, radii)) == 0.0
    assert gmm.precision(torch.zeros(1, 2), (centres, radii)) == 1.0


def test_sliced_wasserstein_of_a_shift_is_its_mean_projection():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 2, generator=g)
    s = torch.tensor([0.3, -0.4])
    angles = np.arange(64) * np.pi / 64
    expected = np.mean(np.abs(0.3 * np.cos(angles) - 0.4 * np.sin(angles)))  # mean |s . d| over directions
    assert gmm.sliced_wasserstein(x, x) == 0.0
    assert gmm.sliced_wasserstein(x, x + s) == pytest.approx(expected, rel=1e-4)
    assert expected == pytest.approx(0.5 * 2 / np.pi, rel=0.01)  # |s| * E|cos| for uniform directions


def test_summarise_mean_and_std_over_seeds():
    per_seed = [{"sft": {"precision": 0.5}}, {"sft": {"precision": 0.7}}]
    out = gmm.summarise(per_seed)
    assert out["sft"]["precision"]["mean"] == pytest.approx(0.6)
    assert out["sft"]["precision"]["std"] == pytest.approx(0.1)


# ---------------------------------------------------------------------------------------------
# The diffusion process against a closed form
# ---------------------------------------------------------------------------------------------

class GaussianOracle(torch.nn.Module):
    """The exact eps-predictor for data N(mu, s^2 I): E[eps | x_t] = sqrt(1-a) (x_t - sqrt(a) mu) / (a s^2 + 1 - a)."""

    def __init__(self, mu, s):
        super().__init__()
        self.mu, self.s = mu, s

    def forward(self, x_t, t):
        a = gmm_model.ALPHA_BAR[t][:, None]
        return (1 - a).sqrt() * (x_t - a.sqrt() * self.mu) / (a * self.s ** 2 + 1 - a)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_the_exact_denoiser_samples_the_gaussian(eta):
    mu, s = torch.tensor([1.5, -0.5]), 0.3
    g = torch.Generator().manual_seed(0)
    # all T steps: exact up to Monte Carlo error (strided schedules shrink the std a little: 100 steps give ~0.28)
    x = gmm_model.ddim_sample(GaussianOracle(mu, s), torch.randn(8000, 2, generator=g), steps=gmm_model.T, eta=eta, generator=g)
    assert torch.allclose(x.mean(0), mu, atol=0.015)
    assert torch.allclose(x.std(0), torch.tensor([s, s]), atol=0.01)


def test_same_seed_same_noise():
    model = gmm_model.Denoiser(16, 2)
    a, b = gmm_model.sample(model, 50, seed=7, steps=10), gmm_model.sample(model, 50, seed=7, steps=10)
    assert torch.equal(a, b)
    assert not torch.equal(a, gmm_model.sample(model, 50, seed=8, steps=10))


def test_add_noise_is_ddpm_eq4():
    x_0, eps, t = torch.ones(1, 2), torch.full((1, 2), 2.0), torch.tensor([500])
    a = gmm_model.ALPHA_BAR[500].item()
    assert gmm_model.add_noise(x_0, eps, t)[0, 0].item() == pytest.approx(math.sqrt(a) + 2 * math.sqrt(1 - a), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Pruning and distillation
# ---------------------------------------------------------------------------------------------

def test_student_is_the_teacher_without_the_removed_blocks():
    torch.manual_seed(0)
    teacher = gmm_model.Denoiser(16, 4)
    student, removed = gmm_model.prune(teacher, keep=1)
    block = gmm_model.num_parameters(teacher.blocks[0])
    assert len(removed) == 3 and len(student.blocks) == 1
    assert gmm_model.num_parameters(student) < gmm_model.num_parameters(teacher)
    assert gmm_model.num_parameters(teacher) - gmm_model.num_parameters(student) == 3 * block
    x, t = torch.randn(32, 2), torch.randint(0, gmm_model.T, (32,))
    # the student's function is the teacher's with those blocks skipped: same weights, nothing re-initialised
    assert torch.allclose(student(x, t), teacher(x, t, skip=tuple(removed)), atol=1e-6)
    assert len(teacher.blocks) == 4  # the teacher itself is untouched


def test_block_importance_is_the_loss_rise_when_skipped():
    torch.manual_seed(0)
    teacher = gmm_model.Denoiser(16, 3)
    with torch.no_grad():
        teacher.blocks[0].fc2.weight.zero_()
        teacher.blocks[0].fc2.bias.zero_()  # block 0 is now the identity: skipping it changes nothing
    g = torch.Generator().manual_seed(0)
    x_0 = gmm_model.sample_mixture(256, g)
    state = g.get_state()
    drops = gmm_model.block_importance(teacher, x_0, g)
    assert drops[0] == 0.0
    g.set_state(state)
    base = gmm_model.denoising_loss(teacher, x_0, g).item()
    g.set_state(state)
    assert drops[2] == pytest.approx(gmm_model.denoising_loss(teacher, x_0, g, skip=(2,)).item() - base)


def test_prune_removes_the_least_important_blocks(monkeypatch):
    monkeypatch.setattr(gmm_model, "block_importance", lambda model, x_0, g: [0.5, 0.1, 0.9, 0.2])
    _, removed = gmm_model.prune(gmm_model.Denoiser(16, 4), keep=2)
    assert removed == [1, 3]


def test_distil_calls_redpo_loss_with_the_teacher_as_reference():
    torch.manual_seed(0)
    teacher = gmm_model.Denoiser(16, 2)
    student = copy.deepcopy(teacher)  # student == reference: SFT term 0, DPO term log 2
    x_w = gmm_model.sample_mixture(64, torch.Generator().manual_seed(0))
    x_l = x_w + 0.5
    opt = torch.optim.SGD(student.parameters(), lr=0.0)
    stats = gmm.distil(student, teacher, x_w, x_l, "redpo", 10.0, 1.0, 1, 16, opt, torch.Generator().manual_seed(0))
    assert gmm.redpo.loss is redpo.loss  # the top-level loss, the one the video models use
    assert stats["sft"] == pytest.approx(0.0, abs=1e-12)
    assert stats["dpo"] == pytest.approx(math.log(2.0), abs=1e-6)  # -log sigmoid(0)


def test_distil_moves_the_student_and_never_the_teacher():
    torch.manual_seed(0)
    teacher = gmm_model.Denoiser(16, 3)
    student, _ = gmm_model.prune(teacher, keep=1)
    before_t = [p.clone() for p in teacher.parameters()]
    before_s = [p.clone() for p in student.parameters()]
    x_w = gmm_model.sample_mixture(64, torch.Generator().manual_seed(0))
    for method in gmm.METHODS:
        opt = torch.optim.Adam(student.parameters(), lr=1e-2)
        gmm.distil(student, teacher, x_w, x_w + 0.3, method, 10.0, 1.0, 3, 16, opt, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(before_t, teacher.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(before_s, student.parameters()))


def test_iterative_run_prunes_block_by_block_and_keeps_the_teacher(monkeypatch):
    torch.manual_seed(0)
    teacher = gmm_model.Denoiser(16, 3)
    before = [p.clone() for p in teacher.parameters()]
    cfg = dict(gmm.DEFAULTS, n_blocks=3, keep=1, distil_steps=4, n_pairs=32, n_samples=40, sample_steps=5, batch=8)
    sizes, real_distil = [], gmm.distil

    def spy(student, *args, **kw):
        sizes.append(len(student.blocks))
        return real_distil(student, *args, **kw)
    monkeypatch.setattr(gmm, "distil", spy)
    b = {"seed": 0, "x_w": gmm_model.sample_mixture(32, torch.Generator().manual_seed(0))}
    x = gmm.run_iterative(teacher, b, "redpo", cfg)
    assert sizes == [2, 1]  # one block fewer per stage, down to `keep`
    assert x.shape == (40, 2) and torch.isfinite(x).all()
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters())) and len(teacher.blocks) == 3


def test_select_defaults_follows_its_rule():
    def m(p, r, swd):
        return {"precision": {"mean": p}, "recall": {"mean": r}, "swd": {"mean": swd}}
    cells = [(1.0, 0.0, 1), (1.0, 1.0, 1), (10.0, 1.0, 1), (10.0, 10.0, 4)]
    table = {gmm.cell_name(*cells[0]): m(1.0, 1.0, 0.0),   # DPO: never selected
             gmm.cell_name(*cells[1]): m(0.8, 0.9, 0.1),
             gmm.cell_name(*cells[2]): m(0.9, 0.8, 0.05),  # ties on precision + recall, lower swd
             gmm.cell_name(*cells[3]): m(0.5, 1.0, 0.0)}
    assert gmm.select_defaults(table, cells) == (10.0, 1.0, 1)


def test_plot_sweep_writes_a_png(tmp_path):
    betas, w_sfts, rounds = (1.0, 10.0), (0.0, 1.0), (1,)
    metric = {k: {"mean": 0.5, "std": 0.0} for k in ("precision", "recall", "nll", "swd")}
    table = {"sft": metric, **{gmm.cell_name(b, w, r): metric for b in betas for w in w_sfts for r in rounds}}
    gmm.plot_sweep(tmp_path / "s.png", table, betas, w_sfts, rounds)
    assert (tmp_path / "s.png").stat().st_size > 1000


# ---------------------------------------------------------------------------------------------
# The CLI: a quick run writes every output with the documented shapes and keys
# ---------------------------------------------------------------------------------------------

def run_cli(*args):
    return run_script("toy/gmm.py", *args)


def test_quick_run_writes_all_outputs(tmp_path):
    out = tmp_path / "gmm"
    r = run_cli("--out", str(out), "--teacher_steps", "30", "--distil_steps", "4", "--rounds", "2",
                "--seeds", "0", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "fig2.png").stat().st_size > 1000
    samples = np.load(out / "samples.npz")
    assert sorted(samples.files) == sorted(["data", "teacher", "pruned", "sft", "dpo", "redpo"])
    for k in samples.files:
        assert samples[k].shape == (gmm.DEFAULTS["n_samples"], 2) and np.isfinite(samples[k]).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parameters"]["student"] < metrics["parameters"]["teacher"]
    assert len(metrics["per_seed"]) == 2
    for method in ("data", "teacher", "pruned", "sft", "dpo", "redpo"):
        for key in ("precision", "recall", "nll", "swd"):
            v = metrics["metrics"][method][key]
            assert set(v) == {"mean", "std"}
            per = [s[method][key] for s in metrics["per_seed"]]
            assert v["mean"] == pytest.approx(np.mean(per)) and v["std"] == pytest.approx(np.std(per))
        assert 0.0 <= metrics["metrics"][method]["precision"]["mean"] <= 1.0
    assert "sft" in r.stdout and "redpo" in r.stdout  # the printed table


def test_cli_help_and_bad_input():
    assert run_cli("--help").returncode == 0
    r = run_cli("--out", "/tmp/unused", "--rounds", "0")
    assert r.returncode == 2 and "rounds" in r.stderr


def test_fig2_shows_the_tables_numbers_and_says_whose_samples():
    """The panels give the table's numbers (the mean over seeds), not the first seed's; the heading
    says which seed's samples are drawn."""
    per_seed = [{"sft": {"precision": 0.40, "recall": 0.5, "nll": 10.0}},
                {"sft": {"precision": 0.50, "recall": 0.7, "nll": 14.0}}]
    titles, heading = gmm.fig2_titles(gmm.summarise(per_seed), [3, 4], ["sft"])
    assert titles == ["sft\nprec 0.45  rec 0.60  nll 12"]
    assert heading == "samples of seed 3; numbers: mean over seeds 3, 4, as in the table"
