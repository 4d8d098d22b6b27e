"""Exact-length batching: every training batch holds sentences of one token length, so nothing is padded.

A batch without padding runs the RNN's dense kernel (exact, and about twice as fast as packed sequences on
CPU). Each epoch shuffles within every length bucket, cuts it into batches, then shuffles the batches, all from
(seed, epoch), so a resumed run sees the same batches. Under several processes every rank takes every
world_size-th batch, after trimming the batch list to a multiple of world_size so all ranks step alike.
"""

import torch
from torch.utils.data import Sampler
from transformers import Trainer


class LengthBucketBatchSampler(Sampler):
    def __init__(self, lengths, batch_size, seed=0, rank=0, world_size=1):
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def _batches(self):
        generator = torch.Generator().manual_seed(self.seed + 1009 * self.epoch)
        buckets = {}
        for index, length in enumerate(self.lengths):
            buckets.setdefault(length, []).append(index)
        batches = []
        for length in sorted(buckets):
            rows = buckets[length]
            rows = [rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()]
            batches += [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
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
