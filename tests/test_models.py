"""models/ (the surface in __init__.py, models/animatediff.py): the real AnimateDiff sizes, the tiny
model's surface, and the loaders."""
import os

from infra.cli import UserError

import numpy as np
import pytest
import torch

import models
from models import animatediff
import tiny_checkpoints
from conftest import run_script, trainable_gradients

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def outputs(model, seed=0):
    """A fixed noise_pred call: the model's function, compared bit for bit."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, 16, 16, generator=g)
    return model.noise_pred(x, torch.tensor([10, 500]), ["a red car", "a blue boat"]).detach()


def test_real_animatediff_sizes_on_meta():
    # The paper's 0.453B: v1-5-2 adapter on SD 1.5, built on the meta device (no memory, no download).
    with torch.device("meta"):
        unet = animatediff.build_animatediff_unet()
    paths = animatediff.motion_block_paths(unet)
    assert len(paths) == 21
    assert paths[0] == "down_blocks.0.motion_modules.0" and paths[-1] == "up_blocks.3.motion_modules.2"
    motion = sum(p.numel() for n, p in unet.named_parameters() if animatediff.is_motion_param(n))
    assert motion == 453_209_280
    assert sum(sum(p.numel() for p in unet.get_submodule(q).parameters()) for q in paths) == motion


def test_generate_deterministic_and_batch_independent():
    m = models.load("tiny")
    frames, latents = m.generate(["a red car", "a blue boat"], [1, 2])
    assert frames.dtype == np.uint8 and frames.shape == (2, 8, 16, 16, 3)
    assert latents.shape == (2, 4, 8, 8, 8) and latents.dtype == torch.float32
    frames_again, latents_again = m.generate(["a red car", "a blue boat"], [1, 2])
    assert torch.equal(latents, latents_again) and np.array_equal(frames, frames_again)
    # The second video alone, and in another batch, is the same video.
    f1, l1 = m.generate(["a blue boat"], [2])
    f3, l3 = m.generate(["a green tree", "a blue boat", "a red car"], [7, 2, 1])
    torch.testing.assert_close(l1[0], latents[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(l3[1], latents[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(l3[2], latents[0], atol=1e-4, rtol=1e-4)
    assert np.abs(f1[0].astype(int) - frames[1].astype(int)).max() <= 1
    # A different seed is a different video.
    _, other = m.generate(["a blue boat"], [3])
    assert (other[0] - latents[1]).abs().max() > 0.1


def test_skip_is_identity_and_restores_exactly():
    m = models.load("tiny")
    before = {k: v.clone() for k, v in m.unet.state_dict().items()}
    y0 = outputs(m)
    name = "down_blocks.1.motion_modules.0"
    with m.skip([name]):
        y_skip = outputs(m)
    assert not torch.equal(y_skip, y0)               # the block did something
    assert torch.equal(outputs(m), y0)                # and is back, bit for bit
    after = m.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    m.remove([name])                                  # skipping == removing, in function
    assert torch.equal(outputs(m), y_skip)


def test_remove_drops_exactly_the_block_parameters():
    m = models.load("tiny")
    blocks = m.blocks()
    names = ["mid_block.motion_modules.0", "up_blocks.1.motion_modules.1"]
    size = sum(p.numel() for n in names for p in blocks[n].parameters())
    n0 = m.num_parameters()
    m.remove(names)
    n1 = m.num_parameters()
    assert size > 0
    assert n0["total"] - n1["total"] == size and n0["trainable"] - n1["trainable"] == size
    assert list(m.blocks()) == [b for b in blocks if b not in names]
    y = outputs(m)
    assert y.shape == (2, 4, 8, 16, 16) and torch.isfinite(y).all()
    with pytest.raises(UserError, match="already removed"):
        m.remove(names[:1])
    with pytest.raises(UserError, match="not a block"):
        m.skip(["conv_in"]).__enter__()


def test_trainable_parameters_are_exactly_the_motion_modules():
    m = models.load("tiny")
    trainable = {id(p) for p in m.trainable_parameters()}
    in_blocks = {id(p) for b in m.blocks().values() for p in b.parameters()}
    assert trainable == in_blocks
    assert not any(p.requires_grad for p in m.unet.parameters())  # frozen until redpo.py trains


def test_save_load_roundtrip_of_a_pruned_model(tmp_path):
    m = models.load("tiny")
    m.remove(["up_blocks.0.motion_modules.1"])
    with torch.no_grad():                             # stand-in for training: change the weights
        for p in m.trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))
    m.save(tmp_path / "student")
    back = models.load("tiny", path=str(tmp_path / "student"))
    assert back.removed == m.removed
    assert back.num_parameters() == m.num_parameters()
    assert torch.equal(outputs(back), outputs(m))
    # The saved student holds only its trainable weights: smaller than the unpruned motion modules.
    full = models.load("tiny")
    full.save(tmp_path / "full")
    size = lambda d: os.path.getsize(d / models.STUDENT_WEIGHTS)
    assert size(tmp_path / "student") < size(tmp_path / "full")
    with pytest.raises(UserError, match="holds a tiny model"):
        models.load("animatediff", path=str(tmp_path / "student"))


def test_real_animatediff_loader_on_a_hub_layout_directory(tmp_path):
    # The tiny model written as SD 1.5 + motion adapter checkouts, read by the `animatediff` loader.
    base, adapter = tiny_checkpoints.save_tiny_hub_layout(str(tmp_path))
    assert os.path.isfile(os.path.join(base, "model_index.json"))
    real = models.load("animatediff", path=base, adapter=adapter)
    tiny = models.load("tiny")
    assert len(real.blocks()) == 7 and real.num_parameters() == tiny.num_parameters()
    assert real.scheduler.config.steps_offset == 1 and real.scheduler.config.clip_sample is False
    torch.testing.assert_close(outputs(real), outputs(tiny))
    # A pruned student of it records its source and comes back through the same loader.
    real.remove(["down_blocks.0.motion_modules.0"])
    real.save(tmp_path / "student")
    back = models.load("animatediff", path=str(tmp_path / "student"))
    assert back.removed == ["down_blocks.0.motion_modules.0"]
    torch.testing.assert_close(outputs(back), outputs(real))


def run_cli(*args):
    return run_script("-m", "models", *args)


def test_cli_bad_input_is_one_line(tmp_path):
    r = run_cli("--model", "nope")
    assert r.returncode == 2 and "unknown model 'nope'" in r.stderr and "Traceback" not in r.stderr
    assert "animatediff" in r.stderr and "tiny" in r.stderr
    r = run_cli("--model", "animatediff", "--path", str(tmp_path / "missing"))
    assert r.returncode == 2 and "no such directory" in r.stderr and "Traceback" not in r.stderr


def test_cli_writes_videos_scaled_up_to_256_px(tmp_path):
    """By default the 16 x 16 clip is written at 256 x 256, each pixel a 16 x 16 square; --scale 1: as made."""
    import imageio.v2 as imageio
    from models.__main__ import main
    main(["--model", "tiny", "--prompt", "a red car", "--out", str(tmp_path / "big")])
    main(["--model", "tiny", "--prompt", "a red car", "--scale", "1", "--out", str(tmp_path / "made")])
    names = sorted(os.listdir(tmp_path / "big"))
    assert [n.rsplit(".", 1)[1] for n in names] == ["gif", "mp4"] and sorted(os.listdir(tmp_path / "made")) == names
    big, made = (np.stack(imageio.mimread(str(tmp_path / d / names[0]))) for d in ("big", "made"))
    assert made.shape[:3] == (8, 16, 16) and big.shape[:3] == (8, 256, 256)
    assert np.array_equal(big, made.repeat(16, axis=1).repeat(16, axis=2))
    with pytest.raises(UserError, match="--scale"):
        main(["--model", "tiny", "--scale", "0", "--out", str(tmp_path / "zero")])


def test_gradient_checkpointing_is_by_whole_block_and_gives_the_same_gradients():
    # diffusers' UNetMotionModel checkpoints only its ResNets; models/animatediff.py checkpoints each
    # down, mid and up block whole (docs/memory). The same gradients, and the blocks' forwards back after.
    m = models.load("tiny")
    x = torch.randn(2, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = trainable_gradients(m, x, ["a red car", "a blue boat"])
    m.unet.enable_gradient_checkpointing()           # redpo.py --gradient_checkpointing
    blocks = [*m.unet.down_blocks, m.unet.mid_block, *m.unet.up_blocks]
    assert all("forward" in b.__dict__ for b in blocks)
    assert not any(getattr(mod, "gradient_checkpointing", False) for mod in m.unet.modules())  # not twice
    checkpointed = trainable_gradients(m, x, ["a red car", "a blue boat"])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checkpointed))
    m.unet.disable_gradient_checkpointing()
    assert not any("forward" in b.__dict__ for b in blocks)
