"""Batched prediction (`seqreg-hf predict`): texts in, one score per target out, in the labels' own units.

Texts are grouped by exact token length so no batch is padded (the model then runs the dense RNN
kernel), run under ``torch.inference_mode``, and put back in input order. Every row gets a prediction:
nulls and numbers are read as text, empty texts get the model's defined empty-input prediction, and
over-long texts are truncated; both are counted and reported.
"""

import json
import logging
import math
import os
import sys

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import exact_length_batches
from .loading import load_model_dir
from .logs import progress_enabled
from .tokenization import pad_right

logger = logging.getLogger(__name__)


def as_text(value):
    """The text of a CSV / JSONL cell: None and NaN become "", numbers their string form."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)


class Predictor:
    def __init__(self, model, tokenizer, max_length=None, device=None):
        self.model = model.eval()
        self.tokenizer = pad_right(tokenizer)
        self.max_length = max_length or min(getattr(tokenizer, "model_max_length", 512), 100_000)
        self.device = device or next(model.parameters()).device
        self.report = {}

    @classmethod
    def from_dir(cls, model_name_or_path, **kwargs):
        """A Predictor for a model directory or Hub id."""
        model, tokenizer = load_model_dir(model_name_or_path)
        return cls(model, tokenizer, **kwargs)

    @property
    def label_names(self):
        return self.model.config.label_names

    def encode(self, texts):
        """Token ids per text, and how many texts lost tokens to truncation."""
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        truncated = sum(1 for e in (encoded.encodings or []) if e.overflowing)
        return encoded["input_ids"], truncated

    @torch.inference_mode()
    def predict(self, texts, batch_size=256):
        """(len(texts), num_labels) float32 scores."""
        texts = [as_text(t) for t in texts]
        ids, truncated = self.encode(texts) if texts else ([], 0)
        self.report = {"rows": len(texts), "empty": sum(1 for t in texts if not t.strip()), "truncated": truncated}
        if self.report["truncated"]:
            logger.warning("%d text(s) were longer than %d tokens and were truncated.", self.report["truncated"],
                           self.max_length)
        output = np.empty((len(ids), self.model.config.num_labels), dtype=np.float32)
        batches = exact_length_batches([len(i) for i in ids], batch_size)
        quiet = not progress_enabled() or len(batches) < 2  # no bar (nor its set-up cost) for a single batch
        for rows in tqdm(batches, desc="predicting", unit=" batches", disable=quiet):
            # Every batch holds texts of one length: no padding, so the model runs its dense kernel.
            input_ids = torch.tensor([ids[r] for r in rows], dtype=torch.long).reshape(len(rows), -1)
            mask = torch.ones_like(input_ids)
            logits = self.model(input_ids.to(self.device), attention_mask=mask.to(self.device)).logits
            output[rows] = logits.float().cpu().numpy()
        return output

    def predict_dicts(self, texts, batch_size=256):
        """One {label: score} dict per text, in input order."""
        names = self.label_names
        return [dict(zip(names, map(float, row))) for row in self.predict(texts, batch_size)]


def predict(model_or_path, texts, batch_size=256, tokenizer=None):
    """Scores of `texts`: one {label: score} dict per text, keyed by label name, in input order.

    `model_or_path`: a model directory or Hub id, a `Predictor`, or a loaded `SeqRegForSequenceRegression` (its
    tokenizer is `tokenizer`, or loaded from where the model was loaded from).
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings; for one text, pass [text].")
    if isinstance(model_or_path, Predictor):
        predictor = model_or_path
    elif isinstance(model_or_path, (str, os.PathLike)):
        predictor = Predictor.from_dir(model_or_path)
    else:
        if tokenizer is None:
            from .loading import load_tokenizer

            tokenizer = load_tokenizer(model_or_path.name_or_path, model_or_path.config)
        predictor = Predictor(model_or_path, tokenizer)
    return predictor.predict_dicts(list(texts), batch_size=batch_size)


def prediction_columns(label_names):
    """The column names predictions get in every file seqreg-hf writes."""
    return [f"pred_{name}" for name in label_names]


def _read_input(path, text_column):
    """Rows (as dicts) from a CSV / TSV / JSONL / JSON file (optionally compressed), or stdin lines when path is
    '-' or None; a file that cannot be read stops with one line naming it (and the row, for bytes not UTF-8)."""
    import pandas as pd

    from .data import _COMPRESSIONS, _plain_name, read_error

    if path in (None, "-"):
        return pd.DataFrame({text_column: [line.rstrip("\n") for line in sys.stdin]})
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file {path!r} does not exist.")
    name = _plain_name(path)
    try:
        if name.endswith((".jsonl", ".json")):
            frame = pd.read_json(path, lines=name.endswith(".jsonl"), dtype=False)
        elif name.endswith((".csv", ".tsv")):
            frame = pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",", dtype=str, keep_default_na=False,
                                na_values=[])
        elif name.endswith(".txt") and name == path.lower():
            with open(path, encoding="utf-8") as handle:
                frame = pd.DataFrame({text_column: [line.rstrip("\n") for line in handle]})
        else:
            raise ValueError(f"{path}: unsupported input type; use .csv, .tsv, .jsonl, .json (each may be compressed: "
                             f"{', '.join(_COMPRESSIONS)}) or .txt.")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise read_error([path], error) from None
    if text_column not in frame.columns:
        raise ValueError(f"{path}: no column {text_column!r}; columns are {list(frame.columns)}. Set --text_column.")
    return frame


def write_frame(frame, path):
    """A CSV or JSONL file (by extension), or JSONL on stdout for '-'. A file is written under a temporary name
    and renamed when complete, so an interrupted run never leaves a half file under `path`."""
    if path == "-":
        frame.to_json(sys.stdout, orient="records", lines=True, force_ascii=False)
        return
    partial = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{os.getpid()}.part")
    try:
        if path.lower().endswith(".jsonl"):
            frame.to_json(partial, orient="records", lines=True, force_ascii=False)
        else:
            frame.to_csv(partial, index=False)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def main(argv=None):
    from .arguments import parse_command
    from .logs import configure

    args, run = parse_command("predict", sys.argv[1:] if argv is None else argv)
    configure(run.log_level, run.disable_tqdm)
    if not args.model_name_or_path:
        raise ValueError("--model_name_or_path is required: the model directory or Hub id to predict with.")
    predictor = Predictor.from_dir(args.model_name_or_path, max_length=args.max_length)
    frame = _read_input(args.test_file, args.text_column)
    scores = predictor.predict(frame[args.text_column].tolist(), batch_size=args.batch_size)
    columns = prediction_columns(predictor.label_names)
    if taken := [c for c in columns if c in frame.columns]:
        raise ValueError(f"{args.test_file} already has column(s) {taken}, where the predictions go; rename them "
                         "(or drop them, if they are an earlier run's predictions).")
    for i, column in enumerate(columns):
        frame[column] = scores[:, i]
    write_frame(frame, args.output_file)
    print(json.dumps({"predicted": predictor.report}), file=sys.stderr)
