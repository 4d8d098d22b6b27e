"""Contextual states computed once per dataset: training on a frozen transformer without running it every epoch.

`cache_contextual_states` runs the frozen transformer of a contextual model over each tokenized split once and
stores what the network reads, in float16, as a `contextual_states` column of the split's `datasets` Arrow cache:
the layer mean for layer_mix="mean" (one state per token), every chosen layer for "scalar" (the mix trains). The
cache is keyed by the split's own fingerprint, a digest of the transformer's weights and config, and the layer
choice, so a second run reuses it and another choice rebuilds it. `StatesCollator` pads the column beside the token
ids, and the model's `forward(contextual_states=...)` then runs only the mix, the RNN and the head. Prediction
runs the transformer live. A siamese pair's second texts get their own column, `pair_contextual_states` (the
model's `pair_contextual_states` input), computed and padded the same way.
"""

import hashlib
import json

import numpy as np
import torch
from datasets import Dataset

from .data import PairCollator

COLUMN = "contextual_states"
PAIR_COLUMN = "pair_contextual_states"
# The token ids each states column is computed from.
STATES_OF = {COLUMN: "input_ids", PAIR_COLUMN: "pair_input_ids"}


def encoder_digest(model):
    """A digest of the frozen transformer: its config and every weight's bytes."""
    embeddings = model.base_model.embeddings
    digest = hashlib.sha256(json.dumps(model.config.contextual_config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(embeddings.contextual.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def stored_layers(model):
    """How many states per token the cache holds: 1 (the mean) or one per chosen layer (scalar mix)."""
    embeddings = model.base_model.embeddings
    return 1 if model.config.layer_mix == "mean" else len(embeddings.layers)


def cache_contextual_states(splits, model, pad_token_id, batch_size=128, chunk_size=2048):
    """{split: Dataset} with a `contextual_states` column (float16, flattened per row), computed once per split.

    The transformer sees the rows of each `chunk_size` block sorted by length, `batch_size` at a time, under
    inference_mode, so a batch pads only to its own longest row; the states go back in the split's order. (EmoBank's
    train split in split order, 64 rows a batch, is 2.8 times its real tokens once padded; sorted this way, 1.2.)"""
    embeddings = model.base_model.embeddings
    key = hashlib.sha256(json.dumps([encoder_digest(model), embeddings.layers, model.config.layer_mix, "float16"])
                         .encode()).hexdigest()[:16]
    device = next(model.parameters()).device

    def states_of(rows):
        """The stored states of a few rows of token ids: (stored layers, row, length, hidden) cut to each row."""
        lengths = [len(ids) for ids in rows]
        ids = torch.full((len(rows), max(lengths)), pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, row_ids in enumerate(rows):
            ids[row, : len(row_ids)] = torch.as_tensor(row_ids)
            mask[row, : len(row_ids)] = 1
        states = embeddings.contextual_states(ids.to(device), mask.to(device))  # (layers, batch, width, hidden)
        if model.config.layer_mix == "mean":
            states = states.mean(dim=0, keepdim=True)
        states = states.to(torch.float16).cpu().numpy()
        return [np.ascontiguousarray(states[:, row, :n]).reshape(-1) for row, n in enumerate(lengths)]

    def column_states(rows):
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        out = [None] * len(rows)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start: start + batch_size]
                for i, states in zip(chunk, states_of([rows[i] for i in chunk])):
                    out[i] = states
        return out

    def compute(batch):  # the first texts' states, and a siamese pair's second texts' beside them
        return {column: column_states(batch[ids]) for column, ids in STATES_OF.items() if ids in batch}

    cached = {}
    for split, dataset in splits.items():
        if not isinstance(dataset, Dataset):  # streamed: the transformer runs live
            cached[split] = dataset
            continue
        mapped = dataset.map(compute, batched=True, batch_size=chunk_size, desc=f"contextual states {split}",
                             new_fingerprint=hashlib.sha256(f"{dataset._fingerprint}-{key}".encode()).hexdigest()[:16])
        # The states come out as numpy arrays (a Python list of ~10k floats a row would cost more than the RNN).
        columns = [c for c in STATES_OF if c in mapped.column_names]
        cached[split] = mapped.with_format("numpy", columns=columns, output_all_columns=True)
    return cached


def cache_bytes(splits):
    """Bytes on disk of the splits' Arrow files (for cached states: what the cache costs)."""
    import os

    return sum(os.path.getsize(f["filename"]) for d in splits.values() if isinstance(d, Dataset)
               for f in d.cache_files)


class StatesCollator(PairCollator):
    """Pads token ids as DataCollatorWithPadding does (a siamese pair's second side on its own, `PairCollator`), and
    the cached states (layers, length, hidden) beside each side's ids, into float32 (batch, layers, length, hidden)
    tensors."""

    def __init__(self, tokenizer, layers, hidden_size, **kwargs):
        super().__init__(tokenizer, **kwargs)
        self.layers, self.hidden_size = layers, hidden_size

    def __call__(self, features):
        states = {column: [np.asarray(f.pop(column), dtype=np.float32) for f in features]
                  for column in STATES_OF if column in features[0]}
        batch = super().__call__(features)
        for column, rows in states.items():
            padded = torch.zeros(len(rows), self.layers, batch[STATES_OF[column]].shape[1], self.hidden_size)
            for row, flat in enumerate(rows):
                block = torch.from_numpy(flat).view(self.layers, -1, self.hidden_size)
                padded[row, :, : block.shape[1]] = block
            batch[column] = padded
        return batch


__all__ = ["cache_contextual_states", "cache_bytes", "StatesCollator", "encoder_digest", "stored_layers", "COLUMN",
           "PAIR_COLUMN", "STATES_OF"]
