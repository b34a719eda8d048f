"""The user study (Sec. 4, Fig. 4; analysis/user_study.py): the ranking score, win rates and Kendall's W
against hand-computed numbers and scipy; the crossed bootstrap against answers resampled by hand; the
attention checks; damaged and foreign lines; `make` on tiny run folders; `simulate` recovering a known
ranking; the server's bad requests and paths; and the page in a real headless Chromium ranking every
item by clicks (in CI a missing browser fails the test; elsewhere it skips saying why)."""
import http.client
import json
import os
import shutil
import threading

from infra import cli

import numpy as np
import pytest
from scipy.ndimage import uniform_filter
from scipy.stats import friedmanchisquare

from analysis import user_study as us
from analysis.user_study_server import StudyServer, frames_of, rater_plan, sprite_sheet
from conftest import run_script
from toy import shapes_world

METHODS = ["Full", "ReDPO", "SFT"]
PROMPTS = ["a red circle moving left", "a blue square moving up", "a green triangle staying still"]


def answer(rater, item, *order):
    return {"rater": rater, "item": item, "order": list(order)}


# --- the numbers -------------------------------------------------------------------------------

def test_ranking_score_win_rates_and_w_by_hand():
    answers = [answer("r1", "i1", "ReDPO", "Full", "SFT"), answer("r1", "i2", "Full", "ReDPO", "SFT"),
               answer("r2", "i1", "ReDPO", "SFT", "Full"), answer("r2", "i2", "ReDPO", "Full", "SFT")]
    raters, items, ranks = us.rank_table(answers, METHODS)
    got = us.summarise(ranks)
    # Points K - rank = 2, 1, 0 per answer. Full: 1 + 2 + 0 + 1 = 4; ReDPO: 2 + 1 + 2 + 2 = 7; SFT: 0 + 0 + 1 + 0 = 1;
    # all points 4 answers x 3 = 12.
    assert np.allclose(got["score"], [4 / 12, 7 / 12, 1 / 12])
    assert np.allclose(got["mean_rank"], [(2 + 1 + 3 + 2) / 4, (1 + 2 + 1 + 1) / 4, (3 + 3 + 2 + 3) / 4])
    assert np.allclose(got["first"], [1 / 4, 3 / 4, 0])
    # ReDPO above Full in 3 of 4 answers, Full above SFT in 3 of 4, ReDPO above SFT in 4 of 4.
    assert np.allclose(got["wins"], [[0, 1 / 4, 3 / 4], [3 / 4, 0, 1], [1 / 4, 0, 0]])
    # With K = 3, K - rank counts the methods ranked below: a score is the sum of its two win rates / 3.
    assert np.allclose(got["score"], got["wins"].sum(axis=1) / 3)
    # Kendall's W over all 4 answers: rank sums Full 8, ReDPO 5, SFT 11; m (n + 1) / 2 = 8;
    # S = 0 + 9 + 9 = 18; W = 12 * 18 / (16 * 24) = 0.5625; Friedman chi^2 = m (n - 1) W = 4.5.
    w = us.kendall_w(ranks)
    assert w["all"] == pytest.approx(0.5625) and w["chi2"] == pytest.approx(4.5)
    assert w["chi2"] == pytest.approx(friedmanchisquare(*ranks.reshape(-1, 3).T).statistic)
    assert w["p"] == pytest.approx(np.exp(-4.5 / 2))                   # chi^2 with 2 df: p = exp(-x / 2)
    # Per item, over its 2 raters: i1 rank sums Full 5, ReDPO 2, SFT 5 -> S = 1 + 4 + 1 = 6 -> W = 72 / 96;
    # i2: Full 3, ReDPO 3, SFT 6 -> S = 1 + 1 + 4 = 6 -> W = 0.75 too.
    assert w["per_item"] == pytest.approx(0.75) and w["items"] == 2


