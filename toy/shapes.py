"""The shapes world's teacher: train it, sample it, score it (docs/shapes/README.md).

The world and its exact reward are toy/shapes_world.py; the teacher's architecture and its V.I.P.
model class are toy/shapes_model.py. This file trains that model on the renderer's clips (DDPM's
Algorithm 1 with the v-objective, UNet and text encoder jointly, EMA weights shipped) and compares
it with ground truth and with an untrained model.

    OMP_NUM_THREADS=1 python toy/shapes.py train    # train the teacher (1 core, 75 min), writes toy/teacher/
    python toy/shapes.py sample --out docs/shapes   # teacher clips next to ground truth (gif + png strip)
    python toy/shapes.py evaluate                   # reward table: ground truth vs teacher vs untrained
    python -c "import models; m = models.load('toy')"   # the teacher, as a V.I.P. model

The shipped toy/teacher/ (3 MB, fp16 EMA weights + config.json recording command, seed, steps and
minutes): `OMP_NUM_THREADS=1 python toy/shapes.py train` with seed 0, 5022 steps of 8 clips in 75
min on one core. `evaluate` on the 18 held-out prompts x 4 seeds (the eval set's seeds): total
0.817 (ground truth 0.958, untrained 0.000); colours and shapes are right, motion direction on
held-out combinations is its weakest point.
"""
import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from infra.cli import run_cli  # noqa: E402
from infra.disk import atomic_dir, atomic_file, load_torch, read_json, save_video, write_json  # noqa: E402
from infra.prompt_files import eval_seeds  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import models  # noqa: E402  (the repository root, also when run as `python toy/shapes.py`)
from toy.shapes_model import TEACHER_DIR, TOY_CONFIG, TOY_CONFIG_FILE, TOY_WEIGHTS, toy_model  # noqa: E402
from toy.shapes_world import DIMENSIONS, render_batch, reward, split_prompts, to_x0  # noqa: E402

TRAIN_DIR = "runs/shapes_teacher"       # resume state and sample strips (not shipped)


def ema_update(ema, params, decay):
    """EMA of the weights: ema <- decay * ema + (1 - decay) * theta."""
    with torch.no_grad():
        for e, p in zip(ema, params):
            e.mul_(decay).add_(p.detach(), alpha=1 - decay)


