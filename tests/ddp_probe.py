"""Run seqreg_hf training under torchrun while recording which examples each rank collates.

Used by tests/test_e2e_distributed.py: `torchrun --nproc_per_node 2 tests/ddp_probe.py PROBE_DIR <train args>`.
The recorder subclasses DataCollatorWithPadding, so training itself is unchanged.
"""

import json
import os
import sys

import seqreg_hf.trainer
import seqreg_hf.training as training

probe_dir = sys.argv.pop(1)
rank = int(os.environ.get("RANK", "0"))
seen = []


class RecordingCollator(training.DataCollatorWithPadding):
    def __call__(self, features):
        if all("labels" in f for f in features) and self.tokenizer is not None:
            seen.extend(" ".join(map(str, f["input_ids"])) for f in features)
        return super().__call__(features)


training.DataCollatorWithPadding = RecordingCollator
original_evaluate = seqreg_hf.trainer.SeqRegTrainer.evaluate


def train_only_evaluate(self, *args, **kwargs):  # examples seen during evaluation are not training shards
    mark = len(seen)
    try:
        return original_evaluate(self, *args, **kwargs)
    finally:
        del seen[mark:]


seqreg_hf.trainer.SeqRegTrainer.evaluate = train_only_evaluate
training.main(sys.argv[1:])
with open(os.path.join(probe_dir, f"rank{rank}.json"), "w", encoding="utf-8") as handle:
    json.dump({"rank": rank, "world_size": int(os.environ.get("WORLD_SIZE", "1")), "seen": seen}, handle)
