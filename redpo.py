"""ReDPO: Regularized Diffusion Preference Optimization (V.I.P. paper, Sec. 3.4.1, Eq. 1-3).

    L_diff-dpo(theta) = -E log sigmoid( -beta T w(lambda_t) (                    (Eq. 1)
                          ||eps^w - eps_theta(x^w_t, t)||^2 - ||eps^w - eps_ref(x^w_t, t)||^2
                        - ( ||eps^l - eps_theta(x^l_t, t)||^2 - ||eps^l - eps_ref(x^l_t, t)||^2 ) ) )
    L_SFT(theta)      = ||eps_theta(x^w_t, t) - eps_ref(x^w_t, t)||^2                 (Eq. 2)
    L_ReDPO(theta)    = L_diff-dpo(theta) + w_SFT * L_SFT(theta)                      (Eq. 3)

theta is the pruned student M_k, ref is the full teacher M0 (frozen), winners x^w come from M0
and losers x^l from M_k (curate.py).

Flow matching (Wan, models/wan.py). Such a model noises x_t = (1 - sigma) x_0 + sigma eps and predicts
the velocity v = eps - x_0. Given x_t and sigma, a velocity is an eps in other units:
eps = x_t + (1 - sigma) v, so ||eps - eps_theta||^2 = (1 - sigma)^2 ||v - v_theta||^2. The flow's marginals
are those of a Gaussian diffusion, whose reverse step has mean set by eps_theta, so Eq. 1's argument
(Diffusion-DPO's bound: each step's log-likelihood ratio is a difference of squared Gaussian errors)
goes through unchanged, with (1 - sigma)^2 joining the time weight T w(lambda_t). Flow-DPO (VideoAlign,
Liu et al. 2025) derives exactly this and finds a constant beta, instead of that t-dependent one,
avoids over-optimising the high-noise steps; so `loss` is the same function for every family, fed
each model's own target (`training_target`: eps for the U-Nets, eps - x_0 for Wan), with t drawn as
the model was trained (`sample_timesteps`) and the weight folded into beta as below.

Training (`train`, the loop V.I.P. runs for every stage, Sec. 3.4.2), on one screen: read the pairs
that curate.py wrote, draw one t and one eps per pair, noise winners and losers alike, the teacher's
eps_ref under no_grad and the student's eps_theta on the same 2B batch [x^w_t; x^l_t], the loss,
backward, clipping, the optimizer step, the log. What is not the paper (resume, checkpoints, the w_sft
rule, DDP's gradient sync, the teacher's forwards run ahead on the other CPU core: infra/parallel.py)
is `TrainingRun`, below the loop, called from it one line each. With --lora (one GPU, models/lora.py) the
student is a LoRA adapter over the teacher's own weights, `teacher` is that module with every block and
the adapter off, and the step's gradient runs one video at a time (`split_backward`, below the loop).

    python redpo.py --model tiny --student runs/x/stage_1/student --pairs runs/x/stage_1/pairs --out runs/x/stage_1/train
    python redpo.py --model animatediff --lora 16 --batch 1 --grad_accum 2 --gradient_checkpointing --student ... --pairs ... --out ...
    torchrun --nproc_per_node 8 redpo.py --model animatediff --student ... --pairs ... --out ...
    torchrun --nproc_per_node 8 redpo.py --model animatediff --path SD15_DIR --adapter ADAPTER_DIR --student ...

A flag left unset follows --model's preset (defaults.PRESETS), as in vip_loop.py; the real models'
are the paper's (Sec. 4.1, defaults.PAPER): AdamW, lr 6e-6, 2 pairs a step, 2 epochs, beta 5000,
w_sft 1e4 (AnimateDiff; 1e6 for VideoCrafter2).
"""
import argparse
import contextlib
import dataclasses
import functools
import math
import os
import sys

from infra import cli, disk, parallel, ranks, tensorboard_log
from infra.checkpoint import append_metrics, resume, save_checkpoint
from infra.cli import UserError

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import defaults
import models
from analysis.alarm import CollapseAlarm

METHODS = ("redpo", "dpo", "sft")


