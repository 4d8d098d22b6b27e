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
import threading

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import cut_long_texts, exact_length_batches, refuse_nested_text
from .loading import load_model_dir
from .logs import progress_enabled
from .onnx_session import ONNX_FILE, OnnxSession
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
    def from_dir(cls, model_name_or_path, backend="torch", onnx_file=None, device=None, trust_remote_code=False,
                 **kwargs):
        """A Predictor for a model directory or Hub id; backend "onnx" runs its exported `model.onnx` (or
        `onnx_file`, e.g. "model.int8.onnx") with onnxruntime, without building the torch model.
        trust_remote_code=True runs a custom tokenizer class the directory carries (refused otherwise)."""
        if backend == "onnx":
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

    def encode(self, texts):
        """Token ids per text, and how many texts lost tokens to truncation (long texts are cut before tokenizing,
        so that memory per row stays bounded: see `cut_long_texts`)."""
        texts, cut = cut_long_texts(texts, self.max_length)
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        overflowing = [bool(e.overflowing) for e in encoded.encodings] if encoded.encodings else [False] * len(texts)
        return encoded["input_ids"], sum(o or c for o, c in zip(overflowing, cut))

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
    def predict(self, texts, batch_size=256, return_std=False, progress=None):
        """(len(texts), num_labels) float32 scores; with return_std=True also the members' spread (population std,
        same shape), for ensembles only. progress=False hides the batch bar (None: shown for several batches)."""
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
        quiet = progress is False or not progress_enabled() or len(batches) < 2  # no bar for a single batch
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


