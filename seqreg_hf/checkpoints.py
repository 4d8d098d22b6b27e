"""Checkpoint integrity: find the latest *complete* checkpoint, so a run killed mid-save resumes safely.

Trainer writes a checkpoint's files one after the other into `checkpoint-<step>/`; a run killed in between
leaves a directory that looks like the latest checkpoint but is not whole. Every file is checked here without
unpickling anything: JSON files parse, `model.safetensors` is as long as its header says, and the torch-saved
optimizer / scheduler / RNG files are complete zip archives.
"""

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


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after saving a complete checkpoint."""

    def __init__(self, signum, step, checkpoint):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; the checkpoint {checkpoint} is "
                         "complete. Run the same command with --resume_from_checkpoint last to go on from it.")


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


def _json_problem(path):
    if not os.path.isfile(path):
        return "missing"
    try:
        with open(path, encoding="utf-8") as handle:
            json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        return f"not valid JSON ({error})"
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


def checkpoint_problems(folder):
    """A list of 'file: problem' strings; empty for a complete checkpoint."""
    problems = []
    for name in ("config.json", "trainer_state.json"):
        if problem := _json_problem(os.path.join(folder, name)):
            problems.append(f"{name}: {problem}")
    if problem := safetensors_problem(os.path.join(folder, "model.safetensors")):
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


def resolve_resume(resume_from_checkpoint, output_dir):
    """Turn --resume_from_checkpoint (a path, or true/last/auto) into a complete checkpoint path or None."""
    if resume_from_checkpoint in (None, "", False):
        return None
    if str(resume_from_checkpoint).lower() in ("true", "last", "auto", "latest"):
        found = latest_valid_checkpoint(output_dir)
        if found is None:
            logger.warning("no complete checkpoint in %s: training starts from the beginning.", output_dir)
        return found
    problems = checkpoint_problems(resume_from_checkpoint)
    if problems:
        raise ValueError(f"cannot resume from {resume_from_checkpoint}: {'; '.join(problems)}. Resume with "
                         "--resume_from_checkpoint last to use the newest complete checkpoint instead.")
    return resume_from_checkpoint
