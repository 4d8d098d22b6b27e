"""`seqreg-hf serve` as a real process on a free loopback port: every endpoint, the limits, 32 concurrent requests
against sequential answers and `seqreg_hf.predict`, and SIGTERM while requests are in flight. The Batcher's joining
and splitting is also checked in process, with a stand-in predictor that holds the worker still."""

import asyncio
import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import yaml

from seqreg_hf import predict
from seqreg_hf.calibration import calibrate_predictor, write_calibration
from seqreg_hf.model_dir import init_model_dir, load_config
from seqreg_hf.prediction import Predictor, no_std_error
from seqreg_hf.serving import Batcher

from .conftest import REPO

pytest.importorskip("uvicorn", reason="seqreg-hf serve needs the serve extra: pip install 'seqreg-hf[serve]'")

WORDS = ("the a happy sad dog cat runs sleeps city big small news child laughs cries good bad day night very not "
         "quite so and but").split()
TEXTS = ["the happy dog runs", "a sad child cries", "", "big city news", "very very good day", "not so bad",
         "the cat sleeps and the dog runs but the child laughs", "unknownword happy", "night",
         "emoji 😀 and Ελληνικά", "the " * 200]


def write_vectors(path, dim=8):
    rng = np.random.default_rng(0)
    lines = [f"{len(WORDS)} {dim}"] + [f"{w} " + " ".join(f"{v:.5f}" for v in rng.normal(size=dim)) for w in WORDS]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Two tiny models built from an 8-dim vector file: an ensemble of 2 and a single network."""
    folder = tmp_path_factory.mktemp("serving")
    vectors = write_vectors(folder / "vectors.txt")
    options = {"progress": False, "model_max_length": 64}
    dirs = {}
    for name, members in (("ensemble", 2), ("single", 1)):
        init_model_dir(folder / name, str(vectors), embeddings_options=options, hidden_size=8, ensemble_size=members,
                       id2label={0: "V", 1: "A"})
        dirs[name] = folder / name
    # The ensemble gets interval calibration from 60 made-up labelled texts; the single network has none.
    rng = np.random.default_rng(2)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 8)))) for _ in range(60)]
    predictor = Predictor.from_dir(dirs["ensemble"])
    write_calibration(dirs["ensemble"], calibrate_predictor(predictor, texts, rng.normal(size=(60, 2)) * 0.1,
                                                            kind="adaptive"))  # the kind that reads the members
    if importlib.util.find_spec("onnxruntime"):  # the single network is also served by onnxruntime (the onnx extra)
        from seqreg_hf.cli import run_command

        assert run_command("export", ["--model_name_or_path", str(dirs["single"]), "--output_dir",
                                      str(dirs["single"]), "--disable_tqdm", "true"]) == 0
    return dirs


def single_predictor(model_dirs):
    """What the tight server runs: the single network through onnxruntime where the onnx extra is installed."""
    backend = "onnx" if (model_dirs["single"] / "model.onnx").exists() else "torch"
    return Predictor.from_dir(model_dirs["single"], backend=backend)


class Server:
    """`python -m seqreg_hf.cli serve ... --port 0` in its own process; the port is read from its first line."""

    def __init__(self, model_dir, *flags, log=None):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.log = open(log, "w+") if log else subprocess.DEVNULL
        self.stopped = None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "seqreg_hf.cli", "serve", "--model_name_or_path", str(model_dir), "--port", "0",
             *flags], cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log, text=True)

    def ready(self):
        """Wait for the first line, which names the address; the socket listens from then on."""
        line = self.process.stdout.readline()
        assert "http://" in line, f"no address in {line!r} (exit {self.process.poll()})"
        address = line.split("http://")[1].split()[0]
        self.host, self.port = address.rsplit(":", 1)[0], int(address.rsplit(":", 1)[1])
        self.url = f"http://{address}"
        return self

    def request(self, method, path, body=None, headers=None):
        """(status, parsed JSON or text, content type) of one request on a fresh connection."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            body = body.encode() if isinstance(body, str) else body  # an iterator of chunks is sent chunked
            connection.request(method, path, body=body, headers=headers or {})
            answer = connection.getresponse()
            raw, kind = answer.read(), answer.getheader("content-type", "")
            return answer.status, json.loads(raw) if "json" in kind else raw.decode(), kind
        finally:
            connection.close()

    def predict(self, inputs, **parameters):
        body = {"inputs": inputs, **({"parameters": parameters} if parameters else {})}
        status, answer, _ = self.request("POST", "/predict", json.dumps(body))
        assert status == 200, answer
        return answer

    def stop(self):
        """(exit status, the rest of stdout) after SIGTERM; once stopped, the same again."""
        if self.stopped is None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            code = self.process.wait(timeout=60)
            self.stopped = code, self.process.stdout.read()
            self.process.stdout.close()
            if self.log is not subprocess.DEVNULL:
                self.log.close()
        return self.stopped