def predict(model_or_path, texts, batch_size=256, tokenizer=None, return_std=False, trust_remote_code=False):
    """Scores of `texts`: one {label: score} dict per text, keyed by label name, in input order; with
    return_std=True (ensembles) also {label}_std, the spread of the members' scores.

    `model_or_path`: a model directory or Hub id, a `Predictor`, or a loaded `SeqRegForSequenceRegression` (its
    tokenizer is `tokenizer`, or loaded from where the model was loaded from). trust_remote_code=True runs a custom
    tokenizer class the directory carries (refused otherwise).
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings; for one text, pass [text].")
    if isinstance(model_or_path, Predictor):
        predictor = model_or_path
    elif isinstance(model_or_path, (str, os.PathLike)):
        predictor = Predictor.from_dir(model_or_path, trust_remote_code=trust_remote_code)
    else:
        if tokenizer is None:
            from .loading import load_tokenizer

            tokenizer = load_tokenizer(model_or_path.name_or_path, model_or_path.config, trust_remote_code)
        predictor = Predictor(model_or_path, tokenizer)
    return predictor.predict_dicts(list(texts), batch_size=batch_size, return_std=return_std)


def prediction_columns(label_names):
    """The column names predictions get in every file seqreg-hf writes."""
    return [f"pred_{name}" for name in label_names]


def iter_input(path, text_column, chunk_rows):
    """DataFrames of at most `chunk_rows` rows from a file named as the format table says (`formats.py`: CSV, TSV,
    JSON Lines, a JSON array, Parquet, or .txt with one text per line; compressed or not) or from stdin ('-'), read
    lazily so that memory stays constant (a JSON array is read whole). A file that cannot be read stops with one
    line naming it (and the row, for bytes that are not UTF-8)."""
    import pandas as pd

    from .data import check_header, read_error
    from .formats import file_format, open_binary, open_text

    def lines(handle):
        chunk = []
        for line in handle:
            chunk.append(line.rstrip("\n"))
            if len(chunk) == chunk_rows:
                yield pd.DataFrame({text_column: chunk})
                chunk = []
        if chunk:
            yield pd.DataFrame({text_column: chunk})

    if path in (None, "-"):
        yield from lines(sys.stdin)
        return
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file {path!r} does not exist.")
    ext, found, _ = file_format(path)
    if found.builder == "csv":
        check_header(path)  # pandas would rename a repeated column 'NAME.1' and score the wrong one
    try:
        if found.builder is None:
            with open_text(path) as handle:  # a byte-order mark is not part of the first text
                yield from lines(handle)
        elif found.builder == "parquet":
            yield from _parquet_chunks(path, chunk_rows)
        else:
            with open_binary(path) as handle:
                if found.builder == "csv":
                    chunks = pd.read_csv(handle, sep=found.options.get("delimiter", ","), dtype=str,
                                         keep_default_na=False, na_values=[], chunksize=chunk_rows,
                                         encoding="utf-8-sig")
                elif ext == ".jsonl":
                    chunks = pd.read_json(handle, lines=True, dtype=False, chunksize=chunk_rows, encoding="utf-8-sig")
                else:
                    chunks = [pd.read_json(handle, dtype=False, encoding="utf-8-sig")]
                yield from chunks
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError, EOFError) as error:
        raise read_error([path], error) from None  # pandas' JSON reader and pyarrow raise ValueError; gzip OSError


def _parquet_chunks(path, chunk_rows):
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    rows = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        rows += batch.num_rows
        yield batch.to_pandas()
    if rows == 0:  # no rows: the columns still name the output's
        yield parquet.schema_arrow.empty_table().to_pandas()


def check_output(output_file):
    """The writer of `output_file`, checked before anything is scored: a name of the format table, in a folder that
    exists and takes new files (a probe file is made and removed: permission bits do not tell, e.g. to root on a
    read-only mount)."""
    import tempfile

    from .formats import OutputWriter

    if output_file == "-":
        return OutputWriter(output_file)
    if os.path.isdir(output_file):
        raise IsADirectoryError(f"--output_file {output_file} is a folder; name a file in it, e.g. "
                                f"{os.path.join(output_file, 'predictions.csv')}.")
    writer = OutputWriter(output_file)
    target = os.path.abspath(output_file)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise FileNotFoundError(f"--output_file {output_file}: {folder} {what}; create the folder or choose another "
                                "--output_file.")
    try:
        handle, probe = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".probe", dir=folder)
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise PermissionError(f"--output_file {output_file}: cannot write in {folder} ({error.strerror}); make the "
                              "folder writable or choose another --output_file.") from None
    return writer


def check_input(test_file):
    """Refuse an input name that the format table does not know, before the model is loaded."""
    from .formats import file_format

    if test_file not in (None, "-"):
        file_format(test_file)


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


def predict_file(predictor, test_file, output_file, text_column="text", batch_size=256, with_std=False,
                 chunk_rows=100_000, rank=0, world=1):
    """Score a file chunk by chunk in constant memory and write the rows with their scores, in input order, in the
    format the output's name says (`formats.py`; stdout '-' gets JSON Lines).

    Under several processes chunk i is scored by rank i % world into a part file of its own; rank 0 then joins the
    parts in chunk order into a temporary file and renames it to the output in one step, so a reader sees a whole
    file, never half of one. Part and temporary names carry this run's id, so two runs writing one output file each
    leave a whole file (the last to finish wins) and never remove each other's parts. Returns the counts (all
    ranks)."""
    if world > 1 and "-" in (output_file, test_file or "-"):
        raise ValueError("several processes cannot share stdin or stdout: give --test_file and --output_file.")
    writer = check_output(output_file)
    check_input(test_file)
    columns = prediction_columns(predictor.label_names)
    std_columns = [f"{c}_std" for c in columns] if with_std else []
    target = os.path.abspath(output_file) if output_file != "-" else None
    run = run_id(world) if target else None
    stem = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}") if target else None
    part = lambda i: f"{stem}.chunk{i:07d}.{run}.part"  # noqa: E731
    counts = {"rows": 0, "empty": 0, "truncated": 0, "chunks": 0}
    bar, written, all_written = None, [], False
    offset = 0  # rows before this chunk, to name a bad row in the whole file
    try:
        for index, frame in enumerate(iter_input(test_file, text_column, chunk_rows)):
            if bar is None:  # made once the file reads: an error in its first rows prints on a line of its own
                bar = tqdm(desc=f"predicting (rank {rank})" if world > 1 else "predicting", unit=" rows",
                           disable=not progress_enabled())
            if index == 0:
                if text_column not in frame.columns:
                    raise ValueError(f"{test_file}: no column {text_column!r}; columns are {list(frame.columns)}. Set "
                                     "--text_column.")
                if taken := [c for c in columns + std_columns if c in frame.columns]:
                    raise ValueError(f"{test_file} already has column(s) {taken}, where the predictions go; rename "
                                     "them (or drop them, if they are an earlier run's predictions).")
            offset += len(frame)
            if index % world != rank:
                continue
            texts = frame[text_column].tolist()
            refuse_nested_text(texts, text_column, first_row=offset - len(frame), where=f"{test_file}: ")
            result = predictor.predict(texts, batch_size=batch_size, return_std=with_std, progress=False)
            scores, spread = result if with_std else (result, None)
            for i, column in enumerate(columns):
                frame[column] = scores[:, i]
                if with_std:
                    frame[std_columns[i]] = spread[:, i]
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
            header = [text_column, *columns, *std_columns]
            _join_parts(writer, [part(i) for i in range(counts["chunks"])], f"{stem}.{run}.part", target, header)
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


def _join_parts(writer, parts, partial, target, header):
    """Join the chunk parts in order under a temporary name of this run, flush it to disk, then rename it to
    `target` in one step (os.replace: a reader sees the old file or the new one, whole)."""
    try:
        writer.join(parts, header, partial)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
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
    counts = predict_file(predictor, args.test_file, args.output_file, args.text_column, args.batch_size, with_std,
                          args.chunk_rows, rank, world)
    if counts["truncated"]:
        logger.warning("%d text(s) were longer than %d tokens and were truncated.", counts["truncated"],
                       predictor.max_length)
    report = {**counts, "backend": predictor.backend, "processes": world,
              "std": "the spread of the ensemble members' scores (population std)" if with_std else
              f"none: a single network (ensemble_size={predictor.config.ensemble_size}) has no spread between members"
              if not predictor.has_std else "not asked for (--std false)"}
    if rank == 0:
        print(json.dumps({"predicted": report}), file=sys.stderr)
