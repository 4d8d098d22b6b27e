"""Batched prediction (`seqreg-hf predict`): texts (or pairs of texts) in, one score per target out, in the labels'
own units.

Texts are grouped by exact token length so no batch is padded (the model then runs the dense RNN
kernel), run under ``torch.inference_mode``, and put back in input order. Every row gets a prediction:
nulls and numbers are read as text, empty texts get the model's defined empty-input prediction, and
over-long texts are truncated; both are counted and reported. A pair model (`config.pair_encoding`) takes
`(text, text_pair)` tuples or `{"text": ..., "text_pair": ...}` dicts; a siamese one reads the pairs in order of their
longer side, each side right-padded on its own (exact under padding), a cross one as one sequence per pair.
"""

import json
import logging
import math
import os
import sys
import threading

import numpy as np
import torch
from tqdm.auto import tqdm

from .conformal import check_level, interval_bounds, quantiles, require_calibration
from .data import cut_long_texts, exact_length_batches, refuse_nested_text
from .formats import atomic_write, check_input, read_chunks
from .logs import progress_enabled
from .model_dir import load_model_dir
from .onnx_session import ONNX_FILE, OnnxSession
from .tokenization import encode_texts, pad_right, truncation_length
from .writers import check_output

logger = logging.getLogger(__name__)


def as_text(value):
    """The text of a CSV / JSONL cell: None and NaN become "", numbers their string form."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)


BACKENDS = ("torch", "onnx")
PAIR_KEYS = ("text", "text_pair")


def check_batch(texts):
    """Refuse, in one line, a lone text or a lone pair dict where a batch is expected: iterating either would score
    its characters or its keys as texts."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings (of pairs, for a pair model); for one text, pass [text].")
    if isinstance(texts, dict):
        raise TypeError("texts is a dict, a single pair: pass a list of pairs, e.g. [pair].")


def split_pairs(inputs, config):
    """(texts, second texts or None) of a batch of inputs for the model of `config`: strings for a single-text model,
    `(text, text_pair)` tuples / lists or {"text", "text_pair"} dicts for a pair model; anything else is a ValueError
    in one line naming the row and the fix."""
    pairs = getattr(config, "pair_encoding", None) is not None
    texts, texts_pair = [], []
    for row, value in enumerate(inputs):
        if isinstance(value, dict):
            if sorted(value) != sorted(PAIR_KEYS):
                raise ValueError(f"input {row} is a dict with keys {sorted(value)}; a pair is {{\"text\": ..., "
                                 "\"text_pair\": ...}.")
            value = (value["text"], value["text_pair"])
        elif isinstance(value, (tuple, list)) and len(value) != 2:
            raise ValueError(f"input {row} is a {type(value).__name__} of {len(value)} items; a pair is two texts, "
                             "(text, text_pair).")
        is_pair = isinstance(value, (tuple, list))
        if is_pair and not pairs:
            raise ValueError(f"input {row} is a pair of texts, and this model reads one text per row: give strings "
                             "(or use a model trained on pairs, pair_encoding='siamese' or 'cross').")
        if pairs and not is_pair:
            raise ValueError(f"input {row} is a single text, and this model scores pairs of texts (pair_encoding="
                             f"{config.pair_encoding!r}): give (text, text_pair) tuples or {{\"text\": ..., "
                             "\"text_pair\": ...} dicts.")
        if is_pair:
            for key, side in zip(PAIR_KEYS, value):
                if isinstance(side, (dict, list, tuple)):  # str() of it would be scored as a text
                    raise ValueError(f"input {row}'s {key} is a {type(side).__name__}, not a text: a pair is two "
                                     "texts, (text, text_pair).")
            texts.append(as_text(value[0]))
            texts_pair.append(as_text(value[1]))
        else:
            texts.append(as_text(value))
    return texts, (texts_pair if pairs else None)