@pytest.fixture(scope="module")
def servers(model_dirs, tmp_path_factory):
    """Both started at once (each takes seconds to import torch): the ensemble with the default options, and the
    single network behind small limits, run by onnxruntime (the SIGTERM test, the last to use it, stops it)."""
    logs = tmp_path_factory.mktemp("logs")
    started = {"ensemble": Server(model_dirs["ensemble"], log=logs / "ensemble.log"),
               "tight": Server(model_dirs["single"], "--max_texts_per_request", "3", "--max_chars_per_text", "50",
                               "--max_body_bytes", "400", "--max_concurrent_requests", "9",
                               "--backend", single_predictor(model_dirs).backend,
                               log=logs / "tight.log")}
    yield {name: serving.ready() for name, serving in started.items()}
    for serving in started.values():
        assert serving.stop()[0] == 0


@pytest.fixture(scope="module")
def server(servers):
    return servers["ensemble"]


@pytest.fixture(scope="module")
def tight(servers):
    return servers["tight"]


def test_predict_answers_what_seqreg_hf_predict_returns(server, model_dirs):
    folder = str(model_dirs["ensemble"])
    expected = predict(folder, TEXTS)
    assert server.predict(TEXTS) == expected  # one request alone runs as one Predictor call: the same floats
    # A string gets one dict, a list a list. (Alone, a text is a batch of one: its float sums may end in other bits
    # than in a batch with others, so each answer is compared with predict() of the same texts.)
    alone = predict(folder, [TEXTS[0]])
    assert server.predict(TEXTS[0]) == alone[0] and server.predict([TEXTS[0]]) == alone
    with_std = predict(folder, TEXTS, return_std=True)
    assert server.predict(TEXTS, return_std=True) == with_std
    assert set(with_std[0]) == {"V", "A", "V_std", "A_std"}
    assert server.predict(TEXTS, return_std=False) == expected
    assert server.predict([]) == []
    with_interval = predict(folder, TEXTS, interval=0.9)
    assert server.predict(TEXTS, interval=0.9) == with_interval
    assert set(with_interval[0]) == {"V", "A", "V_lo", "V_hi", "A_lo", "A_hi"}
    assert server.predict(TEXTS, interval=0.8, return_std=True) == predict(folder, TEXTS, interval=0.8,
                                                                             return_std=True)
    status, answer, _ = server.request("POST", "/predict", json.dumps({"inputs": "x", "parameters": {
        "interval": 0.99}}))  # 60 calibration rows reach 60/61 at most
    with pytest.raises(ValueError) as refusal:
        predict(folder, ["x"], interval=0.99)
    assert status == 422 and answer["error"] == str(refusal.value)


def test_health_info_and_the_page(server, model_dirs):
    status, health, kind = server.request("GET", "/health")
    assert status == 200 and health["status"] == "ok" and kind == "application/json"
    status, info, _ = server.request("GET", "/info")
    config = load_config(model_dirs["ensemble"])
    front = (model_dirs["ensemble"] / "README.md").read_text(encoding="utf-8").split("---\n")[1]
    assert status == 200 and info["labels"] == config.label_names == ["V", "A"]
    assert info["backend"] == "torch" and info["ensemble_size"] == 2 and info["return_std"] is True
    assert info["interval"] is True  # calibrated
    assert info["card"] == json.loads(json.dumps(yaml.safe_load(front), default=str))
    assert info["limits"] == {"max_texts_per_request": 256, "max_chars_per_text": 10_000, "max_body_bytes": 4_194_304,
                              "max_concurrent_requests": 128}
    status, page, kind = server.request("GET", "/")
    assert status == 200 and kind.startswith("text/html")
    assert "<script>" in page and 'fetch("predict"' in page and 'fetch("info")' in page


