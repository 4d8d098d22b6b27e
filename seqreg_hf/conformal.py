"""Split-conformal prediction intervals: the scores, their finite-sample quantile and the bounds, per target.

A calibration is a plain dict kept in the model's config (`config.calibration`), so that it travels with config.json
into every copy of the model (checkpoints, the ONNX folder, the Hub) and the pipeline can read it without seqreg_hf:

- `kind`: "constant", the default for every model (score |y - prediction|, one width per target for every text), or
  "adaptive", an ensemble's on request (a text's score is |y - prediction| / max(std, floor), std the spread of the
  members' predictions, `floor` a small per-target minimum so that members that agree cannot give a zero-width
  interval);
- `n`: the calibration rows; `scores`: {label: the n scores, sorted, rounded up to 4 significant digits}, or, past
  `MAX_STORED` rows, the order statistics at the ranks in `ranks` (1-based; rank n always kept);
- `levels`: the definition below, in words.

An interval at level L (e.g. 0.9) is prediction ± q·s, where q is the k-th smallest score with k = ceil((n + 1)·L)
and s is max(std, floor) (adaptive) or 1 (constant). On texts exchangeable with the calibration rows it covers the
true score with probability at least L (split conformal prediction, finite-sample correct). Where k > n, that is
L > n / (n + 1), the quantile is infinite: the level is refused. With `ranks`, the stored rank at or above k is used,
which can only widen the interval.
"""

import bisect
import math

import numpy as np

KINDS = ("adaptive", "constant")
MAX_STORED = 2000  # order statistics kept per target; more calibration rows keep an evenly spaced subset of ranks
FLOOR_FRACTION = 0.1  # the adaptive floor: this fraction of the calibration rows' median spread
SIGNIFICANT = 4
LEVELS = ("interval at level L: prediction ± q·s, q the k-th smallest score, k = ceil((n + 1)·L) (split conformal, "
          "coverage ≥ L on exchangeable data); s = max(std, floor) for kind adaptive, 1 for constant; refused where "
          "k > n (L > n / (n + 1)); with ranks, the first stored rank ≥ k")


def calibrate_hint(model=None):
    """The command that calibrates `model` (a directory or Hub id), as a refusal names it."""
    return (f"seqreg-hf calibrate --model_name_or_path {model or 'MODEL'} --validation_file FILE` (FILE: labelled "
            "texts the model was not trained on")


def round_up(value, digits=SIGNIFICANT):
    """`value` rounded up to `digits` significant digits: a stored score is never below the exact one, so rounding
    can only widen an interval."""
    if not value > 0:
        return 0.0
    if not math.isfinite(value):
        return float(value)
    step = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    rounded = float(f"{math.ceil(value / step) * step:.{digits}g}")
    return rounded if rounded >= value else float(f"{rounded + step:.{digits}g}")


def nonconformity(predicted, true, spread=None, floor=None):
    """(rows, labels) scores: |true - predicted|, divided by max(spread, floor) when `spread` is given."""
    residual = np.abs(np.asarray(true, dtype=np.float64) - np.asarray(predicted, dtype=np.float64))
    if spread is None:
        return residual
    return residual / np.maximum(np.asarray(spread, dtype=np.float64), np.asarray(floor, dtype=np.float64))


def spread_floor(spread):
    """Per target: FLOOR_FRACTION of the median spread (1e-9 where the members always agree)."""
    return np.maximum(FLOOR_FRACTION * np.median(np.asarray(spread, dtype=np.float64), axis=0), 1e-9)


def stored_ranks(n, limit=MAX_STORED):
    """The 1-based ranks a calibration of n rows keeps: all of them up to `limit`, else `limit` evenly spaced ones
    ending at n."""
    if n <= limit:
        return None
    return sorted({int(math.ceil(n * (i + 1) / limit)) for i in range(limit)})


