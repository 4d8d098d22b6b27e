"""The Trainer side of training: `SeqRegTrainer`, its exact-length batch sampler, and the callbacks.

Exact-length batches (`--length_buckets`): every training batch holds sentences of one token length, so nothing is
padded. Each epoch shuffles within every length bucket, cuts it into batches, then shuffles the batches, all from
(seed, epoch), so a resumed run sees the same batches. Under several processes every rank takes every
world_size-th batch, after trimming the batch list to a multiple of world_size so all ranks step alike. A siamese
pair's `length` is its longer side's (`data.tokenize_splits`): its batches hold pairs whose longer side has one
length, and each side is padded to its own longest text (the model is exact under padding).

Resume restores what Trainer's own checkpoint leaves out: the training loss accumulated since the last log (so the
next logged loss and the final train_loss equal an uninterrupted run's; `loss_state.json` in each checkpoint).
SIGTERM or Ctrl-C during training finish the current step, save a complete checkpoint and raise
`TrainingInterrupted`; a checkpoint that cannot be written (a full disk) raises `CheckpointWriteError` (see
`seqreg_hf.model_dir`), naming the folder and what to do, after removing the half-written folder. Each checkpoint
records the run it belongs to (`run.json`, see `seqreg_hf.checkpoints.run_identity`) and holds its model card,
rendered from the trainer's `CardCallback` (see `seqreg_hf.model_card`) before Trainer pushes the folder.

A push uploads a model repository (weights, config, tokenizer, code, card, results), never a file that holds the
user's texts: the same filter for `push_to_hub` and for the pushes Trainer makes at each save.
"""

import contextlib
import ctypes
import functools
import json
import logging
import os
import random
import shutil
import signal
import sys
import threading

import torch
from safetensors import SafetensorError
from torch.utils.data import Sampler
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback
from transformers import trainer as hf_trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .checkpoints import TrainingInterrupted, resolve_resume, write_run_file
from .data import exact_length_batches
from .model_card import CardCallback, write_model_card
from .model_dir import out_of_space, write_failure
from .tokenization import drop_load_time_keys

logger = logging.getLogger(__name__)

LOSS_STATE = "loss_state.json"