class OverflowNotes:
    """`tokenizer` as `encode_texts` calls it, noting which rows each batch call truncated (a fast tokenizer's
    encodings tell, at no extra cost): a row counts as truncated when any of its texts lost tokens."""

    def __init__(self, tokenizer):
        self.tokenizer, self.rows = tokenizer, None

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def __call__(self, text, *args, **kwargs):
        encoded = self.tokenizer(text, *args, **kwargs)
        if isinstance(text, list) and encoded.encodings:  # a batch (not encode_texts' one-pair separator probe)
            lost = [bool(e.overflowing) for e in encoded.encodings]
            self.rows = lost if self.rows is None else [a or b for a, b in zip(self.rows, lost)]
        return encoded


def no_std_error(config):
    return ValueError(f"a single network (ensemble_size={config.ensemble_size}) has no spread between members, so no "
                      "std: train an ensemble (--ensemble_size 2 or more, the default) for a per-text uncertainty.")


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
        self.max_length = max_length or truncation_length(tokenizer)
        self.device = (device or next(model.parameters()).device) if backend == "torch" else "cpu"
        if backend == "torch" and device is not None:
            self.model.to(device)
        self.report = {}

    @classmethod
    def from_dir(cls, model_name_or_path, backend="torch", onnx_file=None, device=None, trust_remote_code=False,
                 **kwargs):
        """A Predictor for a model directory or Hub id; backend "onnx" runs its exported `model.onnx` (or
        `onnx_file`, e.g. "model.int8.onnx") with onnxruntime, without building the torch model.
        trust_remote_code=True runs a custom tokenizer class the directory carries (refused otherwise)."""
        if backend == "onnx":
            from .model_dir import ModelDirError, load_config, load_tokenizer, resolve_model_dir

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
            except ModelDirError:  # the session's own check of the graph's form, already one line
                raise
            except Exception as error:  # onnxruntime raises its own types for a corrupt graph
                raise ModelDirError(f"{path} cannot be loaded by onnxruntime ({error}); export it again.") from None
            return cls(session, load_tokenizer(folder, config, trust_remote_code), backend="onnx", **kwargs)
        if backend != "torch":
            raise ValueError(f"backend={backend!r}: the choices are {', '.join(BACKENDS)}.")
        model, tokenizer = load_model_dir(model_name_or_path, trust_remote_code=trust_remote_code)
        return cls(model, tokenizer, device=device, **kwargs)

    @property
    def label_names(self):
        return self.config.label_names

    @property
    def has_std(self):
        return self.config.ensemble_size > 1

    @property
    def reads_pairs(self):
        """Whether the model scores pairs of texts (`config.pair_encoding`)."""
        return getattr(self.config, "pair_encoding", None) is not None

    def encode(self, texts, texts_pair=None):
        """Token ids per row ({"input_ids": [...]}, with "pair_input_ids" for a siamese pair model; see
        `tokenization.encode_texts`), and how many rows lost tokens to truncation (long texts are cut before
        tokenizing, so that memory per row stays bounded: see `cut_long_texts`)."""
        texts, cut = cut_long_texts(texts, self.max_length)
        if texts_pair is not None:
            texts_pair, cut_pair = cut_long_texts(texts_pair, self.max_length)
            cut = [a or b for a, b in zip(cut, cut_pair)]
        tokenizer = OverflowNotes(self.tokenizer)
        encoded = encode_texts(tokenizer, texts, texts_pair, getattr(self.config, "pair_encoding", None),
                               self.max_length)
        lost = tokenizer.rows or [False] * len(texts)
        ids = {key: encoded[key] for key in ("input_ids", "pair_input_ids") if key in encoded}
        return ids, sum(a or b for a, b in zip(lost, cut))

    def _run(self, input_ids, want_members, pair_input_ids=None):
        """(scores, member scores or None) of one batch, as numpy arrays: `input_ids` unpadded, or, with
        `pair_input_ids` (a siamese pair model), each side a list of id lists, right-padded here on its own."""
        pair = {}
        if pair_input_ids is None:
            mask = np.ones_like(input_ids)
        else:
            (input_ids, mask), (pair_ids, pair_mask) = (right_pad(side, self.config.pad_token_id)
                                                        for side in (input_ids, pair_input_ids))
            pair = {"pair_input_ids": pair_ids, "pair_attention_mask": pair_mask}
        if self.backend == "onnx":
            scores, members = self.model.run(input_ids, mask, **pair)
            return scores, members
        ids, mask = (torch.from_numpy(array).to(self.device) for array in (input_ids, mask))
        pair = {key: torch.from_numpy(array).to(self.device) for key, array in pair.items()}
        if want_members:
            members = self.model.member_predictions(ids, attention_mask=mask, **pair).float()
            return members.mean(dim=0).cpu().numpy(), members.cpu().numpy()
        return self.model(ids, attention_mask=mask, **pair).logits.float().cpu().numpy(), None

    @property
    def calibration(self):
        """The model's split-conformal calibration (`config.calibration`, see `seqreg_hf.conformal`), or None."""
        return getattr(self.config, "calibration", None) or None

    @torch.inference_mode()
    def predict(self, texts, batch_size=256, return_std=False, progress=None, interval=None):
        """(len(texts), num_labels) float32 scores; with return_std=True also the members' spread (population std,
        same shape), for ensembles only; with interval=L (a level in (0, 1), e.g. 0.9) also the lower and upper
        bounds of the calibrated interval (see `seqreg_hf.conformal`). Several results come as a tuple in that
        order: (scores, std, lo, hi). progress=False hides the batch bar (None: shown for several batches).
        For a pair model `texts` holds pairs: `(text, text_pair)` tuples or {"text", "text_pair"} dicts."""
        check_batch(texts)
        if return_std and not self.has_std:
            raise no_std_error(self.config)
        calibration = None
        if interval is not None:
            level = check_level(interval)
            calibration = require_calibration(self.config, getattr(self.config, "name_or_path", "") or None)
            quantiles(calibration, level)  # a level beyond the calibration's n is refused before any work
        want_members = return_std or (calibration is not None and calibration["kind"] == "adaptive")
        texts, texts_pair = split_pairs(texts, self.config)
        encoded, truncated = self.encode(texts, texts_pair) if texts else ({"input_ids": []}, 0)
        ids, pair_ids = encoded["input_ids"], encoded.get("pair_input_ids")
        empty = [not t.strip() for t in texts]
        if texts_pair is not None:  # a pair counts as empty when either of its texts is
            empty = [a or not b.strip() for a, b in zip(empty, texts_pair)]
        self.report = {"rows": len(texts), "empty": sum(empty), "truncated": truncated}
        if self.report["truncated"]:
            logger.warning("%d text(s) were longer than %d tokens and were truncated.", self.report["truncated"],
                           self.max_length)
        output = np.empty((len(ids), self.config.num_labels), dtype=np.float32)
        spread = np.empty_like(output) if want_members else None
        if pair_ids is None:
            batches = exact_length_batches([len(i) for i in ids], batch_size)
        else:  # in order of the longer side: the padding each side gets stays small
            order = sorted(range(len(ids)), key=lambda r: (max(len(ids[r]), len(pair_ids[r])), r))
            batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        quiet = progress is False or not progress_enabled() or len(batches) < 2  # no bar for a single batch
        for rows in tqdm(batches, desc="predicting", unit=" batches", disable=quiet):
            if pair_ids is None:
                # Every batch holds texts of one length: no padding, so the model runs its dense kernel.
                input_ids = np.array([ids[r] for r in rows], dtype=np.int64).reshape(len(rows), -1)
                scores, members = self._run(input_ids, want_members)
            else:
                scores, members = self._run([ids[r] for r in rows], want_members, [pair_ids[r] for r in rows])
            output[rows] = scores
            if want_members:
                spread[rows] = members.std(axis=0)
        results = [output, *([spread] if return_std else [])]
        if calibration is not None:
            results += interval_bounds(calibration, self.label_names, output, spread, level)
        return tuple(results) if len(results) > 1 else output

    def predict_dicts(self, texts, batch_size=256, return_std=False, interval=None):
        """One {label: score} dict per text, in input order; with return_std, also {label}_std; with interval=L,
        also {label}_lo and {label}_hi, the calibrated interval's bounds."""
        names = self.label_names
        results = self.predict(texts, batch_size, return_std=return_std, interval=interval)
        results = list(results) if isinstance(results, tuple) else [results]
        scores = results.pop(0)
        rows = [dict(zip(names, map(float, row))) for row in scores]
        if return_std:
            for row, sd in zip(rows, results.pop(0)):
                row.update({f"{n}_std": float(v) for n, v in zip(names, sd)})
        if interval is not None:
            lo, hi = results
            for row, low, high in zip(rows, lo, hi):
                for n, a, b in zip(names, low, high):
                    row[f"{n}_lo"], row[f"{n}_hi"] = float(a), float(b)
        return rows


