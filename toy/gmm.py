"""Fig. 2 of V.I.P. (Sec. 3.1) on 2D points: SFT vs DPO vs ReDPO for a capacity-limited student.

The claim under test (Sec. 3.1): a pruned student distilled with SFT (Eq. 2) averages the teacher's
modes into an oversmoothed distribution with mass between them; DPO alone (Eq. 1) over-optimises
and drifts out of distribution; ReDPO (Eq. 3) puts the student's limited capacity on the modes.
(The paper's own toy study, its Supplementary E, is not in our copy; this one is designed from Sec. 3.1.)

    data     a 2D Gaussian mixture: 16 modes, sigma 0.1, at least 12 sigma apart, weights 3:1 from
             the first to the last (MODES, WEIGHTS, SIGMA)
    teacher  an eps-prediction diffusion model: a time-conditioned residual MLP of 6 blocks, width 32
    student  the teacher with 5 of its 6 blocks removed (the least important by ablation, Sec. 3.2),
             initialised from the teacher's remaining weights: 22% of its parameters
    pairs    winners x^w from the teacher, losers x^l from the student, sampled with the same seed
             (the same x_T and sampler noise: the paper's same prompt and seed, Sec. 3.3)
    distil   a copy of the same student, the same pairs, batches, steps and Adam, three ways:
             redpo.loss(pred, ref_pred, eps, method, beta, w_sft) with method sft, dpo or redpo, the
             function the video models train with; the reference is the frozen full teacher.
             With --rounds R the losers are re-sampled from the current student R - 1 times
             (on-policy); --iterative adds the V.I.P. loop (one block removed per stage)

    python toy/gmm.py --out runs/gmm                       # ~80 s on one CPU core: fig2.png, samples.npz, metrics.json
    python toy/gmm.py --out runs/gmm --seeds 0 1 2 3 4     # more seeds
    python toy/gmm.py --out runs/gmm --iterative           # + block-by-block distillation (~2.5 min)
    python toy/gmm.py --out docs/gmm --sweep --seeds 100 101   # beta x w_sft x rounds map (~11 min)

The defaults (beta 100, w_sft 100, rounds 4) are the sweep's pick by the rule in select_defaults,
on seeds (100, 101) that the default run (0, 1, 2) does not use.

Metrics (per method, mean and std over seeds): precision (share of samples inside the teacher's
high-density region: the union of k-NN balls of the densest 95% of held-out teacher samples, after
Kynkaanniemi et al. 2019), recall (share of the mixture's modes that hold at least a quarter of their
weight within 3 sigma), nll (mean -log p_data under the true mixture, nats) and swd (sliced
Wasserstein-1 distance to held-out teacher samples).

The data, the diffusion process (DDPM forward, DDIM sampler), the teacher and the pruning that
makes the student are in toy/gmm_model.py; this file distils, measures, sweeps and draws.
"""
import argparse
import copy
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # so that `python toy/gmm.py` finds the top-level redpo.py and runtime.py

from infra.cli import UserError, run_cli  # noqa: E402
from infra.disk import write_json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import redpo  # noqa: E402
from toy.gmm_model import (MODES, SIGMA, T, WEIGHTS, Denoiser, add_noise, mixture_log_prob,  # noqa: E402
                           num_parameters, prune, sample, sample_mixture, train_teacher)

METHODS = ("sft", "dpo", "redpo")

# ---------------------------------------------------------------------------------------------
# Distillation with redpo.loss (Eq. 1-3), the same function the video models use
# ---------------------------------------------------------------------------------------------

def distil(student, teacher, x_w, x_l, method, beta, w_sft, steps, batch, opt, generator, progress=None):
    """Train `student` (in place, with optimiser `opt`) on pairs (x_w[i], x_l[i]) with redpo.loss;
    returns the last stats.

    Every step: B pairs, one t and one eps per pair shared by winner and loser, one student forward
    on [x^w_t; x^l_t] (2B, 2) and one teacher forward under no_grad on the same batch."""
    teacher.requires_grad_(False)
    stats = {}
    for _ in range(steps):
        i = torch.randint(0, x_w.shape[0], (batch,), generator=generator)
        t = torch.randint(0, T, (batch,), generator=generator)
        eps = torch.randn(batch, 2, generator=generator)
        x_0 = torch.cat([x_w[i], x_l[i]])                     # (2B, 2), winners first
        t2, eps2 = torch.cat([t, t]), torch.cat([eps, eps])   # a pair shares t and eps
        x_t = add_noise(x_0, eps2, t2)
        pred = student(x_t, t2)
        with torch.no_grad():
            ref_pred = teacher(x_t, t2)
        loss, stats = redpo.loss(pred, ref_pred, eps2, method=method, beta=beta, w_sft=w_sft)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None:
            progress(**stats)
    return stats


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------

