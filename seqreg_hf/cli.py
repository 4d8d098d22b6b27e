"""The seqreg-hf commands. The console script enters through `seqreg_hf_cli.main` (no heavy imports for --help and
--version); `python -m seqreg_hf.cli` is the same program."""

import json
import sys


def run_init(argv):
    from .model_dir import main

    main(argv)


def run_oov(argv):
    from .arguments import parse_command
    from .data import read_texts
    from .embeddings import load_embeddings
    from .logs import configure
    from .model_dir import load_tokenizer
    from .oov import format_report, oov_report

    args, run = parse_command("oov", argv)
    configure(run.log_level, run.disable_tqdm)
    if args.model_name_or_path and args.embeddings:
        raise ValueError("give --model_name_or_path or --embeddings, not both: the tokenizer comes from one of them.")
    if not args.train_file:
        raise ValueError("--train_file is required: the file of texts to measure.")
    trust = args.trust_remote_code
    if args.model_name_or_path:
        tokenizer = load_tokenizer(args.model_name_or_path, trust_remote_code=trust)
    else:
        tokenizer = load_embeddings(args.embeddings, progress=not run.disable_tqdm, trust_remote_code=trust).tokenizer
    report = oov_report(tokenizer, read_texts(args.train_file, args.text_column), top=args.top)
    print(json.dumps(report, indent=2) if args.json else format_report(report))


def run_explain(argv):
    from .arguments import parse_command
    from .explain import main as explain

    (args,) = parse_command("explain", argv)
    explain(args)


def run_train(argv):
    from .training import main

    main(argv)


def run_evaluate(argv):
    from .evaluation import main

    main(argv)


def run_predict(argv):
    from .prediction import main

    main(argv)


def run_export(argv):
    from .arguments import parse_command
    from .export import export_onnx
    from .logs import configure

    args, run = parse_command("export", argv)
    configure(run.log_level, run.disable_tqdm)
    if not args.model_name_or_path or not args.output_dir:
        raise ValueError("--model_name_or_path and --output_dir are required: the model to export and where to.")
    report = export_onnx(args.model_name_or_path, args.output_dir, quantize=args.quantize, opset=args.opset,
                         trust_remote_code=args.trust_remote_code)
    print(json.dumps(report, indent=2))


COMMANDS = {"init": run_init, "export": run_export, "train": run_train, "evaluate": run_evaluate, "predict": run_predict,
            "oov": run_oov, "explain": run_explain}


def run_command(name, argv):
    """Run one command; bad input ends in one line on stderr and exit status 1, never a traceback."""
    from seqreg_hf.checkpoints import TrainingInterrupted

    try:
        COMMANDS[name](argv)
    except TrainingInterrupted as stop:  # a complete checkpoint was saved; 128 + signal, as the shell reports it
        print(f"seqreg-hf {name}: {stop}", file=sys.stderr)
        return 128 + stop.signum
    except (ValueError, TypeError, OSError, ImportError) as error:
        print(f"seqreg-hf {name}: error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    from seqreg_hf_cli import main as launch

    return launch(argv)


if __name__ == "__main__":
    sys.exit(main())
