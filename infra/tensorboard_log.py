"""TensorBoard for one run (`--report_to tensorboard`): the training's numbers while it trains, and
each stage's scores, cost and clips, on one step axis. The default, `none`, is `OFF`: it writes
nothing, reads nothing and never imports TensorBoard.

    python vip_loop.py --report_to tensorboard && tensorboard --logdir runs/toy-redpo

Global step: stage k's training step s is the earlier stages' steps + s, so the stages follow each
other. The tags:

    train/*           each training step as metrics.jsonl holds it: the loss, the DPO term (Eq. 1), the
                      SFT term (Eq. 2) and w_sft x it as the loss weighs it, the implicit accuracy, the
                      reward margin, err_w_gap and err_l_gap (the student's error minus the teacher's on
                      the winners and on the losers), the grad norm and the lr
    pruned/*, trained/*  the stage's pruned and trained rows: each dimension's mean and the Average,
                      at the stage's last step
    cost/*            the trained row's parameters (M, the trained part) and TFLOPs per video
    clips             teacher | pruned | trained, the eval set's first video, an animated GIF per stage

The log is a view of the run folder, written only from what its files hold: a training step when
metrics.jsonl gets it, a stage's rows once its eval.json is written. Opening the log removes the
folder's earlier event files; the run then writes again what its finished stages and its resumed
stage's metrics.jsonl hold (vip_loop.py walks every stage; redpo.py's loop catches up on resuming).
So a resumed run never shows a point twice: the steps past the last checkpoint, logged before the
kill, are dropped from metrics.jsonl and trained again. The first event is a START at step 0, which
tells a TensorBoard that had read the old files to drop their points.
"""
import glob
import io
import math
import os

import numpy as np

from infra import disk, ranks

REPORT_TO = ("none", "tensorboard")
CLIP_SCALE = 8      # the clips' pixels, scaled up (nearest neighbour) so that a 16x16 world can be seen


def open_board(report_to, log_dir):
    """The run's log: a Board writing to log_dir on rank 0, or OFF (for "none", and on other ranks)."""
    if report_to not in REPORT_TO:
        raise ValueError(f"unknown --report_to {report_to!r}: choose one of {', '.join(REPORT_TO)}")
    return Board(log_dir) if report_to == "tensorboard" and ranks.rank_world()[0] == 0 else OFF


def sft_weight(method, w_sft):
    """What multiplies the SFT term in the loss (redpo.loss): w_sft in ReDPO (Eq. 3), 1 in the SFT
    baseline, None in DPO alone (the term is logged but not trained)."""
    return {"redpo": w_sft, "sft": 1.0}.get(method)


class Off:
    """--report_to none: every call does nothing."""

    def for_stage(self, k):
        return self

    def training(self, *args):
        pass

    def stage(self, k, stage_dir, method, w_sft):
        pass

    def close(self):
        pass


OFF = Off()