def right_pad(rows, pad_id):
    """(ids, mask) int64 arrays (batch, longest) of token-id lists, real tokens first, then `pad_id`."""
    width = max((len(row) for row in rows), default=0)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
    return ids, mask


def predict(model_or_path, texts, batch_size=256, tokenizer=None, return_std=False, trust_remote_code=False,
            interval=None):
    """Scores of `texts`: one {label: score} dict per text, keyed by label name, in input order (a pair model takes
    pairs: `(text, text_pair)` tuples or {"text": ..., "text_pair": ...} dicts); with
    return_std=True (ensembles) also {label}_std, the spread of the members' scores; with interval=L (e.g. 0.9, a
    calibrated model) also {label}_lo and {label}_hi, the split-conformal interval at level L.

    `model_or_path`: a model directory or Hub id, a `Predictor`, or a loaded `SeqRegForSequenceRegression` (its
    tokenizer is `tokenizer`, or loaded from where the model was loaded from). trust_remote_code=True runs a custom
    tokenizer class the directory carries (refused otherwise).
    """
    check_batch(texts)
    if isinstance(model_or_path, Predictor):
        predictor = model_or_path
    elif isinstance(model_or_path, (str, os.PathLike)):
        predictor = Predictor.from_dir(model_or_path, trust_remote_code=trust_remote_code)
    else:
        if tokenizer is None:
            from .model_dir import load_tokenizer

            tokenizer = load_tokenizer(model_or_path.name_or_path, model_or_path.config, trust_remote_code)
        predictor = Predictor(model_or_path, tokenizer)
    return predictor.predict_dicts(list(texts), batch_size=batch_size, return_std=return_std, interval=interval)


