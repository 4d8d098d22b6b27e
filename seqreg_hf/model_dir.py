"""The model directory, from birth to use: build (static or contextual embeddings), save, load and check it.

A model directory holds config.json, model.safetensors, the model code (carried so plain transformers loads it with
trust_remote_code=True), the tokenizer, the card (README.md) and, from `init`, the embeddings report. The float16
matrix and the pipeline code are written by `SeqRegForSequenceRegression.save_pretrained` itself, so that a user's
own `model.save_pretrained(DIR)` writes the same directory. A write that fails for want of space becomes one
`CheckpointWriteError` naming the folder and the way on (`write_failure`).
"""

import errno
import json
import os

import torch
from torch import nn
from transformers import AutoTokenizer

from .checkpoints import latest_valid_checkpoint, safetensors_problem
from .configuration_seqreg import SeqRegConfig
from .embeddings import Embeddings, check_tokenizer_fits, load_embeddings, remote_code_refusal
from .model_card import write_model_card
from .modeling_seqreg import SeqRegForSequenceRegression
from .tokenization import check_cross_tokenizer, drop_load_time_keys, pad_right

REPORT_FILE = "embeddings_report.json"
NOT_A_MODEL_DIR = "Create one with `seqreg-hf init --embeddings ... --output_dir DIR` or `seqreg-hf train`"


class ModelDirError(ValueError):
    """A model directory that cannot be used as it is; the message names the file and the fix."""


class CheckpointWriteError(OSError):
    """A checkpoint or the final model could not be written (typically: the disk is full)."""


# Building


def build_model(embeddings: Embeddings, **config_kwargs):
    """A regressor whose (frozen) embedding matrix is `embeddings.matrix`, shared without a copy."""
    rows, dim = embeddings.matrix.shape
    if config_kwargs.get("embedding_dim", dim) != dim:
        raise ValueError(f"{embeddings.source}: the vectors have {dim} dimensions but the config asks for "
                         f"embedding_dim={config_kwargs['embedding_dim']}. Drop embedding_dim (it is read from the "
                         "vectors) or use vectors of that size.")
    config_kwargs.pop("embedding_dim", None)
    config = SeqRegConfig(vocab_size=rows, embedding_dim=dim, pad_token_id=embeddings.pad_token_id,
                          embeddings_source=embeddings.source, **config_kwargs)
    model = SeqRegForSequenceRegression(config)
    weight = torch.from_numpy(embeddings.matrix)
    model.set_input_embeddings(nn.Embedding.from_pretrained(weight, freeze=config.freeze_embeddings,
                                                            padding_idx=config.pad_token_id))
    return model.round_embeddings_to_storage()


