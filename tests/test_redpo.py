"""redpo.py: the loss against hand-computed numbers, and the training loop's invariants."""
import json
import math
import os

import pytest
from infra import cli, disk

import torch

import models
import redpo



# --- the loss -------------------------------------------------------------------------------

def hand_example():
    # One pair (B = 1), eps of 2 elements. Rows: winner, loser.
    noise = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pred = torch.tensor([[0.5, 0.0], [0.0, 0.0]])      # student
    ref = torch.tensor([[0.0, 0.0], [0.0, 0.5]])       # teacher
    # err   = mean((eps - pred)^2):  w: (0.25 + 0) / 2 = 0.125;  l: (0 + 1) / 2 = 0.5
    # ref   = mean((eps - ref)^2):   w: (1 + 0) / 2 = 0.5;       l: (0 + 0.25) / 2 = 0.125
    # inside = -0.5 * beta * ((0.125 - 0.5) - (0.5 - 0.125)) = -0.5 * beta * (-0.75) = 0.375 beta
    # sft   = mean((pred_w - ref_w)^2) = (0.25 + 0) / 2 = 0.125
    return pred, ref, noise


@pytest.mark.parametrize("method", ["redpo", "dpo", "sft"])
def test_loss_matches_hand_computation(method):
    pred, ref, noise = hand_example()
    beta, w_sft = 2.0, 10.0
    inside = 0.375 * beta
    dpo = math.log(1 + math.exp(-inside))               # -log sigmoid(x) = log(1 + e^-x)
    sft = 0.125
    expected = {"redpo": dpo + w_sft * sft, "dpo": dpo, "sft": sft}[method]
    loss, stats = redpo.loss(pred, ref, noise, method=method, beta=beta, w_sft=w_sft)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats["dpo"] == pytest.approx(dpo, rel=1e-6) and stats["sft"] == pytest.approx(sft)
    assert stats["err_w"] == pytest.approx(0.125) and stats["err_l"] == pytest.approx(0.5)
    assert stats["ref_err_w"] == pytest.approx(0.5) and stats["ref_err_l"] == pytest.approx(0.125)
    assert stats["implicit_acc"] == 1.0 and stats["reward_margin"] == pytest.approx(inside)


