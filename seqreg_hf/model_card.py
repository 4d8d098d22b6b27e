"""Model cards: rendered from the Jinja template templates/model_card.md.j2 with huggingface_hub's ModelCard.

Every card (the untrained model of `init`, each checkpoint, the final model, a push) is written by
`write_model_card` from one context, `CardCallback.context`. The callback collects during training what the card
shows (hyperparameters, dataset statistics, eval results, the steps trained), as setfit's ModelCardCallback does;
an untrained model's card comes from a callback that saw no training.
"""

import json
import os
import re

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import TrainerCallback

from .conformal import quantile_rank

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates", "model_card.md.j2")
# The card's "Use" section, rendered on its own so that cards kept elsewhere (model_cards/) can be checked against it.
USAGE_TEMPLATE = os.path.join(os.path.dirname(TEMPLATE), "usage.md.j2")

KNOWN_DATASETS = {
    "emobank": {
        "name": "EmoBank",
        "id": "JULIELab/EmoBank",
        "license": "cc-by-sa-4.0",
        "language": "en",
        "examples": ["I was thrilled to finally meet her after all these years.",
                     "The committee will reconvene on Tuesday to review the budget.",
                     "He slammed the door and refused to speak to anyone."],
        "attribution": (
            "Trained on EmoBank (CC-BY-SA 4.0), by Sven Buechel and Udo Hahn:\n\n"
            "- Sven Buechel and Udo Hahn. 2017. EmoBank: Studying the Impact of Annotation Perspective and "
            "Representation Format on Dimensional Emotion Analysis. EACL 2017.\n"
            "- Sven Buechel and Udo Hahn. 2017. Readers vs. writers vs. texts: Coping with different perspectives "
            "of text understanding in emotion annotation. LAW 2017.\n\n"
            "Under CC-BY-SA 4.0, material derived from the data is shared under the same license."
        ),
    },
    "stsb": {
        "name": "STS Benchmark",
        # The Hub's copy with the original 0-5 scores and splits (sentence-transformers/stsb rescales them to 0-1).
        "id": "mteb/stsbenchmark-sts",
        "license": "cc-by-sa-4.0",
        "language": "en",
        "attribution": (
            "Trained on the STS Benchmark (its similarity scores are CC BY-SA 4.0; each sentence keeps its "
            "source's terms), by Daniel Cer, Mona Diab, Eneko Agirre, Iñigo Lopez-Gazpio and Lucia Specia:\n\n"
            "- Daniel Cer, Mona Diab, Eneko Agirre, Iñigo Lopez-Gazpio and Lucia Specia. 2017. SemEval-2017 Task 1: "
            "Semantic Textual Similarity Multilingual and Crosslingual Focused Evaluation. SemEval 2017.\n\n"
            "Under CC-BY-SA 4.0, material derived from the scores is shared under the same license."
        ),
    },
}
# How each pair encoding reads a pair, in the card's words.
PAIR_READINGS = {
    "siamese": "one shared encoder reads each text on its own into a sentence vector, u and v, and the head reads "
               "[u + v, |u − v|, u * v]: a pair scores the same in either order",
    "cosine": "one shared encoder reads each text on its own into a sentence vector, u and v, and the score is "
              "scale · cos(u, v) + shift (one trained scale and shift per target): a pair scores the same in either "
              "order",
    "cross": "one sequence, the text, the tokenizer's separator, then the second text (`tokenizer(text, text_pair)`), "
             "read by the encoder as one text: the order of the two texts matters",
}
CARD_LEVELS = (0.9, 0.8, 0.5)  # the level of the card's interval call: the first one the calibration's n allows
GENERIC_EXAMPLES = ["What a wonderful day!", "I am not sure this is going to work."]
_METRICS = ("pearson", "spearman", "mse", "mae", "r2")
_HUB_METRIC_TYPES = {"pearson": "pearsonr", "spearman": "spearmanr", "mse": "mse", "mae": "mae", "r2": "r_squared"}


def dataset_info(data_args):
    """Name, Hub id, license and attribution of the training data, from the arguments or a known dataset."""
    files = [getattr(data_args, a, None) for a in ("train_file", "validation_file", "test_file", "dataset_name")]
    known = next((v for key, v in KNOWN_DATASETS.items() if any(key in str(f).lower() for f in files if f)), {})
    return {
        "name": getattr(data_args, "dataset_display_name", None) or known.get("name") or
        getattr(data_args, "dataset_name", None) or os.path.basename(str(files[0] or "")) or None,
        "id": known.get("id") or getattr(data_args, "dataset_name", None),
        "license": getattr(data_args, "dataset_license", None) or known.get("license"),
        "attribution": getattr(data_args, "dataset_attribution", None) or known.get("attribution"),
        "language": known.get("language"),
        # The widget shows texts the user wrote or ours, never the data's: the card is published with the model.
        "examples": list(getattr(data_args, "widget_examples", None) or []) or known.get("examples"),
    }