BAD = [  # (body, status, words the message must hold)
    (b"", 400, "empty body"),
    (b"   \n", 400, "empty body"),
    (b'{"inputs": "a', 400, "malformed JSON"),
    (b"\xff\xfe{}", 400, "malformed JSON"),
    (b"[1, 2]", 422, "the body is an array"),
    (b'"text"', 422, "the body is a string"),
    (b"{}", 422, 'no "inputs"'),
    (b'{"inputs": 3}', 422, '"inputs" is a number'),
    (b'{"inputs": {"text": "x"}}', 422, '"inputs" is an object'),
    (b'{"inputs": ["ok", null]}', 422, '"inputs"[1] is null'),
    (b'{"inputs": ["ok", ["nested"]]}', 422, '"inputs"[1] is an array'),
    (b'{"inputs": "x", "options": {}}', 422, "unknown field(s) ['options']"),
    (b'{"inputs": "x", "parameters": [true]}', 422, '"parameters" is an array'),
    (b'{"inputs": "x", "parameters": {"top_k": 3}}', 422, "unknown parameter(s) ['top_k']"),
    (b'{"inputs": "x", "parameters": {"return_std": "yes"}}', 422, '"return_std" is a string'),
    (b'{"inputs": "x", "parameters": {"interval": 1.5}}', 422, "between 0 and 1"),
    (b'{"inputs": "x", "parameters": {"interval": true}}', 422, "between 0 and 1"),
    (b'{"inputs": "x", "parameters": {"interval": "0.9"}}', 422, "between 0 and 1"),
    (b'{"inputs": "\\ud800"}', 422, "lone surrogate"),
    (b"[" * 100_000, 400, "malformed JSON"),
]


@pytest.mark.parametrize("body, status, words", BAD, ids=[f"{i}-{b[:20]!r}" for i, (b, _, _) in enumerate(BAD)])
def test_bad_requests_get_a_4xx_naming_the_problem(server, body, status, words):
    answer_status, answer, kind = server.request("POST", "/predict", body, {"Content-Type": "application/json"})
    assert (answer_status, kind) == (status, "application/json")
    assert words in answer["error"] and "\n" not in answer["error"]


def test_unknown_endpoints_and_methods_get_json_errors(server):
    status, answer, _ = server.request("GET", "/nope")
    assert status == 404 and "/nope" in answer["error"] and "POST /predict" in answer["error"]
    status, answer, _ = server.request("GET", "/predict")
    assert status == 405 and "GET" in answer["error"]


def test_the_limits_and_what_a_single_network_refuses(tight, model_dirs):
    single = single_predictor(model_dirs)
    assert tight.request("GET", "/info")[1]["backend"] == single.backend
    ok = ["a" * 50, "b", "c"]  # exactly at the limits
    assert tight.predict(ok) == predict(single, ok)
    status, answer, _ = tight.request("POST", "/predict", json.dumps({"inputs": ["a", "b", "c", "d"]}))
    assert status == 413 and "4 texts" in answer["error"] and "--max_texts_per_request" in answer["error"]
    status, answer, _ = tight.request("POST", "/predict", json.dumps({"inputs": ["ok", "a" * 51]}))
    assert status == 413 and '"inputs"[1] has 51 characters' in answer["error"]
    big = json.dumps({"inputs": "a" * 30, "parameters": {}}) + " " * 400
    status, answer, _ = tight.request("POST", "/predict", big)  # with its Content-Length
    assert status == 413 and "--max_body_bytes" in answer["error"]
    chunks = iter([b'{"inputs": "', b"a" * 300, b"a" * 300, b'"}'])  # streamed, no Content-Length
    status, answer, _ = tight.request("POST", "/predict", chunks)
    assert status == 413 and "--max_body_bytes" in answer["error"]
    status, answer, _ = tight.request("POST", "/predict", json.dumps({"inputs": "x", "parameters": {
        "return_std": True}}))
    assert status == 422 and answer["error"] == str(no_std_error(load_config(model_dirs["single"])))
    assert tight.predict("x", return_std=False) == predict(single, ["x"])[0]
    status, answer, _ = tight.request("POST", "/predict", json.dumps({"inputs": "x", "parameters": {
        "interval": 0.9}}))
    with pytest.raises(ValueError) as refusal:
        predict(single, ["x"], interval=0.9)
    assert status == 422 and answer["error"] == str(refusal.value) and "no calibration" in answer["error"]
    assert tight.request("GET", "/info")[1]["interval"] is False


