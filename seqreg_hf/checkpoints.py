"""Checkpoint integrity, and which run a checkpoint belongs to.

Trainer writes a checkpoint's files one after the other into `checkpoint-<step>/`; a run killed in between
leaves a directory that looks like the latest checkpoint but is not whole. Every file is checked here without
unpickling anything: JSON files parse and hold what they should, `model.safetensors` is as long as its header says,
and the torch-saved optimizer / scheduler / RNG files are complete zip archives.

A run's identity (`run.json` in each checkpoint and beside the final model) is a fingerprint of what determines its
model and data: the architecture and label statistics, the text and label columns, the train data's bytes, and the
options that shape the model. `--resume_from_checkpoint last` resumes only a checkpoint of the same run; a resume of
another run's checkpoint is refused, naming what differs.
"""

import hashlib
import inspect
import json
import logging
import os
import re
import signal
import struct
import zipfile

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_TORCH_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth")
RUN_FILE = "run.json"
_LOSS_STATE_KEYS = ("loss_since_last_log", "last_logged_step", "total_loss")


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal: after saving a complete checkpoint (`checkpoint`), or at once (a second signal,
    or Ctrl-C before training began), when `resume_from` is the newest complete checkpoint there is, if any."""

    def __init__(self, signum, step, checkpoint, resume_from=None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        if checkpoint:
            message = (f"stopped by {name} at step {step}; the checkpoint {checkpoint} is complete. Run the same "
                       "command with --resume_from_checkpoint last to go on from it.")
        elif resume_from:
            message = (f"stopped by {name} at once; {resume_from} is the newest complete checkpoint. Run the same "
                       "command with --resume_from_checkpoint last to go on from it.")
        else:
            message = f"stopped by {name} before any checkpoint was saved. Run the same command again to start over."
        super().__init__(message)

    @classmethod
    def at_once(cls, output_dir, signum=signal.SIGINT):
        """Stopped with nothing saved for this stop: the way on is the newest complete checkpoint, if any."""
        return cls(signum, None, None, resume_from=latest_valid_checkpoint(output_dir) if output_dir else None)


def safetensors_problem(path):
    """None if `path` is a whole safetensors file, else what is wrong with it."""
    if not os.path.isfile(path):
        return "missing"
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"{size} bytes, too short to hold a header"
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            return f"header of {header_len} bytes in a {size}-byte file"
        try:
            header = json.loads(handle.read(header_len))
        except ValueError:
            return "the header is not valid JSON"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + end != size:
        return f"{size} bytes where the header describes {8 + header_len + end}: the file is truncated"
    return None


def _read_json(path):
    """(the parsed file, None) or (None, what is wrong with it)."""
    if not os.path.isfile(path):
        return None, "missing"
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle), None
    except (ValueError, UnicodeDecodeError) as error:
        return None, f"not valid JSON ({error})"


def _json_problem(path):
    return _read_json(path)[1]


def _trainer_state_problem(folder):
    """trainer_state.json parses, holds a training state, and that state is the folder's step."""
    state, problem = _read_json(os.path.join(folder, "trainer_state.json"))
    if problem:
        return problem
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int) or not isinstance(
            state.get("log_history"), list):
        return "holds no training state (no global_step and log_history): it was cut short or replaced"
    named = _CHECKPOINT.match(os.path.basename(os.path.normpath(folder)))
    if named and int(named.group(1)) != state["global_step"]:
        return f"is the state of step {state['global_step']}, not of step {named.group(1)} as the folder's name says"
    return None


def _loss_state_problem(path):
    """loss_state*.json: the loss accumulators a resume restores (see seqreg_hf.trainer)."""
    state, problem = _read_json(path)
    if problem:
        return problem
    if not isinstance(state, dict) or not all(isinstance(state.get(k), int | float) for k in _LOSS_STATE_KEYS):
        return f"does not hold {', '.join(_LOSS_STATE_KEYS)} as numbers"
    return None


def _run_file_problem(path):
    record, problem = _read_json(path)
    if problem:
        return problem
    if not isinstance(record, dict) or not isinstance(record.get("identity"), dict):
        return "holds no run identity"
    return None