def prediction_columns(label_names):
    """The column names predictions get in every file seqreg-hf writes."""
    return [f"pred_{name}" for name in label_names]


def process_group():
    """(rank, world size, local rank) under torchrun / accelerate launch (from their environment), else (0, 1, 0)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")  # a barrier and nothing else: the ranks share no tensors
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def run_id(world):
    """A name for this run's part files that no other run shares (process id and a random suffix), the same on
    every rank: two runs writing one output file never touch each other's parts."""
    import secrets

    run = f"{os.getpid()}-{secrets.token_hex(4)}"
    if world > 1:
        import torch.distributed as dist

        shared = [run]
        dist.broadcast_object_list(shared, src=0)  # rank 0's name for all ranks
        run = shared[0]
    return run


def interval_columns(label_names):
    """The columns of the calibrated interval's bounds in every file seqreg-hf writes: pred_<label>_lo and _hi."""
    return [f"{column}_{end}" for column in prediction_columns(label_names) for end in ("lo", "hi")]


def check_pair_column(predictor, text_pair_column, source):
    """Refuse, in one line, a --text_pair_column for a single-text model, and none for a pair model."""
    if predictor.reads_pairs and text_pair_column is None:
        raise ValueError(f"{source} scores pairs of texts (pair_encoding={predictor.config.pair_encoding!r}): give "
                         "--text_pair_column, the column of the second texts (e.g. --text_pair_column sentence2).")
    if text_pair_column is not None and not predictor.reads_pairs:
        raise ValueError(f"--text_pair_column {text_pair_column}: {source} reads one text per row, not pairs; drop "
                         "--text_pair_column (or predict with a model trained on pairs).")


