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


BACKENDS = ("torch", "onnx")


def no_std_error(config):
    return ValueError(f"a single network (ensemble_size={config.ensemble_size}) has no spread between members, so no "
                      "std: train an ensemble (--ensemble_size 3 or more) for a per-text uncertainty.")


class Predictor:
    """Texts in, scores out. `model` is a SeqRegForSequenceRegression (backend "torch") or an `OnnxSession`
    (backend "onnx", from `seqreg-hf export`); both run the same exact-length batches."""

    def __init__(self, model, tokenizer, max_length=None, device=None, backend="torch"):
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: the choices are {', '.join(BACKENDS)}.")
        self.backend = backend
        self.model = model.eval() if backend == "torch" else model
        self.config = model.config
        self.tokenizer = pad_right(tokenizer)
        self.max_length = max_length or min(getattr(tokenizer, "model_max_length", 512), 100_000)
        self.device = (device or next(model.parameters()).device) if backend == "torch" else "cpu"
        if backend == "torch" and device is not None:
            self.model.to(device)
        self.report = {}

    @classmethod
    def from_dir(cls, model_name_or_path, backend="torch", onnx_file=None, device=None, **kwargs):
        """A Predictor for a model directory or Hub id; backend "onnx" runs its exported `model.onnx` (or
        `onnx_file`, e.g. "model.int8.onnx") with onnxruntime, without building the torch model."""
        if backend == "onnx":
            from .export import ONNX_FILE, OnnxSession
            from .loading import ModelDirError, load_config, load_tokenizer, resolve_model_dir

            folder = resolve_model_dir(model_name_or_path)
            config = load_config(folder)
            path = os.path.join(folder, onnx_file or ONNX_FILE)
            if not os.path.isfile(path):
                raise ModelDirError(f"{folder} has no {onnx_file or ONNX_FILE}: export it first with `seqreg-hf export "
                                    f"--model_name_or_path MODEL --format onnx --output_dir {folder}`.")
            try:
                session = OnnxSession(path, config)
            except ImportError:
                raise ImportError("backend='onnx' needs onnxruntime: pip install 'seqreg-hf[onnx]'.") from None
            except Exception as error:  # onnxruntime raises its own types for a corrupt graph
                raise ModelDirError(f"{path} cannot be loaded by onnxruntime ({error}); export it again.") from None
            return cls(session, load_tokenizer(folder, config), backend="onnx", **kwargs)
        if backend != "torch":
            raise ValueError(f"backend={backend!r}: the choices are {', '.join(BACKENDS)}.")
        model, tokenizer = load_model_dir(model_name_or_path)
        return cls(model, tokenizer, device=device, **kwargs)

    @property
    def label_names(self):
        return self.config.label_names

    @property
    def has_std(self):
        return self.config.ensemble_size > 1

    def encode(self, texts):
        """Token ids per text, and how many texts lost tokens to truncation."""
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        truncated = sum(1 for e in (encoded.encodings or []) if e.overflowing)
        return encoded["input_ids"], truncated

    def _run(self, input_ids, want_members):
        """(scores, member scores or None) of one unpadded batch, as numpy arrays."""
        if self.backend == "onnx":
            scores, members = self.model.run(input_ids, np.ones_like(input_ids))
            return scores, members
        ids = torch.from_numpy(input_ids).to(self.device)
        mask = torch.ones_like(ids)
        if want_members:
            members = self.model.member_predictions(ids, attention_mask=mask).float()
            return members.mean(dim=0).cpu().numpy(), members.cpu().numpy()
        return self.model(ids, attention_mask=mask).logits.float().cpu().numpy(), None

    @torch.inference_mode()
    def predict(self, texts, batch_size=256, return_std=False):
        """(len(texts), num_labels) float32 scores; with return_std=True also the members' spread (population std,
        same shape), for ensembles only."""
        if return_std and not self.has_std:
            raise no_std_error(self.config)
        texts = [as_text(t) for t in texts]
        ids, truncated = self.encode(texts) if texts else ([], 0)
        self.report = {"rows": len(texts), "empty": sum(1 for t in texts if not t.strip()), "truncated": truncated}
        if self.report["truncated"]:
            logger.warning("%d text(s) were longer than %d tokens and were truncated.", self.report["truncated"],
                           self.max_length)
        output = np.empty((len(ids), self.config.num_labels), dtype=np.float32)
        spread = np.empty_like(output) if return_std else None
        batches = exact_length_batches([len(i) for i in ids], batch_size)
        quiet = not progress_enabled() or len(batches) < 2  # no bar (nor its set-up cost) for a single batch
        for rows in tqdm(batches, desc="predicting", unit=" batches", disable=quiet):
            # Every batch holds texts of one length: no padding, so the model runs its dense kernel.
            input_ids = np.array([ids[r] for r in rows], dtype=np.int64).reshape(len(rows), -1)
            scores, members = self._run(input_ids, return_std)
            output[rows] = scores
            if return_std:
                spread[rows] = members.std(axis=0)
        return (output, spread) if return_std else output

    def predict_dicts(self, texts, batch_size=256, return_std=False):
        """One {label: score} dict per text, in input order (with return_std, also {label}_std)."""
        names = self.label_names
        if not return_std:
            return [dict(zip(names, map(float, row))) for row in self.predict(texts, batch_size)]
        scores, spread = self.predict(texts, batch_size, return_std=True)
        return [{**dict(zip(names, map(float, row))), **{f"{n}_std": float(v) for n, v in zip(names, sd)}}
                for row, sd in zip(scores, spread)]


def predict(model_or_path, texts, batch_size=256, tokenizer=None, return_std=False):
    """Scores of `texts`: one {label: score} dict per text, keyed by label name, in input order; with
    return_std=True (ensembles) also {label}_std, the spread of the members' scores.

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
    return predictor.predict_dicts(list(texts), batch_size=batch_size, return_std=return_std)


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
    predictor = Predictor.from_dir(args.model_name_or_path, backend=args.backend, onnx_file=args.onnx_file,
                                   device=args.device, max_length=args.max_length)
    with_std = predictor.has_std if args.std is None else args.std
    if with_std and not predictor.has_std:
        raise no_std_error(predictor.config)
    frame = _read_input(args.test_file, args.text_column)
    result = predictor.predict(frame[args.text_column].tolist(), batch_size=args.batch_size, return_std=with_std)
    scores, spread = result if with_std else (result, None)
    columns = prediction_columns(predictor.label_names)
    std_columns = [f"{c}_std" for c in columns] if with_std else []
    if taken := [c for c in columns + std_columns if c in frame.columns]:
        raise ValueError(f"{args.test_file} already has column(s) {taken}, where the predictions go; rename them "
                         "(or drop them, if they are an earlier run's predictions).")
    for i, column in enumerate(columns):
        frame[column] = scores[:, i]
        if with_std:
            frame[std_columns[i]] = spread[:, i]
    write_frame(frame, args.output_file)
    report = {**predictor.report, "backend": predictor.backend,
              "std": "the spread of the ensemble members' scores (population std)" if with_std else
              f"none: a single network (ensemble_size={predictor.config.ensemble_size}) has no spread between members"
              if not predictor.has_std else "not asked for (--std false)"}
    print(json.dumps({"predicted": report}), file=sys.stderr)