def test_a_bootstrap_draw_counts_each_answer_raters_times_items():
    rng = np.random.default_rng(1)
    answers = [answer(f"r{r}", f"i{i}", *rng.permutation(METHODS)) for r in range(4) for i in range(3) if (r, i) != (2, 1)]
    raters, items, ranks = us.rank_table(answers, METHODS)
    boot = us.crossed_bootstrap(ranks, draws=5, seed=3)
    # Draw 0 again by hand: the same multinomials, then every answer repeated (rater count x item count) times.
    draw = np.random.default_rng(3)
    rater_counts = draw.multinomial(4, np.full(4, 1 / 4), size=5)[0]
    item_counts = draw.multinomial(3, np.full(3, 1 / 3), size=5)[0]
    repeated = [{**a, "rater": f"{a['rater']}-{c}"} for a in answers         # each copy an answer of its own
                for c in range(rater_counts[raters.index(a["rater"])] * item_counts[items.index(a["item"])])]
    by_hand = us.summarise(us.rank_table(repeated, METHODS)[2])
    assert np.allclose(boot["score"][0], by_hand["score"]) and np.allclose(boot["wins"][0], by_hand["wins"])
    assert np.allclose(boot["score"].sum(axis=1), 1)


KEY = {"study": "s", "methods": METHODS, "main_items": ["i1", "i2"],
       "checks": {"original": "i1", "repeat": "i9", "degraded": "d"},
       "items": {"i1": {"index": 0, "clips": {"a1": "Full", "b1": "ReDPO", "c1": "SFT"}},
                 "i2": {"index": 1, "clips": {"a2": "Full", "b2": "ReDPO", "c2": "SFT"}},
                 "i9": {"index": 2, "clips": {"a9": "Full", "b9": "ReDPO", "c9": "SFT"}},
                 "d": {"index": 3, "clips": {"ad": "Full", "bd": "degraded", "cd": "SFT"}}}}


def test_attention_checks_drop_the_degraded_failures_and_flag_the_inconsistent():
    ok = [answer("good", "i1", "ReDPO", "Full", "SFT"), answer("good", "i9", "Full", "ReDPO", "SFT"),     # 1 swap: forgiven
          answer("good", "d", "Full", "SFT", "degraded"), answer("good", "i2", "SFT", "Full", "ReDPO")]
    flip = [answer("flip", "i1", "ReDPO", "Full", "SFT"), answer("flip", "i9", "SFT", "Full", "ReDPO"),   # 3 swaps
            answer("flip", "d", "SFT", "Full", "degraded"), answer("flip", "i2", "Full", "ReDPO", "SFT")]
    blind = [answer("blind", "i1", "Full", "ReDPO", "SFT"), answer("blind", "d", "degraded", "Full", "SFT"),
             answer("blind", "i2", "Full", "ReDPO", "SFT")]
    early = [answer("early", "i1", "SFT", "ReDPO", "Full")]
    verdict = us.attention(ok + flip + blind + early, KEY)
    assert verdict == {"good": (None, False), "flip": (None, True), "blind": ("did not rank the degraded clip last", False),
                       "early": ("did not reach the degraded clip", False)}
    result = us.score_study(ok + flip + blind + early, KEY, draws=50)
    # Kept: good and flip, on the main items i1 and i2 (the checks are not scored). good i1 R F S, good i2
    # S F R, flip i1 R F S, flip i2 F R S: Full 1 + 1 + 1 + 2 = 5, ReDPO 2 + 0 + 2 + 1 = 5, SFT 0 + 2 + 0 + 0 = 2.
    assert np.allclose(result["score"], [5 / 12, 5 / 12, 2 / 12])
    assert result["raters"] == 2 and result["raters_total"] == 4 and result["flagged"] == 1
    assert result["dropped"] == {"did not rank the degraded clip last": 1, "did not reach the degraded clip": 1}
    assert us.random_flag_rate(3) == pytest.approx(0.5)