def _zip_problem(path):
    if not zipfile.is_zipfile(path):
        return "not a complete torch archive"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as error:
        return f"unreadable ({error})"
    return f"corrupt member {bad}" if bad else None


def _tensor_problem(folder):
    """What the model's own header check finds (a missing, unexpected or misshapen tensor), or None. Trainer's
    resume loads a checkpoint's weights with strict=False, so without this a missing head would resume at random."""
    from .modeling_seqreg import LEGACY_KEYS, SeqRegForSequenceRegression

    try:
        SeqRegForSequenceRegression.check_stored_weights(folder, {"key_mapping": LEGACY_KEYS})
    except ValueError as error:
        return str(error).split(": ", 1)[-1]
    return None


def checkpoint_problems(folder):
    """A list of 'file: problem' strings; empty for a complete checkpoint."""
    problems = []
    if problem := _json_problem(os.path.join(folder, "config.json")):
        problems.append(f"config.json: {problem}")
    if problem := _trainer_state_problem(folder):
        problems.append(f"trainer_state.json: {problem}")
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    for name in names:
        if name.startswith("loss_state") and name.endswith(".json") and (
                problem := _loss_state_problem(os.path.join(folder, name))):
            problems.append(f"{name}: {problem}")
    if RUN_FILE in names and (problem := _run_file_problem(os.path.join(folder, RUN_FILE))):
        problems.append(f"{RUN_FILE}: {problem}")
    if problem := safetensors_problem(os.path.join(folder, "model.safetensors")):
        problems.append(f"model.safetensors: {problem}")
    elif not problems and (problem := _tensor_problem(folder)):
        problems.append(f"model.safetensors: {problem}")
    for name in _TORCH_FILES:
        path = os.path.join(folder, name)
        if os.path.exists(path) and (problem := _zip_problem(path)):
            problems.append(f"{name}: {problem}")
    if not os.path.exists(os.path.join(folder, "optimizer.pt")):
        problems.append("optimizer.pt: missing (a checkpoint saved with save_only_model cannot resume training)")
    return problems


def list_checkpoints(output_dir):
    """checkpoint-<step> directories of `output_dir`, newest (highest step) first."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), os.path.join(output_dir, name)) for name in os.listdir(output_dir)
             if (m := _CHECKPOINT.match(name)) and os.path.isdir(os.path.join(output_dir, name))]
    return [path for _, path in sorted(found, reverse=True)]


def latest_valid_checkpoint(output_dir):
    """The newest complete checkpoint; newer incomplete ones are skipped with a warning naming the problem."""
    for folder in list_checkpoints(output_dir):
        problems = checkpoint_problems(folder)
        if not problems:
            return folder
        logger.warning("ignoring incomplete checkpoint %s: %s", folder, "; ".join(problems))
    return None


# --------------------------------------------------------------------------------------------------------------
# Which run a checkpoint belongs to


def _file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _train_data(data_args):
    """The train data's fingerprint: the bytes of the train file, or the Hub dataset's name and configuration."""
    if data_args.train_file and os.path.isfile(data_args.train_file):
        return _file_digest(data_args.train_file)
    return f"dataset:{data_args.dataset_name}:{data_args.dataset_config_name}"


def _start_weights(model_name_or_path):
    """The starting model's weights, by their bytes when they are local (a Hub id names a moving target)."""
    if not model_name_or_path:
        return None
    weights = sorted(os.path.join(model_name_or_path, n) for n in os.listdir(model_name_or_path)
                     if n.endswith(".safetensors")) if os.path.isdir(model_name_or_path) else []
    return ",".join(_file_digest(w) for w in weights) or model_name_or_path


# The embedding options that shape the vocabulary and the tokenizer of a new model.
_EMBEDDING_CHOICES = ("embeddings_format", "vectors_limit", "lowercase", "unk_init", "on_duplicate", "top_n")


