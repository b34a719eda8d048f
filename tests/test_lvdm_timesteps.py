"""VideoCrafter2's DDIM timesteps follow LVDM for every step count.

LVDM (lvdm/models/utils_diffusion.py, make_ddim_timesteps "uniform"; lvdm/models/samplers/ddim.py)
samples on range(0, T, T // S) + 1 and steps from each timestep to the previous entry of that list
(alphas_cumprod[0] and scale_arr[0] for the first). For S = 30 that is 31 steps from t = 991.
"""
from infra.cli import UserError

import numpy as np
import pytest
import torch

import models
from models import videocrafter2


def lvdm_schedule(S, T=1000):
    """make_ddim_timesteps("uniform", S, T): np.asarray(list(range(0, T, T // S))) + 1."""
    return np.asarray(list(range(0, T, T // S))) + 1


def test_thirty_steps_are_thirty_one_from_991():
    timesteps, previous = videocrafter2.lvdm_ddim_timesteps(30)
    assert timesteps == lvdm_schedule(30).tolist()
    assert len(timesteps) == 31 and timesteps[-1] == 991 and timesteps[0] == 1       # sampled 991 first, 1 last
    assert previous == [0] + timesteps[:-1] and previous[-1] == 958
    with pytest.raises(UserError, match="between 1 and 1000"):
        videocrafter2.lvdm_ddim_timesteps(0)


@pytest.mark.parametrize("S", [50, 25, 40])
def test_step_counts_that_divide_1000_equal_diffusers_ddim(S):
    # diffusers' DDIM timesteps ("leading", offset 1; t -> t - 1000 // S) are LVDM's when S divides 1000.
    from diffusers import DDIMScheduler
    scheduler = DDIMScheduler(**videocrafter2.VIDEOCRAFTER2_SCHEDULER)
    scheduler.set_timesteps(S)
    ddim = scheduler.timesteps.tolist()[::-1]
    timesteps, previous = videocrafter2.lvdm_ddim_timesteps(S)
    assert timesteps == ddim == lvdm_schedule(S).tolist() and len(timesteps) == S
    assert previous == [max(t - 1000 // S, 0) for t in ddim]


def test_sampler_runs_lvdm_ddim():
    """generate() against LVDM's DDIMSampler written out: ddim_alphas = a[ts], ddim_alphas_prev =
    [a[0]] + a[ts[:-1]], the same for scale_arr, sigma_i = eta sqrt((1 - a_prev) / (1 - a) (1 - a / a_prev)),
    and per step (index i from the end) pred_x0 = (x - sqrt(1 - a_i) e) / sqrt(a_i) / s_i,
    x = sqrt(a_prev_i) s_prev_i pred_x0 + sqrt(1 - a_prev_i - sigma_i^2) e + sigma_i noise."""
    model = models.load("tiny-videocrafter2")
    d = model.defaults
    S, prompts, seeds = 7, ["a red car", "a blue boat"], [3, 4]   # 1000 // 7 = 142: 8 steps, not 7
    seen = []
    noise_pred = model.noise_pred
    model.noise_pred = lambda x, t, c: seen.append(t) or noise_pred(x, t, c)
    _, latents = model.generate(prompts, seeds, steps=S)
    del model.noise_pred
    ts = lvdm_schedule(S)
    assert seen == ts[::-1].tolist()                                     # 8 UNet calls, 995 ... 1

    a = model.scheduler.alphas_cumprod.double().numpy()
    s = model.scale_arr.double().numpy()
    alphas, alphas_prev = a[ts], np.asarray([a[0]] + a[ts[:-1]].tolist())
    scales, scales_prev = s[ts], np.asarray([s[0]] + s[ts[:-1]].tolist())
    sigmas = d["eta"] * np.sqrt((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev))
    factor = model.pipe.vae_scale_factor
    shape = (4, d["num_frames"], d["height"] // factor, d["width"] // factor)
    gens = [torch.Generator().manual_seed(x) for x in seeds]
    draw = lambda: torch.stack([torch.randn(shape, generator=g) for g in gens]).double()  # noqa: E731
    x = draw()
    cond, uncond = model.encode(prompts), model.encode([""] * 2)
    with torch.no_grad():
        for i, step in enumerate(ts[::-1]):
            index = len(ts) - i - 1
            e_u, e_c = noise_pred(torch.cat([x, x]).float(), int(step), torch.cat([uncond, cond])).double().chunk(2)
            e = e_u + d["guidance"] * (e_c - e_u)
            pred_x0 = (x - np.sqrt(1 - alphas[index]) * e) / np.sqrt(alphas[index]) / scales[index]
            x = (np.sqrt(alphas_prev[index]) * scales_prev[index] * pred_x0
                 + np.sqrt(1 - alphas_prev[index] - sigmas[index] ** 2) * e + sigmas[index] * draw())
    # float32 sampler vs this float64 transcription, 8 steps at guidance 12: rounding only.
    torch.testing.assert_close(latents.double(), x, atol=1e-3, rtol=1e-3)