def high_density_region(ref, k=5, mass=0.95):
    """The reference's high-density region: balls around its densest `mass` share of points.

    Each reference point y_i gets the radius r_i to its k-th nearest other reference point
    (Kynkaanniemi et al. 2019); the (1 - mass) share with the largest radii, the sparsest points,
    is dropped so that stray points between modes do not make the region cover the gaps.
    Returns (centres (M, 2), radii (M,))."""
    d = torch.cdist(ref, ref)                             # (N, N)
    r = d.kthvalue(k + 1, dim=1).values                   # +1: the point itself is at distance 0
    keep = r <= torch.quantile(r, mass)
    return ref[keep], r[keep]


def precision(x, region):
    """Share of samples inside the region (a union of balls)."""
    centres, radii = region
    inside = (torch.cdist(x, centres) <= radii[None]).any(dim=1)
    return inside.float().mean().item()


def recall(x, n_sigma=3.0, min_share=0.25):
    """Share of the mixture's modes covered: mode k is covered when at least min_share * pi_k
    of the samples lie within n_sigma * SIGMA of its mean."""
    near = torch.cdist(x, MODES) <= n_sigma * SIGMA      # (N, K)
    share = near.float().mean(dim=0)                      # (K,)
    return (share >= min_share * WEIGHTS).float().mean().item()


def nll(x):
    """Mean negative log-likelihood of the samples under the true mixture (nats per point)."""
    return -mixture_log_prob(x).mean().item()


def sliced_wasserstein(x, y, n_dirs=64):
    """Sliced Wasserstein-1 distance between two equal-size point sets, evenly spaced directions."""
    angles = torch.arange(n_dirs) * math.pi / n_dirs
    dirs = torch.stack([angles.cos(), angles.sin()], dim=1)  # (D, 2)
    px, _ = (x @ dirs.T).sort(dim=0)                          # (N, D)
    py, _ = (y @ dirs.T).sort(dim=0)
    return (px - py).abs().mean().item()


def evaluate(x, region, teacher_ref):
    return {"precision": precision(x, region), "recall": recall(x), "nll": nll(x),
            "swd": sliced_wasserstein(x, teacher_ref)}


def summarise(per_seed):
    """[{method: {metric: v}}] over seeds -> {method: {metric: {"mean", "std"}}}."""
    out = {}
    for m in per_seed[0]:
        out[m] = {}
        for k in per_seed[0][m]:
            v = np.array([s[m][k] for s in per_seed])
            out[m][k] = {"mean": float(v.mean()), "std": float(v.std())}
    return out


# ---------------------------------------------------------------------------------------------
# One seed: pairs, three distillations, samples, metrics
# ---------------------------------------------------------------------------------------------

def bench(teacher, pruned, seed, cfg):
    """Everything a seed shares across methods: the pairs, the held-out teacher samples and the
    region they define, and the data/teacher/pruned samples of the figure."""
    n, steps, base = cfg["n_samples"], cfg["sample_steps"], 10_000 * seed
    teacher_ref = sample(teacher, n, base + 2, steps)
    return {
        "seed": seed,
        "x_w": sample(teacher, cfg["n_pairs"], base + 1, steps),  # winners: the teacher
        "x_l": sample(pruned, cfg["n_pairs"], base + 1, steps),   # losers: the student, same seed as its winner
        "teacher_ref": teacher_ref,
        "region": high_density_region(teacher_ref),
        "samples": {"data": sample_mixture(n, torch.Generator().manual_seed(base + 3)),
                    "teacher": sample(teacher, n, base + 4, steps),
                    "pruned": sample(pruned, n, base + 4, steps)},
    }