class _SignalStop(TrainerCallback):
    """Set by SIGTERM / SIGINT; at the end of the current step the trainer saves a checkpoint and stops."""

    def __init__(self):
        self.signum = self.saved = None  # the signal, and the checkpoint written after it

    def on_step_end(self, args, state, control, **kwargs):
        signum = self.signum or 0
        if args.world_size > 1 and torch.distributed.is_initialized():  # every rank stops at the same step
            flag = torch.tensor([signum], device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            signum = int(flag.item())
        if signum:
            self.signum = signum
            control.should_save = control.should_training_stop = True
        return control

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

        def handler(signum, frame):
            if self.signum is not None:  # a second signal: stop at once
                signal.signal(signum, previous[signum])
                if signum == signal.SIGINT:
                    raise KeyboardInterrupt
                os.kill(os.getpid(), signum)
                return
            self.signum = signum
            logger.warning("%s received: training stops after this step with a checkpoint (send it again to stop "
                           "at once).", signal.Signals(signum).name)

        try:
            for s in previous:
                signal.signal(s, handler)
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


# What a push uploads: the files of a model repository. Never the predictions (they hold the texts), logs, plots,
# metrics.json (its bad-row examples quote the data), trainer_state.json or training_args.bin (local paths, options).
HUB_FILES = ("config.json", "model*.safetensors", "model.safetensors.index.json", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "added_tokens.json", "*.py", "README.md",
             "*_results.json", "*.onnx")
# A checkpoint pushed to resume from (--hub_strategy checkpoint / all_checkpoints) adds its training state.
HUB_CHECKPOINT_FILES = (*HUB_FILES, "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth", "trainer_state.json",
                        "loss_state*.json", "run.json")


class _ModelRepositoryApi:
    """The Hub client as Trainer's push paths call it, whose `upload_folder` takes a model repository's files only:
    the top level of the folder, by name (HUB_FILES), whatever else lies there."""

    def __init__(self, api):
        self._api = api

    def __getattr__(self, name):
        return getattr(self._api, name)

    def upload_folder(self, *, path_in_repo=None, allow_patterns=None, ignore_patterns=None, **kwargs):
        checkpoint = path_in_repo is not None  # Trainer uploads a checkpoint folder under a path, the model at the root
        ignore = [ignore_patterns] if isinstance(ignore_patterns, str) else list(ignore_patterns or [])
        return self._api.upload_folder(path_in_repo=path_in_repo,
                                       allow_patterns=list(HUB_CHECKPOINT_FILES if checkpoint else HUB_FILES),
                                       ignore_patterns=[*ignore, "*/*"], **kwargs)


@contextlib.contextmanager
def _model_repository_uploads():
    """While Trainer pushes, its Hub client (transformers.trainer.hf_api) uploads model repository files only.
    Trainer fixes what it uploads inside its push methods; swapping the client it calls is the one way to choose."""
    if not callable(getattr(hf_trainer, "hf_api", None)):
        raise RuntimeError("this transformers version pushes through another client than transformers.trainer.hf_api,"
                           " so seqreg_hf cannot limit what a push uploads; install the transformers version that "
                           "seqreg_hf requires.")
    api = hf_trainer.hf_api
    hf_trainer.hf_api = lambda: _ModelRepositoryApi(api())
    try:
        yield
    finally:
        hf_trainer.hf_api = api


class LengthBucketBatchSampler(Sampler):
    def __init__(self, lengths, batch_size, seed=0, rank=0, world_size=1):
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def _batches(self):
        batches = exact_length_batches(self.lengths, self.batch_size, random.Random(self.seed + 1009 * self.epoch))
        usable = len(batches) - len(batches) % self.world_size
        return batches[:usable][self.rank :: self.world_size]

    def __iter__(self):
        return iter(self._batches())

    def __len__(self):
        return len(self._batches())


# Trainer internals SeqRegTrainer extends or reads: transformers 5.19 is the first release that has all of them (5.3
# added _run_epoch and _finalize_training, 5.19 _initial_global_step). They are private, so they are checked when this
# module is imported, and an older or newer transformers that lacks one is refused in one line, never mid-training.
MIN_TRANSFORMERS = "5.19"
PRIVATE_TRAINER_METHODS = ("_run_epoch", "_finalize_training", "_save_checkpoint", "_get_output_dir", "_get_dataloader")


def check_trainer_api(trainer_class=Trainer, version=None):
    """Raise ImportError naming the installed transformers and the fix when it lacks what SeqRegTrainer uses."""
    import transformers
    from packaging.version import Version

    version = version or transformers.__version__
    missing = [name for name in PRIVATE_TRAINER_METHODS if not callable(getattr(trainer_class, name, None))]
    if missing or Version(version) < Version(MIN_TRANSFORMERS):
        lacks = f", which lacks Trainer.{', Trainer.'.join(missing)}" if missing else ""
        raise ImportError(f"seqreg_hf's trainer extends private transformers Trainer methods "
                          f"({', '.join(PRIVATE_TRAINER_METHODS)}) as transformers {MIN_TRANSFORMERS} and later have "
                          f"them; the installed transformers is {version}{lacks}. Install a version it works with: "
                          f"pip install 'transformers>={MIN_TRANSFORMERS},<6'.")


check_trainer_api()


@functools.cache
def _malloc_trim():
    """glibc's `malloc_trim`, or None where the C library has none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class ReleaseFreedMemory(TrainerCallback):
    """Give the memory of freed batches back to the system every `every` steps, at each epoch's end and after each
    evaluation or prediction.

    Batches of cached states vary in size with their length (32 rows x T tokens x 7 layers x 384 floats), and glibc
    keeps what they freed in its heap, fragmented, so a training process grew by about 100 MB an epoch and peaked
    near 4 GiB on EmoBank (README, EmoBank). `malloc_trim(0)` returns the free pages; the pages given back are
    faulted in again by later batches, which the main job's system time shows (19 s to 37 s)."""

    def __init__(self, every=50):
        self.every = every

    def _release(self):
        trim = _malloc_trim()  # looked up here, so the callback (and a trainer holding it) stays picklable
        if trim is not None:
            trim(0)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self._release()

    def on_evaluate(self, args, state, control, **kwargs):
        self._release()

    def on_predict(self, args, state, control, metrics, **kwargs):
        self._release()

    def on_epoch_end(self, args, state, control, **kwargs):
        self._release()


class SeqRegTrainer(Trainer):
    """Trainer whose train batches, with `length_buckets=True`, hold sentences of exactly one length."""

    def __init__(self, *args, length_buckets=False, run_identity=None, **kwargs):
        callbacks = list(kwargs.pop("callbacks", None) or [])
        card = next((c for c in callbacks if isinstance(c, CardCallback)), None)
        if card is None:  # every card this trainer writes (checkpoints, push) has a context, given or its own
            card = CardCallback()
            callbacks.append(card)
        super().__init__(*args, callbacks=callbacks, **kwargs)
        if hasattr(self.processing_class, "init_kwargs"):  # every folder it saves (checkpoints, model, push)
            drop_load_time_keys(self.processing_class)
        self.card = card
        self.length_buckets = length_buckets
        self.run_identity = run_identity  # written into each checkpoint as run.json; `last` resumes only its own
        self._signal_stop = _SignalStop()
        self.add_callback(self._signal_stop)
        self.add_callback(ReleaseFreedMemory())
        self._loss_to_restore, self._loss_before = None, None
        self.late_signal = None

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """Trainer.train, plus: the loss accumulators come back on resume, and a signal stops with a checkpoint."""
        self._loss_to_restore, self._loss_before = None, None
        checkpoint = resume_from_checkpoint
        if checkpoint is True:  # Trainer's own spelling of "the last one": the newest complete one of this run
            checkpoint = resume_from_checkpoint = resolve_resume("last", self.args.output_dir, self.run_identity)
        if isinstance(checkpoint, (str, os.PathLike)):
            path = os.path.join(checkpoint, self._loss_state_name())
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as handle:
                    self._loss_to_restore = json.load(handle)
            else:
                logger.warning("%s has no %s (saved by another version, or with another number of processes): the "
                               "loss logged next, and train_loss, cover the resumed steps only.", checkpoint,
                               self._loss_state_name())
        self._signal_stop.signum, self._signal_stop.saved = None, None
        with self._signal_stop.installed():
            output = super().train(resume_from_checkpoint, *args, **kwargs)
        if self._signal_stop.saved is not None:
            raise TrainingInterrupted(self._signal_stop.signum, self.state.global_step, self._signal_stop.saved)
        # A signal after the last step: the run is complete, so it finishes; `late_signal` tells a caller that runs
        # more than one training (the search's trials) to start no other.
        self.late_signal = self._signal_stop.signum
        if self.late_signal is not None:
            logger.warning("%s arrived after the last training step; finishing the run.",
                           signal.Signals(self.late_signal).name)
        return output

    def _loss_state_name(self):
        return LOSS_STATE if self.args.world_size == 1 else f"loss_state_{self.args.process_index}.json"

    def _run_epoch(self, *args, **kwargs):
        if self._loss_to_restore is not None:  # first epoch of a resumed run: before its first step
            saved, self._loss_to_restore = self._loss_to_restore, None
            self._tr_loss += saved["loss_since_last_log"]
            self._globalstep_last_logged = saved["last_logged_step"]
            self._loss_before = saved["total_loss"]
        return super()._run_epoch(*args, **kwargs)

    def _finalize_training(self, trial, num_train_samples, start_time):
        if self._loss_before is not None:
            # train_loss is the whole run's mean loss, as without the interruption; throughput stays this call's.
            self._total_loss_scalar += self._tr_loss.item()
            self._tr_loss -= self._tr_loss
            steps_now = self.state.global_step - self._initial_global_step
            whole = (self._total_loss_scalar + self._loss_before) / max(self.state.global_step, 1)
            self._total_loss_scalar = whole * steps_now
        return super()._finalize_training(trial, num_train_samples, start_time)

    def _save_checkpoint(self, model, trial):
        run_dir = self._get_output_dir(trial=trial)
        folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        try:
            os.makedirs(folder, exist_ok=True)
            if self.args.should_save and os.path.isfile(os.path.join(folder, "trainer_state.json")):
                os.remove(os.path.join(folder, "trainer_state.json"))  # an earlier run's folder: incomplete until ours
            # Written before trainer_state.json, the file that marks a checkpoint complete.
            with open(os.path.join(folder, self._loss_state_name()), "w", encoding="utf-8") as handle:
                json.dump({"loss_since_last_log": self._tr_loss.item(),
                           "last_logged_step": self._globalstep_last_logged,
                           "total_loss": (self._loss_before or 0.0) + self._total_loss_scalar}, handle)
            if self.run_identity is not None and self.args.should_save:
                write_run_file(folder, self.run_identity)
            if self.args.should_save:  # before Trainer pushes the folder, and before trainer_state.json completes it
                write_model_card(folder, self.model, self.card)
            super()._save_checkpoint(model, trial)
        except (OSError, RuntimeError, SafetensorError, KeyboardInterrupt) as error:
            if os.path.isfile(os.path.join(folder, "trainer_state.json")):
                raise  # the checkpoint is whole (a later step failed: the Hub push, the rotation): keep it
            shutil.rmtree(folder, ignore_errors=True)  # half a checkpoint is of no use, and it holds disk space
            if isinstance(error, KeyboardInterrupt) or not out_of_space(error):  # a second Ctrl-C: stop at once
                raise
            raise write_failure(folder, error, run_dir) from error
        if self._signal_stop.signum is not None:
            self._signal_stop.saved = folder

    def create_model_card(self, *args, **kwargs):
        """Trainer.push_to_hub calls this before uploading: a seqreg_hf card already in output_dir (the final run's,
        init's) is kept, and otherwise one is written from this trainer's card context; never transformers' generic
        card, which lacks seqreg_hf's metrics table, model-index, widget and the data's attribution."""
        card = os.path.join(self.args.output_dir, "README.md")
        if os.path.isfile(card):
            with open(card, encoding="utf-8") as handle:
                if "made with seqreg_hf" in handle.read():
                    logger.info("keeping seqreg_hf's model card %s", card)
                    return
        write_model_card(self.args.output_dir, self.model, self.card)

    def push_to_hub(self, *args, **kwargs):
        with _model_repository_uploads():
            return super().push_to_hub(*args, **kwargs)

    def _push_from_checkpoint(self, checkpoint_folder):
        if self.is_world_process_zero():
            # Trainer copies the weights, config and tokenizer into output_dir and pushes it as the model; without
            # the card and the model code (auto_map names it) the repository would not load during training.
            for name in os.listdir(checkpoint_folder):
                if name.endswith(".py"):
                    shutil.copyfile(os.path.join(checkpoint_folder, name), os.path.join(self.args.output_dir, name))
            write_model_card(self.args.output_dir, self.model, self.card)
        with _model_repository_uploads():
            return super()._push_from_checkpoint(checkpoint_folder)

    def save_model(self, output_dir=None, _internal_call=False):
        if _internal_call:  # inside _save_checkpoint, which reports the failure for the whole folder
            return super().save_model(output_dir, _internal_call=_internal_call)
        folder = output_dir or self.args.output_dir
        try:
            if self.run_identity is not None and self.args.should_save:  # the model says which run made it
                os.makedirs(folder, exist_ok=True)
                write_run_file(folder, self.run_identity)
            return super().save_model(output_dir, _internal_call=_internal_call)
        except (OSError, RuntimeError, SafetensorError) as error:
            if not out_of_space(error):
                raise
            raise write_failure(folder, error, self.args.output_dir) from error

    def get_train_dataloader(self):
        dataset = self.train_dataset
        if not self.length_buckets or isinstance(dataset, torch.utils.data.IterableDataset):
            return super().get_train_dataloader()
        if "length" not in dataset.column_names:
            raise ValueError("length_buckets needs the 'length' column that seqreg_hf's tokenization adds.")
        args = self.args
        sampler = LengthBucketBatchSampler(dataset["length"], self._train_batch_size, seed=args.data_seed or args.seed,
                                           rank=args.process_index, world_size=args.world_size)
        dataset = self._remove_unused_columns(dataset, description="Training")
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=self.data_collator,
                                             num_workers=args.dataloader_num_workers,
                                             pin_memory=args.dataloader_pin_memory)
        prepared = self.accelerator.prepare(loader)
        # The sampler shards by rank itself; stop accelerate's wrapper from sharding it a second time.
        wrapper = getattr(prepared, "batch_sampler", None)
        if wrapper is not None and getattr(wrapper, "batch_sampler", None) is sampler:
            wrapper.num_processes, wrapper.process_index = 1, 0
        return prepared

    def get_test_dataloader(self, test_dataset):
        """Trainer's, in the dataset's row order and with every row (no --dataloader_drop_last): Trainer groups
        evaluation batches by length when training does (train_sampling_strategy="group_by_length"), and
        `predict`'s predictions are written beside their rows."""
        drop_last, self.args.dataloader_drop_last = self.args.dataloader_drop_last, False  # every row is scored
        try:
            return self._get_dataloader(test_dataset, description="test", batch_size=self.args.eval_batch_size)
        finally:
            self.args.dataloader_drop_last = drop_last


def early_stopping(patience, training_args):
    """EarlyStoppingCallback when it can judge something: a patience, and evaluations during training."""
    if patience and training_args.eval_strategy != "no":
        return [EarlyStoppingCallback(patience)]
    return []