def predict_file(predictor, test_file, output_file, text_column="text", batch_size=256, with_std=False,
                 chunk_rows=100_000, rank=0, world=1, interval=None, text_pair_column=None):
    """Score a file chunk by chunk in constant memory and write the rows with their scores, in input order, in the
    format the output's name says (`formats.py`; stdout '-' gets JSON Lines). With `interval` (a level, e.g. 0.9),
    the calibrated interval's bounds go to pred_<label>_lo and pred_<label>_hi. A pair model reads each row's pair
    from `text_column` and `text_pair_column`.

    Under several processes chunk i is scored by rank i % world into a part file of its own; rank 0 then joins the
    parts in chunk order into a temporary file and renames it to the output in one step, so a reader sees a whole
    file, never half of one. Part and temporary names carry this run's id, so two runs writing one output file each
    leave a whole file (the last to finish wins) and never remove each other's parts. Returns the counts (all
    ranks)."""
    if world > 1 and "-" in (output_file, test_file or "-"):
        raise ValueError("several processes cannot share stdin or stdout: give --test_file and --output_file.")
    writer = check_output(output_file)
    check_input(test_file)
    check_pair_column(predictor, text_pair_column, getattr(predictor.config, "name_or_path", "") or "the model")
    text_columns = [text_column] + ([text_pair_column] if text_pair_column is not None else [])
    columns = prediction_columns(predictor.label_names)
    std_columns = [f"{c}_std" for c in columns] if with_std else []
    bound_columns = interval_columns(predictor.label_names) if interval is not None else []
    target = os.path.abspath(output_file) if output_file != "-" else None
    run = run_id(world) if target else None
    stem = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}") if target else None
    part = lambda i: f"{stem}.chunk{i:07d}.{run}.part"  # noqa: E731
    counts = {"rows": 0, "empty": 0, "truncated": 0, "chunks": 0}
    bar, written, all_written = None, [], False
    offset = 0  # rows before this chunk, to name a bad row in the whole file
    try:
        for index, frame in enumerate(read_chunks(test_file, text_column, chunk_rows)):
            if bar is None:  # made once the file reads: an error in its first rows prints on a line of its own
                bar = tqdm(desc=f"predicting (rank {rank})" if world > 1 else "predicting", unit=" rows",
                           disable=not progress_enabled())
            if index == 0:
                for name, flag in zip(text_columns, ("--text_column", "--text_pair_column")):
                    if name not in frame.columns:
                        lines = " (a .txt file or stdin holds one text per line: give a CSV, TSV, JSON Lines or " \
                                "Parquet file with both columns)" if list(frame.columns) == [text_column] else ""
                        raise ValueError(f"{test_file}: no column {name!r}; columns are {list(frame.columns)}{lines}. "
                                         f"Set {flag}.")
                if taken := [c for c in columns + std_columns + bound_columns if c in frame.columns]:
                    raise ValueError(f"{test_file} already has column(s) {taken}, where the predictions go; rename "
                                     "them (or drop them, if they are an earlier run's predictions).")
            offset += len(frame)
            if index % world != rank:
                continue
            for name in text_columns:
                refuse_nested_text(frame[name].tolist(), name, first_row=offset - len(frame), where=f"{test_file}: ")
            texts = frame[text_column].tolist()
            if text_pair_column is not None:
                texts = list(zip(texts, frame[text_pair_column].tolist()))
            result = predictor.predict(texts, batch_size=batch_size, return_std=with_std, progress=False,
                                       interval=interval)
            result = list(result) if isinstance(result, tuple) else [result]
            scores, spread = result[0], result[1] if with_std else None
            for i, column in enumerate(columns):  # each target's score, then its std and bounds
                frame[column] = scores[:, i]
                if with_std:
                    frame[std_columns[i]] = spread[:, i]
                if interval is not None:
                    frame[bound_columns[2 * i]], frame[bound_columns[2 * i + 1]] = result[-2][:, i], result[-1][:, i]
            for key in ("rows", "empty", "truncated"):
                counts[key] += predictor.report[key]
            counts["chunks"] += 1
            if target is None:
                sys.stdout.write(writer.chunk_text(frame, first=index == 0))
            else:
                written.append(part(index))
                writer.write_part(frame, part(index), first=index == 0)
            bar.update(len(frame))
        if bar is not None:
            bar.close()
        if world > 1:
            import torch.distributed as dist

            totals = torch.tensor([counts[k] for k in ("rows", "empty", "truncated", "chunks")], dtype=torch.long)
            dist.all_reduce(totals)  # also the barrier: every part is written once this returns
            counts = dict(zip(("rows", "empty", "truncated", "chunks"), totals.tolist()))
        all_written = True
        if target is not None and rank == 0:
            header = [*text_columns, *[c for i, column in enumerate(columns) for c in
                                     (column, *std_columns[i:i + 1], *bound_columns[2 * i:2 * i + 2])]]
            with atomic_write(target, tag=run) as partial:
                writer.join([part(i) for i in range(counts["chunks"])], header, partial, texts=len(text_columns))
    finally:
        if bar is not None:
            bar.close()
        if target is not None:  # only this run's parts: once every rank has written its own, rank 0 removes them
            if all_written:  # all (joined or not); before that, each rank removes the ones it wrote
                leftovers = [part(i) for i in range(counts["chunks"])] if rank == 0 else []
            else:
                leftovers = written
            for leftover in leftovers:
                if os.path.exists(leftover):
                    os.remove(leftover)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return counts


