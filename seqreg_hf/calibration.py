"""Calibrate a model's intervals on labelled texts it was not trained on, and store the calibration in its config.

`seqreg-hf calibrate --model_name_or_path DIR --validation_file F` for an existing model; `seqreg-hf train` does the
same on its validation split once training ends (`calibrate_run`). The model's predictions are taken as `Predictor`
returns them (the labels' units; for an ensemble, the mean and the members' spread), and `seqreg_hf.conformal` turns
them into `config.calibration`, which is written into config.json: the ONNX folder, the Hub and the pipeline read it
from there.
"""

import json
import logging
import os
import shutil
import sys

import numpy as np

from .conformal import KINDS, calibration_of
from .data import check_pair_data, clean_split, read_split, row_inputs
from .formats import atomic_write, check_input
from .model_card import update_usage
from .prediction import Predictor, no_std_error

logger = logging.getLogger(__name__)


def calibrate_predictor(predictor, texts, true, batch_size=256, source=None, kind="auto"):
    """The calibration of `predictor`'s model on `texts` with their true scores (rows, labels): "constant" (and
    "auto") one width per target for every text; "adaptive", for an ensemble, widths scaled by the members' spread.
    Auto is constant for ensembles too: on EmoBank the adaptive intervals of the default 2-member ensemble were 2.4 to
    3.2 times as wide at the same coverage (level 0.9) (README, Calibrated intervals). The config is not changed."""
    if kind not in ("auto", *KINDS):
        raise ValueError(f"kind={kind!r}: the choices are auto, {', '.join(KINDS)}.")
    if kind == "adaptive" and not predictor.has_std:
        raise no_std_error(predictor.config)
    if kind == "adaptive":
        predicted, spread = predictor.predict(texts, batch_size=batch_size, return_std=True, progress=False)
    else:
        predicted, spread = predictor.predict(texts, batch_size=batch_size, progress=False), None
    return calibration_of(predicted, true, predictor.label_names, spread, source=source)


def write_calibration(folder, calibration):
    """Set `calibration` in `folder`'s config.json (every other key as it was), replacing the file in one step."""
    path = os.path.join(folder, "config.json")
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    config["calibration"] = calibration
    with atomic_write(path) as partial, open(partial, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2, sort_keys=True)
        handle.write("\n")


def true_scores(dataset, label_columns):
    return np.array([[float(v) for v in dataset[c]] for c in label_columns], dtype=np.float64).T.reshape(
        len(dataset), -1)


def calibrate_run(trainer, validation, text_column, label_columns, source="the validation split", predictions=None,
                  text_pair_column=None):
    """At the end of `seqreg-hf train`: calibrate the trained model on the validation split (`validation`, cleaned)
    and store it, in memory and in the output_dir's config.json (main process only). Returns the calibration.

    `predictions`: the Trainer's final predictions of those rows, in order: the calibration (constant, see
    `calibrate_predictor`) is computed from them, without running the model again."""
    if not trainer.is_world_process_zero() or len(validation) < 2:
        return None
    true = true_scores(validation, label_columns)
    if predictions is not None:
        calibration = calibration_of(np.asarray(predictions, dtype=np.float32).reshape(true.shape), true,
                                     trainer.model.config.label_names, None, source=source)
    else:
        predictor = Predictor(trainer.model, trainer.processing_class)
        calibration = calibrate_predictor(predictor, row_inputs(validation, text_column, text_pair_column), true,
                                          source=source)
    trainer.model.config.calibration = calibration  # a later save (push_to_hub) writes it again
    write_calibration(trainer.args.output_dir, calibration)
    logger.info("calibrated %s intervals on %d validation rows (config.calibration).", calibration["kind"],
                calibration["n"])
    return calibration


def main(argv=None):
    from .arguments import parse_command
    from .logs import configure
    from .model_dir import load_config, resolve_model_dir

    args, run = parse_command("calibrate", sys.argv[1:] if argv is None else argv)
    configure(run.log_level, run.disable_tqdm)
    if not args.model_name_or_path:
        raise ValueError("--model_name_or_path is required: the model directory (or Hub id) to calibrate.")
    if not args.validation_file:
        raise ValueError("--validation_file is required: labelled texts the model was not trained on.")
    local = os.path.isdir(args.model_name_or_path)
    if not local and not args.output_dir:
        raise ValueError(f"{args.model_name_or_path} is not a local directory: add --output_dir DIR, where the "
                         "calibrated copy of the model goes.")
    check_input(args.validation_file)  # a wrong name is found before the model loads
    config = load_config(resolve_model_dir(args.model_name_or_path))
    if args.kind == "adaptive" and config.ensemble_size < 2:
        raise no_std_error(config)
    check_pair_data(config, args.text_pair_column, args.model_name_or_path)
    labels = config.label_names
    label_columns = list(args.label_columns or labels)
    if label_columns != labels:
        raise ValueError(f"{args.model_name_or_path} predicts {labels}, but the label columns are {label_columns}.")
    predictor = Predictor.from_dir(args.model_name_or_path, backend=args.backend, onnx_file=args.onnx_file,
                                   trust_remote_code=args.trust_remote_code)
    split = {"dev": "validation"}.get(args.split, args.split)
    dataset = read_split(args.validation_file, split, args.split_column)
    dataset, bad = clean_split(dataset, split, args.text_column, label_columns, args.on_bad_rows,
                               source=args.validation_file, text_pair_column=args.text_pair_column)
    where = args.validation_file + (f" ({args.split_column} = {args.split})" if args.split_column else "")
    calibration = calibrate_predictor(predictor, row_inputs(dataset, args.text_column, args.text_pair_column),
                                      true_scores(dataset, label_columns),
                                      args.batch_size, source=where, kind=args.kind)
    folder = args.output_dir or args.model_name_or_path
    if args.output_dir and os.path.abspath(args.output_dir) != os.path.abspath(args.model_name_or_path):
        shutil.copytree(resolve_model_dir(args.model_name_or_path), args.output_dir, dirs_exist_ok=True)
    write_calibration(folder, calibration)
    update_usage(folder, labels, config.ensemble_size, getattr(config, "calibration", None), calibration)
    print(json.dumps({"calibrated": {"model": folder, "kind": calibration["kind"], "n": calibration["n"],
                                     "bad_rows": bad["dropped"], "source": where}}), file=sys.stderr)
    return calibration


__all__ = ["calibrate_predictor", "calibrate_run", "write_calibration", "main"]