def test_damaged_and_foreign_lines_are_counted_never_fatal(tmp_path):
    good = {"study": "s", "rater": "r1", "item": "i1", "shown": ["c1", "a1", "b1"], "ranking": ["B", "C", "A"]}
    lines = [json.dumps(good).encode(), b'{"study": "s", "rater": "r1", "item": "i1"',             # cut short
             b"\xff\xfe not utf-8", json.dumps({**good, "study": "other"}).encode(),               # another study
             json.dumps({**good, "item": "nope"}).encode(), json.dumps({**good, "ranking": ["A", "A", "B"]}).encode(),
             json.dumps({**good, "shown": ["a1", "b1", "x"]}).encode(), b"[1, 2]", b"",
             json.dumps({**good, "ranking": ["A", "B", "C"]}).encode()]                             # the same rater and item again
    path = tmp_path / "responses.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    answers, counts = us.read_responses(str(path), KEY)
    assert counts == {"file": "responses.jsonl", "lines": 9, "damaged": 2, "foreign": 5, "duplicate": 1}
    assert answers == [answer("r1", "i1", "Full", "ReDPO", "SFT")]          # B = a1 (Full), C = b1, A = c1


# --- make and simulate on tiny run folders -------------------------------------------------------

def fake_runs(root):
    """Two run folders of vip_loop.py's layout holding only what `make` reads: the full model's clips are
    the world's own renders, ReDPO's blurred (3 px box), SFT's noised (std 25): the exact reward ranks them
    Full > ReDPO > SFT on every prompt (0.999 > 0.978 > 0.913, 1.000 > 0.958 > 0.910, 0.750 > 0.716 > 0)."""
    seeds = [0, 1, 2]
    truth = shapes_world.render_batch(PROMPTS, seeds)
    rng = np.random.default_rng(0)
    noised = np.clip(truth + rng.normal(0, 25, truth.shape), 0, 255).astype(np.uint8)
    blurred = uniform_filter(truth.astype(float), size=(1, 1, 3, 3, 1)).round().astype(np.uint8)
    runs = []
    for method, frames in (("redpo", blurred), ("sft", noised)):
        run = os.path.join(root, method)
        for sub, clips in (("full", truth), ("stage_1", frames)):
            os.makedirs(os.path.join(run, sub))
            np.savez(os.path.join(run, sub, "videos.npz"), frames=clips, prompts=np.array(PROMPTS), seeds=np.array(seeds))
        json.dump({"generation": {"fps": 8}}, open(os.path.join(run, "full", "eval.json"), "w"))
        json.dump({"method": method, "seed": 0}, open(os.path.join(run, "config.json"), "w"))
        runs.append(run)
    return runs, {"Full": truth, "ReDPO": blurred, "SFT": noised}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    runs, frames = fake_runs(str(root))
    out = str(root / "study")
    key = us.make_study(runs, None, out, seed=1, raters=3, fps=40)
    return out, key, frames


def test_make_writes_a_blinded_study_of_large_exact_clips(study):
    out, key, frames = study
    assert sorted(os.listdir(out)) == ["clips", "index.html", "key.json", "raters.txt", "study.json"]
    public = open(os.path.join(out, "study.json")).read()
    assert not any(m in public for m in METHODS + ["degraded", "redpo", "sft"])            # nothing names a method
    assert key["methods"] == METHODS and key["stage"] == 1 and len(key["main_items"]) == 3 and len(key["items"]) == 5
    assert key["scale"] == 16 and json.loads(public)["height"] == 256                      # 16 px -> 256 px
    from PIL import Image
    for item in key["items"].values():
        i = PROMPTS.index(item["prompt"])
        for token, method in item["clips"].items():
            sheet = np.asarray(Image.open(os.path.join(out, "clips", token + ".png")))
            assert sheet.shape == (3 * 256, 3 * 256, 3)                                   # 8 frames in a 3 x 3 grid
            back = frames_of(sheet, 8, 16, 16, 16, 3)
            if method == "degraded":
                assert np.abs(back.astype(int) - frames[key["degraded_method"]][i]).mean() > 20
            else:
                assert np.array_equal(back, frames[method][i])                             # nearest neighbour: exact
    page = open(os.path.join(out, "index.html")).read()
    assert "http:" not in page and "https:" not in page and "<link" not in page     # offline: nothing fetched but /api and /clips
    repeat, original = (key["items"][key["checks"][k]] for k in ("repeat", "original"))
    assert repeat["prompt"] == original["prompt"] and set(repeat["clips"]).isdisjoint(original["clips"])


