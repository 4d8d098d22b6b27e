"""Coverage and width of the calibrated intervals on EmoBank test, beside the ensemble's mean ± 2 std.

    python -m scripts.measure.conformal_emobank [--epochs 1] [--ensemble_dir DIR] [--single_dir DIR | --single_from_member]

1. Train (unless given) two models with the static EmoBank recipe (`scripts/configs/emobank_static.json`) for --epochs
   epochs: its ensemble (3 members) and one network (--ensemble_size 1). `seqreg-hf train` calibrates each on the dev
   split at the end (config.calibration, constant for both, the default); the stored calibration is checked against
   one recomputed here from the dev predictions, and the ensemble's adaptive one is computed here from them. A model
   given by --ensemble_dir / --single_dir without a calibration (a checkpoint) is calibrated on the dev split here,
   as `seqreg-hf calibrate` does. `--single_from_member` takes the ensemble's member 0, run alone, as the single
   network instead of training one (each member learns as a separate network would).

2. On the test split, through `Predictor` (the path of `seqreg-hf predict --interval`): per target, the share of true
   scores inside the interval (coverage) and its mean width, at levels 0.8, 0.9 and 0.95. Beside them, in the same
   run: the ensemble's mean ± 2 std (the uncertainty the package reported before) and the ensemble calibrated with
   constant width (the same dev rows, no spread), so that the adaptive width has a baseline.
3. One dev/test split measures coverage with a sampling error of about 1.8 points at level 0.8 (n = 1000 on each
   side), so the same predictions are also re-split: dev and test pooled, --resplits random halves, each calibrated
   on one half and scored on the other; the mean coverage over the re-splits is what the method gives on this data.
"""

import argparse
import json
import os

import numpy as np

from scripts.common import EMOBANK_CSV, REPO
from seqreg_hf import Predictor
from seqreg_hf.calibration import write_calibration
from seqreg_hf.conformal import calibration_of, interval_bounds
from seqreg_hf.data import clean_split, read_split
from seqreg_hf.logs import configure

LEVELS = (0.8, 0.9, 0.95)
RECIPE = os.path.join(REPO, "scripts", "configs", "emobank_static.json")  # an ensemble: both kinds of interval


def split_rows(split, names):
    """(texts, true scores) of one EmoBank split, its bad rows dropped as training drops them."""
    dataset = read_split(EMOBANK_CSV, split, "split")
    dataset, _ = clean_split(dataset, split, "text", names, source=EMOBANK_CSV)
    return dataset["text"], np.array([dataset[n] for n in names], dtype=np.float64).T


def train(output_dir, ensemble_size, epochs):
    import seqreg_hf

    seqreg_hf.train(RECIPE, output_dir=output_dir, ensemble_size=ensemble_size, num_train_epochs=epochs,
                    overwrite_output_dir=True, plots=False, disable_tqdm=True, report_to="none")
    return output_dir


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


def predictions(predictor, model_dir, dev, test):
    """(dev (mean, std), test (mean, std)), the model calibrated on dev if it was not; the test pass goes through
    the interval API and is checked against the bounds computed here."""
    names = predictor.label_names
    if predictor.has_std:
        dev_mean, dev_std = predictor.predict(dev[0], return_std=True, progress=False)
    else:
        dev_mean, dev_std = predictor.predict(dev[0], progress=False), None
    kind = (predictor.calibration or {}).get("kind", "constant")  # an uncalibrated checkpoint: calibrate's default
    recomputed = calibration_of(dev_mean, dev[1], names, dev_std if kind == "adaptive" else None)
    if not predictor.calibration:  # a checkpoint: calibrated here, as `seqreg-hf calibrate` does
        write_calibration(model_dir, recomputed)
        predictor.config.calibration = recomputed
    same = predictor.calibration["scores"] == recomputed["scores"]
    print(f"{model_dir}: the stored calibration equals the one recomputed from the dev predictions: {same}")
    test_mean, *rest = predictor.predict(test[0], return_std=predictor.has_std, interval=0.9, progress=False)
    test_std = rest[0] if predictor.has_std else None
    lo, hi = interval_bounds(predictor.calibration, names, test_mean, test_std, 0.9)
    assert np.array_equal(lo, rest[-2]) and np.array_equal(hi, rest[-1])
    return (dev_mean, dev_std), (test_mean, test_std)


