"""The shapes world (toy/shapes_world.py, toy/shapes_model.py, toy/shapes.py): the grammar, the
renderer against closed forms, the reward on ground truth and on corrupted clips (the right
dimension drops), and the `toy` model (loader, generation, pruning, save/load, the shipped teacher
beating an untrained model)."""
import math
import os
import sys

from infra.cli import UserError  # noqa: E402
from infra.disk import read_json  # noqa: E402

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402
from toy import shapes, shapes_model, shapes_world  # noqa: E402
from conftest import run_script  # noqa: E402

TRAIN, EVAL = shapes_world.split_prompts()
PROMPTS = TRAIN[::6] + EVAL[::4]          # 12 + 5 prompts, every colour, shape and motion


def test_grammar_and_split():
    everything = shapes_world.all_prompts()
    assert len(everything) == len(set(everything)) == 6 * 3 * 5
    assert sorted(TRAIN + EVAL) == sorted(everything) and not set(TRAIN) & set(EVAL)
    assert len(EVAL) == 18
    for half in (TRAIN, EVAL):
        parsed = [shapes_world.parse_prompt(p) for p in half]
        for i, words in enumerate((shapes_world.COLOURS, shapes_world.SHAPES, shapes_world.MOTIONS)):
            assert {x[i] for x in parsed} == set(words)
    assert shapes_world.parse_prompt("a red circle moving left") == ("red", "circle", "moving left")
    assert shapes_world.parse_prompt("a red car driving on a road") is None
    assert shapes_world.is_static("a blue square staying still") and not shapes_world.is_static("a blue square moving up")
    with pytest.raises(UserError):
        shapes_world.render("a red car driving", 0)


@pytest.mark.parametrize("shape, area", [("circle", math.pi * 3.3 ** 2), ("square", 5.8 ** 2),
                                         ("triangle", 7 * 5.25 / 2)])
def test_coverage_matches_the_closed_form_area_and_centroid(shape, area):
    c = shapes_world.coverage(shape, 7.3, 8.6)
    assert c.sum() == pytest.approx(area, rel=0.04)      # sampling error along the edge
    ys, xs = np.mgrid[0:16, 0:16] + 0.5
    # 4x4 supersampling puts samples 1/4 px apart: the centroid is off by at most half of that
    assert (c * xs).sum() / c.sum() == pytest.approx(7.3, abs=0.125)
    assert (c * ys).sum() / c.sum() == pytest.approx(8.6, abs=0.125)
    assert ((c > 0) & (c < 1)).any()                      # anti-aliased edge


@pytest.mark.parametrize("prompt", ["a red circle moving left", "a cyan triangle moving down",
                                    "a yellow square staying still"])
