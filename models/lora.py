"""The LoRA student (`--lora RANK`): the teacher's weights, its removed blocks skipped, a low-rank adapter on.

V.I.P.'s student M_k is its teacher M0 with blocks removed (Sec. 3.2), trained by ReDPO against M0
(Sec. 3.4.1). With a LoRA adapter (Hu et al. 2022: W x + B A x, B zero at the start), the two share one
copy of the weights:
  - the student: the shared module with the removed blocks skipped (identity, nothing copied) and the
    adapter on; ReDPO trains only the adapter of the blocks it keeps;
  - the teacher: the same module with every block and the adapter off (`as_teacher`), exactly M0.
One adapter serves the whole run, trained on through the stages and never merged into the base:
merging would change the teacher. `merge` folds it into the pruned weights at the end (models/export.py
writes that as the student folder a full-weight run writes).

Both modes are per thread, as `VideoModel.skip` is: on a CPU the loop runs the teacher's forwards on
worker threads while the student trains (infra/parallel.py), so diffusers' `disable_adapters`, which
switches the adapter for every thread, cannot be used. A thread is the student unless it is inside
`teacher_mode()`: a backward's recomputation on an autograd worker thread (checkpointing on a GPU) is
the student's. The adapter is put in with diffusers' `add_adapter` where the class has it
(UNetMotionModel, WanTransformer3DModel) and with peft directly where it does not (VideoCrafter2's
UNet3D); its weights are float32 over a bf16 or fp16 base (bf16 on a GPU), as AdamW needs.
"""
import contextlib
import threading
import types

import torch
from torch import nn

ADAPTER = "default"      # the one adapter's name (peft's and diffusers' default)
LORA_SEED = 0            # A's random init: the same adapter whenever it is rebuilt (B starts at 0)

_MODE = threading.local()   # .teacher: this thread runs the shared module as M0


def teacher_on():
    return getattr(_MODE, "teacher", False)


def adapter_on():
    return not (teacher_on() or getattr(_MODE, "no_adapter", False))


@contextlib.contextmanager
def teacher_mode():
    """Inside: on this thread, every removed block runs and the adapter is off (the module is M0)."""
    with _set("teacher"):
        yield


@contextlib.contextmanager
def adapter_off():
    """Inside: on this thread, the adapter is off and the removed blocks stay skipped: the student as its
    export costs to run (W' = W + B A takes W's operations), for counting FLOPs."""
    with _set("no_adapter"):
        yield


@contextlib.contextmanager
def _set(flag):
    outer = getattr(_MODE, flag, False)
    setattr(_MODE, flag, True)
    try:
        yield
    finally:
        setattr(_MODE, flag, outer)


def is_lora_param(name):
    return ".lora_A." in name or ".lora_B." in name


def lora_targets(unet, trainable):
    """The layers that get an adapter: every Linear of the part a full-weight run trains
    (`trainable`, a predicate on parameter names: AnimateDiff's motion modules, every layer of
    VideoCrafter2's UNet and Wan's transformer)."""
    return [n for n, m in unet.named_modules() if type(m) is nn.Linear and trainable(n + ".weight")]


def add_lora(unet, rank, trainable):
    """Put a rank-`rank` adapter (alpha = rank: scale 1) on lora_targets(unet, trainable), A seeded and
    B zero, so that the adapter adds exactly 0 until trained. Each adapted layer then runs the adapter
    only outside teacher_mode()."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.tuners_utils import BaseTunerLayer
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=lora_targets(unet, trainable),
                        init_lora_weights=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(LORA_SEED)
        if hasattr(unet, "add_adapter"):
            unet.add_adapter(config, ADAPTER)          # diffusers' PeftAdapterMixin
        else:
            inject_adapter_in_model(config, unet, ADAPTER)
    for name, p in unet.named_parameters():
        if is_lora_param(name):
            if p.dtype in (torch.bfloat16, torch.float16):
                p.data = p.data.float()                # trained in float32 over a bf16 base
            p.requires_grad_(False)                    # VideoModel turns on those of the kept blocks
    for layer in unet.modules():
        if isinstance(layer, BaseTunerLayer):
            layer.forward = types.MethodType(_adapter_switch, layer)   # bound: a copy.deepcopy rebinds it


def _adapter_switch(layer, *args, **kwargs):
    """The forward of an adapted layer: the base layer alone in teacher_mode() or adapter_off(), peft's
    LoRA forward (base + B A x) otherwise."""
    if not adapter_on():
        return layer.base_layer(*args, **kwargs)
    if "input" in kwargs:                 # diffusers calls some layers with input=
        args = (kwargs.pop("input"), *args)
    return type(layer).forward(layer, *args, **kwargs)


def removed_forward(block, identity):
    """The forward of a block the LoRA student removed: `identity` (what a removed block computes),
    except in teacher_mode()."""
    block.removed_identity = identity
    return types.MethodType(_removed, block)


def _removed(block, *args, **kwargs):
    if teacher_on():
        return type(block).forward(block, *args, **kwargs)
    return block.removed_identity(*args, **kwargs)


def merge(unet):
    """W <- W + B A (scale 1) in every adapted layer, which becomes its base layer again: the student's
    weights as a full-weight model holds them (for `export`; the teacher is gone after this)."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    layers = [(n, m) for n, m in unet.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, layer in layers:
        del layer.forward                              # _adapter_switch's: merge is the student's view
        with torch.no_grad():
            layer.merge(safe_merge=True)
        parent, _, child = name.rpartition(".")
        setattr(unet.get_submodule(parent), child, layer.get_base_layer())
    if hasattr(unet, "peft_config"):
        unet.peft_config.clear()
        unet._hf_peft_config_loaded = False
