"""Loading a model directory with its tokenizer, checking that the two belong together."""

import json
import os

from transformers import AutoTokenizer

from .checkpoints import safetensors_problem
from .configuration_seqreg import SeqRegConfig
from .embeddings import check_tokenizer_fits, remote_code_refusal
from .modeling_seqreg import SeqRegForSequenceRegression
from .tokenization import pad_right


class ModelDirError(ValueError):
    """A model directory that cannot be used as it is; the message names the file and the fix."""


def resolve_model_dir(name_or_path):
    """A local directory for a model directory or a Hub id (`user/name`, downloaded through huggingface_hub's cache;
    with HF_HUB_OFFLINE=1 only the cache is read)."""
    name_or_path = os.fspath(name_or_path)
    if os.path.isdir(name_or_path):
        return name_or_path
    if os.path.exists(name_or_path) or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelDirError(f"{name_or_path} is not a model directory. Create one with `seqreg-hf init --embeddings "
                            "... --output_dir DIR` or `seqreg-hf train`, or give a Hub id (user/name).")
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
        raise ModelDirError(f"{model_dir} has no config.json: it is not a model directory. Create one with "
                            "`seqreg-hf init --embeddings ... --output_dir DIR` or `seqreg-hf train`.")
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
    return tokenizer


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
