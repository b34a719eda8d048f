"""infra/parallel.py: the loop's fixed batches run side by side on worker threads, one torch thread each,
and give the same videos, bit for bit, as one batch after the other."""
import threading
import time

import pytest
from infra import parallel

import torch

import evaluate
import models
import redpo
from rewards import load_reward
from test_reuse import write_pairs_folder


class Model:
    """What parallel.workers reads of a model."""

    def __init__(self, parallel_generate=True, device="cpu"):
        self.parallel_generate, self.device = parallel_generate, torch.device(device)


@pytest.fixture
def two_threads():
    """torch at 2 CPU threads (the suite runs at 1, conftest.py), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_items_come_back_in_order_two_at_a_time_on_one_torch_thread_each(two_threads):
    running, most, seen = [0], [0], []
    lock = threading.Lock()

    def fn(i):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05 * (i % 3))         # out of order if the results were not put back in order
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        with lock:
            running[0] -= 1
        return i * i

    assert list(parallel.map_batches(fn, range(7), Model())) == [i * i for i in range(7)]
    assert most[0] == 2 and {n for _, n in seen} == {1}
    assert len({name for name, _ in seen}) == 2 and threading.current_thread().name not in {n for n, _ in seen}
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("model", [Model(parallel_generate=False), Model(device="meta"), None],
                         ids=["not-allowed", "not-cpu", "one-thread"])
def test_serial_where_two_at_once_is_not_allowed(two_threads, model):
    if model is None:
        torch.set_num_threads(1)
        model = Model()
    names = []
    out = list(parallel.map_batches(lambda i: names.append(threading.current_thread().name) or i, range(3), model))
    assert out == [0, 1, 2] and set(names) == {threading.current_thread().name}


def test_an_error_in_a_batch_reaches_the_caller_and_the_threads_are_restored(two_threads):
    def fn(i):
        if i == 2:
            raise ValueError("batch 2")
        return i

    with pytest.raises(ValueError, match="batch 2"):
        list(parallel.map_batches(fn, range(6), Model()))
    assert torch.get_num_threads() == 2


def test_the_toy_models_videos_are_bit_identical_in_parallel_and_in_series(two_threads):
    model = models.load("toy", device="cpu")
    assert model.parallel_generate and parallel.workers([model], 4) == 2
    prompts = ["a red circle moving left", "a blue square moving up", "a green triangle staying still",
               "a yellow circle moving down", "a cyan square moving right"]
    batches = [(prompts[i:i + 2], list(range(i, i + len(prompts[i:i + 2])))) for i in range(0, 5, 2)]
    par = list(parallel.map_batches(lambda b: model.generate(*b, steps=3), batches, model))
    torch.set_num_threads(1)
    ser = [model.generate(*b, steps=3) for b in batches]
    for (f_par, x_par), (f_ser, x_ser) in zip(par, ser):
        assert torch.equal(x_par, x_ser) and (f_par == f_ser).all()

    # evaluate_model (the loop's rows) gives the same scores whichever way its batches ran
    reward = load_reward("shapes")
    serial = evaluate.evaluate_model(model, reward, (prompts, list(range(5)), None), batch_size=2, steps=3)
    torch.set_num_threads(2)
    both = evaluate.evaluate_model(model, reward, (prompts, list(range(5)), None), batch_size=2, steps=3)
    assert [v["scores"] for v in both["per_video"]] == [v["scores"] for v in serial["per_video"]]
    assert (both["videos"]["frames"] == serial["videos"]["frames"]).all()


def test_a_skip_holds_on_its_own_thread_only_and_is_restored_after_the_last():
    model = models.load("toy", device="cpu")
    a, b = list(model.blocks())[:2]
    x_t, t, embeds = torch.randn(1, 3, 8, 16, 16, generator=torch.Generator().manual_seed(0)), 500, model.encode(["x"])
    out = lambda: model.noise_pred(x_t, t, embeds)   # noqa: E731
    plain = out()
    with model.skip([a]):
        skip_a = out()
    with model.skip([b]):
        skip_b = out()
    assert not torch.equal(skip_a, plain) and not torch.equal(skip_b, plain)
    seen, step = {}, threading.Barrier(2)

    def first():      # skips a, and b too while the second thread also skips b, then leaves first
        with model.skip([a]):
            step.wait()                                  # 1: both inside
            seen["first, a"] = out()
            with model.skip([b]):
                step.wait()                              # 2: both skip b
            step.wait()                                  # 3: the second still skips b
        step.wait()                                      # 4: a is back for every thread

    def second():
        with model.skip([b]):
            step.wait()
            seen["second, b"] = out()
            step.wait()
            step.wait()
            seen["second, b after the first left b"] = out()
        step.wait()
        seen["second, nothing"] = out()

    threads = [threading.Thread(target=f) for f in (first, second)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert torch.equal(seen["first, a"], skip_a) and torch.equal(seen["second, b"], skip_b)
    assert torch.equal(seen["second, b after the first left b"], skip_b)
    assert torch.equal(seen["second, nothing"], plain) and torch.equal(out(), plain)
    assert not any("forward" in vars(block) for block in model.blocks().values())   # restored exactly


def test_the_block_search_scores_the_same_with_candidates_side_by_side(two_threads):
    import prune
    model = models.load("toy", device="cpu")
    prompts = ["a red circle moving left", "a blue square moving up", "a green triangle staying still"]
    blocks = list(model.blocks())[:3]
    search_set = prune.SearchSet(load_reward("shapes"), prompts, [0, 1, 2], gen_kw={"steps": 2}, batch_size=2, progress=False)
    videos = prune.SearchVideos(model, search_set)
    videos.keep_videos = 2
    search = lambda: prune.block_importance(model, videos, blocks=blocks)  # noqa: E731
    both = search()
    torch.set_num_threads(1)
    serial = search()
    assert both["per_video"] == serial["per_video"] and both["candidates"] == serial["candidates"]
    assert len({tuple(v["total"]) for v in serial["per_video"].values()}) == 4      # every candidate differs
    for c in serial["kept"]:
        assert all(i == j and (f == g).all() for (i, f), (j, g) in zip(both["kept"][c], serial["kept"][c]))


def test_toy_training_beside_the_teachers_forwards_equals_training_on_one_thread(two_threads, tmp_path):
    """redpo.train on 2 CPU threads computes the teacher's eps_ref ahead on worker threads while the
    student trains on one: the same w_sft rule value and the same weights, bit for bit, as one thread."""
    teacher = models.load("toy", device="cpu")
    prompts = ["a red circle moving left", "a blue square moving up", "a green triangle staying still",
               "a yellow circle moving down"]     # 2 epochs of 2 steps
    _, winners = teacher.generate(prompts, list(range(4)), steps=2)
    _, losers = teacher.generate(prompts, list(range(10, 14)), steps=2)
    pairs = write_pairs_folder(tmp_path / "pairs", prompts, winners, losers)
    trained = {}
    for threads in (2, 1):
        torch.set_num_threads(threads)
        student = models.load("toy", device="cpu")
        student.remove(list(student.blocks())[:1])
        settings = redpo.Settings(w_sft="auto", lr=1e-3, batch=2, epochs=2, seed=3)
        summary = redpo.train(student, teacher, str(pairs), str(tmp_path / f"train{threads}"), settings)
        assert summary["steps"] == 4 and torch.get_num_threads() == threads
        trained[threads] = (summary["w_sft"], {n: p.detach().clone() for n, p in student.trainable_named_parameters()})
    (w_two, two), (w_one, one) = trained[2], trained[1]
    assert w_two == w_one and two.keys() == one.keys()
    assert all(torch.equal(two[n], one[n]) for n in two)
    start = {n: p for n, p in models.load("toy", device="cpu").trainable_named_parameters()}
    assert any(not torch.equal(two[n], start[n]) for n in two)      # it trained