def held_mid_body(server, body, sent):
    """A POST /predict that has sent its headers and the first `sent` bytes of `body`; `.send` the rest later."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=120)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body[:sent])
    return connection


def test_requests_past_the_concurrency_limit_get_503_and_the_held_ones_are_answered(tight, model_dirs):
    """Nine requests hold the tight server's nine places mid-body: the tenth is refused at once (503, JSON, naming
    the flag), so slow or many clients cannot pile up bodies and queue without bound; the nine are then answered."""
    body = json.dumps({"inputs": ["happy dog"]}).encode()
    held = [held_mid_body(tight, body, 5) for _ in range(9)]
    while tight.request("GET", "/health")[1]["reading"] < 9:
        pass
    status, answer, _ = tight.request("POST", "/predict", body)
    assert status == 503 and "--max_concurrent_requests" in answer["error"]
    for connection in held:
        connection.send(body[5:])
    alone = predict(single_predictor(model_dirs), ["happy dog"])
    for connection in held:  # answered together: equal to the text run alone up to the last bits of a batch
        response = connection.getresponse()
        assert response.status == 200
        got = json.loads(response.read())
        assert got[0].keys() == alone[0].keys()
        np.testing.assert_allclose(list(got[0].values()), list(alone[0].values()), rtol=1e-5, atol=1e-6)
        connection.close()
    assert tight.predict("happy dog") == predict(single_predictor(model_dirs), ["happy dog"])[0]


def test_32_concurrent_requests_equal_sequential_answers(server, model_dirs):
    rng = np.random.default_rng(1)
    requests = []
    for i in range(32):
        count = int(rng.integers(1, 6))
        texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(0, 9)))) for _ in range(count)]
        requests.append((texts[0] if i % 4 == 0 else texts, {"return_std": True} if i % 3 == 0 else {}))
    sequential = [server.predict(inputs, **options) for inputs, options in requests]
    start = threading.Barrier(32)

    def send(request):
        start.wait()
        return server.predict(request[0], **request[1])

    with ThreadPoolExecutor(32) as pool:
        concurrent = list(pool.map(send, requests))
    folder = str(model_dirs["ensemble"])
    for (inputs, options), alone, together in zip(requests, sequential, concurrent):
        texts = [inputs] if isinstance(inputs, str) else inputs
        reference = predict(folder, texts, **options)
        assert alone == (reference[0] if isinstance(inputs, str) else reference)
        # Joined with other requests, a text may share a batch with others: the same sums in another order.
        together = [together] if isinstance(inputs, str) else together
        assert [sorted(row) for row in together] == [sorted(row) for row in reference]
        np.testing.assert_allclose([list(row.values()) for row in together],
                                   [[row[k] for k in together[0]] for row in reference], rtol=1e-5, atol=1e-6)


def test_sigterm_lets_the_requests_in_flight_finish_and_exits_0(tight, model_dirs):
    """Eight requests have sent their headers and half their bodies when SIGTERM arrives: the server stops listening,
    reads the rest, runs them through the batcher, answers all eight and exits with status 0."""
    requests = [[f"{w} happy dog" for w in WORDS[i:i + 3]] for i in range(8)]
    bodies = [json.dumps({"inputs": texts}).encode() for texts in requests]
    connections = [held_mid_body(tight, body, 10) for body in bodies]
    while tight.request("GET", "/health")[1]["reading"] < 8:
        pass
    tight.process.send_signal(signal.SIGTERM)
    while True:  # the listening socket closes once the shutdown has begun
        try:
            socket.create_connection((tight.host, tight.port), timeout=5).close()
        except OSError:
            break
    for connection, body in zip(connections, bodies):
        connection.send(body[10:])
    answers = []
    for connection in connections:
        response = connection.getresponse()
        answers.append((response.status, json.loads(response.read())))
        connection.close()
    code, rest = tight.stop()
    assert code == 0 and "every request was answered" in rest
    single = single_predictor(model_dirs)
    for texts, (status, answer) in zip(requests, answers):
        assert status == 200
        np.testing.assert_allclose([list(r.values()) for r in answer],
                                   [list(r.values()) for r in predict(single, texts)], rtol=1e-5, atol=1e-6)


def test_the_listening_socket_is_tcp_so_that_answers_are_not_held_by_nagle():
    """asyncio sets TCP_NODELAY only on sockets made with proto IPPROTO_TCP; without it each answer (headers and body
    written apart) waited ~40 ms for the client's delayed ACK."""
    from seqreg_hf.serving import listen_socket

    with listen_socket("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP


def test_a_port_in_use_is_one_line(model_dirs, capsys):
    from seqreg_hf.cli import run_command

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = run_command("serve", ["--model_name_or_path", str(model_dirs["single"]), "--port", str(port)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith(f"seqreg-hf serve: error: cannot listen on 127.0.0.1:{port}")


# --------------------------------------------------------------------------------------------------------------
# The Batcher in process: a stand-in predictor that holds the worker while requests queue


class HeldPredictor:
    """predict_dicts returns each text's length (and a marker per option); the first call waits for `release`."""

    def __init__(self):
        self.calls, self.release, self.entered = [], threading.Event(), threading.Event()

    def predict_dicts(self, texts, batch_size=256, return_std=False, interval=None):
        self.calls.append((list(texts), return_std))
        self.entered.set()
        self.release.wait(30)
        if "refuse" in texts:
            raise ValueError("refused: 'refuse' is not a text this model scores")
        return [{"n": len(t), **({"std": 1.0} if return_std else {})} for t in texts]


def test_the_batcher_joins_waiting_requests_splits_their_rows_and_drains_on_close():
    async def scenario():
        model = HeldPredictor()
        batcher = Batcher(model, max_batch=100, wait_s=0)
        batcher.start()
        first = batcher.submit(["x"], {})
        await asyncio.to_thread(model.entered.wait, 30)  # the worker is inside the first call ...
        texts = [["ab", "abc"], ["abcd"], ["refuse", "a"], ["abcde" * 2, ""], ["std"], ["more", "std"]]
        options = [{}, {}, {}, {}, {"return_std": True}, {"return_std": True}]
        futures = [batcher.submit(t, o) for t, o in zip(texts, options)]  # ... while these queue
        assert batcher.waiting == 7
        model.release.set()
        closing = asyncio.create_task(asyncio.to_thread(batcher.close))  # queued behind them: they all finish
        results = await asyncio.wait_for(asyncio.gather(first, *futures, return_exceptions=True), 60)
        await closing
        return model, batcher, results

    model, batcher, results = asyncio.run(scenario())
    assert results[0] == [{"n": 1}]
    assert results[1:3] == [[{"n": 2}, {"n": 3}], [{"n": 4}]]
    assert isinstance(results[3], ValueError) and "refuse" in str(results[3])  # only the request that asked
    assert results[4] == [{"n": 10}, {"n": 0}]
    assert results[5:] == [[{"n": 3, "std": 1.0}], [{"n": 4, "std": 1.0}, {"n": 3, "std": 1.0}]]
    # One call for the first request, one per option group; a group that fails runs each of its requests alone.
    assert model.calls[:2] == [(["x"], False), (["ab", "abc", "abcd", "refuse", "a", "abcde" * 2, ""], False)]
    assert model.calls[2:6] == [(t, False) for t in (["ab", "abc"], ["abcd"], ["refuse", "a"], ["abcde" * 2, ""])]
    assert model.calls[6:] == [(["std", "more", "std"], True)]
    assert batcher.waiting == 0 and not batcher.thread.is_alive()