def run_method(teacher, pruned, b, method, cfg, progress=None):
    """Distil a copy of `pruned` with `method` on the seed's pairs; returns its samples (N, 2).

    rounds > 1: the steps are split into rounds and the losers are re-sampled from the current
    student before each round after the first (on-policy, the online loop of Sec. 3.4.2 without the
    pruning); the winners and the optimiser state are kept."""
    steps, base = cfg["sample_steps"], 10_000 * b["seed"]
    student, x_l = copy.deepcopy(pruned), b["x_l"]
    opt = torch.optim.Adam(student.parameters(), lr=cfg["lr"])
    g = torch.Generator().manual_seed(base + 5)  # the same batches, t and eps for every method
    for r in range(cfg["rounds"]):
        if r > 0:
            x_l = sample(student, cfg["n_pairs"], base + 1, steps)
        distil(student, teacher, b["x_w"], x_l, method, cfg["beta"], cfg["w_sft"],
               cfg["distil_steps"] // cfg["rounds"], cfg["batch"], opt, g, progress)
    return sample(student, cfg["n_samples"], base + 4, steps)


def run_iterative(teacher, b, method, cfg, progress=None):
    """The V.I.P. loop (Sec. 3.4.2) in 2D: from the full teacher, remove one block (the least
    important, Sec. 3.2), sample fresh losers from that student, distil, repeat until `keep`
    blocks are left. The same total steps as the one-shot run; a new optimiser per stage.
    Returns the final student's samples (N, 2)."""
    stages = cfg["n_blocks"] - cfg["keep"]
    steps, base = cfg["sample_steps"], 10_000 * b["seed"]
    student = teacher
    g = torch.Generator().manual_seed(base + 5)
    for _ in range(stages):
        student, _ = prune(student, len(student.blocks) - 1)  # a copy: the teacher stays whole
        student.requires_grad_(True)
        x_l = sample(student, cfg["n_pairs"], base + 1, steps)
        opt = torch.optim.Adam(student.parameters(), lr=cfg["lr"])
        distil(student, teacher, b["x_w"], x_l, method, cfg["beta"], cfg["w_sft"],
               cfg["distil_steps"] // stages, cfg["batch"], opt, g, progress)
    return sample(student, cfg["n_samples"], base + 4, steps)


def select_defaults(table, cells):
    """The sweep's rule, fixed before it ran: among the ReDPO cells (w_sft > 0), the highest mean
    precision + recall over the sweep's seeds; ties go to the lower swd."""
    def score(c):
        m = table[cell_name(*c)]
        return (m["precision"]["mean"] + m["recall"]["mean"], -m["swd"]["mean"])
    return max((c for c in cells if c[1] > 0), key=score)


def cell_name(beta, w_sft, rounds):
    return f"redpo beta={beta:g} w_sft={w_sft:g} rounds={rounds}"


# ---------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------

def density_grid(lim=3.0, n=200):
    u = torch.linspace(-lim, lim, n)
    xx, yy = torch.meshgrid(u, u, indexing="xy")
    p = mixture_log_prob(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)).exp().reshape(n, n)
    return u.numpy(), p.numpy()


def fig2_titles(summary, seeds, names):
    """Fig. 2's panel titles and its heading: each method's precision, recall and nll as the table
    gives them (mean over `seeds`, summarise's output); the samples drawn are the first seed's."""
    titles = [f"{name}\nprec {summary[name]['precision']['mean']:.2f}  rec {summary[name]['recall']['mean']:.2f}  "
              f"nll {summary[name]['nll']['mean']:.3g}" for name in names]
    heading = (f"samples of seed {seeds[0]}; numbers: mean over seed{'s' if len(seeds) > 1 else ''} "
               f"{', '.join(map(str, seeds))}, as in the table")
    return titles, heading


def plot_fig2(path, samples, summary, seeds, names=("teacher", "pruned", "sft", "dpo", "redpo")):
    """The first seed's samples of each method over the true density, titled by fig2_titles."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    u, p = density_grid()
    titles, heading = fig2_titles(summary, seeds, names)
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.7))
    for ax, name, title in zip(axes, names, titles):
        ax.contourf(u, u, p ** 0.25, levels=12, cmap="Greys", alpha=0.5)  # the true density
        x = samples[name].numpy()
        ax.scatter(x[:, 0], x[:, 1], s=2.0, c="tab:red" if name.startswith("redpo") else "tab:blue", alpha=0.5, lw=0)
        out = ((x < u[0]) | (x > u[-1])).any(axis=1).mean()
        if out >= 0.01:
            ax.text(0.5, 0.5, f"{out:.0%} of samples\noutside this frame", transform=ax.transAxes,
                    ha="center", va="center", fontsize=9, color="tab:blue", bbox=dict(facecolor="white"))
        ax.set_title(title, fontsize=9)
        ax.set_xlim(u[0], u[-1])
        ax.set_ylim(u[0], u[-1])
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def plot_sweep(path, table, betas, w_sfts, rounds):
    """One heatmap per metric and rounds setting over (beta, w_sft); w_sft = 0 is DPO alone.
    A * marks cells better than SFT (same seeds, same steps) on that metric by more than the sum
    of the two standard deviations over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = ("precision", "recall", "nll", "swd")
    fig, axes = plt.subplots(len(rounds), len(keys), figsize=(3.6 * len(keys), 3.0 * len(rounds)), squeeze=False)
    for i, r in enumerate(rounds):
        for ax, key in zip(axes[i], keys):
            grid = np.array([[table[cell_name(b, w, r)][key]["mean"] for b in betas] for w in w_sfts])
            sft, sft_std = table["sft"][key]["mean"], table["sft"][key]["std"]
            std = np.array([[table[cell_name(b, w, r)][key]["std"] for b in betas] for w in w_sfts])
            gain = grid - sft if key in ("precision", "recall") else sft - grid
            better = gain > std + sft_std  # better than SFT by more than the two seed spreads
            shown = np.log10(np.maximum(grid, 1e-3)) if key in ("nll", "swd") else grid
            im = ax.imshow(shown, origin="lower", cmap="viridis", aspect="auto")
            for y in range(len(w_sfts)):
                for x in range(len(betas)):
                    v = grid[y, x]
                    ax.text(x, y, (f"{v:.2f}" if abs(v) < 100 else f"{v:.0e}") + ("*" if better[y, x] else ""),
                            ha="center", va="center", fontsize=7,
                            color="white" if shown[y, x] < shown.mean() else "black")
            ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
            ax.set_yticks(range(len(w_sfts)), [f"{w:g}" for w in w_sfts])
            ax.set_xlabel("beta")
            ax.set_ylabel("w_sft (0 = DPO)")
            scale = " (colour: log10)" if key in ("nll", "swd") else ""
            ax.set_title(f"{key}, rounds={r}{scale}\nSFT {sft:.2f}; * clearly better than SFT", fontsize=8)
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def format_table(summary):
    keys = ("precision", "recall", "nll", "swd")
    width = max(len(k) for k in summary) + 2
    lines = [f"{'':<{width}}" + "".join(f"{k:>22}" for k in keys)]
    for name, m in summary.items():
        lines.append(f"{name:<{width}}" + "".join(f"{m[k]['mean']:>12.4g} +- {m[k]['std']:<6.2g}" for k in keys))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

DEFAULTS = dict(width=32, n_blocks=6, keep=1, teacher_steps=8000, teacher_batch=256, teacher_lr=3e-3,
                n_pairs=2000, distil_steps=2000, batch=256, lr=3e-3, beta=100.0, w_sft=100.0, rounds=4,
                n_samples=2000, sample_steps=100)
SWEEP = dict(betas=(1.0, 10.0, 100.0, 1000.0), w_sfts=(0.0, 1.0, 10.0, 100.0), rounds=(1, 4))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--out", required=True, help="output folder: fig2.png, samples.npz, metrics.json")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="seeds of the pairs, distillation and samples; the metrics are mean and std over them "
                        "(default: 0 1 2)")
    p.add_argument("--beta", type=float, default=DEFAULTS["beta"],
                   help=f"DPO beta, folded as in redpo.py (default: {DEFAULTS['beta']:g}, the sweep's pick)")
    p.add_argument("--w_sft", type=float, default=DEFAULTS["w_sft"],
                   help=f"SFT weight of ReDPO, Eq. 3 (default: {DEFAULTS['w_sft']:g}, the sweep's pick)")
    p.add_argument("--rounds", type=int, default=DEFAULTS["rounds"],
                   help="loser refreshes from the current student; 1: pairs from the pruned student only "
                        f"(default: {DEFAULTS['rounds']})")
    p.add_argument("--distil_steps", type=int, default=DEFAULTS["distil_steps"],
                   help=f"Adam steps of each distillation (default: {DEFAULTS['distil_steps']})")
    p.add_argument("--teacher_steps", type=int, default=DEFAULTS["teacher_steps"],
                   help=f"Adam steps that train the teacher (default: {DEFAULTS['teacher_steps']})")
    p.add_argument("--iterative", action="store_true",
                   help="also distil block by block from the teacher, sft_iterative and redpo_iterative (default: off)")
    p.add_argument("--sweep", action="store_true",
                   help="instead: map beta x w_sft x rounds of ReDPO against SFT, sweep.json and sweep.png (default: off)")
    return p.parse_args(argv)