def main(argv=None):
    from .arguments import parse_command
    from .logs import configure

    args, run = parse_command("predict", sys.argv[1:] if argv is None else argv)
    configure(run.log_level, run.disable_tqdm)
    if not args.model_name_or_path:
        raise ValueError("--model_name_or_path is required: the model directory or Hub id to predict with.")
    check_input(args.test_file)  # a wrong name or folder is found before the model loads, not after scoring
    check_output(args.output_file)
    import signal

    def stop(signum, frame):  # SIGTERM (torchrun sends it to the other ranks when one fails): clean up, then exit
        raise SystemExit(128 + signum)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if in_main else None
    try:
        _predict_command(args)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _predict_command(args):
    if args.interval is not None:  # refused before the model loads or the file is read
        from .model_dir import load_config, resolve_model_dir

        level = check_level(args.interval)
        quantiles(require_calibration(load_config(resolve_model_dir(args.model_name_or_path)), args.model_name_or_path),
                  level)
    rank, world, local_rank = process_group()
    device = args.device
    if device is None and world > 1 and args.backend == "torch" and torch.cuda.is_available():
        device = f"cuda:{local_rank}"
    predictor = Predictor.from_dir(args.model_name_or_path, backend=args.backend, onnx_file=args.onnx_file,
                                   device=device, max_length=args.max_length,
                                   trust_remote_code=args.trust_remote_code)
    with_std = predictor.has_std if args.std is None else args.std
    if with_std and not predictor.has_std:
        raise no_std_error(predictor.config)
    check_pair_column(predictor, args.text_pair_column, args.model_name_or_path)
    counts = predict_file(predictor, args.test_file, args.output_file, args.text_column, args.batch_size, with_std,
                          args.chunk_rows, rank, world, args.interval, args.text_pair_column)
    if counts["truncated"]:
        logger.warning("%d text(s) were longer than %d tokens and were truncated.", counts["truncated"],
                       predictor.max_length)
    report = {**counts, "backend": predictor.backend, "processes": world,
              "std": "the spread of the ensemble members' scores (population std)" if with_std else
              f"none: a single network (ensemble_size={predictor.config.ensemble_size}) has no spread between members"
              if not predictor.has_std else "not asked for (--std false)"}
    if args.interval is not None:
        calibration = predictor.calibration
        report["interval"] = {"level": args.interval, "kind": calibration["kind"], "n": calibration["n"],
                              "columns": "pred_<label>_lo, pred_<label>_hi"}
    if rank == 0:
        print(json.dumps({"predicted": report}), file=sys.stderr)