def build_contextual_model(embeddings: Embeddings, location=None, **config_kwargs):
    """A regressor reading the hidden states of the frozen transformer `embeddings` came from (a transformers
    directory or Hub id, at `location` if its source names it otherwise): its config is nested in the model's,
    its weights copied from its safetensors."""
    from transformers import AutoConfig, AutoModel

    if embeddings.kind != "transformers":
        raise ValueError(f"embedding_type='contextual' needs a transformers model directory or Hub id; "
                         f"{embeddings.source} is a {embeddings.kind} source. Give --embeddings DIR_OR_ID.")
    location = location or embeddings.source
    trust = embeddings.trust_remote_code  # the user's answer when the embeddings were loaded
    inner = AutoConfig.from_pretrained(location, trust_remote_code=trust)
    # safetensors only, never pickles
    encoder = AutoModel.from_pretrained(location, use_safetensors=True, trust_remote_code=trust)
    for key in ("vocab_size", "embedding_dim"):
        config_kwargs.pop(key, None)
    config = SeqRegConfig(vocab_size=inner.vocab_size, embedding_dim=inner.hidden_size,
                          pad_token_id=embeddings.tokenizer.pad_token_id, embeddings_source=embeddings.source,
                          contextual_config=inner.to_dict(), **config_kwargs)
    model = SeqRegForSequenceRegression(config)
    weights = {k: v for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
    result = model.base_model.embeddings.contextual.load_state_dict(weights, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    model.base_model.embeddings.freeze()
    return model


def resolve_embedding_type(source, embedding_type=None):
    """The embedding_type a model over `source` gets: the one given, or, without one, what the source decides: a
    transformer's hidden states ("contextual"), a vector file's or model2vec's table ("static")."""
    if embedding_type is not None:
        return embedding_type
    return "contextual" if source.kind == "transformers" else "static"


def build_from(source, spec, **config_kwargs):
    """build_model, or build_contextual_model with embedding_type="contextual" (`spec`: what --embeddings named).
    Without an embedding_type the source decides (resolve_embedding_type)."""
    config_kwargs["embedding_type"] = resolve_embedding_type(source, config_kwargs.get("embedding_type"))
    if config_kwargs.get("pair_encoding") == "cross":  # one line before any model is built, not at the first batch
        check_cross_tokenizer(source.tokenizer)
    if config_kwargs["embedding_type"] != "contextual":
        return build_model(source, **config_kwargs)
    from .embeddings import default_embeddings_path

    return build_contextual_model(source, default_embeddings_path() if spec in (None, "minilm") else spec,
                                  **config_kwargs)


# Saving


def out_of_space(error):
    """Whether a write failed for want of space: ENOSPC / EFBIG / EDQUOT, raised directly or reported by the
    safetensors and torch writers in their own words."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return True
    text = str(error).lower()
    return any(words in text for words in ("no space left", "file too large", "disk quota", "os error 27",
                                            "os error 28", "file write failed"))


def write_failure(folder, error, output_dir):
    """The CheckpointWriteError for `folder` of the run in `output_dir`: what failed, and how the same command
    goes on once there is space."""
    resume = latest_valid_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    then = (f"resumes from {resume}, the newest complete checkpoint" if resume else
            "starts over, as no complete checkpoint exists yet")
    return CheckpointWriteError(
        f"could not write {folder}: {error}. Free space there (or give --output_dir on another disk), then run the "
        f"same command with --resume_from_checkpoint last: it {then}.")


def save_model_dir(model, tokenizer, output_dir, report=None):
    """Write config + model.safetensors + model code + tokenizer + card (+ the embeddings report) to `output_dir`."""
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir)
    drop_load_time_keys(tokenizer).save_pretrained(output_dir)
    write_model_card(output_dir, model)
    if report is not None:
        with open(os.path.join(output_dir, REPORT_FILE), "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return output_dir


def init_model_dir(output_dir, embeddings=None, *, embeddings_options=None, trust_remote_code=False, **config_kwargs):
    """Load `embeddings` (see :func:`seqreg_hf.embeddings.load_embeddings`), build a model, save it, return it.
    With embedding_type="contextual" the model reads the hidden states of the transformer `embeddings` names.
    trust_remote_code=True runs the custom code (auto_map) of a transformers `embeddings` directory."""
    options = dict(embeddings_options or {})
    options["trust_remote_code"] = trust_remote_code or options.get("trust_remote_code", False)
    source = load_embeddings(embeddings, **options)
    model = build_from(source, embeddings, **config_kwargs)
    save_model_dir(model, source.tokenizer, output_dir, report={"source": source.source, "kind": source.kind,
                                                                **source.report})
    return model, source


# Loading and checking


def resolve_model_dir(name_or_path):
    """A local directory for a model directory or a Hub id (`user/name`, downloaded through huggingface_hub's cache;
    with HF_HUB_OFFLINE=1 only the cache is read)."""
    name_or_path = os.fspath(name_or_path)
    if os.path.isdir(name_or_path):
        return name_or_path
    if os.path.exists(name_or_path) or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelDirError(f"{name_or_path} is not a model directory. {NOT_A_MODEL_DIR}, or give a Hub id "
                            "(user/name).")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return snapshot_download(name_or_path)
    except HFValidationError:
        raise ModelDirError(f"{name_or_path!r} is neither a local model directory nor a valid Hub id (user/name)."
                            ) from None
    except LocalEntryNotFoundError:
        raise ModelDirError(f"{name_or_path}: no such local directory, and the Hub model is not in the local cache "
                            "while offline (HF_HUB_OFFLINE=1) or the Hub cannot be reached. Download it once online, "
                            "or give a local directory.") from None
    except RepositoryNotFoundError:
        raise ModelDirError(f"{name_or_path}: no such local directory or Hub model (or it is private: log in with "
                            "`hf auth login`).") from None


def load_config(model_dir):
    model_dir = resolve_model_dir(model_dir)
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise ModelDirError(f"{model_dir} has no config.json: it is not a model directory. {NOT_A_MODEL_DIR}.")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        raise ModelDirError(f"{path} is not valid JSON ({error}); the file is corrupt: restore it from a "
                            "checkpoint or rebuild the directory.") from None
    if data.get("model_type") != SeqRegConfig.model_type:
        raise ModelDirError(f"{path} has model_type={data.get('model_type')!r}, not 'seqreg'.")
    try:
        return SeqRegConfig.from_dict(data)
    except (ValueError, TypeError) as error:
        raise ModelDirError(f"{path}: {error}") from None


def load_tokenizer(model_dir, config=None, trust_remote_code=False):
    """The directory's tokenizer; custom tokenizer code (an auto_map in tokenizer_config.json) runs only with
    trust_remote_code=True, and is refused in one line otherwise (never a prompt on stdin)."""
    model_dir = resolve_model_dir(model_dir)
    config = config or load_config(model_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except Exception as error:  # tokenizers raises its own exception types for corrupt JSON
        if refusal := remote_code_refusal(model_dir, error, files=("tokenizer_config.json",)):
            raise ModelDirError(refusal) from None
        raise ModelDirError(f"{model_dir}: the tokenizer files cannot be read ({error}). Restore tokenizer.json "
                            "from the directory the model was built in.") from None
    check_tokenizer_fits(tokenizer, config.vocab_size, model_dir)
    if tokenizer.pad_token_id != config.pad_token_id:
        raise ModelDirError(f"{model_dir}: the tokenizer pads with id {tokenizer.pad_token_id} but the model's "
                            f"pad_token_id is {config.pad_token_id}; they were not saved together.")
    pad_right(tokenizer)
    return drop_load_time_keys(tokenizer)


def load_model_dir(model_dir, model_class=SeqRegForSequenceRegression, config_updates=None, trust_remote_code=False,
                   **kwargs):
    """(model, tokenizer) from a directory written by seqreg_hf (or its Hub id), with the consistency checks above.

    `config_updates` changes config options before the model is built (e.g. a dropout for further training).
    The model is built by the installed package's classes, never by the code a checkpoint carries; only a custom
    tokenizer class needs `trust_remote_code=True`."""
    model_dir = resolve_model_dir(model_dir)
    config = load_config(model_dir)
    if config_updates:
        try:
            config = SeqRegConfig.from_dict({**config.to_dict(), **config_updates})
        except (ValueError, TypeError) as error:
            raise ModelDirError(f"{model_dir}: {error}") from None
    tokenizer = load_tokenizer(model_dir, config, trust_remote_code)
    weights = os.path.join(model_dir, "model.safetensors")
    if not os.path.isfile(weights):
        others = [n for n in os.listdir(model_dir) if n.endswith((".bin", ".pt", ".pth", ".ckpt"))]
        hint = f" It holds {others}: seqreg_hf reads weights only from safetensors, never pickles." if others else ""
        raise ModelDirError(f"{model_dir} has no model.safetensors.{hint}")
    if problem := safetensors_problem(weights):
        raise ModelDirError(f"{weights}: {problem}. Restore it from a checkpoint (checkpoint-*/model.safetensors) "
                            "or retrain.")
    model = model_class.from_pretrained(model_dir, config=config, **kwargs)
    if hasattr(model, "round_embeddings_to_storage"):  # e.g. embeddings_dtype changed to float16 for more training
        model.round_embeddings_to_storage()
    return model, tokenizer


# The `init` command


def main(argv=None):
    """`seqreg-hf init`: build an untrained model directory from pretrained embeddings and print what it holds."""
    from .arguments import parse_command
    from .data import read_texts
    from .logs import configure

    init_args, embedding_args, arch_args, run = parse_command("init", argv)
    configure(run.log_level, run.disable_tqdm)
    if not init_args.output_dir:
        raise ValueError("--output_dir is required: where to write the model directory.")
    pair_column = init_args.text_pair_column
    if pair_column is not None and not init_args.train_file:
        raise ValueError(f"--text_pair_column {pair_column} names a column of --train_file, and none is given; give "
                         "--train_file, or drop --text_pair_column.")
    if pair_column is not None and arch_args.pair_encoding is None:  # as train: the second texts alone make "siamese"
        arch_args.pair_encoding = "siamese"
    elif init_args.train_file and pair_column is None and arch_args.pair_encoding is not None:
        raise ValueError(f"--pair_encoding {arch_args.pair_encoding} makes a model of pairs of texts, and no "
                         "--text_pair_column names the column of --train_file's second texts, whose words the "
                         "vocabulary must keep too; give --text_pair_column.")
    corpus = None
    if init_args.train_file:  # every text, both of each pair: the corpus whose words a trimmed vocabulary keeps
        rows = read_texts(init_args.train_file, init_args.text_column, pair_column)
        corpus = [text for pair in rows for text in pair] if pair_column else rows
    model, source = init_model_dir(
        init_args.output_dir, embedding_args.embeddings,
        embeddings_options=embedding_args.loader_options(corpus, not run.disable_tqdm),
        id2label=dict(enumerate(init_args.label_columns)), **arch_args.config_kwargs(),
    )
    trainable = model.num_parameters(only_trainable=True)
    print(f"wrote {init_args.output_dir}: {model.config.vocab_size} x {model.config.embedding_dim} frozen "
          f"embeddings from {source.source} ({source.kind}), {trainable:,} trainable parameters")
    print(json.dumps(source.report, indent=2))
