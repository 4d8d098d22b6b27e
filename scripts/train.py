#!/usr/bin/env python
"""Train a seqreg_hf regressor, in the style of transformers' run_glue.py: the same entry point as `seqreg-hf train`.

The options are @dataclasses in seqreg_hf.arguments (ModelArguments, DataArguments, EmbeddingArguments, the
ArchitectureArguments generated from SeqRegConfig, and SeqRegTrainingArguments), parsed by HfArgumentParser from
flags, after an optional JSON or YAML file whose values the flags override:

    python scripts/train.py scripts/configs/emobank.json --seed 1
    python scripts/train.py --train_file data.csv --label_columns score --output_dir outputs/run

It runs unchanged under `torchrun` or `accelerate launch`.
"""

from seqreg_hf.training import main

if __name__ == "__main__":
    main()