def test_loss_reduces_per_sample_over_every_non_batch_dim():
    # Two pairs of video-shaped tensors: the per-sample mean is over C, F, h, w together, and the
    # batch mean sits outside the log-sigmoid.
    g = torch.Generator().manual_seed(0)
    pred, ref, noise = (torch.randn(4, 3, 2, 4, 4, generator=g) for _ in range(3))
    err = ((noise - pred) ** 2).flatten(1).mean(1)
    ref_err = ((noise - ref) ** 2).flatten(1).mean(1)
    inside = -0.5 * 7.0 * ((err[:2] - ref_err[:2]) - (err[2:] - ref_err[2:]))
    expected = torch.stack([-torch.nn.functional.logsigmoid(x) for x in inside]).mean()
    loss, stats = redpo.loss(pred, ref, noise, method="dpo", beta=7.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert stats["implicit_acc"] == pytest.approx(float((inside > 0).float().mean()))


def test_student_equal_to_teacher_gives_ln2_and_no_sft():
    g = torch.Generator().manual_seed(1)
    pred, noise = torch.randn(6, 4, 3, 8, 8, generator=g), torch.randn(6, 4, 3, 8, 8, generator=g)
    loss, stats = redpo.loss(pred, pred.clone(), noise)
    assert stats["dpo"] == pytest.approx(math.log(2), abs=1e-7)
    assert stats["sft"] == 0.0 and loss.item() == pytest.approx(math.log(2), abs=1e-7)
    assert stats["implicit_acc"] == 0.5                  # ties count one half


def test_dpo_is_redpo_without_sft_gradients_too():
    g = torch.Generator().manual_seed(2)
    ref, noise = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
    p1 = torch.randn(4, 10, generator=g).requires_grad_()
    p2 = p1.detach().clone().requires_grad_()
    l1, _ = redpo.loss(p1, ref, noise, method="dpo", beta=3.0, w_sft=123.0)
    l2, _ = redpo.loss(p2, ref, noise, method="redpo", beta=3.0, w_sft=0.0)
    l1.backward()
    l2.backward()
    assert l1.item() == l2.item() and torch.equal(p1.grad, p2.grad)
    # The SFT gradient touches only the winners' predictions.
    p3 = p1.detach().clone().requires_grad_()
    redpo.loss(p3, ref, noise, method="sft")[0].backward()
    assert p3.grad[2:].abs().sum() == 0 and p3.grad[:2].abs().sum() > 0


def test_unknown_method_lists_the_valid_ones():
    pred, ref, noise = hand_example()
    with pytest.raises(ValueError, match="redpo, dpo, sft"):
        redpo.loss(pred, ref, noise, method="ppo")


# --- the training loop ----------------------------------------------------------------------

PRUNED = ["up_blocks.1.motion_modules.1", "mid_block.motion_modules.0"]


def write_stage(d, size, steps=None):
    """A tiny teacher, a pruned student saved to d / "student", and 4 real pairs (winner from the
    teacher, loser from the student, same prompt and seed) of size x size videos in d / "pairs", in the
    pairs-folder layout of curate.py. Returns d. `steps`: the sampler's (default: tiny's 4)."""
    teacher = models.load("tiny")
    student = models.load("tiny")
    student.remove(PRUNED)
    student.save(d / "student")
    prompts = ["a red car driving", "a dog running", "waves on a beach", "a bird flying"]
    seeds = [0, 1, 2, 3]
    _, x_w = teacher.generate(prompts, seeds, height=size, width=size, steps=steps)
    _, x_l = student.generate(prompts, seeds, height=size, width=size, steps=steps)
    os.makedirs(d / "pairs" / "latents")
    with open(d / "pairs" / "pairs.jsonl", "w") as f:
        for i, (p, s) in enumerate(zip(prompts, seeds)):
            torch.save(x_w[i].clone(), d / "pairs" / "latents" / f"w_{i:05d}.pt")
            torch.save(x_l[i].clone(), d / "pairs" / "latents" / f"l_{i:05d}.pt")
            f.write(json.dumps({"prompt": p, "seed": s, "property": "dynamic_degree",
                                "winner_scores": {}, "loser_scores": {},
                                "winner": f"latents/w_{i:05d}.pt", "loser": f"latents/l_{i:05d}.pt"}) + "\n")
    return d


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """The stage at tiny's own 16 x 16, for the checks that hold bit for bit at any size. The two runs
    that assert_same_run compares take conftest.redpo_stage_32: on 16 x 16 pairs one gradient element
    of 4096 is ~0 and its Adam step flips sign with the summation order, past a tenth of a step (the
    32 x 32 pairs keep tiny's 4 sampler steps for the same reason; these, bit for bit, need only one)."""
    return write_stage(tmp_path_factory.mktemp("stage"), 16, steps=1)


def trainable_state(model):
    return {n: p.detach().clone() for n, p in model.trainable_named_parameters()}


def assert_same_run(a, b):
    """Two runs that differ only in float summation order. Adam's first step is about
    lr * sign(g), so where g is ~0 the order can flip a sign: allow a tenth of one step (lr 1e-3)
    on those few elements, and require the bulk to agree to float precision."""
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=0)
    off = sum(int(((a[k] - b[k]).abs() > 1e-6).sum()) for k in a)
    assert off < 0.001 * sum(v.numel() for v in a.values())


def run_train(stage, out, **kw):
    teacher = models.load("tiny")
    student = models.load("tiny", path=str(stage / "student"))
    kw = {"lr": 1e-3, "batch": 2, "max_steps": 2, "log_every": 1, **kw}
    summary = redpo.train(student, teacher, str(stage / "pairs"), str(out), redpo.Settings(**kw))
    return teacher, student, summary


