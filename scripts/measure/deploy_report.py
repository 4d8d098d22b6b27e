"""Deploy figures of a trained model, all measured in one run: ONNX and int8 against torch.

    python -m scripts.measure.deploy_report --model_dir outputs/emobank [--json outputs/deploy_report.json]

1. Export (`seqreg_hf.export.export_onnx`, with the int8 variant) into a temporary directory.
2. Quality on the EmoBank test split: Pearson r per target for torch, torch with the frozen matrix stored in
   float16 (embeddings_dtype), ONNX float32 and ONNX int8, all through `Predictor` (the path `seqreg-hf predict`
   takes).
3. Size on disk: model.safetensors (float32 and float16 matrix), model.onnx, model.int8.onnx.
4. Speed through `Predictor`: batch-256 throughput over the test texts (sentences that went through / seconds,
   median of --repeats) and single-sentence latency (p50 / p90 over --singles texts), each backend in turn, with the
   machine's fp32 GEMM peak measured in the same run.
5. Ensemble uncertainty on test: Spearman correlation of the members' std with the absolute error, and the share
   of true scores inside mean +/- 2 std.
"""

import argparse
import json
import os
import tempfile

import numpy as np
import pandas as pd
import torch
from scipy import stats

from scripts.common import EMOBANK_CSV, REPO, gemm_peak, predict_throughput, single_text_latencies
from seqreg_hf import Predictor
from seqreg_hf.export import INT8_FILE, ONNX_FILE, export_onnx
from seqreg_hf.logs import configure


def test_split(data, label_names):
    frame = pd.read_csv(data, keep_default_na=False)
    frame = frame[frame["split"] == "test"]
    return frame["text"].tolist(), frame[label_names].to_numpy(dtype=float)


def pearson(pred, true, names):
    values = {n: float(stats.pearsonr(pred[:, i], true[:, i])[0]) for i, n in enumerate(names)}
    values["mean"] = float(np.mean(list(values.values())))
    return values


def latency(predictor, texts):
    times = single_text_latencies(predictor, texts)
    return float(np.percentile(times, 50)), float(np.percentile(times, 90))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", default=os.path.join(REPO, "outputs", "emobank"))
    parser.add_argument("--data", default=EMOBANK_CSV)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--singles", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    configure("warning", disable_tqdm=True)
    peak, _ = gemm_peak()
    backends = {"torch": Predictor.from_dir(args.model_dir)}
    names = backends["torch"].label_names
    texts, true = test_split(args.data, names)
    with tempfile.TemporaryDirectory() as folder:
        export = export_onnx(args.model_dir, folder, quantize="int8")
        half = os.path.join(folder, "float16_matrix")  # the same model, its frozen matrix stored in float16
        model = backends["torch"].model
        stored, model.config.embeddings_dtype = model.config.embeddings_dtype, "float16"
        model.save_pretrained(half)
        backends["torch"].tokenizer.save_pretrained(half)
        model.config.embeddings_dtype = stored  # the loaded model as it was, not an assumed default
        backends["fp16 matrix"] = Predictor.from_dir(half)
        backends["onnx fp32"] = Predictor.from_dir(folder, backend="onnx")
        backends["onnx int8"] = Predictor.from_dir(folder, backend="onnx", onnx_file=INT8_FILE)
        sizes = {"model.safetensors": os.path.getsize(os.path.join(args.model_dir, "model.safetensors")),
                 ONNX_FILE: os.path.getsize(os.path.join(folder, ONNX_FILE)),
                 INT8_FILE: os.path.getsize(os.path.join(folder, INT8_FILE)),
                 "model.safetensors (float16 matrix)": os.path.getsize(os.path.join(half, "model.safetensors"))}
        rows = {}
        for name, predictor in backends.items():
            predicted = predictor.predict(texts, batch_size=256)
            assert len(predicted) == len(texts)
            rows[name] = {"test_pearson": pearson(predicted, true, names),
                          "sentences_per_second_batch256": predict_throughput(predictor, texts, args.repeats),
                          "single_ms_p50_p90": latency(predictor, texts[: args.singles])}
        scores, spread = backends["torch"].predict(texts, return_std=True)
    error = np.abs(scores - true)
    uncertainty = {n: {"spearman_std_vs_abs_error": float(stats.spearmanr(spread[:, i], error[:, i])[0]),
                       "coverage_mean_pm_2std": float(np.mean(error[:, i] <= 2 * spread[:, i])),
                       "median_std": float(np.median(spread[:, i])), "median_abs_error": float(np.median(error[:, i]))}
                   for i, n in enumerate(names)}
    report = {"machine": {"gemm_peak_gflops": peak, "torch_threads": torch.get_num_threads(),
                          "cpus": os.cpu_count()},
              "test_sentences": len(texts), "export": export, "sizes_bytes": sizes, "backends": rows,
              "uncertainty": uncertainty}

    print(f"fp32 GEMM peak {peak} GFLOP/s, {torch.get_num_threads()} torch threads; EmoBank test, {len(texts)} sentences")
    print(f"{'backend':<11} {'r V':>6} {'r A':>6} {'r D':>6} {'r mean':>7} {'sent/s b256':>12} {'single p50 ms':>14}")
    for name, row in rows.items():
        r = row["test_pearson"]
        print(f"{name:<11} {r[names[0]]:6.4f} {r[names[1]]:6.4f} {r[names[2]]:6.4f} {r['mean']:7.4f} "
              f"{row['sentences_per_second_batch256']:12.0f} {row['single_ms_p50_p90'][0]:14.2f}")
    base = rows["torch"]
    for name in ("fp16 matrix", "onnx fp32", "onnx int8"):
        speedup = rows[name]["sentences_per_second_batch256"] / base["sentences_per_second_batch256"]
        faster = base["single_ms_p50_p90"][0] / rows[name]["single_ms_p50_p90"][0]
        print(f"{name} / torch: throughput x{speedup:.2f}, single-sentence latency x{faster:.2f} (speedups)")
    print("sizes (MB): " + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in sizes.items()))
    for n, u in uncertainty.items():
        print(f"{n}: Spearman(std, |error|) {u['spearman_std_vs_abs_error']:.3f}, coverage of mean +/- 2 std "
              f"{u['coverage_mean_pm_2std']:.3f} (median std {u['median_std']:.3f}, median |error| "
              f"{u['median_abs_error']:.3f})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return report


if __name__ == "__main__":
    main()