def test_sprite_sheet_round_trips_any_frame_count():
    frames = np.random.default_rng(0).integers(0, 255, (5, 4, 6, 3), dtype=np.uint8)
    sheet, cols = sprite_sheet(frames, 3)
    assert cols == 3 and sheet.shape == (2 * 12, 3 * 18, 3)
    assert np.array_equal(frames_of(sheet, 5, 4, 6, 3, cols), frames)


def test_simulate_recovers_the_rewards_ranking(study):
    out, key, frames = study
    public = json.load(open(os.path.join(out, "study.json")))
    rewards = us.clip_rewards(out, key)
    # The exact reward of each method's clips, computed here from the frames the runs kept.
    exact = {m: shapes_world.reward(frames[m], PROMPTS)["total"] for m in METHODS}
    for item in key["items"].values():
        for token, method in item["clips"].items():
            if method != "degraded":
                assert rewards[token] == pytest.approx(exact[method][PROMPTS.index(item["prompt"])])
    # Noise-free raters: every answer ranks by the reward, so the score is the reward order's points.
    expected = np.zeros(3)
    for i in range(3):
        for points, m in enumerate(sorted(METHODS, key=lambda m: exact[m][i])):
            expected[METHODS.index(m)] += points
    expected /= 3 * 3
    lines = us.simulate(public, key, rewards, raters=4, noise=0.0)
    answers = [us.parse_answer(line, key) for line in lines]
    result = us.score_study(answers, key, draws=20)
    assert np.allclose(result["score"], expected) and result["raters"] == 4 and result["flagged"] == 0
    assert (exact["Full"] > exact["ReDPO"]).all() and (exact["ReDPO"] > exact["SFT"]).all()   # the known ranking
    noisy = us.score_study([us.parse_answer(x, key) for x in us.simulate(public, key, rewards, 40, 0.05, seed=2)], key, draws=200)
    assert np.argsort(noisy["score"]).tolist() == [2, 1, 0]                                # Full > ReDPO > SFT


def test_a_second_make_gives_new_names_and_the_same_result(study, tmp_path):
    out, key, _ = study
    again = us.make_study([os.path.join(os.path.dirname(out), m) for m in ("redpo", "sft")], None, str(tmp_path / "again"),
                          seed=1, raters=3)
    assert set(again["items"]).isdisjoint(key["items"])
    results = []
    for folder, k in ((out, key), (str(tmp_path / "again"), again)):
        public = json.load(open(os.path.join(folder, "study.json")))
        lines = us.simulate(public, k, us.clip_rewards(folder, k), raters=6, noise=0.05, seed=4)
        results.append(us.score_study([us.parse_answer(x, k) for x in lines], k, draws=100))
    assert results[0] == results[1]


# --- the server ---------------------------------------------------------------------------------