def build_models(cfg, bar_cls):
    """Train the teacher (fixed seed: the same teacher in every run) and prune it."""
    torch.manual_seed(0)
    teacher = Denoiser(cfg["width"], cfg["n_blocks"])
    with bar_cls(total=cfg["teacher_steps"], desc="teacher", mininterval=1.0) as bar:
        train_teacher(teacher, cfg["teacher_steps"], cfg["teacher_batch"], cfg["teacher_lr"],
                      torch.Generator().manual_seed(0),
                      lambda **s: (bar.update(), bar.set_postfix(loss=f"{s['loss']:.3f}", refresh=False)))
    teacher.eval()
    pruned, removed = prune(teacher, cfg["keep"])
    n_t, n_s = num_parameters(teacher), num_parameters(pruned)
    print(f"teacher {n_t:,} parameters; student {n_s:,} ({n_s / n_t:.0%}), blocks {removed} removed")
    return teacher, pruned, removed


def main(argv=None):
    args = parse_args(argv)
    cfg = dict(DEFAULTS, beta=args.beta, w_sft=args.w_sft, rounds=args.rounds, distil_steps=args.distil_steps,
               teacher_steps=args.teacher_steps, seeds=args.seeds, iterative=args.iterative)
    if cfg["rounds"] < 1 or cfg["distil_steps"] < cfg["rounds"]:
        raise UserError("--rounds must be at least 1 and at most --distil_steps")
    from tqdm import tqdm
    torch.set_num_threads(1)  # (N, 32) tensors: more threads only add overhead, and spin when the cores are busy
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    teacher, pruned, removed = build_models(cfg, tqdm)
    sizes = {"teacher": num_parameters(teacher), "student": num_parameters(pruned)}

    if args.sweep:
        cells = [(b, w, r) for r in SWEEP["rounds"] for w in SWEEP["w_sfts"] for b in SWEEP["betas"]]
        rows = []
        with tqdm(total=len(args.seeds) * (len(cells) + 1), desc="sweep") as bar:
            for seed in args.seeds:
                b = bench(teacher, pruned, seed, cfg)
                row = {"sft": evaluate(run_method(teacher, pruned, b, "sft", cfg), b["region"], b["teacher_ref"])}
                bar.update()
                for beta, w_sft, rounds in cells:
                    c = dict(cfg, beta=beta, w_sft=w_sft, rounds=rounds)
                    x = run_method(teacher, pruned, b, "redpo" if w_sft > 0 else "dpo", c)
                    row[cell_name(beta, w_sft, rounds)] = evaluate(x, b["region"], b["teacher_ref"])
                    bar.update()
                rows.append(row)
        table = summarise(rows)
        beta, w_sft, rounds = select_defaults(table, cells)
        write_json(os.path.join(args.out, "sweep.json"),
                   {"config": cfg, "grid": SWEEP, "selected": {"beta": beta, "w_sft": w_sft, "rounds": rounds},
                    "table": table, "per_seed": rows})
        plot_sweep(os.path.join(args.out, "sweep.png"), table, SWEEP["betas"], SWEEP["w_sfts"], SWEEP["rounds"])
        print(format_table(table))
        print(f"selected (highest precision + recall): beta={beta:g} w_sft={w_sft:g} rounds={rounds}")
        print(f"wrote {args.out}/sweep.json, sweep.png in {time.time() - start:.0f} s")
        return

    iterative = ("sft", "redpo") if args.iterative else ()
    per_seed, first = [], None
    total = len(args.seeds) * (len(METHODS) + len(iterative)) * cfg["distil_steps"]
    with tqdm(total=total, desc="distil", mininterval=1.0) as bar:
        def progress(**s):
            bar.update()
            bar.set_postfix(dpo=f"{s['dpo']:.3f}", sft=f"{s['sft']:.4f}", acc=f"{s['implicit_acc']:.2f}",
                            refresh=False)
        for seed in args.seeds:
            b = bench(teacher, pruned, seed, cfg)
            samples = dict(b["samples"])
            for method in METHODS:
                samples[method] = run_method(teacher, pruned, b, method, cfg, progress)
            for method in iterative:
                samples[f"{method}_iterative"] = run_iterative(teacher, b, method, cfg, progress)
            per_seed.append({k: evaluate(x, b["region"], b["teacher_ref"]) for k, x in samples.items()})
            first = first or samples
    summary = summarise(per_seed)
    np.savez(os.path.join(args.out, "samples.npz"), **{k: v.numpy() for k, v in first.items()})
    write_json(os.path.join(args.out, "metrics.json"),
               {"config": cfg, "removed_blocks": removed, "parameters": sizes,
                "metrics": summary, "per_seed": per_seed})
    plot_fig2(os.path.join(args.out, "fig2.png"), first, summary, args.seeds,
              ("teacher", "pruned", "sft", "dpo", "redpo") + tuple(f"{m}_iterative" for m in iterative))
    print(format_table(summary))
    print(f"wrote {args.out}/fig2.png, samples.npz, metrics.json in {time.time() - start:.0f} s")


if __name__ == "__main__":
    run_cli(main)
