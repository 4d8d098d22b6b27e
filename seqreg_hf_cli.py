"""The `seqreg-hf` console script: one table of commands, each run by the `main(argv)` of the module that owns it.

This module imports neither torch nor transformers: a command's --help is rendered once by the real parser and then
served from a cache keyed by everything it depends on, so `seqreg-hf COMMAND --help` answers without the 3 s import
of the training stack. `python -m seqreg_hf.cli` is the same program (for torchrun and accelerate launch).
"""

import hashlib
import importlib
import importlib.util
import os
import shutil
import sys

# name -> (the module whose main(argv) runs it, what it does)
COMMANDS = {
    "init": ("seqreg_hf.model_dir", "build an untrained model directory from pretrained embeddings"),
    "train": ("seqreg_hf.training", "train (and evaluate) on files of texts and scores"),
    "search": ("seqreg_hf.search", "search architectures and training options on the dev split; writes best_config.json"),
    "evaluate": ("seqreg_hf.evaluation", "evaluate a model on labelled files (same metric keys and files as train)"),
    "predict": ("seqreg_hf.prediction", "score texts from a CSV / TSV / JSONL / TXT file or stdin"),
    "calibrate": ("seqreg_hf.calibration", "calibrate a model's prediction intervals (split conformal) on labelled texts"),
    "export": ("seqreg_hf.export", "write an ONNX graph of a trained model (checked against torch; int8 on request)"),
    "serve": ("seqreg_hf.serving", "answer predictions over HTTP (POST /predict, GET /info, a page at /)"),
    "oov": ("seqreg_hf.oov", "out-of-vocabulary rates of a text file under a model's tokenizer"),
    "explain": ("seqreg_hf.shapes", "RNN output / h_n / c_n shapes and which slice is the sentence vector"),
}

USAGE = "\n".join([
    "seqreg-hf: recurrent sentence regressors over frozen pretrained embeddings.",
    "",
    "usage: seqreg-hf COMMAND [CONFIG.json|CONFIG.yaml] [--flags]",
    "",
    "commands:",
    *(f"  {name:9} {summary}" for name, (_, summary) in COMMANDS.items()),
    "",
    "options:",
    "  -h, --help     this help; `seqreg-hf COMMAND --help` lists a command's options and the defaults that run",
    "  -V, --version  the installed version",
    "",
    "Models are given as --model_name_or_path (a directory or a Hub id), data as --train_file / --validation_file /",
    "--test_file with --text_column and --label_columns, results go to --output_dir. The defaults are the recommended",
    "model (seqreg_hf.SeqRegConfig) and training (seqreg_hf.arguments.SeqRegTrainingArguments); a config file named",
    "first (scripts/configs/emobank.json) is merged under the flags.",
])


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


def help_key():
    """A digest of what a command's help depends on: the package's code and this file's (the summaries),
    transformers' version (its TrainingArguments) and the terminal width argparse wraps to."""
    from importlib.metadata import version as installed

    digest = hashlib.sha256()
    package = importlib.util.find_spec("seqreg_hf").submodule_search_locations[0]
    for folder, _, files in sorted(os.walk(package)):
        for name in sorted(files):
            if name.endswith((".py", ".json")):
                digest.update(name.encode())
                with open(os.path.join(folder, name), "rb") as handle:
                    digest.update(handle.read())
    with open(os.path.abspath(__file__), "rb") as handle:
        digest.update(handle.read())
    # ... and what the environment-dependent defaults read (report_to follows tensorboard being installed).
    environment = (installed("transformers"), sys.version, shutil.get_terminal_size().columns,
                   importlib.util.find_spec("tensorboard") is not None)
    digest.update(repr(environment).encode())
    return digest.hexdigest()[:20]


def render_help(command, config_file=None):
    from seqreg_hf.arguments import command_parser

    summary = COMMANDS[command][1]  # its first letter up; str.capitalize would lower "CSV" and "HTTP"
    return command_parser(command, config_file, description=summary[:1].upper() + summary[1:] + ".").format_help()


def help_text(command):
    path = os.path.join(cache_dir(), "help", f"{command}-{help_key()}.txt")
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        pass
    text = render_help(command)
    try:  # written whole, then renamed: a second process reads the old help or the new one, never half
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(f"{path}.{os.getpid()}", "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(f"{path}.{os.getpid()}", path)
    except OSError:  # a read-only home: the help is still printed, just not cached
        pass
    return text


def run_command(name, argv):
    """Run one command; bad input ends in one line on stderr and exit status 1, never a traceback."""
    from seqreg_hf.checkpoints import TrainingInterrupted

    try:
        importlib.import_module(COMMANDS[name][0]).main(argv)
    except TrainingInterrupted as stop:  # a complete checkpoint was saved; 128 + signal, as the shell reports it
        # A stop "at once" may have cut a log line short mid-write: the message starts a line of its own.
        fresh_line = "" if stop.checkpoint else "\n"
        sys.stdout.flush()
        print(f"{fresh_line}seqreg-hf {name}: {stop}", file=sys.stderr)
        return 128 + stop.signum
    except (ValueError, TypeError, OSError, ImportError) as error:
        print(f"seqreg-hf {name}: error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        print(USAGE)
        return 2
    command = argv[0]
    if command in ("-h", "--help"):
        print(USAGE)
        return 0
    if command in ("-V", "--version"):
        print(f"seqreg-hf {version()}")
        return 0
    if command not in COMMANDS:
        print(USAGE, file=sys.stderr)
        print(f"\nseqreg-hf: unknown command {command!r}; choose one of {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    if "-h" in argv[1:] or "--help" in argv[1:]:
        if argv[1:] and not argv[1].startswith("-"):  # a config file first: its values are the defaults shown
            try:
                print(render_help(command, argv[1]), end="")
            except (ValueError, TypeError, OSError, ImportError) as error:  # as a run of the command reports it
                print(f"seqreg-hf {command}: error: {error}", file=sys.stderr)
                return 1
        else:
            print(help_text(command), end="")
        return 0
    return run_command(command, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