def test_render_moves_the_right_way_and_stays_inside(prompt):
    colour, _, motion = shapes_world.parse_prompt(prompt)
    for seed in range(5):
        clip = shapes_world.render(prompt, seed)
        assert clip.shape == (8, 16, 16, 3) and clip.dtype == np.uint8
        c = clip.max(axis=-1) / 255.0
        ys, xs = np.mgrid[0:16, 0:16] + 0.5
        centres = np.stack([[(ci * xs).sum() / ci.sum(), (ci * ys).sum() / ci.sum()] for ci in c])
        np.testing.assert_allclose(np.diff(centres, axis=0), np.tile(shapes_world.MOTIONS[motion], (7, 1)), atol=0.05)
        assert (centres >= shapes_world.EXTENT - 0.05).all() and (centres <= 16 - shapes_world.EXTENT + 0.05).all()
        lit = clip[clip.max(axis=-1) == 255]              # fully covered pixels carry the exact colour
        np.testing.assert_array_equal(np.unique(lit // 255, axis=0), [shapes_world.COLOURS[colour]])
    np.testing.assert_array_equal(shapes_world.render(prompt, 3), shapes_world.render(prompt, 3))
    assert not np.array_equal(shapes_world.render(prompt, 3), shapes_world.render(prompt, 4))


@pytest.fixture(scope="module")
def truth():
    return shapes_world.render_batch(PROMPTS, range(len(PROMPTS)))


def mean_scores(videos, prompts=PROMPTS, static=None):
    return {k: float(v.mean()) for k, v in shapes_world.reward(videos, prompts, static).items()}


def test_reward_on_ground_truth(truth):
    r = shapes_world.reward(truth, PROMPTS)
    assert set(r) == set(shapes_world.DIMENSIONS) | {"total"}
    for k in ("visual_quality", "temporal_consistency", "text_alignment"):
        assert r[k].min() >= 0.97, k
    static = np.array([shapes_world.is_static(p) for p in PROMPTS])
    assert (r["dynamic_degree"][static] == 0).all()           # the revised rule
    assert r["dynamic_degree"][~static].min() >= 0.97         # moving 1 px / frame = SPEED
    np.testing.assert_allclose(r["total"], np.mean([r[k] for k in shapes_world.DIMENSIONS], axis=0))
    # `static` from the caller overrides the grammar
    forced = shapes_world.reward(truth, PROMPTS, static=[True] * len(PROMPTS))
    assert (forced["dynamic_degree"] == 0).all()


def test_reward_hand_made_clip():
    """A hard-edged 6x6 red square moving right by 1 px, drawn by hand: all but visual quality
    are exactly 1 (its template is 5.8 px wide, so the fit is 33.64 / 36)."""
    clip = np.zeros((8, 16, 16, 3), np.uint8)
    for f in range(8):
        clip[f, 6:12, 2 + f:8 + f, 0] = 255               # a 6x6 square, area 36 (template 33.6)
    r = shapes_world.score_clip(clip, "a red square moving right")
    assert r["dynamic_degree"] == pytest.approx(1.0)
    assert r["text_alignment"] == pytest.approx(1.0)
    assert r["temporal_consistency"] == pytest.approx(1.0)
    assert r["visual_quality"] > 0.95
    assert shapes_world.score_clip(clip, "a blue square moving right")["text_alignment"] == pytest.approx(2 / 3)
    assert shapes_world.score_clip(clip, "a red square moving left")["text_alignment"] == pytest.approx(2 / 3)
    assert shapes_world.score_clip(np.zeros_like(clip), "a red square moving right") == {
        k: 0.0 for k in shapes_world.DIMENSIONS}


def blur(v):
    x = v.astype(np.float32)
    k = (0.25, 0.5, 0.25)
    x = sum(k[i] * np.roll(x, i - 1, axis=2) for i in range(3))
    x = sum(k[i] * np.roll(x, i - 1, axis=3) for i in range(3))
    return x.round().astype(np.uint8)


def jitter(v, rng):
    out = v.copy()
    for b in range(v.shape[0]):
        for f in range(v.shape[1]):
            out[b, f] = np.roll(v[b, f], tuple(rng.choice([-1, 1], 2)), axis=(0, 1))
    return out


def test_reward_corruptions_drop_the_right_dimension(truth):
    rng = np.random.default_rng(0)
    base = mean_scores(truth)
    corrupted = {
        "text_alignment": truth[..., [1, 2, 0]],                                  # wrong colour
        "temporal_consistency": jitter(truth, rng),
        "visual_quality": blur(truth),
        "visual_quality ": np.clip(truth + rng.normal(0, 12, truth.shape), 0, 255).astype(np.uint8),  # noise
        "dynamic_degree": np.repeat(truth[:, :1], 8, axis=1),                     # frozen
    }
    for dim, video in corrupted.items():
        dim = dim.strip()
        scores = mean_scores(video)
        drops = {k: base[k] - scores[k] for k in shapes_world.DIMENSIONS}
        assert drops[dim] >= 0.05, (dim, drops)
        assert drops[dim] == max(drops.values()), (dim, drops)
    # a wrong colour touches nothing but text alignment (exactly one of three checks)
    swapped = mean_scores(corrupted["text_alignment"])
    assert base["text_alignment"] - swapped["text_alignment"] == pytest.approx(1 / 3, abs=0.01)
    for k in ("visual_quality", "temporal_consistency", "dynamic_degree"):
        assert swapped[k] == pytest.approx(base[k], abs=1e-6)
    noise = np.random.default_rng(1).integers(0, 256, truth.shape).astype(np.uint8)
    assert mean_scores(noise)["total"] < 0.1


def test_reward_rejects_bad_input(truth):
    with pytest.raises(ValueError):
        shapes_world.reward(truth.astype(np.float32), PROMPTS)
    with pytest.raises(ValueError):
        shapes_world.reward(truth, PROMPTS[:-1])
    with pytest.raises(UserError):
        shapes_world.reward(truth[:1], ["a red car"])


@pytest.fixture(scope="module")
def teacher():
    return models.load("toy", device="cpu")


def test_toy_model_surface(teacher, tmp_path):
    assert len(teacher.blocks()) == 10
    n = teacher.num_parameters()
    assert n["trainable"] == sum(p.numel() for b in teacher.blocks().values() for p in b.parameters())
    prompts, seeds = ["a red circle moving left", "a blue square staying still", ""], [3, 4, 5]
    frames, x_0 = teacher.generate(prompts, seeds, steps=3)
    assert frames.shape == (3, 8, 16, 16, 3) and frames.dtype == np.uint8
    assert x_0.shape == (3, 3, 8, 16, 16) and x_0.dtype == torch.float32
    np.testing.assert_array_equal(teacher.decode(x_0), frames)
    clips = shapes_world.render_batch(prompts[:2], seeds[:2])
    np.testing.assert_array_equal(teacher.decode(shapes_world.to_x0(clips)), clips)   # x_0 <-> frames
    alone, _ = teacher.generate(prompts[1:2], seeds[1:2], steps=3)   # batch does not change a video
    assert np.abs(alone[0].astype(int) - frames[1].astype(int)).max() <= 1
    tokens = teacher.tokenize(["a red circle moving left", "a zebra"]).tolist()
    vocab = shapes_world.VOCAB
    assert tokens[0] == [vocab.index(w) for w in ("<bos>", "a", "red", "circle", "moving", "left", "<eos>", "<eos>")]
    assert tokens[1][:4] == [0, vocab.index("a"), vocab.index("<unk>"), 1]
    # prune two motion modules, save, reload: same parameters gone, same predictions
    removed = list(teacher.blocks())[3:5]
    student = models.load("toy", device="cpu")
    student.remove(removed)
    dropped = sum(p.numel() for name in removed for p in teacher.blocks()[name].parameters())
    assert student.num_parameters()["unet"] == n["unet"] - dropped
    student.save(tmp_path / "student")
    again = models.load("toy", path=str(tmp_path / "student"), device="cpu")
    x_t = torch.randn(2, 3, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 900])
    with torch.no_grad():
        a = student.noise_pred(x_t, t, prompts[:2])
        b = again.noise_pred(x_t, t, prompts[:2])
    torch.testing.assert_close(a, b)
    assert again.removed == removed


def test_noise_pred_turns_v_into_eps():
    """The toy UNet predicts v; noise_pred must return the eps with the same x_0 estimate:
    sqrt(a) x_t - sqrt(1 - a) v == (x_t - sqrt(1 - a) eps) / sqrt(a)."""
    model = shapes_model.toy_model(shapes_model.TOY_CONFIG)
    assert model.unet_predicts == "v_prediction"
    x_t = torch.randn(2, 3, 8, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([50, 700])
    prompts = ["a red circle moving left", ""]
    with torch.no_grad():
        eps = model.noise_pred(x_t, t, prompts)
        v = model.unet(x_t, t, encoder_hidden_states=model.encode(prompts).repeat_interleave(8, 0)).sample
    a = model.scheduler.alphas_cumprod[t].reshape(-1, 1, 1, 1, 1)
    torch.testing.assert_close((x_t - (1 - a).sqrt() * eps) / a.sqrt(), a.sqrt() * x_t - (1 - a).sqrt() * v,
                               atol=1e-4, rtol=1e-4)
    with torch.no_grad():                                  # a scalar t, as the sampler passes it
        torch.testing.assert_close(model.noise_pred(x_t, torch.tensor(700), prompts)[1], eps[1])


def test_shipped_teacher_beats_an_untrained_model(teacher):
    """The shipped weights know the world: on held-out prompts the teacher beats a same-config
    model with random weights on every dimension."""
    prompts = EVAL[::4]                                    # 5 prompts, mixed shapes
    seeds = list(range(len(prompts)))
    untrained = shapes_model.toy_model(read_json(os.path.join(shapes_model.TEACHER_DIR, "config.json")))
    good = mean_scores(teacher.generate(prompts, seeds, steps=10)[0], prompts)
    bad = mean_scores(untrained.generate(prompts, seeds, steps=10)[0], prompts)
    for k in shapes_world.DIMENSIONS:
        assert good[k] > bad[k] + 0.1, (k, good, bad)


def test_train_smoke_writes_a_loadable_teacher(tmp_path, monkeypatch):
    """One optimizer step through the command line (in-process; test_cli_help runs the script): the
    output directory loads as a `toy` model."""
    out, work = tmp_path / "teacher", tmp_path / "work"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")             # main's thread count: the suite's one
    shapes.main(["train", "--steps", "1", "--batch", "1", "--out", str(out), "--work", str(work)])
    model = models.load("toy", path=str(out), device="cpu")
    assert read_json(out / "config.json")["train"]["step"] == 1
    assert len(model.blocks()) == 10
    assert (work / "state.pt").is_file()


def test_cli_help():
    r = run_script("toy/shapes.py", "--help")
    assert r.returncode == 0 and "train" in r.stdout
