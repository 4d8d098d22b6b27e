#!/usr/bin/env python
"""Train a seqreg_hf regressor, in the style of transformers' run_glue.py.

The argument groups are @dataclasses in seqreg_hf.training (ModelArguments, DataArguments) and
seqreg_hf.arguments (EmbeddingArguments, ArchitectureArguments), plus transformers' TrainingArguments, all
parsed by HfArgumentParser from flags or from one JSON file:

    python scripts/train.py scripts/configs/emobank.json
    python scripts/train.py --train_file data.csv --label_columns score --output_dir outputs/run

It is the same entry point as `seqreg-hf train`, so it runs unchanged under `torchrun` or `accelerate launch`.
"""

from seqreg_hf.training import main

if __name__ == "__main__":
    main()
