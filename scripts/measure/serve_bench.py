"""Serving under load: `seqreg-hf serve` answering 1, 8 and 32 concurrent clients (one text per request, and 8 per
request at 32, on loopback), beside the `Predictor` on the same texts in the same run: throughput and p50 / p99
latency (of a request).

    python -m scripts.measure.serve_bench [--texts 1500] [--model_dir DIR]

Without --model_dir the model is built by `seqreg-hf init` with the default model (2 members, each a 2-layer
bidirectional LSTM-128 read by attention, over a scalar mix of the frozen MiniLM-L6's hidden states, the transformer
run live) and random weights: speed does not depend on what the
weights are; `--model_dir outputs/emobank` serves the main job's trained model. The texts are EmoBank's (a seeded
sample). The baselines: the Predictor's batch throughput (all texts in one call, batches of 256 of one length), the
same in calls of 32 texts (what one batching round can hold at concurrency 32), and one Predictor call on one text
(the latency a lone request cannot beat). Every answer of the server is checked against the Predictor's. Bounded:
about a minute on 2 CPUs.
"""

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from scripts.common import EMOBANK_CSV, REPO

STARTED = time.perf_counter()


def note(message):
    print(f"[{time.perf_counter() - STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)


def percentile(values, q):
    return float(np.percentile(np.array(values) * 1000, q))  # ms


def read_texts(count, seed=0):
    import pandas as pd

    texts = pd.read_csv(EMOBANK_CSV)["text"].dropna().astype(str).tolist()
    picked = np.random.default_rng(seed).choice(len(texts), size=min(count, len(texts)), replace=False)
    return [texts[i] for i in picked]


def build_model(folder, env):
    subprocess.run([sys.executable, "-m", "seqreg_hf.cli", "init", "--output_dir", folder, "--label_columns", "V",
                    "A", "D", "--disable_tqdm", "true"], env=env, cwd=REPO, check=True, capture_output=True)
    return folder


def baselines(model, texts, singles):
    """{name: (texts/s, p50 ms, p99 ms)} of the Predictor in this process; and its scores of every text."""
    from seqreg_hf.prediction import Predictor

    predictor = Predictor.from_dir(model)
    predictor.predict(texts[:256], progress=False)  # warm-up
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        scores = predictor.predict(texts, batch_size=256, progress=False)
        runs.append(time.perf_counter() - start)
    batch = statistics.median(runs)
    start = time.perf_counter()
    for i in range(0, len(texts), 32):
        predictor.predict(texts[i:i + 32], progress=False)
    chunks = time.perf_counter() - start
    one = []
    for text in singles:
        start = time.perf_counter()
        predictor.predict([text], progress=False)
        one.append(time.perf_counter() - start)
    return {
        "Predictor, all texts in one call": (len(texts) / batch, None, None),
        "Predictor, calls of 32 texts": (len(texts) / chunks, None, None),
        "Predictor, one text per call": (len(singles) / sum(one), percentile(one, 50), percentile(one, 99)),
    }, scores, predictor.label_names


class Serving:
    def __init__(self, model, env):
        self.process = subprocess.Popen([sys.executable, "-m", "seqreg_hf.cli", "serve", "--model_name_or_path", model,
                                         "--port", "0"], env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if "http://" not in line:
            raise SystemExit(f"the server did not start: {line!r}")
        address = line.split("http://")[1].split()[0]
        self.host, self.port = address.rsplit(":", 1)[0], int(address.rsplit(":", 1)[1])

    def load(self, texts, concurrency, per_request=1):
        """(texts/s, latencies in s, answers) of `concurrency` clients, each on a kept-alive connection, sending
        `per_request` texts per request (1: a string, more: a list) until the texts are used up."""
        requests = [texts[i] if per_request == 1 else texts[i:i + per_request]
                    for i in range(0, len(texts), per_request)]
        work, lock = iter(enumerate(requests)), threading.Lock()
        latencies, answers, failures = [], [None] * len(requests), []

        def client():
            connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
            while True:
                with lock:
                    item = next(work, None)
                if item is None:
                    break
                index, text = item
                body = json.dumps({"inputs": text})
                start = time.perf_counter()
                connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                data = response.read()
                latencies.append(time.perf_counter() - start)
                if response.status != 200:
                    failures.append(data)
                answers[index] = json.loads(data)
            connection.close()

        threads = [threading.Thread(target=client) for _ in range(concurrency)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
        if failures:
            raise SystemExit(f"{len(failures)} request(s) failed, e.g. {failures[0][:300]!r}")
        flat = [row for answer in answers for row in ([answer] if per_request == 1 else answer)]
        return len(texts) / seconds, latencies, flat

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1500, help="EmoBank texts sent at concurrency 8 and 32")
    parser.add_argument("--singles", type=int, default=200, help="texts sent one by one (concurrency 1)")
    parser.add_argument("--model_dir", default=None, help="a model directory (default: `seqreg-hf init`'s)")
    args = parser.parse_args(argv)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    os.environ.update(TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    texts = read_texts(args.texts)
    singles = texts[: args.singles]
    with tempfile.TemporaryDirectory() as folder:
        model = args.model_dir or build_model(os.path.join(folder, "model"), env)
        note(f"model ready: {model}")
        rows, reference, labels = baselines(model, texts, singles)
        note("Predictor baselines measured")
        serving = Serving(model, env)
        note("server started")
        try:
            serving.load(texts[:64], 8)  # warm-up
            for concurrency, per_request in ((1, 1), (8, 1), (32, 1), (32, 8)):
                sent = singles if concurrency == 1 else texts
                rate, latencies, answers = serving.load(sent, concurrency, per_request)
                got = np.array([[answer[name] for name in labels] for answer in answers])
                np.testing.assert_allclose(got, reference[: len(sent)], rtol=1e-4, atol=1e-5)  # the same scores
                name = f"serve, concurrency {concurrency}" + (f", {per_request} texts per request" if per_request > 1
                                                              else "")
                rows[name] = (rate, percentile(latencies, 50), percentile(latencies, 99))
                note(f"{name}: {rate:,.0f} texts/s")
        finally:
            code = serving.stop()
    batch, one_p50 = rows["Predictor, all texts in one call"][0], rows["Predictor, one text per call"][1]
    print(f"\n{len(texts)} EmoBank texts ({len(singles)} at concurrency 1), model "
          f"{args.model_dir or 'seqreg-hf init (default architecture, random weights)'}, {os.cpu_count()} CPUs; "
          f"server exit status after SIGTERM: {code}\n")
    print("| run | texts/s | x Predictor batch | p50 ms | p99 ms | p50 / one Predictor call |")
    print("|---|---|---|---|---|---|")
    for name, (rate, p50, p99) in rows.items():
        cells = [f"{rate:,.0f}", f"{rate / batch:.2f}", *(f"{v:.1f}" if v is not None else "" for v in (p50, p99)),
                 f"{p50 / one_p50:.2f}" if p50 is not None else ""]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
