"""seqreg-hf: recurrent sentence regressors over frozen pretrained embeddings.

Commands:
  init      build an untrained model directory from pretrained embeddings
  train     train (and evaluate) on files of texts and scores
  evaluate  evaluate a model directory on a labelled file
  predict   score texts from a CSV / JSONL file or stdin
  oov       out-of-vocabulary rates of a text file under a model's tokenizer
  explain   RNN output / h_n / c_n shapes and which slice is the sentence vector

Run `seqreg-hf COMMAND --help` for a command's options.
"""

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from .arguments import ArchitectureArguments, EmbeddingArguments


@dataclass
class InitArguments:
    output_dir: str = field(metadata={"help": "Where to write the model directory."})
    label_names: list[str] = field(default_factory=lambda: ["score"], metadata={
        "help": "Names of the targets, one per output (EmoBank: V A D)."})
    corpus_file: str | None = field(default=None, metadata={
        "help": "Texts whose words a trimmed vocabulary keeps (CSV / JSON / JSONL / Parquet / .txt)."})
    text_column: str = field(default="text", metadata={"help": "Text column of --corpus_file."})
    num_token_features: int = field(default=0, metadata={"help": "Extra numeric features per token."})


def _parse(dataclasses, argv, prog):
    parser = HfArgumentParser(dataclasses, prog=prog)
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(argv[0])
    return parser.parse_args_into_dataclasses(argv)


def run_init(argv):
    from .builder import init_model_dir
    from .data import read_texts

    init_args, embedding_args, arch_args = _parse((InitArguments, EmbeddingArguments, ArchitectureArguments), argv,
                                                  "seqreg-hf init")
    corpus = read_texts(init_args.corpus_file, init_args.text_column) if init_args.corpus_file else None
    model, source = init_model_dir(
        init_args.output_dir, embedding_args.embeddings, embeddings_options=embedding_args.loader_options(corpus),
        id2label=dict(enumerate(init_args.label_names)), num_token_features=init_args.num_token_features,
        **arch_args.config_kwargs(),
    )
    trainable = model.num_parameters(only_trainable=True)
    print(f"wrote {init_args.output_dir}: {model.config.vocab_size} x {model.config.embedding_dim} frozen "
          f"embeddings from {source.source} ({source.kind}), {trainable:,} trainable parameters")
    print(json.dumps(source.report, indent=2))


def run_oov(argv):
    from .data import read_texts
    from .embeddings import load_embeddings
    from .loading import load_tokenizer
    from .oov import format_report, oov_report

    parser = argparse.ArgumentParser(prog="seqreg-hf oov", description="OOV rates of a text file.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="a model directory (its tokenizer is used)")
    source.add_argument("--embeddings", help="a vector file / model directory / Hub id (default: MiniLM)")
    parser.add_argument("--data", required=True, help="CSV / JSON / JSONL / Parquet / .txt file of texts")
    parser.add_argument("--text_column", default="text")
    parser.add_argument("--top", type=int, default=20, help="how many OOV words to list")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    tokenizer = load_tokenizer(args.model) if args.model else load_embeddings(args.embeddings).tokenizer
    report = oov_report(tokenizer, read_texts(args.data, args.text_column), top=args.top)
    print(json.dumps(report, indent=2) if args.json else format_report(report))


def run_explain(argv):
    from .explain import main as explain

    parser = argparse.ArgumentParser(prog="seqreg-hf explain", description="Which RNN output is the sentence vector?")
    parser.add_argument("--rnn_type", choices=["lstm", "gru", "rnn"], default="lstm")
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--num_layers", type=int, default=1)
    parser.add_argument("--hidden_size", type=int, default=4)
    explain(parser.parse_args(argv))


COMMANDS = {"init": run_init, "oov": run_oov, "explain": run_explain}


def _load_training_commands():
    try:
        from .training import run_evaluate, run_predict, run_train
    except ImportError:
        return
    COMMANDS.update(train=run_train, evaluate=run_evaluate, predict=run_predict)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    _load_training_commands()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nseqreg-hf: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}.", file=sys.stderr)
            return 2
        return 0
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        COMMANDS[argv[0]](argv[1:])
    except (ValueError, OSError) as error:  # bad input: one clear line, no stack trace
        print(f"seqreg-hf {argv[0]}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
