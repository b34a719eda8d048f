"""ReDPO: Regularized Diffusion Preference Optimization (V.I.P. paper, Sec. 3.4.1, Eq. 1-3).

    L_diff-dpo(theta) = -E log sigmoid( -beta T w(lambda_t) (                    (Eq. 1)
                          ||eps^w - eps_theta(x^w_t, t)||^2 - ||eps^w - eps_ref(x^w_t, t)||^2
                        - ( ||eps^l - eps_theta(x^l_t, t)||^2 - ||eps^l - eps_ref(x^l_t, t)||^2 ) ) )
    L_SFT(theta)      = ||eps_theta(x^w_t, t) - eps_ref(x^w_t, t)||^2                 (Eq. 2)
    L_ReDPO(theta)    = L_diff-dpo(theta) + w_SFT * L_SFT(theta)                      (Eq. 3)

theta is the pruned student M_k, ref is the full teacher M0 (frozen), winners x^w come from M0
and losers x^l from M_k (curate.py).
"""
import math

import torch
import torch.nn.functional as F

METHODS = ("redpo", "dpo", "sft")


def per_sample_mse(a, b):
    """||a - b||^2 averaged over every non-batch dim: (N, ...) -> (N,)."""
    return ((a.float() - b.float()) ** 2).reshape(a.shape[0], -1).mean(dim=1)


def loss(pred, ref_pred, noise, method="redpo", beta=5000.0, w_sft=1e4):
    """The ReDPO loss and its two baselines on one batch of pairs.

    pred:     student eps_theta on [x^w_t; x^l_t], (2B, ...), winners first
    ref_pred: teacher eps_ref on the same batch (computed under no_grad)
    noise:    the eps that made x_t, (2B, ...); a pair shares t and eps
    method:   "redpo" = dpo + w_sft * sft (Eq. 3); "dpo" = Eq. 1 alone ("w/o SFT");
              "sft" = Eq. 2 alone (the paper's SFT distillation baseline)
    Returns (loss, stats) with stats a dict of floats.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    B = pred.shape[0] // 2
    err = per_sample_mse(noise, pred)                  # ||eps - eps_theta(x_t, t)||^2, (2B,)
    ref_err = per_sample_mse(noise, ref_pred).detach()  # ||eps - eps_ref(x_t, t)||^2, (2B,)
    err_w, err_l = err[:B], err[B:]
    ref_err_w, ref_err_l = ref_err[:B], ref_err[B:]

    # Eq. 1. T * w(lambda_t) is a constant for eps-prediction with the uniform weighting of
    # Diffusion-DPO; like Diffusion-DPO's and VideoDPO's code we fold it, together with the 1/2
    # of the Gaussian log-likelihood (log p = -||eps - eps_hat||^2 / 2 + const), into beta:
    #   beta T w(lambda_t) (...)  ->  0.5 * beta * (...),  so beta = 5000 means what it means there.
    inside = -0.5 * beta * ((err_w - ref_err_w) - (err_l - ref_err_l))  # (B,)
    dpo = -F.logsigmoid(inside).mean()

    # Eq. 2, on the winners only, reusing the teacher's winner prediction (no extra forward).
    sft = per_sample_mse(pred[:B], ref_pred[:B].detach()).mean()

    if method == "redpo":
        total = dpo + w_sft * sft  # Eq. 3
    elif method == "dpo":
        total = dpo
    else:
        total = sft

    with torch.no_grad():
        implicit_acc = ((inside > 0).float() + 0.5 * (inside == 0).float()).mean()
    stats = {
        "loss": total.item(),
        "dpo": dpo.item(),
        "sft": sft.item(),
        "implicit_acc": implicit_acc.item(),
        "reward_margin": inside.mean().item(),
        "err_w": err_w.mean().item(),
        "err_l": err_l.mean().item(),
        "ref_err_w": ref_err_w.mean().item(),
        "ref_err_l": ref_err_l.mean().item(),
    }
    return total, stats


LN2 = math.log(2.0)  # the DPO term when student == reference: -log sigmoid(0)
