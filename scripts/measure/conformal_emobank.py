"""Coverage and width of the calibrated intervals on EmoBank test, beside the ensemble's mean ± 2 std.

    python -m scripts.measure.conformal_emobank [--epochs 1] [--ensemble_dir DIR] [--single_dir DIR]

1. Train (unless given) two models with the EmoBank recipe (`scripts/configs/emobank.json`) for --epochs epochs: the
   default ensemble (3 members) and one network (--ensemble_size 1). `seqreg-hf train` calibrates each on the dev
   split at the end (config.calibration): adaptive for the ensemble, constant for the single network. A model given
   by --ensemble_dir / --single_dir without a calibration (a checkpoint) is calibrated on the dev split by
   `seqreg-hf calibrate` first. `--single_from_member` takes the ensemble's first member, run alone, as the single
   network instead of training one (no training: each member learns as a separate network would).
2. On the test split, through `Predictor` (the path of `seqreg-hf predict --interval`): per target, the share of true
   scores inside the interval (coverage) and its mean width, at levels 0.8, 0.9 and 0.95. Beside them, in the same
   run: the ensemble's mean ± 2 std (the uncertainty the package reported before) and the ensemble calibrated with
   constant width (the same dev rows, no spread), so that the adaptive width has a baseline.
"""

import argparse
import json
import os

import numpy as np
import pandas as pd

from scripts.common import EMOBANK_CSV, REPO
from seqreg_hf import Predictor
from seqreg_hf.conformal import calibration_of, interval_bounds
from seqreg_hf.logs import configure

LEVELS = (0.8, 0.9, 0.95)
RECIPE = os.path.join(REPO, "scripts", "configs", "emobank.json")


def split_rows(split, names):
    frame = pd.read_csv(EMOBANK_CSV, keep_default_na=False)
    frame = frame[(frame["split"] == split) & (frame["text"].str.strip() != "")]  # as training cleans a split
    return frame["text"].tolist(), frame[names].to_numpy(dtype=float)


def train(output_dir, ensemble_size, epochs):
    import seqreg_hf

    seqreg_hf.train(RECIPE, output_dir=output_dir, ensemble_size=ensemble_size, num_train_epochs=epochs,
                    overwrite_output_dir=True, plots=False, disable_tqdm=True, report_to="none")
    return output_dir


def calibrated(model_dir):
    """`model_dir`, calibrated on EmoBank's dev rows by `seqreg-hf calibrate` unless it carries a calibration."""
    from seqreg_hf.calibration import main as calibrate

    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as handle:
        if not json.load(handle).get("calibration"):
            calibrate(["--model_name_or_path", model_dir, "--validation_file", EMOBANK_CSV, "--split_column", "split",
                       "--split", "dev", "--disable_tqdm", "true"])
    return model_dir


def first_member(ensemble_dir, output_dir):
    """The ensemble's member 0 alone, saved as a single network (ensemble_size 1) in `output_dir`."""
    from safetensors.torch import load_file

    from seqreg_hf import SeqRegConfig, SeqRegForSequenceRegression
    from seqreg_hf.model_dir import load_tokenizer

    config = SeqRegConfig.from_pretrained(ensemble_dir)
    config.ensemble_size, config.calibration = 1, None
    model = SeqRegForSequenceRegression(config)
    weights = load_file(os.path.join(ensemble_dir, "model.safetensors"))
    model.load_state_dict({k: v for k, v in weights.items() if ".members." not in k or ".members.0." in k})
    model.save_pretrained(output_dir)
    load_tokenizer(ensemble_dir, config).save_pretrained(output_dir)
    return output_dir


def row(model, kind, n, level, lo, hi, true, names):
    inside = (true >= lo) & (true <= hi)
    return {"model": model, "kind": kind, "n": n, "level": level,
            **{f"coverage_{name}": float(inside[:, j].mean()) for j, name in enumerate(names)},
            **{f"width_{name}": float((hi - lo)[:, j].mean()) for j, name in enumerate(names)}}