@pytest.fixture()
def served(study, tmp_path):
    out = str(tmp_path / "served")
    shutil.copytree(study[0], out)
    server = StudyServer(out, ("127.0.0.1", 0), quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield out, server
    server.shutdown()
    server.server_close()


def request(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(*server.server_address, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def test_the_server_serves_only_the_page_and_the_clips(served):
    out, server = served
    assert request(server, "GET", "/")[0] == 200
    clip = next(iter(json.load(open(os.path.join(out, "study.json")))["items"].values()))["clips"][0]
    assert request(server, "GET", f"/clips/{clip}.png")[0] == 200
    for path in ["/key.json", "/raters.txt", "/responses.jsonl", "/study.json", "/.lock", "/clips/", "/%6bey.json",
                 "/%2e%2e/key.json", "/..%2fkey.json", "/clips/..%2fkey.json", "/clips/%2e%2e/key.json",
                 "/clips/../key.json", "//key.json", "/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/../../etc/passwd",
                 f"/clips/{clip}.png/../../key.json", f"/clips/{clip}.png%00"]:
        status, data = request(server, "GET", path)
        assert status == 404 and b"methods" not in data, path
    assert request(server, "PUT", "/")[0] == 405


def test_bad_answers_get_a_4xx_and_change_nothing(served):
    out, server = served
    rater = open(os.path.join(out, "raters.txt")).read().split()[0]
    public = json.load(open(os.path.join(out, "study.json")))
    item = sorted(public["items"])[0]
    post = lambda body, **h: request(server, "POST", "/api/answer", body, h)               # noqa: E731
    good = {"rater": rater, "item": item, "ranking": ["C", "A", "B"]}
    cases = [(b"{not json", 400), (b"\xff\xfe", 400), (b"[1, 2]", 400), (json.dumps({**good, "rater": "nobody"}), 403),
             (json.dumps({**good, "rater": ["x"]}), 403), (json.dumps({**good, "item": "nope"}), 422),
             (json.dumps({**good, "ranking": ["A", "A", "B"]}), 422), (json.dumps({**good, "ranking": "CAB"}), 422),
             (json.dumps({**good, "pad": "x" * 5000}), 413)]
    for body, status in cases:
        assert post(body)[0] == status, body[:60]
    assert request(server, "POST", "/api/other", json.dumps(good))[0] == 404
    assert request(server, "GET", "/api/session?rater=nobody")[0] == 403
    assert not os.path.exists(os.path.join(out, "responses.jsonl"))
    assert post(json.dumps(good))[0] == 200
    assert post(json.dumps({**good, "ranking": ["A", "B", "C"]}))[0] == 409               # one answer per rater and item
    rows = [json.loads(x) for x in open(os.path.join(out, "responses.jsonl"))]
    shown = next(p["shown"] for p in rater_plan(public, rater) if p["item"] == item)
    assert rows == [{**rows[0], "study": public["study"], "rater": rater, "item": item, "shown": shown, "ranking": ["C", "A", "B"]}]


def test_raters_answering_at_once_each_get_one_whole_line(served):
    out, server = served
    raters = open(os.path.join(out, "raters.txt")).read().split()
    public = json.load(open(os.path.join(out, "study.json")))
    jobs = [{"rater": r, "item": it, "ranking": ["B", "C", "A"]} for r in raters for it in public["items"]] * 2
    statuses = []
    threads = [threading.Thread(target=lambda j=j: statuses.append(request(server, "POST", "/api/answer", json.dumps(j))[0]))
               for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * (len(jobs) // 2) + [409] * (len(jobs) // 2)
    rows = [json.loads(x) for x in open(os.path.join(out, "responses.jsonl"))]
    assert sorted((r["rater"], r["item"]) for r in rows) == sorted((j["rater"], j["item"]) for j in jobs[:len(jobs) // 2])


def test_the_cli_says_bad_input_in_one_line(tmp_path, capsys):
    done = run_script("-m", "analysis.user_study", "make", "--runs", str(tmp_path / "none"), "--out", str(tmp_path / "s"))
    assert done.returncode == 2 and done.stderr == f"error: no run folder {tmp_path / 'none'}\n", done.stderr
    with pytest.raises(SystemExit) as e:
        cli.run_cli(lambda: us.main(["score", "--study", str(tmp_path)]))
    assert e.value.code == 2 and capsys.readouterr().err.startswith(f"error: {tmp_path} is not a study folder")


# --- the page in a real browser ------------------------------------------------------------------

def chromium():
    """A headless Chromium driven by selenium, or skip saying why; in CI (.ci/run installs it) its absence fails."""
    missing = [p for p in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not os.path.exists(p)]
    try:
        from selenium import webdriver
    except ImportError:
        missing.append("the selenium package")
    if missing:
        why = f"no {', '.join(missing)}: `apt-get install -y chromium chromium-driver` and `pip install selenium`"
        if os.environ.get("CI"):
            pytest.fail(why + "; .ci/run installs them before the tests")
        pytest.skip(why)
    import tempfile
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1200,800", f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"))


def test_a_rater_ranks_every_item_in_chromium(served):
    out, server = served
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    driver = chromium()
    try:
        rater = open(os.path.join(out, "raters.txt")).read().split()[1]
        url = "http://%s:%d/?rater=%s" % (*server.server_address, rater)
        driver.get(url)
        plan = rater_plan(json.load(open(os.path.join(out, "study.json"))), rater)
        wait = WebDriverWait(driver, 20)
        for n, screen in enumerate(plan):
            wait.until(lambda d: d.find_element(By.ID, "count").text == f"Item {n + 1} of {len(plan)}")
            assert driver.find_element(By.ID, "next").get_attribute("disabled")               # nothing ranked yet
            for letter in "CAB":
                driver.find_element(By.ID, f"clip-{letter}").click()
            wait.until(lambda d: d.find_element(By.ID, "clips").get_attribute("data-played") == "1")
            if n == 0 and os.environ.get("USER_STUDY_SCREENSHOT"):
                driver.save_screenshot(os.environ["USER_STUDY_SCREENSHOT"])
            button = driver.find_element(By.ID, "next")
            wait.until(lambda d: button.is_enabled())
            button.click()
            if n == 1:                                                                      # a reload continues here
                wait.until(lambda d: len(open(os.path.join(out, "responses.jsonl")).readlines()) == 2)
                driver.get(url)
        wait.until(lambda d: d.find_element(By.ID, "done").is_displayed())
    finally:
        driver.quit()
    rows = [json.loads(x) for x in open(os.path.join(out, "responses.jsonl"))]
    assert [(r["item"], r["shown"], r["ranking"]) for r in rows] == [(p["item"], p["shown"], ["C", "A", "B"]) for p in plan]


def test_score_says_where_it_wrote_and_that_there_are_no_responses(study, tmp_path, capsys):
    out, key, _ = study
    with pytest.raises(cli.UserError, match=r"no responses yet: .*responses.jsonl does not exist \(raters' answers go "
                                            r"there while `python -m analysis.user_study serve --study "):
        us.main(["score", "--study", out])
    (tmp_path / "empty.jsonl").write_text('{"not": "an answer"}\n')
    with pytest.raises(cli.UserError, match="no answers of this study in .*empty.jsonl: 1 lines, 0 damaged, 1 of another"):
        us.main(["score", "--study", out, "--responses", str(tmp_path / "empty.jsonl")])
    us.main(["simulate", "--study", out, "--raters", "3", "--out", str(tmp_path / "r.jsonl")])
    capsys.readouterr()
    us.main(["score", "--study", out, "--responses", str(tmp_path / "r.jsonl"), "--draws", "20", "--out", str(tmp_path)])
    said = capsys.readouterr().out.splitlines()
    assert said[-1] == f"wrote {tmp_path / 'score.md'}, score.json and ranking.png"
    assert (tmp_path / "score.md").is_file() and (tmp_path / "ranking.png").is_file()


def test_help_names_the_program_as_it_is_run(capsys):
    with pytest.raises(SystemExit):
        us.parse_args(["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m analysis.user_study ")


def test_a_two_method_study_states_its_chance_level_beside_the_papers(study, tmp_path):
    out, _, _ = study
    key = us.make_study([os.path.join(os.path.dirname(out), "redpo")], None, str(tmp_path / "two"), seed=1, raters=3)
    assert key["methods"] == ["Full", "ReDPO"]
    public = json.load(open(tmp_path / "two" / "study.json"))
    lines = us.simulate(public, key, us.clip_rewards(str(tmp_path / "two"), key), raters=3, noise=0.0)
    result = us.score_study([us.parse_answer(x, key) for x in lines], key, draws=20)
    text = us.score_markdown(result, {"file": "r.jsonl", "lines": 0, "damaged": 0, "foreign": 0, "duplicate": 0})
    assert ("The paper's scores beside them rank 3 methods, where no preference gives 1/3 = 0.333; this study ranks 2, "
            "where it gives 0.500") in text
    full_key = json.load(open(os.path.join(out, "key.json")))                      # Full, ReDPO, SFT: the paper's 3
    lines = us.simulate(json.load(open(os.path.join(out, "study.json"))), full_key, us.clip_rewards(out, full_key), 3, 0.0)
    three = us.score_study([us.parse_answer(x, full_key) for x in lines], full_key, draws=20)
    assert "this study ranks" not in us.score_markdown(three, {"file": "r.jsonl", "lines": 0, "damaged": 0,
                                                               "foreign": 0, "duplicate": 0})
