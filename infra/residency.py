"""Big models that take turns on one accelerator: the video model's, then the reward's.

No paper section: how `--lora` fits the loop on one 24 GB GPU. The video model (one bf16 copy,
shared by the LoRA student and its teacher, models/lora.py) and VideoScore (8B, 15.4 GiB in bf16,
rewards.py) do not fit beside each other, and no step needs both at once: a step generates, then
scores. So each big part has a home, the CPU, and a group of them is resident on the accelerator only
while it runs:

    "video"   the denoiser and the VAE       generate, decode, noise_pred (training)
    "text"    the text encoder               with "video" to generate and encode; home while training,
                                             whose prompts are encoded once before its first step
    "reward"  the reward model               scoring

A call asks for the groups it runs (`guard`) and a swap sends every other group home first, then
empties the CUDA cache, then brings the asked groups in; consecutive calls of one phase (a training
run's steps, a batch's generate and decode) move nothing. Only the outermost call asks: noise_pred
inside generate does not send the text encoder home. On the CPU nothing moves, since every part
already lives there, so a CPU run is bit for bit what it was.
"""
import functools
import threading

import torch


def takes_turns(lora_rank, device):
    """Whether the video model and the reward take turns on `device`: with --lora (the run's one GPU
    holds everything) on an accelerator."""
    return bool(lora_rank) and torch.device(device).type != "cpu"


def to_device(modules, device):
    """Move modules to `device` (in place: their parameters stay the objects an optimizer holds);
    after a move to the CPU, give the freed blocks of CUDA's cache back."""
    for module in modules:
        module.to(device)
    if torch.device(device).type == "cpu" and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class Residency:
    """Which group of big modules is on the accelerator `device` now. `on`: whether anything moves
    (default: off on the CPU); tests take turns on the CPU with on=True and their own `move`.
    `swaps` lists each swap's resident groups, in order."""

    def __init__(self, device, on=None, move=to_device):
        self.device = torch.device(device)
        self.on = self.device.type != "cpu" if on is None else on
        self.move = move
        self.groups = {}
        self.resident = None          # unknown until the first swap: each part where it was loaded
        self.swaps = []
        self._calls = threading.local()

    def add(self, name, modules):
        self.groups[name] = list(modules)

    def use(self, *names):
        """Make the groups `names` resident: every other group goes home first, then these come in.
        Nothing moves when they already are (or when off)."""
        wanted = tuple(sorted(names))
        if not self.on or wanted == self.resident:
            return
        self.move([m for name, modules in self.groups.items() if name not in wanted for m in modules], "cpu")
        self.move([m for name in wanted for m in self.groups[name]], self.device)
        self.resident = wanted
        self.swaps.append(wanted)

    def guard(self, fn, *names):
        """`fn` as a call that runs with the groups `names` resident; a call made inside another
        guarded call (noise_pred inside generate) runs with what the outer one asked for."""
        @functools.wraps(fn)
        def resident_call(*args, **kwargs):
            depth = getattr(self._calls, "depth", 0)
            if depth == 0:
                self.use(*names)
            self._calls.depth = depth + 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._calls.depth = depth
        return resident_call


def share(device, video_model, reward, on=None, move=to_device):
    """A Residency on `device` for a run's video model and reward, each of which puts its groups in it
    and guards its calls (VideoModel.take_turns, Reward.take_turns). Returns the Residency."""
    residency = Residency(device, on=on, move=move)
    video_model.take_turns(residency)
    reward.take_turns(residency)
    return residency
