"""The hosted backend against real servers: `transformers serve` (the built-in smollm2), a
fault-injecting proxy in front of it, and a completions server that returns prompt log-probabilities
computed by a real model (tests/servers.py). No mock of the openai client or of HTTP.

- the hosted model answers as the same model run locally: equal predictions, example by example,
  priced at its own prices on the tokens its server reported;
- faults: 429 and 500 are retried; a non-JSON answer, a server without log-probabilities, a 500 past
  max_retries or a refused key are one line, exit 2, before anything is stored;
- the response cache: a forced rerun sends nothing again, a killed compare resends only what was in
  flight;
- the API key is sent, and written nowhere;
- log-likelihoods over HTTP equal the local backend's."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.runner import match_label
from harness.store import Store
from tests.conftest import TOPICS, build_tiny_model, topic_rows, write_jsonl
from tests.servers import SERVED_MODEL, FaultProxy, LogprobServer, free_port, serve_transformers

REPO = Path(__file__).resolve().parent.parent
PRICES = {"usd_per_mtok_input": 0.15, "usd_per_mtok_output": 0.6, "usd_per_mtok_cached_input": 0.015}
KEY_ENV = "HARNESS_TEST_API_KEY"
KEY = "sk-hx-7Qv3ZpL9wK2mT8rB4nYc6FdJ"  # distinctive: found nowhere unless leaked

NEWS_EVAL = [
    ("n1", "Manchester United won the match 3-1 after two late goals from their new striker.", "sport"),
    ("n2", "Shares in the bank fell by ten percent after it reported a large loss for the year.", "business"),
    ("n3", "Apple released a new iPhone with a faster chip and a better camera.", "tech"),
    ("n4", "The prime minister called an early general election after losing a vote in parliament.", "politics"),
    ("n5", "The film won three Oscars, including best actress for its young star.", "entertainment"),
    ("n6", "The tennis champion lost in the first round of the Australian Open on Monday.", "sport"),
    ("n7", "The price of oil rose sharply as markets reacted to lower production.", "business"),
    ("n8", "A new computer virus spread through email and infected thousands of PCs.", "tech"),
    ("n9", "Labour and the Conservatives clashed over tax plans ahead of the vote.", "politics"),
    ("n10", "The band's new album went straight to number one in the UK charts.", "entertainment"),
]
NEWS_TRAIN = [
    ("t1", "The striker signed a new contract with the club until 2027.", "sport"),
    ("t2", "The retailer's profits rose after a strong Christmas season.", "business"),
    ("t3", "The singer will star in a new musical in London next year.", "entertainment"),
]
NEWS_LABELS = ["business", "entertainment", "politics", "sport", "tech"]
NEWS_PROMPT = {"system": "You are a news editor. You answer with a single word.",
               "template": "Article: {{text}}\n\nWhich topic is this article about? Answer with one word: "
                           "business, entertainment, politics, sport or tech."}

CAPITALS_EVAL = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
                 ("Japan", "Tokyo"), ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Egypt", "Cairo")]
CAPITALS_TRAIN = [("Portugal", "Lisbon"), ("Poland", "Warsaw")]


def news_rows(rows):
    return [{"id": i, "text": text, "label": label} for i, text, label in rows]


def capital_rows(rows):
    return [{"id": country.lower(), "question": f"What is the capital of {country}?", "answer": answer}
            for country, answer in rows]


def hosted(base_url: str, **fields) -> dict:
    """A `model:` mapping for the served smollm2 at `base_url`."""
    return {"backend": "openai", "name": SERVED_MODEL, "base_url": base_url, **PRICES, **fields}


def write_task(folder: Path, *, train: list[dict], eval: list[dict], **fields) -> Path:
    """A task file over these rows, with a two-passage, two-question forgetting probe (the default
    probe's 24 generations would dominate a local arm's time)."""
    write_jsonl(folder / "data" / "train.jsonl", train)
    write_jsonl(folder / "data" / "eval.jsonl", eval)
    write_jsonl(folder / "probe" / "text.jsonl", [
        {"text": "The Moon orbits the Earth about once a month, and its phases follow that orbit."},
        {"text": "Water boils at one hundred degrees Celsius at sea level."}])
    write_jsonl(folder / "probe" / "qa.jsonl", [{"question": "What is the largest planet?", "answer": "Jupiter"},
                                                 {"question": "How many legs does a spider have?", "answer": "8",
                                                  "aliases": ["eight"]}])
    task = {"name": "hosted_test", "type": "classification", "model": SERVED_MODEL,
            "data": {"train": "data/train.jsonl", "eval": "data/eval.jsonl"},
            "fields": {"id": "id", "input": "text", "target": "label"},
            "prompt": NEWS_PROMPT, "labels": NEWS_LABELS,
            "strategies": {"zero_shot": {}},
            "limits": {"batch_size": 4, "max_new_tokens": 4},
            "forgetting": {"text": "probe/text.jsonl", "questions": "probe/qa.jsonl", "max_tokens": 32}}
    task.update(fields)
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False), encoding="utf-8")
    return path


def news_task(folder: Path, model, n: int = 4, **fields) -> Path:
    """Classification of n news articles by a hosted model (the task's own), by generating."""
    return write_task(folder, train=news_rows(NEWS_TRAIN), eval=news_rows(NEWS_EVAL[:n]), model=model, **fields)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([*map(str, args), "--no-progress"] if args[0] == "compare" else list(map(str, args)))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.strip()


def expect_one_line_error(rc: int, err: str, *fragments: str) -> None:
    assert rc == 2, (rc, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def canon(body) -> str:
    return json.dumps(body, sort_keys=True)


def stored_examples(store: Path) -> dict[str, list[dict]]:
    """Every run's examples by arm name (one run per arm asserted)."""
    db = Store(store)
    try:
        runs = db.runs_with_counts()
        names = [r["strategy"] for r in runs]
        assert len(names) == len(set(names)), names
        return {r["strategy"]: db.examples(r["id"]) for r in runs}
    finally:
        db.close()


def eval_records(records, inputs: list[str]):
    """The requests that carry one of these example inputs (the preflight carries none)."""
    return [r for r in records if any(text in r.text for text in inputs)]


# --- servers -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One thread for the local arms run in this process: the server shares the two cores, and
    oversubscribed threads make a small model several times slower (test_kill.py does the same
    for its children)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smollm2() -> Path:
    from harness.backends.local import resolve_model

    return Path(resolve_model(SERVED_MODEL))


@pytest.fixture(scope="module")
def served(smollm2, tmp_path_factory):
    server = serve_transformers(smollm2, tmp_path_factory.mktemp("serve") / "serve.log")
    yield server
    server.stop()


@pytest.fixture
def proxy(served):
    with FaultProxy(served.url) as p:
        yield p


# --- 1. the same model, hosted and local, gives the same answers --------------------------------------

@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["short_answer", "classification_by_generation"])
def test_hosted_model_answers_like_the_same_model_run_locally(kind, proxy, smollm2, tmp_path, capsys):
    remote = hosted(proxy.base_url, tokenizer=str(smollm2))
    if kind == "short_answer":
        path = write_task(tmp_path, type="short_answer", labels=None, train=capital_rows(CAPITALS_TRAIN),
                          eval=capital_rows(CAPITALS_EVAL),
                          fields={"id": "id", "input": "question", "target": "answer"},
                          prompt={"system": "Answer with the name only.", "template": "{{question}}"},
                          strategies={"local": {}, "hosted": {"model": remote}},
                          limits={"batch_size": 8, "max_new_tokens": 6})
        inputs = [f"What is the capital of {c}?" for c, _ in CAPITALS_EVAL]
    else:
        path = write_task(tmp_path, train=news_rows(NEWS_TRAIN), eval=news_rows(NEWS_EVAL),
                          strategies={"local": {"prompt": {"scoring": "generate"}}, "hosted": {"model": remote}},
                          limits={"batch_size": 10, "max_new_tokens": 6})
        inputs = [text for _, text, _ in NEWS_EVAL]
    store, out_json = tmp_path / "s.sqlite", tmp_path / "report.json"
    rc, out, err = run_cli(capsys, "compare", path, "--store", store, "--json", out_json)
    assert rc == 0, err

    examples = stored_examples(store)
    local = {e["example_id"]: e for e in examples["local"]}
    remote_rows = {e["example_id"]: e for e in examples["hosted"]}
    assert local.keys() == remote_rows.keys() and len(local) == len(inputs)
    for i in local:
        assert remote_rows[i]["prediction"] == local[i]["prediction"], i
        # The server's usage counts the same chat template's tokens, and the same reply's.
        assert (remote_rows[i]["prompt_tokens"], remote_rows[i]["output_tokens"]) == \
               (local[i]["prompt_tokens"], local[i]["output_tokens"]), i
    assert len({e["prediction"] for e in local.values()}) > 1, "a model that always answers the same proves little"

    # Each hosted example's tokens are its own request's usage, as the server reported it.
    requests = eval_records(proxy.snapshot(), inputs)
    assert len(requests) == len(inputs) and all(r.status == 200 for r in requests)
    usage = {}
    for r in requests:
        (text,) = [t for t in inputs if t in r.text]
        usage[text] = r.response["usage"]
    for e in examples["hosted"]:
        (text,) = [t for t in inputs if t in e["prompt"]]
        assert (e["prompt_tokens"], e["output_tokens"], e["cached_tokens"]) == (
            usage[text]["prompt_tokens"], usage[text]["completion_tokens"],
            (usage[text].get("prompt_tokens_details") or {}).get("cached_tokens") or 0)

    report = json.loads(out_json.read_text())
    rows = {r["name"]: r for r in report["strategies"]}
    h, loc = rows["hosted"], rows["local"]
    assert h["cost"]["basis"] == "api" and loc["cost"]["basis"] == "self_hosted"
    assert h["usd_per_mtok"] == {"input": 0.15, "output": 0.6, "cached_input": 0.015}
    n = len(inputs)
    prompt_mean = sum(u["prompt_tokens"] for u in usage.values()) / n
    output_mean = sum(u["completion_tokens"] for u in usage.values()) / n
    cached_mean = sum(e["cached_tokens"] for e in examples["hosted"]) / n
    assert h["tokens"] == {"prompt_mean": pytest.approx(prompt_mean), "output_mean": pytest.approx(output_mean),
                           "cached_mean": pytest.approx(cached_mean)}
    assert h["cost"]["per_request_usd"] == pytest.approx(
        ((prompt_mean - cached_mean) * 0.15 + cached_mean * 0.015 + output_mean * 0.6) / 1e6)
    assert h["cost"]["per_request_flops"] is None and h["model_params"] is None
    assert "forgetting" not in h and h["forgetting_note"] == "not measured: no access to weights"
    assert "forgetting_note" not in loc, "a local model's weights are here"
    if kind != "short_answer":
        assert h["scoring"] == loc["scoring"] == "generate"
        unmatched = sum(bool(e["extra"].get("unmatched")) for e in examples["hosted"])
        assert h["unmatched_answers"] == loc["unmatched_answers"] == unmatched

    # One table with both rows and their costs, the note on forgetting, the verdict.
    lines = out.splitlines()
    title = [i for i, line in enumerate(lines) if line.startswith("hosted_test ·")]
    assert len(title) == 1, out
    table = lines[title[0]:]
    row_lines = {name: [line for line in table if line.split()[:1] == [name]] for name in ("local", "hosted")}
    assert all(len(found) == 1 for found in row_lines.values()), out
    assert "$ / 1k req" in out and all("$" in found[0] for found in row_lines.values())
    assert "hosted: forgetting not measured: no access to weights" in out
    assert any(line.startswith("verdict: ") for line in lines), out


# --- 2. faults between the harness and the server ----------------------------------------------------

@pytest.mark.timeout(180)
def test_rate_limit_then_server_error_are_retried(proxy, tmp_path, capsys):
    target = NEWS_EVAL[1][1]
    path = news_task(tmp_path, hosted(proxy.base_url, max_retries=3))
    proxy.fail_next("429", "500", when=lambda r: target in r.text)
    rc, out, err = run_cli(capsys, "compare", path, "--store", tmp_path / "s.sqlite")
    assert rc == 0, err

    tries = eval_records(proxy.snapshot(), [target])
    assert [r.fault for r in tries] == ["429", "500", None]
    assert len({canon(r.body) for r in tries}) == 1, "a retry resends the same request"
    # The client's own retries (it numbers them), not requests the harness made again.
    assert [r.headers.get("x-stainless-retry-count") for r in tries] == ["0", "1", "2"]
    (run,) = stored_examples(tmp_path / "s.sqlite").values()
    assert sorted(e["example_id"] for e in run) == [i for i, _, _ in NEWS_EVAL[:4]]
    (answered,) = [e for e in run if target in e["prompt"]]
    assert answered["extra"]["raw_output"] == tries[-1].response["choices"][0]["message"]["content"].strip()


@pytest.mark.timeout(120)
def test_an_answer_that_is_not_json_fails_before_the_store_opens(proxy, tmp_path, capsys):
    path = news_task(tmp_path, hosted(proxy.base_url, max_retries=0))
    proxy.always = "garbage"
    store = tmp_path / "s.sqlite"
    rc, out, err = run_cli(capsys, "compare", path, "--store", store)
    expect_one_line_error(rc, err, str(path), "model.base_url", "not an OpenAI-compatible response")
    assert not store.exists()


@pytest.mark.timeout(120)
def test_a_server_without_prompt_logprobs_is_refused(served, tmp_path, capsys):
    # transformers serve accepts echo + logprobs on /completions and returns no log-probabilities.
    path = news_task(tmp_path, hosted(served.base_url, logprobs=True),
                     prompt={**NEWS_PROMPT, "format": "raw"})
    store = tmp_path / "s.sqlite"
    rc, out, err = run_cli(capsys, "compare", path, "--store", store)
    expect_one_line_error(rc, err, str(path), "model.logprobs", "log-probabilities", "logprobs: false")
    assert not store.exists()


@pytest.mark.timeout(120)
def test_a_server_error_past_max_retries_is_one_line(served, proxy, tmp_path, capsys):
    # The task's model is fine; an arm's model keeps failing.
    path = news_task(tmp_path, hosted(served.base_url),
                     strategies={"zero_shot": {}, "flaky": {"model": hosted(proxy.base_url, max_retries=1)}})
    proxy.always = "500"
    store = tmp_path / "s.sqlite"
    rc, out, err = run_cli(capsys, "compare", path, "--store", store)
    expect_one_line_error(rc, err, str(path), "strategies.flaky.model", "HTTP 500", "after 1 retries")
    assert len(proxy.snapshot()) == 2, "one request and one retry"
    assert not store.exists()


@pytest.mark.timeout(60)
def test_an_unreachable_server_is_one_line(tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    path = news_task(tmp_path, hosted(url, max_retries=0))
    store = tmp_path / "s.sqlite"
    rc, out, err = run_cli(capsys, "compare", path, "--store", store)
    expect_one_line_error(rc, err, str(path), "model.base_url", f"cannot reach {url}")
    assert not store.exists()


@pytest.mark.timeout(180)
def test_a_server_error_mid_run_is_one_line_and_loses_no_answer(proxy, tmp_path, capsys):
    # One batch of four requests at once; one of them keeps failing while the others are answered.
    target, inputs = NEWS_EVAL[2][1], [text for _, text, _ in NEWS_EVAL[:4]]
    path = news_task(tmp_path, hosted(proxy.base_url, max_retries=1), limits={"batch_size": 4, "max_new_tokens": 4})
    proxy.fail_next("500", "500", when=lambda r: target in r.text)
    store = tmp_path / "s.sqlite"
    rc, out, err = run_cli(capsys, "compare", path, "--store", store)
    expect_one_line_error(rc, err, str(path), "model", "HTTP 500", "after 1 retries")
    assert all(r["status"] != "finished" for r in Store(store).runs_with_counts())
    first = proxy.snapshot()
    answered = {canon(r.body) for r in eval_records(first, inputs) if r.status == 200}
    assert len(answered) == 3

    rc, out, err = run_cli(capsys, "compare", path, "--store", store)
    assert rc == 0, err
    (run,) = stored_examples(store).values()
    assert sorted(e["example_id"] for e in run) == [i for i, _, _ in NEWS_EVAL[:4]]
    # The answers that arrived before the error were kept: the rerun asks only the failed request.
    again = eval_records(proxy.snapshot()[len(first):], inputs)
    assert [target in r.text for r in again] == [True], [r.text[-90:] for r in again]


# --- 3. the response cache ---------------------------------------------------------------------------

@pytest.mark.timeout(180)
def test_a_forced_rerun_is_answered_from_the_response_cache(proxy, tmp_path, capsys):
    path = news_task(tmp_path, hosted(proxy.base_url), n=6)
    store, inputs = tmp_path / "s.sqlite", [text for _, text, _ in NEWS_EVAL[:6]]
    assert run_cli(capsys, "compare", path, "--store", store)[0] == 0
    first = proxy.snapshot()
    assert len(eval_records(first, inputs)) == 6

    rc, out, err = run_cli(capsys, "compare", path, "--store", store, "--force", "--json", tmp_path / "r.json")
    assert rc == 0, err
    again = proxy.snapshot()[len(first):]
    # Only the load-time check, which runs before the store is open, reaches the server again.
    assert eval_records(again, inputs) == []
    assert [canon(r.body) for r in again] == [canon(first[0].body)]
    (row,) = json.loads((tmp_path / "r.json").read_text())["strategies"]
    assert not row["reused"] and row["n_examples"] == 6, "--force recomputed the run"
    runs = Store(store).runs_with_counts()
    assert len(runs) == 1 and runs[0]["examples"] == 6


def _count_examples(db: Path) -> int:
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM examples").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:  # no store or no table yet
        return 0


def killed_compare(path: Path, db: Path, tmp_path: Path, ready, seconds: float) -> tuple[list[str], dict]:
    """`harness compare PATH` in a subprocess (one torch thread, its own cache), killed once `ready()`
    holds; the command and environment that rerun it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "HARNESS_CACHE": str(tmp_path / "cache")}
    args = [sys.executable, "-m", "harness", "compare", str(path), "--store", str(db), "--no-progress"]
    log = tmp_path / "killed.log"
    with log.open("w") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + seconds
    while proc.poll() is None and not ready():
        assert time.monotonic() < deadline, f"the compare got nowhere to kill it at:\n{log.read_text()[-3000:]}"
        time.sleep(0.01)
    proc.kill()
    assert proc.wait() == -signal.SIGKILL, f"the compare ended before the kill:\n{log.read_text()[-3000:]}"
    return args, env


@pytest.mark.timeout(300)
def test_a_killed_compare_resends_only_the_requests_in_flight(proxy, tmp_path):
    path = news_task(tmp_path, hosted(proxy.base_url, max_concurrency=2), n=10,
                     limits={"batch_size": 2, "max_new_tokens": 4})
    inputs = [text for _, text, _ in NEWS_EVAL]
    db = tmp_path / "s.sqlite"

    def awaiting_answer() -> bool:
        return any(r.status is None for r in eval_records(proxy.snapshot(), inputs))

    # Killed with examples stored and a request the server has yet to answer.
    args, env = killed_compare(path, db, tmp_path, lambda: _count_examples(db) >= 2 and awaiting_answer(), 240)

    killed = Store(db)  # a writer: it recovers the killed writer's WAL
    try:
        cached_ids = {json.loads(r["response"])["response"]["id"]
                      for r in killed.db.execute("SELECT response FROM responses")}
        stored_before = sum(r["examples"] for r in killed.runs_with_counts())
    finally:
        killed.close()
    seen = proxy.snapshot()
    before = eval_records(seen, inputs)
    stored = {canon(r.body) for r in before if r.response and r.response.get("id") in cached_ids}
    in_flight = {canon(r.body) for r in before} - stored
    assert len(stored) == len(cached_ids) >= stored_before >= 2 and in_flight

    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    sent_again = [canon(r.body) for r in eval_records(proxy.snapshot()[len(seen):], inputs)]
    assert not set(sent_again) & stored, "a request whose answer was stored was sent again"
    # Each example's request answered once into the cache: those stored before the kill, then each
    # of the others once (the ones in flight at the kill among them).
    assert len(sent_again) == len(set(sent_again)) == len(inputs) - len(stored)
    assert in_flight <= set(sent_again)
    (run,) = stored_examples(db).values()
    assert sorted(e["example_id"] for e in run) == sorted(i for i, _, _ in NEWS_EVAL)
    print(f"\nkilled with {stored_before} examples and {len(stored)} answers stored and {len(in_flight)} request(s) "
          f"in flight; the rerun sent {len(sent_again)} (the {len(in_flight)} in flight among them)")


# --- 4. the API key ----------------------------------------------------------------------------------

@pytest.mark.timeout(240)
def test_the_api_key_is_sent_and_written_nowhere(served, tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"  # where the harness writes its logs
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    monkeypatch.setenv(KEY_ENV, KEY)
    outputs = []
    with FaultProxy(served.url, require_key=KEY) as proxy:
        path = news_task(tmp_path / "work", hosted(proxy.base_url, api_key_env=KEY_ENV, max_retries=0))
        db = tmp_path / "work" / "s.sqlite"
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        ok = subprocess.run([sys.executable, "-m", "harness", "compare", str(path), "--store", str(db), "--no-progress",
                             "--json", str(tmp_path / "work" / "r.json")], env=env, capture_output=True, text=True,
                            timeout=180)
        outputs += [ok.stdout, ok.stderr]
        assert ok.returncode == 0, ok.stderr
        records = proxy.snapshot()
        assert len(records) == 5 and all(r.headers.get("Authorization") == f"Bearer {KEY}" and r.fault is None
                                         for r in records), "the key is sent with every request"
        rc, out, err = run_cli(capsys, "report", "--store", db)
        outputs += [out, err]
        assert rc == 0 and "zero_shot" in out, err

        # The server refuses the key, quoting it in its answer.
        proxy.always = "401"
        rc, out, err = run_cli(capsys, "compare", path, "--store", db, "--force")
        outputs += [out, err]
        expect_one_line_error(rc, err, str(path), "model.api_key_env", "HTTP 401")
        assert proxy.snapshot()[-1].headers["Authorization"] == f"Bearer {KEY}", "the refused request carried the key"

        # An error whose text quotes the request's key: the harness repeats the server's text, not the key.
        proxy.always = "400"
        rc, out, err = run_cli(capsys, "compare", path, "--store", db, "--force")
        outputs += [out, err]
        expect_one_line_error(rc, err, str(path), "HTTP 400", "Authorization", "***")

    assert all(KEY not in text for text in outputs), "the key was printed"
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert db in written
    for p in written:
        assert KEY.encode() not in p.read_bytes(), f"the key is written in {p}"
    # The store was read: its answers and examples are there.
    db_rows = Store(db)
    assert db_rows.runs_with_counts()[0]["examples"] == 4
    assert db_rows.db.execute("SELECT count(*) FROM responses").fetchone()[0] == 4


@pytest.mark.timeout(60)
def test_a_missing_api_key_variable_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HARNESS_TEST_NO_SUCH_KEY", raising=False)
    path = news_task(tmp_path, hosted("http://127.0.0.1:9/v1", api_key_env="HARNESS_TEST_NO_SUCH_KEY"))
    store = tmp_path / "s.sqlite"
    rc, out, err = run_cli(capsys, "compare", path, "--store", store)
    expect_one_line_error(rc, err, str(path), "model.api_key_env", "HARNESS_TEST_NO_SUCH_KEY", "not set")
    assert not store.exists()


# --- 5. log-likelihoods over HTTP --------------------------------------------------------------------

@pytest.mark.timeout(240)
def test_loglikelihoods_over_http_equal_the_local_backends(tmp_path, capsys):
    # A sharper random model than the shared one: its labels' log-likelihoods differ by more than
    # noise, and its predictions differ between examples.
    model = build_tiny_model(tmp_path / "sharp", initializer_range=0.5)
    names = {"sport": "sport", "business": "market shares", "tech": "phone software"}  # multi-token labels too
    rows = [{**r, "label": names[r["label"]]} for r in topic_rows(4, offset=10)]
    train = [{**r, "label": names[r["label"]]} for r in topic_rows(2)]
    with LogprobServer(model, "tiny") as server:
        remote = {"backend": "openai", "name": "tiny", "base_url": server.base_url, "logprobs": True,
                  "tokenizer": str(model), "context_length": 512, **PRICES}
        path = write_task(tmp_path, model=str(model), train=train, eval=rows, labels=list(names.values()),
                          prompt={"system": "answer with one word", "template": "article : {{ text }} topic ?"},
                          strategies={"local": {"prompt": {"format": "raw"}},
                                      "hosted": {"model": remote, "prompt": {"format": "raw"}}})
        store = tmp_path / "s.sqlite"
        rc, out, err = run_cli(capsys, "compare", path, "--store", store)
        assert rc == 0, err
        requests = list(server.requests)

    examples = stored_examples(store)
    local = {e["example_id"]: e for e in examples["local"]}
    remote_rows = {e["example_id"]: e for e in examples["hosted"]}
    assert local.keys() == remote_rows.keys() and len(local) == len(rows)
    for i, e in local.items():
        assert remote_rows[i]["prompt"] == e["prompt"], i
        assert remote_rows[i]["extra"]["logprobs"] == pytest.approx(e["extra"]["logprobs"], abs=1e-4), i
        assert remote_rows[i]["prediction"] == e["prediction"], i
    assert len({e["prediction"] for e in local.values()}) > 1, "a model that always answers the same proves little"
    spread = [max(e["extra"]["logprobs"].values()) - min(e["extra"]["logprobs"].values()) for e in local.values()]
    assert min(spread) > 1e-2, "labels whose scores differ by noise would not test the alignment"
    # One echo request per example and label, after the load-time check.
    scoring = [r for r in requests if r.get("echo")]
    assert len(scoring) == len(rows) * len(names) + 1 and all(r["logprobs"] == 1 for r in scoring)
    report = Store(store).comparisons()[0]["report"]
    assert {r["name"]: r["scoring"] for r in report["strategies"]} == {"local": "loglikelihood",
                                                                        "hosted": "loglikelihood"}
    # The prompts share their system text: the server's prompt cache serves it, and says so in usage;
    # an example's cached tokens are its label requests' (each counted, as each is billed).
    hosted = {r["name"]: r for r in report["strategies"]}["hosted"]
    assert all(e["cached_tokens"] >= len(names) * 5 for e in remote_rows.values())
    assert hosted["tokens"]["cached_mean"] == pytest.approx(
        sum(e["cached_tokens"] for e in remote_rows.values()) / len(rows))
    price = (hosted["tokens"]["prompt_mean"] - hosted["tokens"]["cached_mean"]) * PRICES["usd_per_mtok_input"] + \
        hosted["tokens"]["cached_mean"] * PRICES["usd_per_mtok_cached_input"]
    assert hosted["cost"]["per_request_usd"] == pytest.approx(price / 1e6)


@pytest.mark.timeout(120)
def test_a_server_that_ignores_echo_is_refused_rather_than_scored_zero(tmp_path, capsys, tiny_model_dir):
    # Log-probabilities of the generated token only, placed after the prompt: none covers the answer.
    # Summing the answer's (none) would score every label 0.0 and pick the first: chance accuracy.
    with LogprobServer(tiny_model_dir, "tiny", echo=False) as server:
        remote = {"backend": "openai", "name": "tiny", "base_url": server.base_url, "logprobs": True, **PRICES}
        path = write_task(tmp_path, model=remote, train=topic_rows(2), eval=topic_rows(2, offset=10),
                          labels=list(TOPICS), prompt={"template": "article : {{ text }} topic ?", "format": "raw"})
        store = tmp_path / "s.sqlite"
        rc, out, err = run_cli(capsys, "compare", path, "--store", store)
        assert any(r.get("echo") for r in server.requests)
    expect_one_line_error(rc, err, str(path), "model.logprobs", "log-probabilities")
    assert not store.exists()


# --- 6. units and validation -------------------------------------------------------------------------

LABELS = ["business", "entertainment", "politics", "sport", "sports", "tech"]


@pytest.mark.parametrize("answer, label", [
    ("Sport.", "sport"),  # the whole answer, once normalised
    ("  The Tech!", "tech"),
    ("Sports", "sports"),
    ("This article is about politics, clearly.\nOr business?", "politics"),  # one label in the first line
    ("It is about sport", "sport"),  # "sports" is not in it as a whole word
    ("It is about sports", "sports"),  # nor is "sport" in "sports"
    ("business or tech", None),  # several
    ("Weather", None),  # none
    ("", None),
    ("\n\nentertainment\n", "entertainment"),  # the first line that has text
    ("techno music", None),  # a label inside a word is not a label
])
def test_match_label(answer, label):
    assert match_label(answer, LABELS) == label


def test_match_label_without_the_longer_label():
    assert match_label("sports", ["sport", "tech"]) is None
    assert match_label("sport", ["sports", "tech"]) is None


@pytest.mark.parametrize("change, fragments", [
    (lambda t: t.update(model={"backend": "openai", "base_url": "http://127.0.0.1:9/v1", **PRICES}),
     ["task.yaml: model.name", "required field is missing"]),
    (lambda t: t["strategies"].update(remote={"model": {"backend": "openai", "name": "m", "base_url": "127.0.0.1:9",
                                                        **PRICES}}),
     ["task.yaml: strategies.remote.model.base_url", "pattern"]),
    (lambda t: t.update(model={"backend": "openai", "name": "m", "base_url": "http://127.0.0.1:9/v1",
                               "usd_per_mtok_input": 0.1}),
     ["task.yaml: model.usd_per_mtok_output", "required field is missing"]),
    (lambda t: t["strategies"].update(remote={"model": {"backend": "anthropic", "name": "m",
                                                        "base_url": "http://127.0.0.1:9/v1", **PRICES}}),
     ["task.yaml: strategies.remote.model.backend", "openai"]),
    (lambda t: t["strategies"].update(remote={"model": {"backend": "openai", "name": "m", "key": "sk-x",
                                                        "base_url": "http://127.0.0.1:9/v1", **PRICES}}),
     ["task.yaml: strategies.remote.model.key", "unknown field"]),
])
def test_a_malformed_hosted_model_is_one_line_naming_the_field(change, fragments, tmp_path, capsys, tiny_model_dir):
    path = news_task(tmp_path, str(tiny_model_dir))
    task = yaml.safe_load(path.read_text())
    change(task)
    path.write_text(yaml.safe_dump(task), encoding="utf-8")
    store = tmp_path / "s.sqlite"
    rc, out, err = run_cli(capsys, "compare", path, "--store", store)
    expect_one_line_error(rc, err, *fragments)
    assert not store.exists()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("arm, fragments", [
    ({"weights": {"lora": {}}}, ["task.yaml: strategies.remote.model", "lora", "weights", "hosted model"]),
    ({"prompt": {"calibrate": True}}, ["task.yaml: strategies.remote.prompt.calibrate", "generates"]),
    ({"prompt": {"scoring": "loglikelihood"}}, ["task.yaml: strategies.remote.prompt.scoring", "logprobs: true"]),
])
def test_what_a_hosted_model_cannot_do_is_one_line_naming_the_field(arm, fragments, served, tmp_path, capsys,
                                                                     tiny_model_dir):
    path = news_task(tmp_path, str(tiny_model_dir),
                     strategies={"zero_shot": {}, "remote": {"model": hosted(served.base_url), **arm}})
    store = tmp_path / "s.sqlite"
    rc, out, err = run_cli(capsys, "compare", path, "--store", store)
    expect_one_line_error(rc, err, *fragments)
    assert not store.exists()
