"""The LoRA student (models/lora.py): the teacher's weights, its removed blocks skipped, an adapter on.

Parity: at the adapter's initial zero the student is the pruned full-weight model bit for bit, and the
teacher on the student's weights (every block, the adapter off) is a separately loaded M0 bit for bit,
for every family; a trained adapter moves the student and not the teacher; the folder reads back; the
export is the adapter form as a full-weight student."""
import os
import shutil
import threading

from infra import disk
from infra.cli import UserError

import pytest
import torch

from conftest import killed_when
import models
from models import export, lora
from test_reuse import TINY_LOOP


FAMILIES = ["toy", "tiny", "tiny-videocrafter2", "tiny-wan"]


def batch(model, seed=0):
    """A fixed noise_pred input at the model's own latent size: x_t (2, C, F, h, w), t (2,), 2 prompts."""
    d = models.DEFAULTS[model.name]
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(2, *model.latent_shape(d["num_frames"], d["height"], d["width"]), generator=g)
    return x_t, torch.tensor([700, 300]), ["a red circle moving left", "a blue square moving up"]


def pred(model, seed=0):
    with torch.no_grad():
        return model.noise_pred(*batch(model, seed))


def train_adapter(student, seed=0):
    """Stand-in for training: every adapter weight moved (B is no longer zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in student.trainable_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def lora_student(name, removed, rank=4):
    student = models.load(name, device="cpu").add_lora(rank)
    student.remove(removed)
    return student


@pytest.mark.parametrize("name", FAMILIES)
def test_zero_adapter_student_is_the_pruned_model_and_its_teacher_is_m0(name):
    teacher = models.load(name, device="cpu")
    removed = list(teacher.blocks())[1:3]
    pruned = models.load(name, device="cpu")
    pruned.remove(removed)
    student = lora_student(name, removed)
    assert torch.equal(pred(student), pred(pruned))                # bit for bit
    assert torch.equal(pred(student.teacher()), pred(teacher))     # bit for bit
    assert not torch.equal(pred(student), pred(teacher))           # the removed blocks matter
    # The counts are the pruned model's and M0's; the adapter trains only in the kept blocks.
    assert {k: v for k, v in student.num_parameters().items() if k != "adapter"} == pruned.num_parameters()
    assert student.teacher().num_parameters() == teacher.num_parameters()
    assert student.teacher().removed == [] and len(student.teacher().blocks()) == len(teacher.blocks())
    trained = {id(p) for p in student.trainable_parameters()}
    in_removed = {id(p) for n in removed for p in student.unet.get_submodule(n).parameters()}
    assert trained and not trained & in_removed
    assert all(lora.is_lora_param(n) for n, _ in student.trainable_named_parameters())
    assert not any(p.requires_grad for p in student.unet.parameters())   # frozen until redpo.py trains


def test_a_trained_adapter_moves_the_student_not_the_teacher_and_generates_as_its_parts():
    teacher = models.load("tiny", device="cpu")
    removed = list(teacher.blocks())[:2]
    student = lora_student("tiny", removed)
    before = pred(student)
    train_adapter(student)
    assert not torch.equal(pred(student), before)
    assert torch.equal(pred(student.teacher()), pred(teacher))
    # generate runs the same modes: the teacher's videos are M0's, bit for bit.
    _, latents = student.teacher().generate(["a red car"], [3], steps=2)
    assert torch.equal(latents, teacher.generate(["a red car"], [3], steps=2)[1])


def test_teacher_mode_is_per_thread():
    # On a CPU the loop runs the teacher's forwards on worker threads while the student trains.
    teacher = models.load("tiny", device="cpu")
    student = lora_student("tiny", list(teacher.blocks())[:2])
    train_adapter(student)
    expected_student, expected_teacher = pred(student), pred(teacher)
    inside, outside = threading.Event(), threading.Event()
    results = {}

    def as_teacher():
        with student.as_teacher():
            inside.set()
            outside.wait(60)                     # the main thread runs the student meanwhile
            results["teacher"] = pred(student)

    worker = threading.Thread(target=as_teacher)
    worker.start()
    inside.wait(60)
    results["student"] = pred(student)
    outside.set()
    worker.join()
    assert torch.equal(results["student"], expected_student)
    assert torch.equal(results["teacher"], expected_teacher)


def test_the_folder_holds_the_adapter_and_the_removed_blocks_and_reads_back(tmp_path):
    student = lora_student("tiny", ["up_blocks.0.motion_modules.1"])
    train_adapter(student)
    student.save(tmp_path / "student")
    back = models.load("tiny", path=str(tmp_path / "student"))
    assert back.lora == 4 and back.removed == student.removed
    assert torch.equal(pred(back), pred(student))
    assert torch.equal(pred(back.teacher()), pred(models.load("tiny")))
    # Megabytes, not gigabytes: the folder holds the adapter, not the motion modules.
    full = models.load("tiny")
    full.save(tmp_path / "full")
    size = lambda d: os.path.getsize(d / models.STUDENT_WEIGHTS)
    assert size(tmp_path / "student") < size(tmp_path / "full") / 5


def test_export_loads_as_a_full_weight_student_and_generates_the_same_video(tmp_path):
    student = lora_student("tiny", ["down_blocks.0.motion_modules.0", "up_blocks.1.motion_modules.1"])
    train_adapter(student)
    student.save(tmp_path / "lora")
    export.main(["--model", "tiny", "--student", str(tmp_path / "lora"), "--out", str(tmp_path / "merged")])
    merged = models.load("tiny", path=str(tmp_path / "merged"))
    assert merged.lora is None and merged.removed == student.removed
    assert merged.num_parameters() == {k: v for k, v in student.num_parameters().items() if k != "adapter"}
    # The same video to float32 rounding: W x + B A x against (W + B A) x.
    frames_a, latents_a = student.generate(["a red car"], [5], steps=3)
    frames_b, latents_b = merged.generate(["a red car"], [5], steps=3)
    relative = lambda a, b: float((a - b).abs().max() / a.abs().max())
    assert relative(latents_a, latents_b) < 1e-5
    assert (abs(frames_a.astype(int) - frames_b.astype(int)) <= 1).all()
    assert relative(latents_a, models.load("tiny").generate(["a red car"], [5], steps=3)[1]) > 1e-3
    with pytest.raises(UserError, match="no LoRA adapter"):
        export.export("tiny", str(tmp_path / "merged"), str(tmp_path / "again"))


def test_an_adapter_goes_on_m0_once():
    student = lora_student("tiny", ["up_blocks.0.motion_modules.1"])
    with pytest.raises(UserError, match="once"):
        student.add_lora(4)


@pytest.mark.parametrize("method", ["redpo", "dpo", "sft"])
def test_split_backward_is_the_joint_gradient(method):
    """redpo.split_backward (winners' backward, then losers', weighted by a no-grad pass) against
    loss(...).backward() on the whole batch: 1e-6 relative on every trained tensor, the same stats. In
    float64, so that what is compared is the identity, not float32's rounding over a deep network."""
    import redpo
    student = models.load("tiny", device="cpu", dtype=torch.float64).add_lora(4)
    student.remove(list(student.blocks())[:2])
    train_adapter(student)                            # at B = 0 the adapter's A has no gradient
    params = student.trainable_parameters()
    for p in params:
        p.requires_grad_(True)
    g = torch.Generator().manual_seed(1)
    x_0 = torch.randn(4, *student.latent_shape(8, 16, 16), generator=g, dtype=torch.float64)   # 2 pairs: winners, losers
    eps = torch.randn(2, *x_0.shape[1:], generator=g, dtype=torch.float64).repeat(2, 1, 1, 1, 1)
    t = torch.tensor([700, 200, 700, 200])
    x_t = student.add_noise(x_0, eps, t)
    embeds = student.encode(["a red car", "a blue boat"] * 2).double()
    target = student.training_target(x_0, eps, t)
    with torch.no_grad():
        ref_pred = student.teacher().noise_pred(x_t, t, embeds)
    beta = 50.0                                        # sigmoid(-z) away from 0 and 1 on this random model

    joint_loss, joint_stats = redpo.loss(student.noise_pred(x_t, t, embeds), ref_pred, target, method, beta, 1e2)
    (0.5 * joint_loss).backward()
    joint = [p.grad.clone() for p in params]
    student.unet.zero_grad(set_to_none=True)
    stats = redpo.split_backward(student.noise_pred, (x_t, t, embeds), target, ref_pred, (method, beta, 1e2), scale=0.5)
    split = [p.grad for p in params]
    for a, b in zip(split, joint):
        assert float((a - b).norm() / b.norm()) < 1e-6
    assert sum(float(b.norm()) for b in joint) > 0
    assert stats == pytest.approx(joint_stats, rel=1e-6, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# vip_loop.py --lora end to end: every family killed in training and resumed; stage 1 as the full-weight run
# ---------------------------------------------------------------------------------------------

# One eval video: what the kill tests compare is the resume, not the rows' statistics.
ONE_STAGE = ["--stages", "1", "--blocks", "2", "--eval_prompts", "1", "--pool_prompts", "4"]
LOOPS = {"tiny": TINY_LOOP,      # two stages: the stage-to-stage path of a LoRA student, killed in stage 2
         "toy": ["--model", "toy", *ONE_STAGE, "--steps", "2", "--eval_seeds", "1", "--search_prompts", "none",
                 "--epochs", "1"],
         # one sampler step where the curation still finds pairs: the resume is what is tested
         "tiny-videocrafter2": ["--model", "tiny-videocrafter2", "--reward", "pixel", *ONE_STAGE, "--steps", "1"],
         "tiny-wan": ["--model", "tiny-wan", "--reward", "pixel", *ONE_STAGE, "--steps", "1"]}
# What a stage has made before its training: the killed run starts from them, so that its process
# reaches the training at once (the steps before it are each skipped when their output exists).
BEFORE_TRAINING = ("prune.json", "pruned", "eval_pruned.json", "videos_pruned.npz", "pairs")
_STRAIGHT = {}


def lora_loop(out, flags):
    """`python vip_loop.py FLAGS --lora 4 --out OUT` in this process (one thread, as the suite runs)."""
    import vip_loop
    vip_loop.main([*flags, "--lora", "4", "--out", str(out)])


def straight_lora_run(name, tmp_path_factory):
    """`vip_loop.py LOOPS[name] --lora 4` uninterrupted, once per session (per worker process)."""
    if name not in _STRAIGHT:
        out = tmp_path_factory.mktemp(f"lora_{name}") / "run"
        lora_loop(out, LOOPS[name])
        _STRAIGHT[name] = out
    return _STRAIGHT[name]


def test_lora_loop_starts_as_the_full_weight_run(tiny_loop, tmp_path_factory):
    """At the adapter's zero the student is the pruned model, so stage 1 prunes, curates and measures the
    w_sft rule as the full-weight run does, and its first step's DPO and SFT terms are the same numbers."""
    full, lora_run = tiny_loop[0], straight_lora_run("tiny", tmp_path_factory)
    for path in ("full/eval.json", "stage_1/eval_pruned.json"):
        assert disk.read_json(lora_run / path)["per_video"] == disk.read_json(full / path)["per_video"]
        assert disk.read_json(lora_run / path)["params"] == disk.read_json(full / path)["params"]
    assert disk.read_json(lora_run / "stage_1/prune.json")["removed"] == disk.read_json(full / "stage_1/prune.json")["removed"]
    assert (lora_run / "stage_1/pairs/pairs.jsonl").read_text() == (full / "stage_1/pairs/pairs.jsonl").read_text()
    assert disk.read_json(lora_run / "stage_1/train/w_sft.json") == disk.read_json(full / "stage_1/train/w_sft.json")
    rule, first = (disk.read_jsonl(lora_run / "stage_1/train/metrics.jsonl")[:2])
    full_rule, full_first = (disk.read_jsonl(full / "stage_1/train/metrics.jsonl")[:2])
    assert rule == full_rule
    assert {k: v for k, v in first.items() if k != "grad_norm"} == {k: v for k, v in full_first.items() if k != "grad_norm"}
    assert first["grad_norm"] != full_first["grad_norm"]   # the adapter's gradient, not the weights'
    # Then the adapter trains: the trained row is not the full-weight run's, and the folder holds an adapter.
    assert disk.read_json(lora_run / "stage_1/eval.json")["per_video"] != disk.read_json(full / "stage_1/eval.json")["per_video"]
    assert disk.read_json(lora_run / "stage_1/student" / models.STUDENT_FILE)["lora"] == {"rank": 4}


@pytest.mark.parametrize("name", list(LOOPS))
def test_lora_loop_killed_in_training_resumes_to_the_same_run(name, tmp_path, tmp_path_factory, capsys):
    """The straight run's folder up to its last stage's training, run on by a process that is
    SIGKILLed once that stage has trained a step, then resumed: the stages before it skipped, its
    training and rows the straight run's."""
    straight = straight_lora_run(name, tmp_path_factory)
    last = f"stage_{LOOPS[name][LOOPS[name].index('--stages') + 1]}"
    run = tmp_path / "killed"
    (run / last).mkdir(parents=True)
    copy = lambda rel: (shutil.copytree if (straight / rel).is_dir() else shutil.copyfile)(straight / rel, run / rel)
    before = [d.name for d in straight.glob("stage_*") if d.name < last]
    for rel in ("config.json", "full", "teacher_cache", *before, *(f"{last}/{r}" for r in BEFORE_TRAINING)):
        copy(rel)
    killed_when(run / last / "train" / "metrics.jsonl", lora_loop, run, LOOPS[name])   # the stage has begun training
    assert not (run / last / "DONE").exists()
    capsys.readouterr()
    lora_loop(run, LOOPS[name])
    said = capsys.readouterr().out
    assert all(f"{d.replace('_', ' ')}: done, skipped" in said for d in before)
    for path in (f"{last}/eval_pruned.json", f"{last}/eval.json"):
        assert disk.read_json(run / path)["per_video"] == disk.read_json(straight / path)["per_video"]
    assert disk.read_jsonl(run / last / "train/metrics.jsonl") == disk.read_jsonl(straight / last / "train/metrics.jsonl")
    student = models.load(name, path=str(run / last / "student"))
    straight_student = models.load(name, path=str(straight / last / "student"))
    assert student.lora == 4 and student.removed == straight_student.removed and len(student.removed) >= 2
    assert torch.equal(pred(student), pred(straight_student))