def test_two_steps_change_only_the_motion_modules_and_never_the_teacher(stage, tmp_path):
    teacher0 = {k: v.clone() for k, v in models.load("tiny").unet.state_dict().items()}
    student0 = models.load("tiny", path=str(stage / "student"))
    before = {k: v.clone() for k, v in student0.unet.state_dict().items()}
    frozen0 = {k: v.clone() for k, v in student0.pipe.text_encoder.state_dict().items()}
    teacher, student, summary = run_train(stage, tmp_path / "train")
    assert summary["steps"] == 2 and summary["skipped"] == 0
    assert all(torch.equal(v, teacher0[k]) for k, v in teacher.unet.state_dict().items())
    after = student.unet.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trainable = {n for n, _ in student.trainable_named_parameters()}
    assert changed and changed <= trainable                       # only motion modules moved
    assert len(changed) > 0.5 * len(trainable)
    assert all(torch.equal(v, frozen0[k]) for k, v in student.pipe.text_encoder.state_dict().items())
    rows = [json.loads(line) for line in open(tmp_path / "train" / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("dpo", "sft", "implicit_acc", "err_w", "err_l", "ref_err_w", "ref_err_l", "grad_norm"):
        assert math.isfinite(rows[0][key])
    assert os.path.isdir(tmp_path / "train" / "checkpoint-000002" / "model")


def test_only_trainable_parameters_receive_gradients(stage):
    teacher = models.load("tiny")
    student = models.load("tiny", path=str(stage / "student"))
    for p in student.trainable_parameters():
        p.requires_grad_(True)
    pairs = redpo.read_pairs(str(stage / "pairs"))
    b = redpo.make_batch(pairs, [0, 1], 0, 0, 1000)
    l, _ = redpo.batch_loss(student.noise_pred, teacher, b, "redpo", 5000.0, 1e4)
    l.backward()
    trainable = {n for n, _ in student.trainable_named_parameters()}
    for n, p in student.unet.named_parameters():
        assert (p.grad is not None) == (n in trainable), n
    assert all(p.grad is None for p in teacher.unet.parameters())
    assert all(p.grad is None for p in student.pipe.text_encoder.parameters())


def test_first_step_dpo_is_ln2_when_student_is_the_teacher(stage, tmp_path):
    teacher = models.load("tiny")
    student = models.load("tiny")
    summary = redpo.train(student, teacher, str(stage / "pairs"), str(tmp_path), redpo.Settings(max_steps=1, lr=1e-3))
    assert summary["last"]["dpo"] == pytest.approx(math.log(2), abs=1e-6)
    assert summary["last"]["sft"] == 0.0


def test_resume_reaches_the_same_parameters(stage, tmp_path):
    _, straight, _ = run_train(stage, tmp_path / "a", max_steps=4, ckpt_every=2)
    run_train(stage, tmp_path / "b", max_steps=4, ckpt_every=2)
    import shutil
    shutil.rmtree(tmp_path / "b" / "checkpoint-000004")           # "crash" after step 2's checkpoint
    _, resumed, summary = run_train(stage, tmp_path / "b", max_steps=4, ckpt_every=2)
    assert summary["steps"] == 4
    a, b = trainable_state(straight), trainable_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(line)["step"] for line in open(tmp_path / "b" / "metrics.jsonl")]
    assert rows == [1, 2, 3, 4]
    with pytest.raises(cli.UserError, match="other settings"):
        run_train(stage, tmp_path / "b", max_steps=4, ckpt_every=2, beta=10.0)


def test_gradient_accumulation_equals_the_bigger_batch(redpo_stage_32, tmp_path):
    stage = redpo_stage_32
    _, big, _ = run_train(stage, tmp_path / "big", batch=2, grad_accum=1, max_steps=1)
    _, acc, _ = run_train(stage, tmp_path / "acc", batch=1, grad_accum=2, max_steps=1)
    assert_same_run(trainable_state(big), trainable_state(acc))


def test_non_finite_loss_is_skipped_then_stops_with_a_clear_message(stage, tmp_path):
    with pytest.raises(cli.UserError, match="lower --beta"):
        run_train(stage, tmp_path / "nan", beta=float("nan"), max_steps=10)


def torchrun_args(stage):
    """redpo.py's flags for the torchrun comparison, but --batch and --out."""
    return ["--model", "tiny", "--student", str(stage / "student"), "--pairs", str(stage / "pairs"),
            "--lr", "1e-3", "--max_steps", "2"]


def test_torchrun_two_processes_equal_one_process(redpo_stage_32, torchrun_run, tmp_path):
    """Two processes of batch 1 (conftest.torchrun_run: redpo.main on 2 ranks) equal one of batch 2."""
    stage = redpo_stage_32
    redpo.main(torchrun_args(stage) + ["--batch", "2", "--out", str(tmp_path / "one")])
    config = json.loads((tmp_path / "one" / "config.json").read_text())   # unset flags: tiny's preset, as the loop's
    assert (config["epochs"], config["w_sft"], config["grad_accum"], config["lr"]) == (1, 1e4, 1, 1e-3)
    a = models.load("tiny", path=str(tmp_path / "one" / "student"))
    b = models.load("tiny", path=str(torchrun_run / "redpo" / "student"))
    sa, sb = trainable_state(a), trainable_state(b)
    moved = models.load("tiny", path=str(stage / "student"))
    assert any(not torch.equal(sa[k], v) for k, v in trainable_state(moved).items())
    assert_same_run(sa, sb)


def test_pairs_made_by_another_model_are_refused_naming_both(stage, tmp_path):
    """The stage's pairs are tiny's latents; redpo.py --model toy on them is one line, not a conv2d error."""
    import shutil
    pairs = tmp_path / "pairs"
    shutil.copytree(stage / "pairs", pairs)
    disk.write_json(pairs / "config.json", {"model": "tiny", "reward": "pixel"})   # as curate.py writes it
    with pytest.raises(cli.UserError, match=r"pairs made by the tiny model, but --model is toy; pass --model tiny"):
        redpo.main(["--model", "toy", "--pairs", str(pairs), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


# --- w_sft "auto": the paper's rule, matching the DPO loss in scale -----------------------------

def test_w_sft_rule_is_the_ratio_of_the_means():
    # DPO terms 0.6, 0.2 (mean 0.4); SFT terms 1e-4, 3e-4 (mean 2e-4): w_sft = 0.4 / 2e-4 = 2000,
    # so that w_sft * mean(SFT) = 0.4 = mean(DPO).
    assert redpo.w_sft_rule([0.6, 0.2], [1e-4, 3e-4]) == pytest.approx(2000.0)
    assert redpo.w_sft_rule([0.69], [0.0]) is None                    # the student is the teacher
    with pytest.raises(ValueError):
        redpo.w_sft_rule([0.6, 0.2], [1e-4])
    assert redpo.parse_w_sft("auto") == "auto" and redpo.parse_w_sft("3e3") == 3000.0


def test_auto_is_measured_on_the_first_batches_before_training_and_used(stage, tmp_path):
    teacher = models.load("tiny")
    initial = models.load("tiny", path=str(stage / "student"))
    # Independently: the 2 steps of epoch 0 (4 pairs, batch 2), their t and eps, at the initial student.
    pairs = redpo.read_pairs(str(stage / "pairs"))
    order = redpo.epoch_order(len(pairs), 2, 0, 0)
    terms = [redpo.batch_loss(initial.noise_pred, teacher, redpo.make_batch(pairs, order[i:i + 2], 0, 0, 1000),
                              "redpo", 5000.0, 0.0)[1] for i in (0, 2)]
    expected = (terms[0]["dpo"] + terms[1]["dpo"]) / (terms[0]["sft"] + terms[1]["sft"])
    _, auto, summary = run_train(stage, tmp_path / "auto", w_sft="auto", max_steps=3)
    assert summary["w_sft"] == pytest.approx(expected, rel=1e-5)
    record = disk.read_json(tmp_path / "auto" / "w_sft.json")
    assert record["setting"] == "auto" and record["w_sft"] == summary["w_sft"] and record["rule"]["pairs"] == 4
    rows = [json.loads(line) for line in open(tmp_path / "auto" / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [0, 1, 2, 3] and rows[0]["w_sft"] == summary["w_sft"]
    _, fixed, _ = run_train(stage, tmp_path / "fixed", w_sft=summary["w_sft"], max_steps=3)
    a, b = trainable_state(auto), trainable_state(fixed)
    assert all(torch.equal(a[k], b[k]) for k in a)                   # the measured value is the one trained with


def test_a_number_trains_as_given_and_logs_what_the_rule_would_choose(stage, tmp_path):
    _, _, summary = run_train(stage, tmp_path / "n", w_sft=1e4, max_steps=1, log_w_sft_rule=True)
    record = disk.read_json(tmp_path / "n" / "w_sft.json")
    assert summary["w_sft"] == 1e4 and record["w_sft"] == 1e4 and record["rule"]["w_sft"] > 0


def test_a_resumed_stage_reuses_the_logged_w_sft(stage, tmp_path, monkeypatch):
    _, straight, first = run_train(stage, tmp_path / "a", w_sft="auto", max_steps=4, ckpt_every=2)
    run_train(stage, tmp_path / "b", w_sft="auto", max_steps=4, ckpt_every=2)
    import shutil
    shutil.rmtree(tmp_path / "b" / "checkpoint-000004")           # "crash" after step 2's checkpoint

    def no_measuring(*args, **kwargs):
        raise AssertionError("a resumed stage measured w_sft again")
    monkeypatch.setattr(redpo.TrainingRun, "measure_w_sft", no_measuring)
    _, resumed, summary = run_train(stage, tmp_path / "b", w_sft="auto", max_steps=4, ckpt_every=2)
    assert summary["w_sft"] == first["w_sft"]
    a, b = trainable_state(straight), trainable_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [json.loads(line)["step"] for line in open(tmp_path / "b" / "metrics.jsonl")] == [0, 1, 2, 3, 4]
    os.remove(tmp_path / "b" / "w_sft.json")                      # steps without their w_sft: refused
    shutil.rmtree(tmp_path / "b" / "checkpoint-000004")
    with pytest.raises(cli.UserError, match="not the w_sft"):
        run_train(stage, tmp_path / "b", w_sft="auto", max_steps=4, ckpt_every=2)


def test_auto_is_in_the_help(capsys):
    with pytest.raises(SystemExit):
        redpo.parse_args(["--help"])
    assert "auto" in capsys.readouterr().out


# --- the loop as the paper writes it ---------------------------------------------------------

def test_the_training_step_is_one_loop_on_one_screen():
    """Sec. 3.4.1's step is readable in `train` itself: each paper step named there, not a call away."""
    import inspect
    source = inspect.getsource(redpo.train)
    assert len(source.splitlines()) <= 45
    for step in ("epoch, micro_batches", "x_0 = torch.cat", "eps = torch.cat", "t = torch.cat", "teacher.add_noise",
                 "torch.no_grad()", "teacher.noise_pred", "student.noise_pred", "loss(pred, ref_pred, target",
                 ".backward()", "clip_grad_norm_", "optimizer.step()", "run.log("):
        assert step in source, step


def test_the_loops_first_step_equals_batch_loss_on_its_batch(stage, tmp_path):
    """The loop's inline step and batch_loss (the w_sft rule's, the benchmarks') compute the same numbers."""
    teacher = models.load("tiny")
    initial = models.load("tiny", path=str(stage / "student"))
    pairs = redpo.read_pairs(str(stage / "pairs"))
    order = redpo.epoch_order(len(pairs), 2, 0, 0)
    _, expected = redpo.batch_loss(initial.noise_pred, teacher, redpo.make_batch(pairs, order[:2], 0, 0, 1000),
                                   "redpo", 5000.0, 1e4)
    run_train(stage, tmp_path / "one", max_steps=1)
    row = json.loads(open(tmp_path / "one" / "metrics.jsonl").readline())
    for key in ("loss", "dpo", "sft", "implicit_acc", "reward_margin", "err_w", "err_l", "ref_err_w", "ref_err_l"):
        assert row[key] == expected[key], key
