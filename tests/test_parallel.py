"""parallel.py: the loop's fixed batches run side by side on worker threads, one torch thread each,
and give the same videos, bit for bit, as one batch after the other."""
import threading
import time

import pytest
import torch

import evaluate
import models
import parallel
from rewards import load_reward


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
    serial = evaluate.evaluate_model(model, reward, prompts, list(range(5)), batch_size=2, measure=False, steps=3)
    torch.set_num_threads(2)
    both = evaluate.evaluate_model(model, reward, prompts, list(range(5)), batch_size=2, measure=False, steps=3)
    assert [v["scores"] for v in both["per_video"]] == [v["scores"] for v in serial["per_video"]]
    assert (both["videos"]["frames"] == serial["videos"]["frames"]).all()