def _pair_reading(config):
    encoding = getattr(config, "pair_encoding", None)
    return None if encoding is None else {"encoding": encoding, "how": PAIR_READINGS[encoding]}


def _architecture(config):
    direction = "bidirectional " if config.bidirectional else ""
    single = f"a {config.num_layers}-layer {direction}{config.rnn_type.upper()} (hidden {config.hidden_size})"
    return single if config.ensemble_size == 1 else f"an ensemble of {config.ensemble_size} members, each {single},"


def _contextual_layers(config):
    if getattr(config, "embedding_type", "static") != "contextual":
        return None
    count = config.contextual_config.get("num_hidden_layers", 0) + 1
    layers = config.embedding_layers or list(range(count))
    mix = "their mean" if config.layer_mix == "mean" else "a trainable scalar mix"
    return f"hidden states {', '.join(map(str, layers))} of {count}, {mix}"


def _is_hub_id(source):
    return bool(source) and source.count("/") == 1 and not os.path.exists(source) and not source.startswith(".")


def _model_name(training_args):
    if training_args is None:
        return "seqreg sentence regressor"
    return training_args.hub_model_id or os.path.basename(os.path.normpath(training_args.output_dir))


HYPERPARAMETERS = ("learning_rate", "per_device_train_batch_size", "num_train_epochs", "seed", "weight_decay",
                   "lr_scheduler_type", "warmup_steps", "metric_for_best_model", "train_sampling_strategy")
_SPLITS = {"eval": "validation", "test": "test"}  # metric_key_prefix -> the split the card names


class CardCallback(TrainerCallback):
    """Collects what the card shows while a Trainer runs: the hyperparameters (at the start of training), the latest
    evaluation of each split (at every evaluation, the final ones included) and the steps trained; the dataset's
    name, sizes and dropped rows are given. `context(model)` is the context every card is rendered from."""

    def __init__(self, data_args=None, bad_rows=None, dataset_sizes=None):
        self.data_args, self.bad_rows, self.dataset_sizes = data_args, bad_rows or {}, dataset_sizes or {}
        self.training_args, self.hyperparameters, self.global_step, self.results = None, [], 0, {}

    def on_init_end(self, args, state, control, **kwargs):
        self.training_args = args

    def on_train_begin(self, args, state, control, **kwargs):
        self.training_args, self.global_step = args, state.global_step
        self.hyperparameters = [(key, getattr(value, "value", value))  # enums print as their value
                                for key, value in ((k, getattr(args, k)) for k in HYPERPARAMETERS if hasattr(args, k))]
        # A resumed run's evaluations before the checkpoint are in its restored log history, not seen here.
        self.results = {**metrics_from_history(state.log_history), **self.results}

    def on_step_end(self, args, state, control, **kwargs):
        self.global_step = state.global_step

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        for prefix, split in _SPLITS.items():
            if any(key.startswith(f"{prefix}_") for key in metrics or {}):
                self.results[split] = metrics

    # A run's final scores come from Trainer.predict (its predictions are the run's files), which reports here.
    on_predict = on_evaluate

    def context(self, model):
        config, training_args, results = model.config, self.training_args, self.results
        data = dataset_info(self.data_args) if self.data_args is not None else {}
        pair = _pair_reading(config)
        rows, eval_results = [], []
        for split, prefix in (("validation", "eval"), ("test", "test")):
            metrics = results.get(split) or {}
            for name in config.label_names + ["mean"]:
                if f"{prefix}_pearson_{name}" not in metrics:
                    continue
                rows.append({"split": split, "target": name,
                             **{m: f"{metrics[f'{prefix}_{m}_{name}']:.4f}" for m in _METRICS}})
                for m in _METRICS:
                    eval_results.append(EvalResult(
                        task_type="text-classification", task_name=f"Sentence{'-pair' if pair else ''} regression",
                        dataset_type=data.get("id") or "custom", dataset_name=data.get("name") or "custom",
                        dataset_split=split, metric_type=_HUB_METRIC_TYPES[m],
                        metric_value=round(float(metrics[f"{prefix}_{m}_{name}"]), 4), metric_name=f"{m} ({name})"))
        source = config.embeddings_source or "unknown"
        card_data = ModelCardData(
            library_name="transformers",
            license=data.get("license") or "apache-2.0",
            tags=["seqreg", "sentence-regression", "text-regression", config.rnn_type, "frozen-embeddings"] +
            (["sentence-pair-regression", f"pair-encoding-{pair['encoding']}"] if pair else []),
            datasets=[data["id"]] if data.get("id") else None,
            metrics=[_HUB_METRIC_TYPES[m] for m in _METRICS],
            base_model=source if _is_hub_id(source) else None,
            model_name=_model_name(training_args),
            eval_results=eval_results or None,
            pipeline_tag="text-classification",
            language=data.get("language"),
            # The Hub's text-classification widget sends one text, which a pair model refuses: no widget for pairs.
            widget=None if pair else [{"text": text} for text in (data.get("examples") or GENERIC_EXAMPLES)],
        )
        dropped = {s: r["dropped"] for s, r in self.bad_rows.items() if r.get("dropped")}
        repo_id = getattr(training_args, "hub_model_id", None) or "path/to/model"
        return {
            "card_data": card_data,
            "model_name": _model_name(training_args),
            "repo_id": repo_id,
            "usage": render_usage(repo_id, config.label_names, config.ensemble_size,
                                  getattr(config, "calibration", None), pair and pair["encoding"]),
            "architecture": _architecture(config),
            "pair": pair,
            "architecture_table": [(k, getattr(config, k)) for k in (
                ("pair_encoding",) * bool(pair) + ("rnn_type", "hidden_size", "num_layers", "bidirectional",
                "direction_merge", "pooling", "embedding_dropout", "word_dropout", "rnn_dropout", "head_dropout",
                "head_hidden_sizes", "loss", "ensemble_size", "freeze_embeddings"))],
            "trainable_parameters": f"{model.num_parameters(only_trainable=True):,}",
            "vocab_size": config.vocab_size,
            "embedding_dim": config.embedding_dim,
            "embeddings_source": source,
            "num_labels": config.num_labels,
            "ensemble_size": config.ensemble_size,
            "contextual_layers": _contextual_layers(config),
            "scalar_mix": _contextual_layers(config) is not None and config.layer_mix == "scalar",
            "label_names": config.label_names,
            "label_means": [round(m, 4) for m in config.label_means or []],
            "label_stds": [round(s, 4) for s in config.label_stds or []],
            "trained": self.global_step > 0,
            "dataset_name": data.get("name"),
            "dataset_sizes": self.dataset_sizes,
            "bad_rows_note": "Rows dropped as unusable (empty text or non-finite label): " +
                             ", ".join(f"{s} {n}" for s, n in dropped.items()) + "." if dropped else "",
            "hyperparameters": self.hyperparameters,
            "results_table": rows,
            "attribution": data.get("attribution"),
        }