def lr_at(step, lr, warmup, total):
    """Linear warm-up, then cosine decay to lr / 10 at `total`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def frame_strip(videos, scale=4):
    """uint8 (B, F, H, W, 3) -> one PNG-able image: a row per video, frames left to right."""
    b, f, h, w, _ = videos.shape
    grid = np.full((b * (h + 1), f * (w + 1), 3), 64, np.uint8)
    for i in range(b):
        for j in range(f):
            grid[i * (h + 1):i * (h + 1) + h, j * (w + 1):j * (w + 1) + w] = videos[i, j]
    return grid.repeat(scale, 0).repeat(scale, 1)


def save_png(path, image):
    import imageio.v2 as imageio
    with atomic_file(path) as tmp:
        imageio.imwrite(tmp, image)


def train_teacher(args):
    """Algorithm 1 of DDPM on the renderer's clips with the v-objective: x_t = sqrt(a_t) x_0 +
    sqrt(1 - a_t) eps, loss ||v - v_theta(x_t, t, c)||^2 with v = sqrt(a_t) eps - sqrt(1 - a_t) x_0
    (= (1 + SNR_t) ||eps - eps_theta||^2 for the eps the model exposes); UNet and text encoder
    trained jointly, their EMA shipped."""
    from safetensors.torch import save_file
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = toy_model(TOY_CONFIG, state=None, seed=args.seed)
    unet, text_encoder = model.unet, model.pipe.text_encoder
    named = [("unet." + n, p) for n, p in unet.named_parameters()] + \
            [("text_encoder." + n, p) for n, p in text_encoder.named_parameters()]
    params = [p for _, p in named]
    for p in params:
        p.requires_grad_(True)
    unet.train(), text_encoder.train()
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    ema = [p.detach().clone() for p in params]
    step, elapsed = 0, 0.0
    state_path = os.path.join(args.work, "state.pt")
    if args.resume and os.path.isfile(state_path):
        state = load_torch(state_path, "delete it to train from the start", weights_only=False)
        with torch.no_grad():
            for p, v in zip(params, state["params"]):
                p.copy_(v)
            for e, v in zip(ema, state["ema"]):
                e.copy_(v)
        opt.load_state_dict(state["opt"])
        step, elapsed = state["step"], state["elapsed"]
        rng = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed at step {step} ({elapsed / 60:.1f} min)", flush=True)
    train_prompts, eval_prompts = split_prompts()
    num_t = model.num_train_timesteps
    t0, losses = time.time() - elapsed, []

    def checkpoint():
        ema_state = {n: e.half().contiguous() for (n, _), e in zip(named, ema)}
        config = dict(TOY_CONFIG, train=dict(
            command=" ".join(["python", "toy/shapes.py"] + sys.argv[1:]), seed=args.seed, step=step,
            minutes=round((time.time() - t0) / 60, 1), batch=args.batch, lr=args.lr,
            ema=args.ema, threads=torch.get_num_threads(), train_prompts=len(train_prompts)))
        with atomic_dir(args.out) as tmp:
            save_file(ema_state, os.path.join(tmp, TOY_WEIGHTS))
            write_json(os.path.join(tmp, TOY_CONFIG_FILE), config)
        with atomic_file(state_path) as tmp:
            torch.save(dict(params=[p.detach() for p in params], ema=ema, opt=opt.state_dict(), step=step,
                            elapsed=time.time() - t0, rng=rng, torch_rng=torch.get_rng_state()), tmp)
        teacher = models.load("toy", path=args.out, device="cpu")
        prompts = [eval_prompts[i] for i in (0, 8)] + [train_prompts[i] for i in (20, 60)]
        videos, _ = teacher.generate(prompts, list(range(len(prompts))))
        truth = render_batch(prompts, list(range(len(prompts))))
        save_png(os.path.join(args.work, f"samples_{step:06d}.png"),
                 frame_strip(np.concatenate([videos, truth], axis=2)))

    os.makedirs(args.work, exist_ok=True)
    while step < args.steps and (time.time() - t0) < args.minutes * 60:
        idx = rng.integers(0, len(train_prompts), args.batch)
        prompts = [train_prompts[i] for i in idx]
        x_0 = to_x0(render_batch(prompts, rng.integers(0, 2 ** 31, args.batch)))   # (B, 3, F, H, W)
        cond = [("" if u < args.p_uncond else p) for p, u in zip(prompts, rng.random(args.batch))]
        eps = torch.randn_like(x_0)
        t = torch.randint(0, num_t, (args.batch,))
        x_t = model.add_noise(x_0, eps, t)
        embeds = text_encoder(model.tokenize(cond)).last_hidden_state         # (B, L, D)
        a_t = model.scheduler.alphas_cumprod[t].reshape(-1, 1, 1, 1, 1)
        v = a_t.sqrt() * eps - (1 - a_t).sqrt() * x_0
        v_pred = unet(x_t, t, encoder_hidden_states=embeds.repeat_interleave(x_0.shape[2], 0)).sample
        loss = (v_pred - v).pow(2).mean()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.lr, 200, args.steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        ema_update(ema, params, min(args.ema, (1 + step) / (10 + step)))
        losses.append(loss.item())
        if step % 50 == 0:
            print(f"step {step} loss {np.mean(losses):.4f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{(time.time() - t0) / 60:.1f} min", flush=True)
            losses = []
        if step % args.save_every == 0:
            unet.eval(), text_encoder.eval()
            checkpoint()
            unet.train(), text_encoder.train()
    unet.eval(), text_encoder.eval()
    checkpoint()
    print(f"done: step {step}, {(time.time() - t0) / 60:.1f} min, wrote {args.out}", flush=True)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def evaluate_models(prompts, num_seeds, path=None):
    """Mean reward per dimension of ground truth, the teacher and an untrained model (same config,
    seeded random weights), on every prompt x num_seeds seeds (the eval set's, prompt_files.eval_seeds).
    Returns {row: {dim: mean}}."""
    prompts_x = list(prompts) * num_seeds                 # seed index first, as eval_seeds
    seeds = eval_seeds(len(prompts), num_seeds)
    teacher = models.load("toy", path=path, device="cpu")
    untrained = toy_model(read_json(os.path.join(path or TEACHER_DIR, TOY_CONFIG_FILE)))
    table = {}
    for name, make in (("ground truth", lambda: render_batch(prompts_x, seeds)),
                       ("teacher", lambda: teacher.generate(prompts_x, seeds)[0]),
                       ("untrained", lambda: untrained.generate(prompts_x, seeds)[0])):
        t0 = time.time()
        scores = reward(make(), prompts_x)
        table[name] = {k: float(v.mean()) for k, v in scores.items()}
        table[name]["seconds"] = round(time.time() - t0, 1)
    return table


def format_table(table, caption):
    keys = list(DIMENSIONS) + ["total"]
    lines = [f"| {caption} | " + " | ".join(keys) + " |", "| --- " * (len(keys) + 1) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="The shapes world: train its teacher, sample, evaluate.", allow_abbrev=False)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", allow_abbrev=False, help="train the teacher on rendered clips; writes toy/teacher/")
    t.add_argument("--steps", type=int, default=6000, help="optimizer steps (default: 6000)")
    t.add_argument("--minutes", type=float, default=75, help="stop after this wall time (default: 75)")
    t.add_argument("--batch", type=int, default=8, help="clips per step (default: 8)")
    t.add_argument("--lr", type=float, default=1e-3,
                   help="AdamW peak learning rate, after a linear warm-up, cosine-decayed to a tenth (default: 1e-3)")
    t.add_argument("--ema", type=float, default=0.999, help="EMA decay of the shipped weights (default: 0.999)")
    t.add_argument("--p_uncond", type=float, default=0.1,
                   help="rate of empty prompts, so that guidance is possible (default: 0.1)")
    t.add_argument("--save_every", type=int, default=250,
                   help="steps between saves of the teacher and WORK/state.pt (default: 250)")
    t.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the training clips (default: 0)")
    t.add_argument("--resume", action="store_true", help="continue from WORK/state.pt (default: off, start over)")
    t.add_argument("--out", default=TEACHER_DIR, help="where the teacher goes (default: toy/teacher)")
    t.add_argument("--work", default=TRAIN_DIR, help=f"resume state and sample strips (default: {TRAIN_DIR})")
    e = sub.add_parser("evaluate", allow_abbrev=False,
                       help="reward table: ground truth vs teacher vs untrained on eval prompts")
    e.add_argument("--path", default=None, help="teacher directory (default: toy/teacher)")
    e.add_argument("--seeds", type=int, default=4, help="clips per prompt: prompt i at seed index j has seed "
                   "1000 j + i, as every eval set (default: 4)")
    e.add_argument("--split", default="eval", choices=["eval", "train"],
                   help="the 18 held-out prompts or the 72 training prompts (default: eval)")
    e.add_argument("--out", default=None, help="also write the table as JSON here (default: print it only)")
    s = sub.add_parser("sample", allow_abbrev=False, help="teacher clips beside ground truth: a gif and a png strip")
    s.add_argument("--path", default=None, help="teacher directory (default: toy/teacher)")
    s.add_argument("--out", default="docs/shapes", help="output folder (default: docs/shapes)")
    s.add_argument("--num", type=int, default=6, help="eval prompts to show (default: 6)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 1)))
    if args.command == "train":
        train_teacher(args)
        return
    _, eval_prompts = split_prompts()
    if args.command == "sample":
        # every colour, the shapes in turn (eval_prompts holds 3 per colour, one per shape)
        prompts = [eval_prompts[(3 * i + i % 3) % len(eval_prompts)] for i in range(args.num)]
        seeds = eval_seeds(len(prompts))
        teacher = models.load("toy", path=args.path, device="cpu")
        videos, _ = teacher.generate(prompts, seeds)
        truth = render_batch(prompts, seeds)
        pairs = np.concatenate([videos, np.full_like(videos[:, :, :, :1], 64), truth], axis=3)  # side by side
        save_png(os.path.join(args.out, "teacher_vs_truth.png"), frame_strip(pairs))
        grid = np.concatenate(list(np.pad(pairs, ((0, 0), (0, 0), (0, 1), (0, 0), (0, 0)),
                                          constant_values=64)), axis=1)        # (F, rows, W, 3)
        save_video(os.path.join(args.out, "teacher_vs_truth.gif"),
                   grid.repeat(4, 1).repeat(4, 2), teacher.defaults["fps"])
        for p in prompts:
            print(p)
        print(f"wrote {args.out}/teacher_vs_truth.gif and .png (left: teacher, right: ground truth)")
        return
    prompts = (eval_prompts if args.split == "eval" else split_prompts()[0])
    table = evaluate_models(prompts, args.seeds, args.path)
    print(format_table(table, f"{len(prompts)} {args.split} prompts x {args.seeds} seeds"))
    if args.out:
        write_json(args.out, table)


if __name__ == "__main__":
    run_cli(main)
