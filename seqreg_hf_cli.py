"""seqreg-hf: recurrent sentence regressors over frozen pretrained embeddings.

usage: seqreg-hf COMMAND [CONFIG.json|CONFIG.yaml] [--flags]

commands:
  init      build an untrained model directory from pretrained embeddings
  train     train (and evaluate) on files of texts and scores
  evaluate  evaluate a model on labelled files (same metric keys and files as train)
  predict   score texts from a CSV / TSV / JSONL / TXT file or stdin
  export    write an ONNX graph of a trained model (checked against torch; int8 on request)
  oov       out-of-vocabulary rates of a text file under a model's tokenizer
  explain   RNN output / h_n / c_n shapes and which slice is the sentence vector

options:
  -h, --help     this help; `seqreg-hf COMMAND --help` lists a command's options and the defaults that run
  -V, --version  the installed version

Models are given as --model_name_or_path (a directory or a Hub id), data as --train_file / --validation_file /
--test_file with --text_column and --label_columns, results go to --output_dir.
"""

# This module is the console script's entry point and imports neither torch nor transformers: a command's
# --help is rendered once by the real parser and then served from a cache keyed by everything it depends on,
# so `seqreg-hf COMMAND --help` answers without the 3 s import of the training stack.

import hashlib
import importlib.util
import os
import shutil
import sys

COMMANDS = ("init", "train", "evaluate", "predict", "export", "oov", "explain")


def version():
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("seqreg-hf")
    except PackageNotFoundError:
        return "unknown (not installed)"


def cache_dir():
    default = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "seqreg_hf")
    return os.environ.get("SEQREG_HF_CACHE", default)


def _help_key():
    """A digest of what a command's help depends on: the package's code and recipe, transformers' version (its
    TrainingArguments) and the terminal width argparse wraps to."""
    from importlib.metadata import version as installed

    digest = hashlib.sha256()
    package = importlib.util.find_spec("seqreg_hf").submodule_search_locations[0]
    for folder, _, files in sorted(os.walk(package)):
        for name in sorted(files):
            if name.endswith((".py", ".json")):
                digest.update(name.encode())
                with open(os.path.join(folder, name), "rb") as handle:
                    digest.update(handle.read())
    # ... and what the environment-dependent defaults read (report_to follows tensorboard being installed).
    environment = (installed("transformers"), sys.version, shutil.get_terminal_size().columns,
                   importlib.util.find_spec("tensorboard") is not None)
    digest.update(repr(environment).encode())
    return digest.hexdigest()[:20]


def help_text(command):
    path = os.path.join(cache_dir(), "help", f"{command}-{_help_key()}.txt")
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        pass
    from seqreg_hf.arguments import command_parser

    text = command_parser(command).format_help()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(f"{path}.{os.getpid()}", "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(f"{path}.{os.getpid()}", path)
    except OSError:  # a read-only home: the help is still printed, just not cached
        pass
    return text


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        print(__doc__.strip())
        return 2
    command = argv[0]
    if command in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if command in ("-V", "--version"):
        print(f"seqreg-hf {version()}")
        return 0
    if command not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        print(f"\nseqreg-hf: unknown command {command!r}; choose one of {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    if "-h" in argv[1:] or "--help" in argv[1:]:
        if argv[1:] and not argv[1].startswith("-"):  # a config file first: its values are the defaults shown
            from seqreg_hf.arguments import command_parser, read_config_file

            parser = command_parser(command)
            try:
                parser.layer(read_config_file(argv[1]), argv[1])
            except (ValueError, TypeError, OSError, ImportError) as error:  # as a run of the command reports it
                print(f"seqreg-hf {command}: error: {error}", file=sys.stderr)
                return 1
            print(parser.format_help(), end="")
        else:
            print(help_text(command), end="")
        return 0
    from seqreg_hf.cli import run_command

    return run_command(command, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
