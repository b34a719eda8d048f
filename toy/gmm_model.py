"""The teacher and the pruned student of toy/gmm.py (Fig. 2 in 2D, Sec. 3.1), and their data.

    data     a 2D Gaussian mixture: 16 modes, sigma 0.1, at least 12 sigma apart, weights 3:1 from
             the first to the last (MODES, WEIGHTS, SIGMA)
    teacher  an eps-prediction diffusion model: a time-conditioned residual MLP (Denoiser) trained
             on fresh mixture samples with DDPM's simple loss
    student  the teacher with its least important blocks removed (block importance by ablation, as
             in Sec. 3.2), keeping the teacher's remaining weights (`prune`)

Diffusion: DDPM forward process with linear betas (Ho et al. 2020, Eq. 4); sampling with DDIM
(Song et al. 2021, Eq. 12), eta = 1 (ancestral) and 100 strided steps. toy/gmm.py distils the
student three ways and measures the samples:

    python toy/gmm.py --out runs/gmm                       # ~80 s on one CPU core: fig2.png, samples.npz, metrics.json
"""
import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------
# The data: a 2D Gaussian mixture, well-separated modes of unequal weight
# ---------------------------------------------------------------------------------------------

def place_modes(k, half_width, min_dist, seed=0):
    """k mode centres uniformly in [-half_width, half_width]^2, each at least min_dist from the others
    (rejection sampling with a fixed seed, so the data set is the same everywhere)."""
    g = torch.Generator().manual_seed(seed)
    modes = []
    while len(modes) < k:
        c = (torch.rand(2, generator=g) * 2 - 1) * half_width
        if all((c - m).norm() >= min_dist for m in modes):
            modes.append(c)
    return torch.stack(modes)


K = 16
SIGMA = 0.1                                # per-coordinate std of every mode
MODES = place_modes(K, 2.5, 1.2)           # (K, 2); centres at least 12 sigma apart
WEIGHTS = torch.linspace(3, 1, K) / torch.linspace(3, 1, K).sum()  # unequal: the first is 3x the last


def sample_mixture(n, generator):
    """n points from the mixture: (n, 2)."""
    k = torch.multinomial(WEIGHTS, n, replacement=True, generator=generator)
    return MODES[k] + SIGMA * torch.randn(n, 2, generator=generator)


def mixture_log_prob(x):
    """log p_data(x) under the true mixture: (N, 2) -> (N,)."""
    d2 = ((x[:, None, :] - MODES[None]) ** 2).sum(-1)                          # (N, K)
    log_n = -d2 / (2 * SIGMA ** 2) - math.log(2 * math.pi * SIGMA ** 2)        # 2D isotropic normal
    return torch.logsumexp(log_n + WEIGHTS.log()[None], dim=1)


# ---------------------------------------------------------------------------------------------
# The diffusion process (DDPM forward, DDIM sampler)
# ---------------------------------------------------------------------------------------------

T = 1000
ALPHA_BAR = torch.cumprod(1 - torch.linspace(1e-4, 0.02, T), dim=0)  # linear betas, Ho et al. 2020