def card_level(n):
    """The interval level the card's snippet shows for a calibration of `n` rows: 0.9 where n allows it (a level
    above n / (n + 1) is refused), else the highest of 0.8 and 0.5 that it allows."""
    return next((level for level in CARD_LEVELS if quantile_rank(n, level) <= n), CARD_LEVELS[-1])


def render_usage(repo_id, label_names, ensemble_size, calibration=None, pair_encoding=None):
    """The card's "Use" section: snippets that run as written with plain transformers (seqreg_hf absent). With
    `calibration` (config.calibration) it says what the intervals were calibrated on and calls the pipeline with
    `interval=`; without, it shows the command that calibrates the model. A pair model's (`pair_encoding`) snippets
    feed pairs: the pipeline `{"text", "text_pair"}` dicts, the model the second texts as `pair_input_ids` (siamese,
    cosine) or the joined sequence `tokenizer(texts, texts_pair)` (cross)."""
    import jinja2

    with open(USAGE_TEMPLATE, encoding="utf-8") as handle:
        template = jinja2.Template(handle.read(), keep_trailing_newline=True)
    return template.render(repo_id=repo_id, num_labels=len(label_names), label_names=label_names,
                           ensemble_size=ensemble_size, calibration=calibration or None,
                           level=card_level(calibration["n"]) if calibration else None,
                           pair_encoding=pair_encoding or None)


def update_usage(folder, label_names, ensemble_size, before, after):
    """After a model in `folder` is (re)calibrated: the "Use" section of its README.md, a seqreg_hf card rendered
    with calibration `before`, rewritten for `after`. Returns whether it was (a card written otherwise stays).
    A pair model's snippets are its pair encoding's, read from the folder's config.json."""
    path = os.path.join(folder, "README.md")
    if not os.path.isfile(path):
        return False
    config_path = os.path.join(folder, "config.json")
    pair_encoding = None
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as handle:
            pair_encoding = json.load(handle).get("pair_encoding")
    with open(path, encoding="utf-8") as handle:
        card = handle.read()
    named = re.search(r'from_pretrained\("([^"\n]+)", trust_remote_code=True\)', card)
    if named is None:
        return False
    old = render_usage(named.group(1), label_names, ensemble_size, before, pair_encoding).rstrip()
    if old not in card:
        return False
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(card.replace(old, render_usage(named.group(1), label_names, ensemble_size, after,
                                                       pair_encoding).rstrip(), 1))
    return True


def render_model_card(context):
    context = dict(context)
    card_data = context.pop("card_data")
    return ModelCard.from_template(card_data, template_path=TEMPLATE, **context)


def write_model_card(output_dir, model, card=None):
    """README.md in `output_dir`: `model`'s card, rendered from `card`'s context (a CardCallback; none: the card
    of a model that saw no training)."""
    rendered = render_model_card((card or CardCallback()).context(model))
    rendered.save(os.path.join(output_dir, "README.md"))
    return rendered


def metrics_from_history(log_history):
    """The latest eval metrics in Trainer's log history, in the shape CardCallback.results holds."""
    latest = next((h for h in reversed(log_history) if "eval_loss" in h), None)
    return {"validation": latest} if latest else {}