def measure(ensemble_dir, single_dir):
    rows, outputs = [], {}
    ensemble = Predictor.from_dir(ensemble_dir)
    names = ensemble.label_names
    texts, true = split_rows("test", names)
    dev_texts, dev_true = split_rows("dev", names)
    for label, predictor in (("ensemble (3)", ensemble), ("one network", Predictor.from_dir(single_dir))):
        calibration = predictor.calibration
        # One pass through the interval API (the path of predict --interval); the other levels from its predictions.
        *scores, api_lo, api_hi = predictor.predict(texts, return_std=predictor.has_std, interval=0.9, progress=False)
        spread = scores[1] if predictor.has_std else None
        outputs[label] = scores[0], spread
        for level in LEVELS:
            lo, hi = interval_bounds(calibration, names, scores[0], spread, level)
            if level == 0.9:
                assert np.array_equal(lo, api_lo) and np.array_equal(hi, api_hi)
            rows.append(row(label, calibration["kind"], calibration["n"], level, lo, hi, true, names))
    # Baselines, same run: the ensemble's mean ± 2 std, and the ensemble calibrated with a constant width.
    predicted, spread = outputs["ensemble (3)"]
    rows.append(row("ensemble (3)", "mean ± 2 std", None, None, predicted - 2 * spread, predicted + 2 * spread, true,
                    names))
    constant = calibration_of(ensemble.predict(dev_texts, progress=False), dev_true, names)
    for level in LEVELS:
        lo, hi = interval_bounds(constant, names, predicted, None, level)
        rows.append(row("ensemble (3)", "constant", constant["n"], level, lo, hi, true, names))
    return rows, names, len(texts)


def table(rows, names, test_rows):
    lines = [f"EmoBank test ({test_rows} rows); calibrated on dev.", "",
             "| model | interval | n | level | " + " | ".join(f"coverage {n}" for n in names) + " | "
             + " | ".join(f"mean width {n}" for n in names) + " |",
             "|---|---|---|---|" + "---|" * (2 * len(names))]
    for r in rows:
        level = f"{r['level']:.2f}" if r["level"] else "-"
        lines.append(f"| {r['model']} | {r['kind']} | {r['n'] or '-'} | {level} | "
                     + " | ".join(f"{100 * r[f'coverage_{n}']:.1f} %" for n in names) + " | "
                     + " | ".join(f"{r[f'width_{n}']:.3f}" for n in names) + " |")
    misses = [f"{r['model']} {r['kind']} {r['level']} {n}: {100 * r[f'coverage_{n}']:.1f} %" for r in rows
              if r["level"] for n in names if abs(r[f"coverage_{n}"] - r["level"]) > 0.02]
    lines += ["", "within 2 points of nominal everywhere" if not misses else "more than 2 points from nominal: "
              + "; ".join(misses)]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--ensemble_dir", help="a trained ensemble to measure instead of training one")
    parser.add_argument("--single_dir", help="a trained single network to measure instead of training one")
    parser.add_argument("--single_from_member", action="store_true",
                        help="the single network is the ensemble's member 0 run alone, not a trained one")
    parser.add_argument("--output_dir", default=os.path.join(REPO, "outputs", "conformal_emobank"))
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    configure("warning", True)
    ensemble_dir = calibrated(args.ensemble_dir) if args.ensemble_dir else train(
        os.path.join(args.output_dir, "ensemble"), 3, args.epochs)
    if args.single_from_member:
        args.single_dir = first_member(ensemble_dir, os.path.join(args.output_dir, "member0"))
    single_dir = calibrated(args.single_dir) if args.single_dir else train(
        os.path.join(args.output_dir, "single"), 1, args.epochs)
    rows, names, test_rows = measure(ensemble_dir, single_dir)
    print(table(rows, names, test_rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
