"""Batched prediction (`seqreg-hf predict`): texts in, one score per target out, in the labels' own units.

Texts are grouped by exact token length so no batch is padded (the model then runs the dense RNN
kernel), run under ``torch.inference_mode``, and put back in input order. Every row gets a prediction:
nulls and numbers are read as text, empty texts get the model's defined empty-input prediction, and
over-long texts are truncated; both are counted and reported.
"""

import argparse
import json
import logging
import math
import os
import sys

import numpy as np
import torch

from .loading import load_model_dir

logger = logging.getLogger(__name__)


def as_text(value):
    """The text of a CSV / JSONL cell: None and NaN become "", numbers their string form."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)


def length_batches(ids, batch_size):
    """Row indices grouped into batches of at most `batch_size` texts of exactly equal token length."""
    by_length = {}
    for row, tokens in enumerate(ids):
        by_length.setdefault(len(tokens), []).append(row)
    for length in sorted(by_length):
        rows = by_length[length]
        for start in range(0, len(rows), batch_size):
            yield rows[start : start + batch_size]


class Predictor:
    def __init__(self, model, tokenizer, max_length=None, device=None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"
        self.max_length = max_length or min(getattr(tokenizer, "model_max_length", 512), 100_000)
        self.device = device or next(model.parameters()).device
        self.report = {}

    @classmethod
    def from_dir(cls, model_dir, **kwargs):
        model, tokenizer = load_model_dir(model_dir)
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
        for rows in length_batches(ids, batch_size):
            # Every batch holds texts of one length: no padding, so the model runs its dense kernel.
            input_ids = torch.tensor([ids[r] for r in rows], dtype=torch.long).reshape(len(rows), -1)
            mask = torch.ones_like(input_ids)
            logits = self.model(input_ids.to(self.device), attention_mask=mask.to(self.device)).logits
            output[rows] = logits.float().cpu().numpy()
        return output


def _read_input(path, text_column):
    """Rows (as dicts) from a CSV / JSONL / JSON file, or stdin lines when path is '-' or None."""
    import pandas as pd

    if path in (None, "-"):
        return pd.DataFrame({text_column: [line.rstrip("\n") for line in sys.stdin]})
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file {path!r} does not exist.")
    lower = path.lower()
    if lower.endswith((".jsonl", ".json")):
        frame = pd.read_json(path, lines=lower.endswith(".jsonl"), dtype=False)
    elif lower.endswith((".csv", ".tsv")):
        frame = pd.read_csv(path, sep="\t" if lower.endswith(".tsv") else ",", dtype=str, keep_default_na=False,
                            na_values=[])
    elif lower.endswith(".txt"):
        with open(path, encoding="utf-8") as handle:
            frame = pd.DataFrame({text_column: [line.rstrip("\n") for line in handle]})
    else:
        raise ValueError(f"{path}: unsupported input type; use .csv, .tsv, .jsonl, .json or .txt.")
    if text_column not in frame.columns:
        raise ValueError(f"{path}: no column {text_column!r}; columns are {list(frame.columns)}. Set --text_column.")
    return frame


def main(argv=None):
    parser = argparse.ArgumentParser(prog="seqreg-hf predict", description="Score texts with a trained model.")
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--input", default="-", help="CSV / TSV / JSONL / JSON / TXT file, or - for stdin lines")
    parser.add_argument("--output", default="-", help="CSV or JSONL file (by extension), or - for JSONL on stdout")
    parser.add_argument("--text_column", default="text")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--max_length", type=int, default=None, help="truncate longer texts (default: tokenizer's)")
    args = parser.parse_args(argv)
    predictor = Predictor.from_dir(args.model, max_length=args.max_length)
    frame = _read_input(args.input, args.text_column)
    scores = predictor.predict(frame[args.text_column].tolist(), batch_size=args.batch_size)
    for i, name in enumerate(predictor.label_names):
        frame[name if name not in frame.columns else f"pred_{name}"] = scores[:, i]
    if args.output == "-":
        frame.to_json(sys.stdout, orient="records", lines=True, force_ascii=False)
    elif args.output.lower().endswith(".jsonl"):
        frame.to_json(args.output, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(args.output, index=False)
    print(json.dumps({"predicted": predictor.report}), file=sys.stderr)