def run_identity(run, config, max_length):
    """What determines a run's model and data, as JSON values: two runs with one identity train the same model."""
    names = [n for n in inspect.signature(type(config).__init__).parameters if n not in ("self", "kwargs")]
    identity = {name: getattr(config, name) for name in names}  # the architecture, label statistics, vocabulary
    data = run.data
    # text_pair_column joined later: a run.json without it still resumes, as only the saved keys are compared.
    identity.update(label_columns=list(data.label_columns), text_column=data.text_column,
                    text_pair_column=data.text_pair_column, max_length=max_length,
                    train_data=_train_data(data), split_column=data.split_column,
                    max_train_samples=data.max_train_samples, start_model=_start_weights(run.model.model_name_or_path),
                    **{k: getattr(run.embeddings, k) for k in _EMBEDDING_CHOICES})
    return json.loads(json.dumps(identity))  # as run.json gives it back: lists, not tuples


def write_run_file(folder, identity):
    with open(os.path.join(folder, RUN_FILE), "w", encoding="utf-8") as handle:
        json.dump({"identity": identity}, handle, indent=2)


def _shown(value):
    if isinstance(value, str) and value.startswith("sha256:"):
        return f"bytes {value[7:19]}…"
    return repr(value)


_SHOWN_AS = {"train_data": "train data", "start_model": "--model_name_or_path weights"}


def identity_differences(folder, identity):
    """'name: value in folder, value now' for each difference between `folder`'s run and `identity`."""
    record, problem = _read_json(os.path.join(folder, RUN_FILE))
    if problem == "missing":  # saved before runs recorded their identity: its config.json is all there is to check
        record = {"identity": {k: v for k, v in (_read_json(os.path.join(folder, "config.json"))[0] or {}).items()
                               if k in identity}}
        logger.warning("%s records no run identity (saved by an earlier seqreg_hf): only its config is compared.",
                       folder)
    saved = record["identity"]
    return [f"{_SHOWN_AS.get(k, k)}: {_shown(saved[k])} in that run, {_shown(identity.get(k))} now"
            for k in saved if saved[k] != identity.get(k)]


def _another_run(folder, differences):
    return ValueError(f"cannot resume from {folder}: it belongs to another run ({'; '.join(differences)}). Resume it "
                      "with that run's options and data, or start this run in another --output_dir (or pass "
                      "--overwrite_output_dir to remove that run's checkpoints and results first).")


def _last_of_this_run(output_dir, identity, replace_others):
    """The newest complete checkpoint of the run `identity` describes; other runs' are skipped, and refused when
    there is nothing else (unless `replace_others`: the caller starts over and clears them)."""
    other = None
    for folder in list_checkpoints(output_dir):
        problems = checkpoint_problems(folder)
        if problems:
            logger.warning("ignoring incomplete checkpoint %s: %s", folder, "; ".join(problems))
            continue
        if identity is not None and not os.path.exists(os.path.join(folder, RUN_FILE)):
            differences = [f"no {RUN_FILE}: saved by an earlier seqreg_hf, so whose run it was is unknown (resume it "
                           "by its path to compare its config alone)"]
        else:
            differences = identity_differences(folder, identity) if identity is not None else []
        if not differences:
            return folder
        logger.warning("skipping %s: another run's checkpoint (%s)", folder, "; ".join(differences))
        other = other or (folder, differences)
    if other and not replace_others:
        raise _another_run(*other)
    logger.warning("no complete checkpoint in %s of this run: training starts from the beginning.", output_dir)
    return None


def resolve_resume(resume_from_checkpoint, output_dir, identity=None, replace_others=False):
    """Turn --resume_from_checkpoint (a path, or true/last/auto) into a complete checkpoint path of this run (the one
    `identity` describes; any run when None) or None."""
    if resume_from_checkpoint in (None, "", False):
        return None
    if str(resume_from_checkpoint).lower() in ("true", "last", "auto", "latest"):
        return _last_of_this_run(output_dir, identity, replace_others)
    problems = checkpoint_problems(resume_from_checkpoint)
    if problems:
        raise ValueError(f"cannot resume from {resume_from_checkpoint}: {'; '.join(problems)}. Resume with "
                         "--resume_from_checkpoint last to use the newest complete checkpoint instead.")
    if identity is not None and (differences := identity_differences(resume_from_checkpoint, identity)):
        raise _another_run(resume_from_checkpoint, differences)
    return resume_from_checkpoint