def add_noise(x_0, eps, t):
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (DDPM Eq. 4)."""
    a = ALPHA_BAR[t][:, None]
    return a.sqrt() * x_0 + (1 - a).sqrt() * eps


@torch.no_grad()
def ddim_sample(model, x_T, steps=100, eta=1.0, generator=None):
    """DDIM (Song et al. 2021, Eq. 12) from x_T: (N, 2) -> x_0 (N, 2).

    eta = 1 is DDPM's ancestral sampler on a strided schedule, eta = 0 the deterministic ODE.
    Two models given the same x_T and a generator in the same state get the same noise: the
    2D version of "same prompt and seed"."""
    ts = torch.linspace(T - 1, 0, steps).round().long()
    x = x_T
    for i, t in enumerate(ts):
        a = ALPHA_BAR[t]
        a_prev = ALPHA_BAR[ts[i + 1]] if i + 1 < steps else torch.tensor(1.0)
        eps = model(x, t.expand(x.shape[0]))
        x_0 = (x - (1 - a).sqrt() * eps) / a.sqrt()                    # predicted x_0
        # Eq. 12: x_prev = sqrt(a_prev) x_0 + sqrt(1 - a_prev - sigma^2) eps + sigma z, sigma from Eq. 16
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
        x = a_prev.sqrt() * x_0 + (1 - a_prev - sigma ** 2).sqrt() * eps
        if eta > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator)
    return x


def sample(model, n, seed, steps=100):
    """n samples from `model`; x_T and every step's noise come from `seed`, so two models sampled
    with the same seed start from the same x_T and see the same noise (a pair's "same seed")."""
    g = torch.Generator().manual_seed(seed)
    return ddim_sample(model, torch.randn(n, 2, generator=g), steps, eta=1.0, generator=g)


# ---------------------------------------------------------------------------------------------
# The denoiser: a time-conditioned residual MLP; its blocks are what pruning removes
# ---------------------------------------------------------------------------------------------

def timestep_embedding(t, dim):
    """Sinusoidal embedding of integer t: (N,) -> (N, dim)."""
    freqs = torch.exp(-math.log(1000.0) * torch.arange(dim // 2) / (dim // 2))
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.sin(), a.cos()], dim=1)


class Block(nn.Module):
    """h + W2 silu(W1 LN(h) + W_t temb): one prunable residual block."""

    def __init__(self, width):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.time = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h, temb):
        return h + self.fc2(F.silu(self.fc1(self.norm(h)) + self.time(temb)))


class Denoiser(nn.Module):
    """eps_theta(x_t, t) for 2D points: in-projection, residual blocks, out-projection."""

    def __init__(self, width=128, n_blocks=4):
        super().__init__()
        self.width = width
        self.inp = nn.Linear(2, width)
        self.temb = nn.Sequential(nn.Linear(width, width), nn.SiLU())
        self.blocks = nn.ModuleList(Block(width) for _ in range(n_blocks))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2))

    def forward(self, x_t, t, skip=()):
        """x_t (N, 2), t (N,) -> eps (N, 2); blocks whose index is in `skip` act as identity."""
        temb = self.temb(timestep_embedding(t, self.width))
        h = self.inp(x_t)
        for i, block in enumerate(self.blocks):
            if i not in skip:
                h = block(h, temb)
        return self.out(h)


def num_parameters(model):
    return sum(p.numel() for p in model.parameters())


def denoising_loss(model, x_0, generator, skip=()):
    """The DDPM simple loss ||eps - eps_theta(x_t, t)||^2 with t ~ U{0..T-1}."""
    t = torch.randint(0, T, (x_0.shape[0],), generator=generator)
    eps = torch.randn(x_0.shape, generator=generator)
    return F.mse_loss(model(add_noise(x_0, eps, t), t, skip=skip), eps)


def train_teacher(model, steps, batch, lr, generator, progress=None):
    """Fit the teacher on fresh mixture samples; returns the trained model (in place)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        loss = denoising_loss(model, sample_mixture(batch, generator), generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress(loss=loss.item())
    return model


@torch.no_grad()
def block_importance(model, x_0, generator):
    """Sec. 3.2 on 2D points: the rise in denoising loss when each block alone is skipped."""
    state = generator.get_state()
    base = denoising_loss(model, x_0, generator).item()
    drops = []
    for i in range(len(model.blocks)):
        generator.set_state(state)  # the same t and eps for every ablation
        drops.append(denoising_loss(model, x_0, generator, skip=(i,)).item() - base)
    return drops


def prune(teacher, keep):
    """The student: a copy of the teacher with all but `keep` blocks removed structurally.

    The removed blocks are those whose ablation hurts least (block_importance); the student keeps
    the teacher's remaining weights. Returns (student, removed indices)."""
    g = torch.Generator().manual_seed(0)
    drops = block_importance(teacher, sample_mixture(4096, g), g)
    removed = sorted(np.argsort(drops)[:len(drops) - keep].tolist())
    student = copy.deepcopy(teacher)
    student.blocks = nn.ModuleList(b for i, b in enumerate(student.blocks) if i not in removed)
    return student, removed
