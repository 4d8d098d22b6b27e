"""The Trainer side of training: `SeqRegTrainer`, its exact-length batch sampler, and the callbacks.

Exact-length batches (`--length_buckets`): every training batch holds sentences of one token length, so nothing is
padded. Each epoch shuffles within every length bucket, cuts it into batches, then shuffles the batches, all from
(seed, epoch), so a resumed run sees the same batches. Under several processes every rank takes every
world_size-th batch, after trimming the batch list to a multiple of world_size so all ranks step alike.
"""

import os
import random

import torch
from torch.utils.data import Sampler
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback

from .data import exact_length_batches
from .model_card import card_context, metrics_from_history, write_model_card


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


class SeqRegTrainer(Trainer):
    """Trainer whose train batches, with `length_buckets=True`, hold sentences of exactly one length."""

    def __init__(self, *args, length_buckets=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.length_buckets = length_buckets

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


def early_stopping(patience, training_args):
    """EarlyStoppingCallback when it can judge something: a patience, and evaluations during training."""
    if patience and training_args.eval_strategy != "no":
        return [EarlyStoppingCallback(patience)]
    return []


class CardCallback(TrainerCallback):
    """Writes a model card into every checkpoint Trainer saves."""

    def __init__(self, data_args, embedding_args, bad_rows, dataset_sizes):
        self.data_args, self.embedding_args = data_args, embedding_args
        self.bad_rows, self.dataset_sizes = bad_rows, dataset_sizes

    def on_save(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or model is None:
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(folder):
            results = {"bad_rows": self.bad_rows, **metrics_from_history(state.log_history)}
            write_model_card(folder, card_context(model, self.data_args, self.embedding_args, results,
                                                  state.log_history, self.dataset_sizes, args))
