"""The `seqreg-hf` command line: explain, init, oov, train, evaluate, predict."""

import argparse
import sys


def _explain_parser(sub):
    p = sub.add_parser("explain", help="print RNN output / h_n / c_n shapes and which slice is the sentence vector")
    p.add_argument("--rnn_type", choices=["lstm", "gru", "rnn"], default="lstm")
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--num_layers", type=int, default=1)
    p.add_argument("--hidden_size", type=int, default=4)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="seqreg-hf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _explain_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "explain":
        from .explain import main as run

        return run(args)
    return None


if __name__ == "__main__":
    sys.exit(main())
