"""What several scripts share: the repository's paths, the machine's GEMM peak and the generated corpus of short
texts. Imported as `scripts.common`, which needs the scripts run as modules from the repository root
(`python -m scripts.measure.benchmark`)."""

import os
import statistics
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMOBANK_CSV = os.path.join(os.path.dirname(REPO), "shared", "data", "emobank.csv")  # where scripts/setup.sh's data lie


def gemm_peak(size=2048, repeats=7):
    """GFLOP/s of a size^3 fp32 matmul: the better of torch.mm (MKL/OpenBLAS) and a oneDNN linear layer, since
    the RNN kernels run on oneDNN, which on some CPUs (MKL on AMD) is much faster than torch.mm."""
    import torch
    import torch.utils.mkldnn as mkldnn
    from torch import nn

    def median_seconds(fn):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    a, b = torch.randn(size, size), torch.randn(size, size)
    flops = 2 * size**3
    peaks = {"torch_mm": flops / median_seconds(lambda: torch.mm(a, b)) / 1e9}
    if torch.backends.mkldnn.is_available():
        linear = mkldnn.to_mkldnn(nn.Linear(size, size, bias=False))
        x = a.to_mkldnn()
        with torch.no_grad():
            peaks["onednn_linear"] = flops / median_seconds(lambda: linear(x)) / 1e9
    return max(peaks.values()), {k: round(v, 1) for k, v in peaks.items()}


LEXICON = {"joy": 1.0, "love": 0.9, "calm": 0.4, "table": 0.0, "walk": 0.1, "rain": -0.3, "fear": -0.8,
           "anger": -0.9, "grief": -1.0, "noise": -0.2, "sun": 0.6, "friend": 0.7, "storm": -0.6, "door": 0.0}


def write_short_texts(path, rows, seed=0):
    """A CSV (text,score,intensity) of `rows` texts of 3-8 lexicon words whose scores follow the words' weights, so
    that there is something to learn; the training and the prediction scale figures read the same corpus."""
    rng = np.random.default_rng(seed)
    words = np.array(list(LEXICON))
    weights = np.array([LEXICON[w] for w in words])
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("text,score,intensity\n")
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            lengths = rng.integers(3, 9, size=n)
            picks = rng.integers(0, len(words), size=(n, 8))
            for k in range(n):
                chosen = picks[k, : lengths[k]]
                score = weights[chosen].mean() + rng.normal(0, 0.1)
                handle.write(f"{' '.join(words[chosen])},{score:.4f},{np.abs(weights[chosen]).max():.4f}\n")


def predict_throughput(predictor, texts, repeats, batch_size=256):
    """Median sentences/s of `predictor.predict(texts)` over `repeats` runs, counting the rows that came back."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        scores = predictor.predict(texts, batch_size=batch_size)
        rates.append(len(scores) / (time.perf_counter() - start))
    return statistics.median(rates)


def single_text_latencies(predictor, texts):
    """Milliseconds of `predictor.predict([text])`, one call per text."""
    times = []
    for text in texts:
        start = time.perf_counter()
        predictor.predict([text])
        times.append(1000 * (time.perf_counter() - start))
    return np.array(times)
