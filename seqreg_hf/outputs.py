"""What a run leaves in its output directory, in run_glue.py's conventions.

- `train_results.json`, `eval_results.json`, `test_results.json`, `all_results.json` and `trainer_state.json`
  (Trainer's own `save_metrics` / `save_state`); `metrics.json` keeps every split's metrics and the bad-row
  reports in one file;
- `<split>_predictions.csv`: the split's rows with one `pred_<label>` column per target (the same names as
  `seqreg-hf predict` and `seqreg-hf evaluate` write);
- scatter plots and learning curves, and the model card.
"""

import json
import os

import numpy as np

from .model_card import card_context, write_model_card
from .prediction import Predictor, prediction_columns


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


def write_predictions(output_dir, split, dataset, predicted, true, label_names, plots=True):
    """`<split>_predictions.csv` (the split's columns plus pred_<label>) and, with `plots`, its scatter plot."""
    frame = dataset.to_pandas()
    for column, values in zip(prediction_columns(label_names), predicted.T):
        frame[column] = values
    frame.to_csv(os.path.join(output_dir, f"{split}_predictions.csv"), index=False)
    if plots:
        from .plots import scatter_plot

        scatter_plot(predicted, true, label_names, os.path.join(output_dir, f"scatter_{split}.png"), title=split)


def write_run_outputs(trainer, raw, results, run, card_sizes):
    """Every file of a finished training run (call on the main process only)."""
    output_dir = trainer.args.output_dir
    data_args = run.data
    trainer.save_state()
    with open(os.path.join(output_dir, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    predictor = Predictor(trainer.model, trainer.processing_class)
    names = data_args.label_columns
    for split in ("validation", "test"):
        if split not in raw:
            continue
        predicted = predictor.predict(raw[split][data_args.text_column])
        true = np.array([[float(v) for v in raw[split][c]] for c in names]).T.reshape(len(raw[split]), -1)
        write_predictions(output_dir, split, raw[split], predicted, true, names, run.model.plots)
    if run.model.plots:
        from .plots import learning_curves

        learning_curves(trainer.state.log_history, os.path.join(output_dir, "learning_curves.png"))
    write_model_card(output_dir, card_context(trainer.model, data_args, run.embeddings, results,
                                              trainer.state.log_history, card_sizes, run.training))
