"""The seqreg-hf console script (seqreg_hf_cli, `python -m seqreg_hf.cli`): usage, version, help without torch, and
one-line errors."""

import os
import subprocess
import sys

from seqreg_hf.cli import main as cli

from .conftest import run_cli
from .test_vectors import keyed_vectors, vector_files  # noqa: F401  (module fixtures)


def test_errors_are_one_line(tmp_path, capsys):
    assert cli(["init", "--embeddings", str(tmp_path / "missing.vec"), "--output_dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seqreg-hf init: error:") and "missing.vec" in err[0]
    assert cli(["bogus"]) == 2


def test_version_no_arguments_and_help_without_torch(tmp_path):
    import seqreg_hf_cli

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"seqreg-hf {seqreg_hf_cli.version()}"
    result = run_cli()
    assert result.returncode == 2 and "usage: seqreg-hf COMMAND" in result.stdout
    env = {"SEQREG_HF_CACHE": str(tmp_path)}
    for command in ("init", "train", "evaluate", "predict", "oov", "explain"):
        first = run_cli(command, "--help", env=env)
        assert first.returncode == 0 and f"usage: seqreg-hf {command}" in first.stdout
        probe = ("import sys, seqreg_hf_cli; code = seqreg_hf_cli.main([sys.argv[1], '--help']); "
                 "print('TORCH', 'torch' in sys.modules, 'transformers' in sys.modules)")
        again = subprocess.run([sys.executable, "-c", probe, command], capture_output=True, text=True, timeout=120,
                               env=dict(os.environ, **env))
        assert again.stdout.startswith(first.stdout) and "TORCH False False" in again.stdout




def test_a_stop_at_once_starts_its_own_line_even_after_a_half_written_log_line(monkeypatch, tmp_path):
    """A second Ctrl-C can land between a log line's text and its newline (tqdm writes them apart): the one-line
    message must still start a line, where a terminal shows stdout and stderr together."""
    import io
    import types

    import seqreg_hf_cli
    from seqreg_hf.checkpoints import TrainingInterrupted

    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)

    def main(argv):
        sys.stdout.write("{'eval_loss': '1.119', 'epoch': '0.8'}")  # the newline never came
        raise TrainingInterrupted.at_once(str(tmp_path))

    monkeypatch.setitem(sys.modules, "half_line_command", types.SimpleNamespace(main=main))
    monkeypatch.setitem(seqreg_hf_cli.COMMANDS, "train", ("half_line_command", "stand-in"))
    assert seqreg_hf_cli.run_command("train", []) == 130
    lines = [line for line in terminal.getvalue().splitlines() if line.startswith("seqreg-hf train:")]
    assert len(lines) == 1 and "SIGINT" in lines[0], terminal.getvalue()


def test_a_commands_help_keeps_its_summarys_capitals():
    import seqreg_hf_cli

    assert "Score texts from a CSV / TSV / JSONL / TXT file" in seqreg_hf_cli.render_help("predict")
    assert "Answer predictions over HTTP (POST /predict" in seqreg_hf_cli.render_help("serve")