def calibration_of(predicted, true, label_names, spread=None, source=None):
    """The `config.calibration` dict of (rows, labels) predictions against true scores, in the labels' units;
    `spread` (the ensemble members' std) makes it adaptive."""
    predicted, true = np.asarray(predicted, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if predicted.ndim != 2 or predicted.shape != true.shape or predicted.shape[1] != len(label_names):
        raise ValueError(f"predictions {predicted.shape} and true scores {true.shape} must both be (rows, "
                         f"{len(label_names)}).")
    n = len(predicted)
    if n < 2:
        raise ValueError(f"calibration needs labelled rows the model was not trained on; {n} given. Give a "
                         "validation file of some hundreds of rows.")
    if not (np.isfinite(predicted).all() and np.isfinite(true).all()):
        raise ValueError("calibration needs finite predictions and true scores; drop the rows without a score.")
    floor = None if spread is None else np.array([round_up(float(v)) for v in spread_floor(spread)])
    scores = np.sort(nonconformity(predicted, true, spread, floor), axis=0)
    ranks = stored_ranks(n)
    kept = scores if ranks is None else scores[np.asarray(ranks) - 1]
    calibration = {
        "method": "split conformal",
        "kind": "adaptive" if spread is not None else "constant",
        "score": "|y - prediction| / max(std, floor)" if spread is not None else "|y - prediction|",
        "levels": LEVELS,
        "n": n,
        "ranks": ranks,
        "scores": {name: [round_up(float(v)) for v in kept[:, j]] for j, name in enumerate(label_names)},
    }
    if floor is not None:
        calibration["floor"] = {name: float(v) for name, v in zip(label_names, floor)}
    if source:
        calibration["source"] = str(source)
    return calibration


def check_level(interval):
    """`interval` as a float in (0, 1), or a one-line refusal."""
    if isinstance(interval, bool) or not isinstance(interval, (int, float, np.floating)):
        raise ValueError(f"interval={interval!r} must be a coverage level between 0 and 1, e.g. 0.9.")
    level = float(interval)
    if not 0 < level < 1:
        raise ValueError(f"interval={interval!r} must be a coverage level strictly between 0 and 1, e.g. 0.9.")
    return level


def quantile_rank(n, level):
    """k = ceil((n + 1)·level), the 1-based rank of the conformal quantile (a hair below an exact whole number stays
    that number: float products such as 1001 * 0.9 must not round up a rank)."""
    return math.ceil((n + 1) * level - 1e-9)


def require_calibration(config, model=None):
    """The model's calibration, checked against its labels; a model without one is refused with the fix. `model`:
    the directory or Hub id that messages name."""
    where = model or "the model"
    calibration = getattr(config, "calibration", None)
    if not calibration:
        raise ValueError(f"{where} has no calibration, so no interval: run `{calibrate_hint(model)}) first "
                         "(`seqreg-hf train` calibrates on its validation split).")
    names = list(config.label_names)
    if calibration.get("kind") not in KINDS or sorted(calibration.get("scores", {})) != sorted(names):
        raise ValueError(f"{where}: its calibration does not match its targets {names}; run "
                         f"`{calibrate_hint(model)}) again.")
    if calibration["kind"] == "adaptive" and getattr(config, "ensemble_size", 1) < 2:
        raise ValueError(f"{where}: an adaptive calibration needs an ensemble, and this model has ensemble_size="
                         f"{config.ensemble_size}; run `{calibrate_hint(model)}) again.")
    return calibration


def quantiles(calibration, level):
    """{label: q} at `level`; a level the calibration's n cannot reach is refused with the fix."""
    n = calibration["n"]
    k = quantile_rank(n, level)
    if k > n:
        raise ValueError(f"interval={level} needs more calibration rows: with n={n} the highest level is "
                         f"{n / (n + 1):.4f} (n/(n+1)); choose a lower level, or run `{calibrate_hint()}) with more "
                         "rows.")
    ranks = calibration.get("ranks")
    index = k - 1 if ranks is None else bisect.bisect_left(ranks, k)
    return {name: values[index] for name, values in calibration["scores"].items()}


def interval_bounds(calibration, label_names, predicted, spread, level):
    """(lo, hi), float32 arrays shaped as `predicted` (rows, labels); `spread` is needed by an adaptive one."""
    q = quantiles(calibration, level)
    half = np.array([q[name] for name in label_names], dtype=np.float64)[None, :]
    if calibration["kind"] == "adaptive":
        floor = np.array([calibration["floor"][name] for name in label_names], dtype=np.float64)
        half = half * np.maximum(np.asarray(spread, dtype=np.float64), floor)
    predicted = np.asarray(predicted, dtype=np.float64)
    return (predicted - half).astype(np.float32), (predicted + half).astype(np.float32)


__all__ = ["KINDS", "MAX_STORED", "LEVELS", "calibrate_hint", "round_up", "nonconformity", "spread_floor",
           "stored_ranks", "calibration_of", "check_level", "quantile_rank", "require_calibration", "quantiles",
           "interval_bounds"]