class Board:
    """One run's TensorBoard log. `training(k, rows, ...)`: stage k's metrics.jsonl rows not yet
    written; `stage(k, stage_dir, ...)`: what stage k's files hold and the log lacks. Stages are
    given in order: a finished stage (its eval.json written) sets where the next one starts."""

    def __init__(self, log_dir):
        from torch.utils.tensorboard import SummaryWriter   # here: with --report_to none it is never imported
        os.makedirs(log_dir, exist_ok=True)
        for old in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
            os.remove(old)
        self.writer = SummaryWriter(log_dir, purge_step=0)
        self.start = {1: 0}       # stage -> the global step before its first training step
        self.last = {}            # stage -> its last training step written
        self.finished = set()     # stages whose rows, cost and clip are written

    def for_stage(self, k):
        """What redpo's training of stage k writes to: `.training(rows, method, w_sft)`."""
        return StageLog(self, k)

    def training(self, k, rows, method, w_sft):
        """Stage k's metrics.jsonl rows past the last one written, each at global step start + step.
        w_sft: the stage's (the w_sft rule's line, step 0, when there is one, overrides it)."""
        w_sft = next((r["w_sft"] for r in rows if r["step"] == 0 and "w_sft" in r), w_sft)
        weight = sft_weight(method, w_sft)
        for r in rows:
            if "loss" not in r or r["step"] <= self.last.get(k, 0):
                continue
            step, add = self.start[k] + r["step"], self.writer.add_scalar
            add("train/loss", r["loss"], step)
            add("train/dpo_term", r["dpo"], step)
            add("train/sft_term", r["sft"], step)
            if isinstance(weight, (int, float)):
                add("train/w_sft_x_sft_term", weight * r["sft"], step)
            add("train/implicit_acc", r["implicit_acc"], step)
            add("train/reward_margin", r["reward_margin"], step)
            add("train/err_w_gap", r["err_w"] - r["ref_err_w"], step)
            add("train/err_l_gap", r["err_l"] - r["ref_err_l"], step)
            if "grad_norm" in r:      # not on a skipped (non-finite) step
                add("train/grad_norm", r["grad_norm"], step)
            add("train/lr", r["lr"], step)
            self.last[k] = r["step"]
        self.writer.flush()

    def stage(self, k, stage_dir, method, w_sft):
        """What stage k's files hold and the log lacks (stage_dir: vip_loop's stage_k): its training
        steps, and once its eval.json is written, the pruned and trained rows, the cost and the clip
        at its last step, which is where stage k + 1 starts."""
        metrics = os.path.join(stage_dir, "train", "metrics.jsonl")
        rows = disk.read_jsonl(metrics, skip_damaged=True) if os.path.isfile(metrics) else []   # a log: what reads
        self.training(k, rows, method, w_sft)
        pruned_json, trained_json = os.path.join(stage_dir, "eval_pruned.json"), os.path.join(stage_dir, "eval.json")
        if k in self.finished or not (os.path.isfile(pruned_json) and os.path.isfile(trained_json)):
            return
        end = self.start[k] + max((r["step"] for r in rows), default=0)
        pruned, trained = disk.read_json(pruned_json), disk.read_json(trained_json)
        for name, row in (("pruned", pruned), ("trained", trained)):
            for dim, score in row["scores"].items():
                if score["mean"] is not None and math.isfinite(score["mean"]):
                    self.writer.add_scalar(f"{name}/{dim}", score["mean"], end)
        self.writer.add_scalar("cost/params_M", trained["params"]["trainable"] / 1e6, end)
        if trained.get("tflops"):
            self.writer.add_scalar("cost/tflops_per_video", trained["tflops"]["tflops"], end)
        clips = [first_clip(os.path.join(d, name)) for d, name in ((os.path.dirname(stage_dir), "full/videos.npz"),
                                                                   (stage_dir, "videos_pruned.npz"),
                                                                   (stage_dir, "videos.npz"))]
        if all(c is not None for c in clips):
            fps = trained.get("generation", {}).get("fps", 8)
            self.writer.file_writer.add_summary(gif_summary("clips", side_by_side(clips), fps), end)
        self.writer.flush()
        self.finished.add(k)
        self.start[k + 1] = end

    def close(self):
        self.writer.close()


class StageLog:
    """One stage of a Board, for redpo.train: `training(rows, method, w_sft)` as Board.training."""

    def __init__(self, board, k):
        self.board, self.k = board, k

    def training(self, rows, method, w_sft):
        self.board.training(self.k, rows, method, w_sft)


# ---------------------------------------------------------------------------------------------
# The clips
# ---------------------------------------------------------------------------------------------

def first_clip(npz_path):
    """The first video of an eval's videos.npz, (F, H, W, 3) uint8, or None when it is not kept."""
    return disk.load_npz(npz_path)["frames"][0] if os.path.isfile(npz_path) else None


def side_by_side(clips, scale=CLIP_SCALE, gap=2):
    """[(F, H, W, 3) uint8] -> (F, H s, sum W s + gaps, 3): each scaled up by `scale`, white between."""
    frames = min(len(c) for c in clips)
    big = [c[:frames].repeat(scale, axis=1).repeat(scale, axis=2) for c in clips]
    height = max(b.shape[1] for b in big)
    parts = []
    for i, b in enumerate(big):
        if i:
            parts.append(np.full((frames, height, gap, 3), 255, np.uint8))
        parts.append(np.pad(b, ((0, 0), (0, height - b.shape[1]), (0, 0), (0, 0)), constant_values=255))
    return np.concatenate(parts, axis=2)


def gif_summary(tag, frames, fps):
    """An image summary holding an animated GIF of (F, H, W, 3) uint8 frames: what TensorBoard's
    add_video writes, without moviepy (Pillow encodes the GIF)."""
    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary
    images = [Image.fromarray(f) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=int(round(1000 / fps)), loop=0)
    image = Summary.Image(height=frames.shape[1], width=frames.shape[2], colorspace=3,
                          encoded_image_string=buffer.getvalue())
    return Summary(value=[Summary.Value(tag=tag, image=image)])
