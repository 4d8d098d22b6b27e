"""The speed benchmark counts the sentences that actually ran."""

import numpy as np
import pandas as pd

from scripts.measure import benchmark
from seqreg_hf.embeddings import load_embeddings
from seqreg_hf.trainer import LengthBucketBatchSampler

from .conftest import EMOBANK


def test_training_throughput_counts_the_rows_the_sampler_yielded():
    source = load_embeddings(None)
    texts = pd.read_csv(EMOBANK, keep_default_na=False).query("split == 'train' and text != ''")["text"].head(400)
    ids = source.tokenizer(texts.tolist(), truncation=True, max_length=128)["input_ids"]
    labels = np.zeros((len(ids), 3), dtype=np.float32)
    config = {"rnn_type": "gru", "hidden_size": 8, "bidirectional": True}
    steps = 6
    _, _, collator = benchmark.trainer_train(source, ids, labels, config, steps, "buckets")
    sampler = LengthBucketBatchSampler([len(x) for x in ids], 32, seed=0)
    expected = [len(batch) for batch in sampler][:steps]
    assert [len(b) for b in collator.batches] == expected
    assert collator.rows == sum(expected) < steps * 32  # exact-length buckets hold fewer than 32 rows: count them
    for batch in collator.batches:
        assert (batch != source.pad_token_id).all()  # and none of them is padded
    _, _, plain = benchmark.trainer_train(source, ids, labels, config, steps, "plain")
    assert plain.rows == steps * 32 and any((b == source.pad_token_id).any() for b in plain.batches)
