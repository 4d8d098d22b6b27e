"""What a run leaves in its output directory, in run_glue.py's conventions.

- `train_results.json`, `eval_results.json`, `test_results.json`, `all_results.json` and `trainer_state.json`
  (Trainer's own `save_metrics` / `save_state`); `metrics.json` keeps every split's metrics and the bad-row
  reports in one file;
- `<split>_predictions.csv`: the split's rows with one `pred_<label>` column per target (the same names as
  `seqreg-hf predict` and `seqreg-hf evaluate` write), in `--predictions_dir` (default `<output_dir>/_predictions`):
  they hold the texts, so they stay out of what a push uploads;
- scatter plots and learning curves, and the model card;
- the calibration of the model's intervals on the validation split, in config.json (`seqreg_hf.calibration`).

A new run does not mix with another run's files: an output_dir holding another run's checkpoints or model is refused,
or with `--overwrite_output_dir` cleared of that run's files (the user's own files stay).
"""

import fnmatch
import json
import os
import shutil

import numpy as np

from .calibration import calibrate_run
from .checkpoints import resolve_resume, run_identity
from .model_card import write_model_card
from .prediction import prediction_columns

PREDICTIONS_DIR = "_predictions"
# A model or its checkpoints: what shows that another run used an output_dir.
_ANOTHER_RUN = ("checkpoint-*", "run.json", "config.json", "model*.safetensors")
# Everything a run writes into its output_dir; README.md goes only when it is seqreg_hf's card.
_RUN_FILES = (*_ANOTHER_RUN, "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "vocab.txt", "added_tokens.json", "modeling_seqreg.py",
              "configuration_seqreg.py", "pipelines.py", "handler.py", "*_results.json", "metrics.json",
              "trainer_state.json", "training_args.bin", "*_predictions.csv", "scatter_*.png", "learning_curves.png",
              "runs", PREDICTIONS_DIR, "*.onnx")


def save_results(output_dir, prefix, metrics):
    """`<prefix>_results.json`, merged into `all_results.json`: what Trainer.save_metrics writes, for the commands
    that run without a Trainer."""
    with open(os.path.join(output_dir, f"{prefix}_results.json"), "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, indent=4, sort_keys=True)
    combined_path = os.path.join(output_dir, "all_results.json")
    combined = {}
    if os.path.exists(combined_path):
        with open(combined_path, encoding="utf-8") as handle:
            combined = json.load(handle)
    combined.update(metrics)
    with open(combined_path, "w", encoding="utf-8") as handle:
        json.dump(combined, handle, indent=4, sort_keys=True)


def _matching(folder, patterns):
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def _refuse_another_run(output_dir, resuming):
    found = _matching(output_dir, _ANOTHER_RUN)
    if found:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        go_on = ("it has no checkpoint of this run to resume" if resuming else
                 "to go on with that run, add --resume_from_checkpoint last")
        raise ValueError(f"{output_dir} holds another run ({shown}): a new run there would mix with it ({go_on}). "
                         "Give another --output_dir, or pass --overwrite_output_dir to remove that run's checkpoints "
                         "and results first.")


def refuse_another_run(run):
    """A new run (no --resume_from_checkpoint) stops before any work where another run lies, unless it is to
    replace it (--overwrite_output_dir)."""
    if not run.training.resume_from_checkpoint and not run.model.overwrite_output_dir:
        _refuse_another_run(run.training.output_dir, resuming=False)


def _seqreg_card(path):
    with open(path, encoding="utf-8", errors="replace") as handle:
        return "made with seqreg_hf" in handle.read()


def remove_run_files(output_dir):
    """Remove what a run wrote into `output_dir` (checkpoints, model, results, predictions, plots, logs)."""
    for name in _matching(output_dir, _RUN_FILES) + [n for n in _matching(output_dir, ("README.md",))
                                                     if _seqreg_card(os.path.join(output_dir, n))]:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def start_or_resume(run, config, max_length):
    """(the checkpoint to resume from, or None: a new run; this run's identity, see `run_identity`). Only a checkpoint
    of this run is resumed; a new run starts in an output_dir without another run, or (--overwrite_output_dir) clears
    it of that run first."""
    args, overwrite, identity = run.training, run.model.overwrite_output_dir, run_identity(run, config, max_length)
    resume = resolve_resume(args.resume_from_checkpoint, args.output_dir, identity, replace_others=overwrite)
    if resume is None and not overwrite:
        _refuse_another_run(args.output_dir, resuming=bool(args.resume_from_checkpoint))
    elif resume is None:
        with args.main_process_first(local=False, desc="removing the earlier run"):
            if args.should_save:
                remove_run_files(args.output_dir)
    return resume, identity


def write_predictions(output_dir, split, dataset, predicted, true, label_names, plots=True, plot_dir=None):
    """`<split>_predictions.csv` (the split's columns plus pred_<label>) and, with `plots`, its scatter plot (in
    `plot_dir`, default `output_dir`)."""
    frame = dataset.to_pandas()
    for column, values in zip(prediction_columns(label_names), predicted.T):
        frame[column] = values
    frame.to_csv(os.path.join(output_dir, f"{split}_predictions.csv"), index=False)
    if plots:
        from .plots import scatter_plot

        scatter_plot(predicted, true, label_names, os.path.join(plot_dir or output_dir, f"scatter_{split}.png"),
                     title=split)


def write_run_outputs(trainer, raw, results, run, predicted):
    """Every file of a finished training run, written by the main process (other processes return at once).
    `predicted`: the Trainer's `PredictionOutput` of each split it scored last, whose rows are the `raw` split's
    rows in order; they are written as they are, not predicted again."""
    if not trainer.is_world_process_zero():
        return
    output_dir = trainer.args.output_dir
    data_args = run.data
    trainer.save_state()
    with open(os.path.join(output_dir, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    names = data_args.label_columns
    predictions_dir = run.model.predictions_dir or os.path.join(output_dir, PREDICTIONS_DIR)
    for split, output in predicted.items():
        if output.predictions is None:  # --prediction_loss_only: the Trainer kept none
            continue
        true = np.array([[float(v) for v in raw[split][c]] for c in names]).T.reshape(len(raw[split]), -1)
        if len(output.label_ids) != len(true):
            raise RuntimeError(f"the Trainer scored {len(output.label_ids)} of the {split} split's {len(true)} rows; "
                               "please report this with your transformers version.")
        if not np.array_equal(output.label_ids, true.astype(output.label_ids.dtype)):
            # The Trainer returns rows in its dataloader's order (SeqRegTrainer.get_test_dataloader keeps the split's);
            # rows out of that order would pair texts with other texts' scores, so they stop the run here instead.
            raise RuntimeError(f"the Trainer's {split} predictions are not in the order of the split's rows; please "
                               "report this with your transformers version.")
        scores = np.asarray(output.predictions, dtype=np.float32)
        os.makedirs(predictions_dir, exist_ok=True)
        write_predictions(predictions_dir, split, raw[split], scores, true, names, run.model.plots, output_dir)
    if "validation" in raw:  # split-conformal intervals, stored in config.json (see seqreg_hf.calibration)
        kept = predicted.get("validation")  # the Trainer's own final predictions of these rows, if it kept them
        calibrate_run(trainer, raw["validation"], data_args.text_column, names,
                      predictions=None if kept is None else kept.predictions, text_pair_column=data_args.text_pair_column)
    if run.model.plots:
        from .plots import learning_curves

        learning_curves(trainer.state.log_history, os.path.join(output_dir, "learning_curves.png"))
    write_model_card(output_dir, trainer.model, trainer.card)  # the context the checkpoints' cards came from