def measure(ensemble_dir, single_dir, resplits):
    rows, resplit_rows = [], []
    ensemble = Predictor.from_dir(ensemble_dir)
    names = ensemble.label_names
    dev, test = split_rows("validation", names), split_rows("test", names)
    members = f"ensemble ({ensemble.config.ensemble_size})"
    runs = {members: predictions(ensemble, ensemble_dir, dev, test),
            "one network": predictions(Predictor.from_dir(single_dir), single_dir, dev, test)}
    kinds = [(members, "adaptive"), ("one network", "constant"), (members, "constant")]
    for model, kind in kinds:
        (dev_mean, dev_std), (test_mean, test_std) = runs[model]
        spread = (lambda std: std) if kind == "adaptive" else (lambda std: None)
        calibration = calibration_of(dev_mean, dev[1], names, spread(dev_std))
        for level in LEVELS:
            lo, hi = interval_bounds(calibration, names, test_mean, spread(test_std), level)
            rows.append(row(model, kind, calibration["n"], level, lo, hi, test[1], names))
        if kind == "adaptive":
            rows.append(row(model, "mean ± 2 std", None, None, test_mean - 2 * test_std, test_mean + 2 * test_std,
                            test[1], names))
        resplit_rows += resplit(model, kind, np.concatenate([dev_mean, test_mean]), np.concatenate([dev[1], test[1]]),
                                None if spread(dev_std) is None else np.concatenate([dev_std, test_std]), names,
                                resplits)
    return rows, resplit_rows, names, len(test[0])


def resplit(model, kind, predicted, true, spread, names, resplits, seed=0):
    """Coverage over `resplits` random halves of the pooled rows: mean and std per target and level."""
    rng = np.random.default_rng(seed)
    coverage = {level: [] for level in LEVELS}
    for _ in range(resplits):
        order = rng.permutation(len(true))
        cal, fresh = order[: len(order) // 2], order[len(order) // 2:]
        calibration = calibration_of(predicted[cal], true[cal], names, None if spread is None else spread[cal])
        for level in LEVELS:
            lo, hi = interval_bounds(calibration, names, predicted[fresh], None if spread is None else spread[fresh],
                                     level)
            coverage[level].append(((true[fresh] >= lo) & (true[fresh] <= hi)).mean(axis=0))
    return [{"model": model, "kind": kind, "level": level, "resplits": resplits,
             **{f"coverage_{n}": float(np.mean(values, axis=0)[j]) for j, n in enumerate(names)},
             **{f"sd_{n}": float(np.std(values, axis=0)[j]) for j, n in enumerate(names)}}
            for level, values in coverage.items()]


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


def resplit_table(rows, names):
    lines = [f"Dev and test pooled, {rows[0]['resplits']} random halves (calibrate on one, score the other): mean "
             "coverage ± its std over the re-splits.", "",
             "| model | interval | level | " + " | ".join(f"coverage {n}" for n in names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['kind']} | {r['level']:.2f} | "
                     + " | ".join(f"{100 * r[f'coverage_{n}']:.1f} ± {100 * r[f'sd_{n}']:.1f} %" for n in names) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--ensemble_dir", help="a trained ensemble to measure instead of training one")
    parser.add_argument("--single_dir", help="a trained single network to measure instead of training one")
    parser.add_argument("--single_from_member", action="store_true",
                        help="the single network is the ensemble's member 0 run alone, not a trained one")
    parser.add_argument("--output_dir", default=os.path.join(REPO, "outputs", "conformal_emobank"))
    parser.add_argument("--resplits", type=int, default=200)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    configure("warning", True)
    ensemble_dir = args.ensemble_dir or train(os.path.join(args.output_dir, "ensemble"), 3, args.epochs)
    if args.single_from_member:
        args.single_dir = first_member(ensemble_dir, os.path.join(args.output_dir, "member0"))
    single_dir = args.single_dir or train(os.path.join(args.output_dir, "single"), 1, args.epochs)
    rows, resplit_rows, names, test_rows = measure(ensemble_dir, single_dir, args.resplits)
    print(table(rows, names, test_rows))
    print()
    print(resplit_table(resplit_rows, names))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"test": rows, "resplits": resplit_rows}, handle, indent=2)


if __name__ == "__main__":
    main()
