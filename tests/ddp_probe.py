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


def train_only(original):  # examples seen during evaluation (and the final predictions) are not training shards
    def run(self, *args, **kwargs):
        mark = len(seen)
        try:
            return original(self, *args, **kwargs)
        finally:
            del seen[mark:]

    return run


for name in ("evaluate", "predict"):
    setattr(seqreg_hf.trainer.SeqRegTrainer, name, train_only(getattr(seqreg_hf.trainer.SeqRegTrainer, name)))
training.main(sys.argv[1:])
with open(os.path.join(probe_dir, f"rank{rank}.json"), "w", encoding="utf-8") as handle:
    json.dump({"rank": rank, "world_size": int(os.environ.get("WORLD_SIZE", "1")), "seen": seen}, handle)