def loss(pred, ref_pred, target, method="redpo", beta=defaults.PAPER["beta"], w_sft=defaults.PAPER["w_sft"]):
    """The ReDPO loss and its two baselines on one batch of pairs.

    pred:     student eps_theta on [x^w_t; x^l_t], (2B, ...), winners first (a flow model: v_theta)
    ref_pred: teacher eps_ref on the same batch (computed under no_grad)
    target:   what the predictions regress to, (2B, ...): the eps that made x_t (a flow model: eps - x_0,
              models' training_target); a pair shares t and eps
    method:   "redpo" = dpo + w_sft * sft (Eq. 3); "dpo" = Eq. 1 alone ("w/o SFT");
              "sft" = Eq. 2 alone (the paper's SFT distillation baseline)
    Returns (loss, stats) with stats a dict of floats.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    B = pred.shape[0] // 2
    err = per_sample_mse(target, pred)                  # ||eps - eps_theta(x_t, t)||^2, (2B,)
    ref_err = per_sample_mse(target, ref_pred).detach()  # ||eps - eps_ref(x_t, t)||^2, (2B,)
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


def train(student, teacher, pairs_dir, out_dir, settings=None, board=tensorboard_log.OFF):
    """Sec. 3.4.1's training: the student (in place) on the pairs in `pairs_dir` against the frozen
    teacher, with `settings` (Settings; None: the paper's). Resumes from the latest checkpoint in
    out_dir. `board`: where the logged steps also go (infra/tensorboard_log.py; default: nowhere).
    Returns {"steps", "skipped", "w_sft": the weight used, "last": stats of the last step}."""
    settings = settings or Settings()
    with TrainingRun(student, teacher, pairs_dir, out_dir, settings, board) as run:   # the pairs, AdamW (DDP under torchrun), resume
        w_sft = run.settle_w_sft()   # a number as given; "auto": the paper's rule on the first batches (below)
        for step, epoch, micro_batches in run.remaining_steps():   # B pairs a micro-step, each with its own t and eps
            run.optimizer.zero_grad(set_to_none=True)
            micro_stats = []
            for micro, batch in enumerate(micro_batches):
                with run.grad_sync(micro, len(micro_batches)):   # DDP all-reduces on the last micro-step only
                    with run.autocast():                         # bf16 on a GPU, off on a CPU
                        x_0 = torch.cat([batch["x_w"], batch["x_l"]])   # (2B, C, F, h, w): winners x^w, then losers x^l
                        eps = torch.cat([batch["eps"], batch["eps"]])   # a pair shares eps ...
                        t = torch.cat([batch["t"], batch["t"]])         # ... and t, (2B,)
                        embeds = torch.cat([batch["embeds"], batch["embeds"]])   # the frozen text encoder's, (2B, L, D)
                        x_t = teacher.add_noise(x_0, eps, t)            # q(x_t | x_0) of the model's own training
                        with torch.no_grad():   # eps_ref(x_t, t): the frozen M0 (a CPU runs it ahead, remaining_steps)
                            ref_pred = batch["ref_pred"] if "ref_pred" in batch else teacher.noise_pred(x_t, t, embeds)
                        target = teacher.training_target(x_0, eps, t)   # eps (a flow model: eps - x_0)
                    if settings.split_backward:   # --lora: Eq. 3's gradient, the winners' activations, then the losers'
                        stats = split_backward(run.student_pred, (x_t, t, embeds), target, ref_pred,
                                               (settings.method, settings.beta, w_sft), 1 / len(micro_batches))
                    else:
                        with run.autocast():
                            pred = student.noise_pred(x_t, t, embeds, unet=run.ddp_unet)   # eps_theta(x_t, t)
                            total, stats = loss(pred, ref_pred, target, settings.method, settings.beta, w_sft)   # Eq. 3
                        (total / len(micro_batches)).backward()  # averaged over the micro-steps
                micro_stats.append(stats)
            stats = all_mean(mean_of(micro_stats))   # the step's numbers, over micro-steps and ranks
            if math.isfinite(stats["loss"]):
                stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(run.params, settings.max_grad_norm))
                run.optimizer.step()
            run.skip_or_stop(stats)         # a non-finite loss skips the step; max_nonfinite in a row: a one-line stop
            run.log(step, epoch, stats)     # the progress bar; metrics.jsonl (and TensorBoard) every log_every steps
            run.warn_if_collapsing()        # the collapse alarm: one warning line, never a stop (analysis/alarm.py)
            run.checkpoint_if_due(step)     # checkpoint-N every ckpt_every steps and at the last: where resume starts
    return run.summary()


def split_backward(student_pred, inputs, target, ref_pred, loss_args, scale=1.0):
    """`loss(student_pred(x_t, t, embeds), ref_pred, target, *loss_args)`'s gradient (inputs: x_t, t, embeds;
    loss_args: method, beta, w_sft), with the activations of one half of the batch (the winners, then the
    losers) alive at a time instead of both.

    Eq. 1 depends on the student's errors only through the sigmoid's argument z_b, one per pair, so
        dL/dtheta = sum_b c_b (d err^w_b/dtheta - d err^l_b/dtheta) + w_SFT dL_SFT/dtheta,
        c_b = dL_dpo/d err^w_b = 0.5 beta sigmoid(-z_b) / B      (d(-log sigmoid z)/dz = -sigmoid(-z); dz/d err^w = -0.5 beta)
    A no-grad forward of the whole batch gives every c_b (and the step's stats, the numbers `loss` gives);
    then the winners' forward and backward of sum_b c_b err^w_b + w_SFT L_SFT (Eq. 2 is the winners'),
    then the losers' of -sum_b c_b err^l_b. The gradients add up to the joint one, to rounding
    (tests/test_lora.py). `scale` multiplies the gradient (1 / micro-steps). Returns the stats."""
    (x_t, t, embeds), (method, beta, w_sft) = inputs, loss_args
    B = x_t.shape[0] // 2
    with torch.no_grad():
        pred = student_pred(x_t, t, embeds)
        _, stats = loss(pred, ref_pred, target, method, beta, w_sft)
        err, ref_err = per_sample_mse(target, pred), per_sample_mse(target, ref_pred)
        z = -0.5 * beta * ((err[:B] - ref_err[:B]) - (err[B:] - ref_err[B:]))   # Eq. 1's argument, (B,)
        c = 0.5 * beta * torch.sigmoid(-z) / B if method != "sft" else torch.zeros(B, device=z.device)
        del pred
    w = {"redpo": w_sft, "dpo": 0.0, "sft": 1.0}[method]                         # Eq. 2's weight in the loss
    pred_w = student_pred(x_t[:B], t[:B], embeds[:B])
    l_w = (c * per_sample_mse(target[:B], pred_w)).sum() + w * per_sample_mse(pred_w, ref_pred[:B].detach()).mean()
    (scale * l_w).backward()
    del pred_w, l_w
    if method != "sft":
        pred_l = student_pred(x_t[B:], t[B:], embeds[B:])
        (scale * -(c * per_sample_mse(target[B:], pred_l)).sum()).backward()
    return stats


def per_sample_mse(a, b):
    """||a - b||^2 averaged over every non-batch dim: (N, ...) -> (N,)."""
    return ((a.float() - b.float()) ** 2).reshape(a.shape[0], -1).mean(dim=1)


def mean_of(stats):
    """A list of dicts of floats -> their mean, key by key (equal batches)."""
    return {k: sum(st[k] for st in stats) / len(stats) for k in stats[0]}


def all_mean(stats):
    """Average a dict of floats over the torchrun ranks (the numbers rank 0 logs are global)."""
    if not dist.is_initialized():
        return stats
    keys = sorted(stats)
    v = torch.tensor([stats[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(v)
    return {k: float(x) / dist.get_world_size() for k, x in zip(keys, v)}


# ---------------------------------------------------------------------------------------------
# w_sft. The paper sets it "to match the scale of the DPO loss" (Sec. 4.1). Stated exactly: before
# any update, on the batches the first W_SFT_BATCHES steps of the stage will train on (epoch 0's
# order, each pair's own t and eps), the DPO term (Eq. 1) and the SFT term (Eq. 2) at the initial
# student; w_sft = mean(DPO) / mean(SFT), so that w_sft * SFT equals DPO on average over those batches.
# ---------------------------------------------------------------------------------------------

W_SFT_BATCHES = 8


def parse_w_sft(text):
    """--w_sft: a number, or "auto" (w_sft_rule on the stage's first batches)."""
    if text == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None


def w_sft_rule(dpo_terms, sft_terms):
    """w_sft = mean(DPO) / mean(SFT) over the same batches: the weight at which w_sft * SFT matches
    the DPO loss in scale. None when the SFT term is 0 on all of them (the student is the teacher)."""
    if len(dpo_terms) == 0 or len(dpo_terms) != len(sft_terms):
        raise ValueError(f"need the same non-zero number of DPO and SFT terms (got {len(dpo_terms)}, {len(sft_terms)})")
    sft = sum(sft_terms) / len(sft_terms)
    return None if sft <= 0 else (sum(dpo_terms) / len(dpo_terms)) / sft


def settle_w_sft(out_dir, w_sft, step, measure, log_rule):
    """The w_sft this stage trains with: a number as given, or for "auto" the rule's value. The rule
    is measured once, before the first update (and for a number too with log_rule, to log what it
    would have chosen), and kept in out_dir/w_sft.json and as a line of its own (step 0) in
    metrics.jsonl; a resumed stage reads it back instead of measuring the trained student."""
    path = os.path.join(out_dir, "w_sft.json")
    if os.path.isfile(path) and disk.read_json(path)["setting"] == w_sft:
        return disk.read_json(path)["w_sft"]
    if w_sft != "auto" and not log_rule:
        return w_sft
    if step > 0 and w_sft != "auto":
        return w_sft   # the steps used the given number; only the rule's log is missing
    if step > 0:
        raise UserError(f"{out_dir} holds training steps but not the w_sft they used ({path}); "
                        "delete the folder to train the stage again")
    rule = measure()
    if w_sft == "auto" and rule["w_sft"] is None:
        raise UserError("the SFT term is 0 on the first batches (the student is the teacher), so no w_sft "
                        "matches the DPO loss; pass a number for --w_sft")
    used = rule["w_sft"] if w_sft == "auto" else w_sft
    if ranks.rank_world()[0] == 0:
        metrics_path = os.path.join(out_dir, "metrics.jsonl")
        append_metrics(metrics_path, [], upto=-1)   # its only line: no step has run
        append_metrics(metrics_path,
                       [{"step": 0, "w_sft": used, "w_sft_rule": rule["w_sft"], "rule_dpo": rule["dpo"],
                         "rule_sft": rule["sft"], "rule_steps": rule["steps"], "rule_pairs": rule["pairs"]}])
        disk.write_json(path, {"w_sft": used, "setting": w_sft, "rule": rule})   # last: what resuming reads
    ranks.barrier()
    return used


# ---------------------------------------------------------------------------------------------
# The pairs (written by curate.py: pairs.jsonl + one latent file per winner and per loser), and
# the batches `train` reads: each pair with its own t and eps
# ---------------------------------------------------------------------------------------------

PAIRS_FIX = "make the pairs again: delete that pairs folder and re-run curate.py (vip_loop.py does it by itself)"


def read_pairs(pairs_dir):
    """pairs.jsonl -> list of records whose "winner" / "loser" are paths to (C, F, h, w) latents."""
    path = os.path.join(pairs_dir, "pairs.jsonl")
    if not os.path.isfile(path):
        raise UserError(f"no pairs.jsonl in {pairs_dir}; run curate.py to make the pairs first")
    pairs = disk.read_jsonl(path, fix=PAIRS_FIX)
    if not pairs:
        raise UserError(f"{path} holds no pairs; curate more prompts or lower --tau in curate.py")
    for p in pairs:
        p["winner"] = os.path.join(pairs_dir, p["winner"])
        p["loser"] = os.path.join(pairs_dir, p["loser"])
    return pairs


def epoch_order(n, global_batch, epoch, seed):
    """The pair indices of one epoch: shuffled by (seed, epoch), wrapped around so that every step
    has a full global batch. Length: steps_per_epoch * global_batch."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    steps = math.ceil(n / global_batch)
    return [perm[i % n] for i in range(steps * global_batch)]


def pair_noise(shape, timesteps, seed, epoch, index):
    """One t and one eps ~ N(0, I) for pair `index` in `epoch`; `timesteps`: the model's
    sample_timesteps(n, generator), or a number T for t ~ U{0..T-1}. Drawn from the pair's own
    generator, so neither sharding, accumulation nor resuming changes what a pair sees."""
    g = torch.Generator().manual_seed(((seed * 100_003 + epoch) * 1_000_003 + index) % 2**62)
    t = timesteps(1, g) if callable(timesteps) else torch.randint(0, timesteps, (1,), generator=g)
    eps = torch.randn(shape, generator=g)
    return t, eps


def encode_prompts(teacher, pairs, chunk=64):
    """The frozen text encoder's output for every distinct prompt of the pairs, computed once before
    training instead of once per batch: prompt -> (L, D), kept on the CPU. Each prompt is encoded
    on its own row, so a batch stacked from these equals the batch encoded (bit for bit on the
    CPU models; tests/test_reuse.py)."""
    prompts = list(dict.fromkeys(p["prompt"] for p in pairs))
    embeds = {}
    for i in range(0, len(prompts), chunk):
        embeds.update(zip(prompts[i:i + chunk], teacher.encode(prompts[i:i + chunk]).cpu()))
    return embeds


def make_batch(pairs, indices, epoch, seed, timesteps, text=None):
    """x_w, x_l, eps: (B, C, F, h, w); t: (B,); prompts: B strings; with `text` (encode_prompts'),
    embeds: (B, L, D). On the CPU (to_device moves it)."""
    x_w = torch.stack([disk.load_torch(pairs[i]["winner"], PAIRS_FIX) for i in indices])
    x_l = torch.stack([disk.load_torch(pairs[i]["loser"], PAIRS_FIX) for i in indices])
    noise = [pair_noise(x_w.shape[1:], timesteps, seed, epoch, i) for i in indices]
    batch = {"x_w": x_w, "x_l": x_l, "t": torch.cat([t for t, _ in noise]), "eps": torch.stack([e for _, e in noise]),
             "prompts": [pairs[i]["prompt"] for i in indices]}
    if text is not None:
        batch["embeds"] = torch.stack([text[p] for p in batch["prompts"]])
    return batch


def to_device(batch, device):
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def batch_loss(student_pred, teacher, batch, method, beta, w_sft):
    """`train`'s micro-step as one function, for the w_sft rule, the benchmarks and the tests: the 2B
    noised batch, the student's eps_theta (student_pred: its noise_pred), the teacher's eps_ref
    (batch["ref_pred"] when computed ahead), `loss` (Eq. 3). Returns (loss, stats)."""
    x_0, eps, t, x_t, embeds = noised(teacher, batch)
    pred = student_pred(x_t, t, embeds)
    ref_pred = batch["ref_pred"] if "ref_pred" in batch else teacher_pred(teacher, batch)
    return loss(pred, ref_pred, teacher.training_target(x_0, eps, t), method, beta, w_sft)


def noised(teacher, batch):
    """As `train` writes it: x_0, eps, t, x_t (2B, ...), winners first, and the text embeddings
    (2B, L, D) (encoded here, and kept in the batch, when the batch has none)."""
    x_0 = torch.cat([batch["x_w"], batch["x_l"]])
    eps = torch.cat([batch["eps"], batch["eps"]])
    t = torch.cat([batch["t"], batch["t"]])
    x_t = teacher.add_noise(x_0, eps, t)
    if "embeds" not in batch:
        batch["embeds"] = teacher.encode(batch["prompts"])
    return x_0, eps, t, x_t, torch.cat([batch["embeds"], batch["embeds"]])


def teacher_pred(teacher, batch):
    """eps_ref: the frozen teacher's prediction on the batch's noised pairs, under no_grad."""
    _, _, t, x_t, embeds = noised(teacher, batch)
    with torch.no_grad():
        return teacher.noise_pred(x_t, t, embeds)


# ---------------------------------------------------------------------------------------------
# What `train`'s loop calls: the run around the step
# ---------------------------------------------------------------------------------------------

class TrainingRun:
    """The pairs and the order of their batches, AdamW and DDP, resume from the latest checkpoint,
    the w_sft rule, the teacher's forwards ahead on a CPU, metrics.jsonl, checkpoints and the
    non-finite stop. A context manager: leaving it stops the teacher's threads and freezes the student."""

    def __init__(self, student, teacher, pairs_dir, out_dir, s, board=tensorboard_log.OFF):
        if s.method not in METHODS:
            raise ValueError(f"unknown method {s.method!r}: choose one of {', '.join(METHODS)}")
        self.student, self.teacher, self.out_dir, self.s = student, teacher, out_dir, s
        student.make_resident()   # with --lora on a GPU (infra/residency.py): AdamW's state goes where it trains
        self.rank, self.world = ranks.rank_world()
        device = student.device
        self.config = dict(s.resumable(self.world, student.removed), **({"lora": student.lora} if student.lora else {}))
        self.pairs = read_pairs(pairs_dir)
        self.steps_per_epoch = math.ceil(len(self.pairs) / (s.batch * s.grad_accum * self.world))
        self.total = s.max_steps or s.epochs * self.steps_per_epoch
        self.params = student.trainable_parameters()
        for p in self.params:
            p.requires_grad_(True)
        if s.gradient_checkpointing:
            student.unet.enable_gradient_checkpointing()
        self.ddp_unet = (DDP(student.unet, device_ids=[device.index] if device.type == "cuda" else None)
                         if self.world > 1 else None)   # None: noise_pred calls the student's own U-Net
        self.optimizer = torch.optim.AdamW(self.params, lr=s.lr)
        os.makedirs(out_dir, exist_ok=True)
        state = resume(out_dir, student, self.optimizer, self.config)
        self.step, self.skipped, self.nonfinite_in_a_row, self.last, self.rows = state["step"], state["skipped"], 0, {}, []
        self.metrics_path = os.path.join(out_dir, "metrics.jsonl")
        if self.rank == 0:
            append_metrics(self.metrics_path, [], upto=self.step)
        self.autocast = functools.partial(torch.autocast, device.type, dtype=torch.bfloat16,
                                          enabled=device.type == "cuda")
        with self.autocast():  # as noised would encode them
            self.text = encode_prompts(teacher, self.pairs)
        self.bar = tqdm(total=self.total, initial=self.step, desc=f"{s.method} training", disable=self.rank != 0)
        self.batches = None
        self.board, self.alarm = board, CollapseAlarm()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.batches is not None:
            self.batches.close()   # stops the teacher's threads
        self.bar.close()
        for p in self.params:
            p.requires_grad_(False)
        if self.s.gradient_checkpointing:
            self.student.unet.disable_gradient_checkpointing()

    def step_batches(self, step):
        """Training step `step` (from 0): its epoch and this rank's batch for each micro-step (epoch's
        order, each pair's own t and eps)."""
        s = self.s
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = epoch_order(len(self.pairs), s.batch * s.grad_accum * self.world, epoch, s.seed)
        starts = [((pos * s.grad_accum + micro) * self.world + self.rank) * s.batch for micro in range(s.grad_accum)]
        return epoch, [self.batch(order[i:i + s.batch], epoch) for i in starts]

    def batch(self, indices, epoch):
        """make_batch on the run's device, with the prompts' text embeddings (encoded here when there is
        no text cache)."""
        batch = make_batch(self.pairs, indices, epoch, self.s.seed, self.teacher.sample_timesteps, self.text)
        if "embeds" not in batch:
            with self.autocast():
                batch["embeds"] = self.teacher.encode(batch["prompts"])
        return to_device(batch, self.student.device)

    def remaining_steps(self):
        """(step, epoch, micro-batches) for each step not yet trained. The teacher is frozen, so on a
        CPU its forwards of the next steps run on worker threads (batch["ref_pred"]) while the
        student trains on one thread (infra/parallel.py: the same numbers); elsewhere the loop runs
        the teacher itself, just before the student's backward."""
        steps = range(self.step, self.total)
        ahead = parallel.workers([self.teacher], len(steps)) > 1

        def batches(step):
            epoch, micro_batches = self.step_batches(step)
            if ahead:
                with self.autocast():
                    for b in micro_batches:
                        b["ref_pred"] = teacher_pred(self.teacher, b)
            return step, epoch, micro_batches

        self.batches = parallel.map_batches(batches, steps, self.teacher)
        return self.batches

    def student_pred(self, x_t, t, embeds):
        """eps_theta(x_t, t) under the step's autocast, through DDP under torchrun (for split_backward)."""
        with self.autocast():
            return self.student.noise_pred(x_t, t, embeds, unet=self.ddp_unet)

    def grad_sync(self, micro, n_micro):
        """DDP's no_sync on every micro-step but the last (nothing to sync in one process)."""
        if self.ddp_unet is None or micro == n_micro - 1:
            return contextlib.nullcontext()
        return self.ddp_unet.no_sync()

    def settle_w_sft(self):
        """The w_sft this stage trains with (settle_w_sft; measured before the first update)."""
        n_rule = min(W_SFT_BATCHES, self.steps_per_epoch, self.total)
        self.w_sft = settle_w_sft(self.out_dir, self.s.w_sft, self.step, lambda: self.measure_w_sft(n_rule),
                                  self.s.log_w_sft_rule)
        self.catch_up_logs()
        return self.w_sft

    def catch_up_logs(self):
        """A resumed stage's steps already in metrics.jsonl: to the TensorBoard log, and through the
        collapse alarm (its warning, if any, was printed when they trained)."""
        if self.rank != 0 or not os.path.isfile(self.metrics_path):
            return
        rows = disk.read_jsonl(self.metrics_path, skip_damaged=True)
        for row in rows:
            self.alarm.update(row)
        self.board.training(rows, self.s.method, self.w_sft)

    def measure_w_sft(self, n_steps):
        """w_sft_rule at the student as it is, on the batches of the first n_steps training steps (what
        those steps will train on; each rank its share, the means taken over all of them). No update;
        on a CPU the steps run side by side (infra/parallel.py). Returns {"w_sft", "dpo", "sft", "steps", "pairs"}."""
        s = self.s

        def terms(step):
            _, batches = self.step_batches(step)
            with torch.no_grad(), self.autocast():
                return [batch_loss(self.student.noise_pred, self.teacher, b, "redpo", s.beta, 0.0)[1] for b in batches]
        stats = [st for step_stats in parallel.map_batches(terms, range(n_steps), self.student, self.teacher)
                 for st in step_stats]
        means = all_mean(mean_of([{k: st[k] for k in ("dpo", "sft")} for st in stats]))
        return {"w_sft": w_sft_rule([means["dpo"]], [means["sft"]]), "dpo": means["dpo"], "sft": means["sft"],
                "steps": n_steps, "pairs": n_steps * s.batch * s.grad_accum * self.world}

    def skip_or_stop(self, stats):
        """Count a non-finite loss (its step was skipped); too many in a row stop the run."""
        if math.isfinite(stats["loss"]):
            self.nonfinite_in_a_row = 0
            return
        self.skipped += 1
        self.nonfinite_in_a_row += 1
        if self.nonfinite_in_a_row >= self.s.max_nonfinite:
            raise UserError(f"the loss was not finite for {self.s.max_nonfinite} steps in a row "
                            f"(step {self.step + 1}); lower --beta (now {self.s.beta}) or --lr (now {self.s.lr})")

    def checkpoint_due(self, step):
        return (step + 1) % self.s.ckpt_every == 0 or step + 1 == self.total

    def log(self, step, epoch, stats):
        """After step `step` (from 0): the progress bar, and metrics.jsonl every log_every steps and
        before each checkpoint."""
        self.step = step + 1
        self.last = dict(step=self.step, epoch=epoch, skipped=self.skipped, lr=self.s.lr, **stats)
        self.rows.append(self.last)
        self.bar.update(1)
        self.bar.set_postfix(dpo=f"{stats['dpo']:.4f}", sft=f"{stats['sft']:.2e}", acc=f"{stats['implicit_acc']:.2f}")
        if self.rank == 0 and (self.checkpoint_due(step) or self.step % self.s.log_every == 0):
            append_metrics(self.metrics_path, self.rows)
            self.board.training(self.rows, self.s.method, self.w_sft)   # a point once metrics.jsonl has it
            self.rows = []

    def warn_if_collapsing(self):
        """The collapse alarm (analysis/alarm.py) on the step just logged: one warning line on the step
        it fires; the run goes on."""
        warning = self.alarm.update(self.last)
        if warning and self.rank == 0:
            tqdm.write(warning, file=sys.stderr)

    def checkpoint_if_due(self, step):
        """checkpoint-N (the student, AdamW, the step) every ckpt_every steps and after the last."""
        if not self.checkpoint_due(step):
            return
        if self.rank == 0:
            save_checkpoint(self.out_dir, self.student, self.optimizer,
                            {"step": self.step, "skipped": self.skipped, "config": self.config}, self.s.keep)
        ranks.barrier()

    def summary(self):
        return {"steps": self.step, "skipped": self.skipped, "w_sft": self.w_sft, "last": self.last}


@dataclasses.dataclass
class Settings:
    """How a student is trained; the defaults are the paper's (Sec. 4.1, AnimateDiff). Under torchrun
    each rank takes `batch` pairs per micro-step, so the global batch is batch * grad_accum * world."""
    method: str = defaults.PAPER["method"]   # METHODS: "redpo" (Eq. 3), "dpo" (Eq. 1 alone), "sft" (Eq. 2 alone)
    beta: float = defaults.PAPER["beta"]       # Eq. 1's beta (T w(lambda_t) folded in)
    w_sft: float = defaults.PAPER["w_sft"]     # Eq. 3's w_SFT, or "auto" (settle_w_sft)
    lr: float = defaults.PAPER["lr"]           # AdamW
    batch: int = defaults.PAPER["batch"]       # pairs per rank per micro-step
    epochs: int = defaults.PAPER["epochs"]
    grad_accum: int = defaults.PAPER["grad_accum"]
    max_grad_norm: float = 1.0
    seed: int = 0                    # pair order, t and eps
    max_steps: int = None            # stop after this many steps (overrides epochs)
    ckpt_every: int = 100            # a checkpoint-N folder every this many steps (and at the end)
    keep: int = 2                    # checkpoints kept
    log_every: int = 10              # metrics.jsonl is written every this many steps (and at checkpoints)
    gradient_checkpointing: bool = False
    max_nonfinite: int = 5           # non-finite losses in a row before giving up
    log_w_sft_rule: bool = False     # with a numeric w_sft, also log what the "auto" rule would choose
    split_backward: bool = False     # the gradient one half of each batch at a time (split_backward; --lora)

    def resumable(self, world, removed):
        """What a checkpoint must share with the run that resumes it."""
        keys = ("method", "beta", "w_sft", "lr", "batch", "epochs", "grad_accum", "max_grad_norm", "seed", "max_steps")
        return dict({k: getattr(self, k) for k in keys}, world=world, removed=removed)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

# The flags redpo.py shares with vip_loop.py (defaults.FLAGS): --path is the teacher M0, as the loop's.
FLAGS = ("model", "path", "adapter", "method", "beta", "w_sft", "lr", "batch", "epochs", "grad_accum",
         "gradient_checkpointing", "seed", "report_to", "lora")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train a pruned student with ReDPO (or the SFT / DPO baselines); unset "
                                "flags follow the model's preset, as in vip_loop.py.", allow_abbrev=False)
    defaults.add_flags(p, FLAGS, method={"choices": METHODS}, w_sft={"type": parse_w_sft})
    p.add_argument("--student", default=None, help="a saved student folder (prune.py's pruned/; default: a copy of M0)")
    p.add_argument("--pairs", required=True, help="pairs folder from curate.py")
    p.add_argument("--out", required=True, help="output folder: checkpoints, metrics.jsonl, student/")
    p.add_argument("--max_steps", type=int, default=None,
                   help="stop after this many steps, overriding --epochs (default: none, the epochs' steps)")
    p.add_argument("--ckpt_every", type=int, default=Settings.ckpt_every,
                   help=f"steps between checkpoints (default: {Settings.ckpt_every})")
    return p.parse_args(argv)


def check_student_source(student_dir, teacher):
    """Refuse a saved student that was not cut from this teacher: the base model and adapter it is
    rebuilt from (its recorded source) must be the teacher's, or the reference is another model."""
    path = os.path.join(student_dir, models.STUDENT_FILE)
    if not os.path.isfile(path):
        return
    source = disk.read_json(path)["source"]
    if source != teacher.source:
        def name(src):
            return " + adapter ".join(str(v) for v in (src["path"], src["adapter"]) if v) or "the built-in model"
        raise UserError(f"{student_dir} was pruned from {name(source)}, but the teacher is "
                        f"{name(teacher.source)}; pass the --path and --adapter it was pruned from")


def check_pairs_source(pairs_dir, model):
    """Refuse pairs that another model made (their latents have that model's shape): the pairs
    folder's config.json, written by curate.py or vip_loop.py, names the model."""
    path = os.path.join(pairs_dir, "config.json")
    made_by = disk.read_json(path).get("model") if os.path.isfile(path) else None
    if made_by is not None and made_by != model:
        raise UserError(f"{pairs_dir} holds pairs made by the {made_by} model, but --model is {model}; pass "
                        f"--model {made_by}, or pairs curated with --model {model}")


def main(argv=None):
    args = parse_args(argv)
    disk.check_out(args.out)   # before any work
    defaults.fill(args)
    check_pairs_source(args.pairs, args.model)
    rank, world, device = ranks.dist_setup()
    student = models.load(args.model, path=args.student or args.path, adapter=args.adapter, device=device,
                          lora_rank=args.lora)
    if student.lora:   # one copy of the weights: the teacher is the student's, every block on and the adapter off
        if args.student and (args.path or args.adapter):
            raise UserError(f"{args.student} is a LoRA student: its teacher is its own base; drop --path and --adapter")
        teacher = student.teacher()
    else:
        teacher = models.load(args.model, path=args.path, adapter=args.adapter, device=device)
        if args.student:
            check_student_source(args.student, teacher)
    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
        disk.write_json(os.path.join(args.out, "config.json"), vars(args))
    settings = Settings(method=args.method, beta=args.beta, w_sft=args.w_sft, lr=args.lr, batch=args.batch,
                        epochs=args.epochs, grad_accum=args.grad_accum, seed=args.seed, max_steps=args.max_steps,
                        ckpt_every=args.ckpt_every, gradient_checkpointing=args.gradient_checkpointing,
                        split_backward=bool(student.lora))
    board = tensorboard_log.open_board(args.report_to, os.path.join(args.out, "tensorboard"))
    summary = train(student, teacher, args.pairs, args.out, settings, board.for_stage(1))
    board.close()
    if rank == 0:
        disk.write_json(os.path.join(args.out, "config.json"), dict(vars(args), w_sft_used=summary["w_sft"]))
        student.save(os.path.join(args.out, "student"))
        print(f"trained {summary['steps']} steps ({summary['skipped']} skipped); last: "
              + ", ".join(f"{k} {v:.4g}" for k, v in summary["last"].items() if isinstance(v, float)))
    ranks.barrier()


if __name__ == "__main__":
    cli.run_cli(main)
