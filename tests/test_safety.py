"""Safe loading is enforced on the package's own source: no pickle, remote code only when the user asks."""

import re

from .conftest import REPO

SOURCES = sorted((REPO / "seqreg_hf").rglob("*.py")) + sorted((REPO / "scripts").glob("*.py"))


def offending(pattern, allow=None):
    hits = []
    for path in SOURCES:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            if "`" in code:  # prose in a docstring, not a call
                continue
            if re.search(pattern, code) and not (allow and re.search(allow, code)):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    return hits


def test_sources_were_found():
    assert any(p.name == "modeling_seqreg.py" for p in SOURCES) and len(SOURCES) > 10


def test_no_pickle_is_loaded_anywhere():
    assert offending(r"\bimport pickle\b|\bpickle\.loads?\(|\bcloudpickle\b|\bdill\b|joblib\.load") == []
    assert offending(r"torch\.load\(", allow=r"weights_only\s*=\s*True") == []
    assert offending(r"numpy\.load\(|np\.load\(", allow=r"allow_pickle\s*=\s*False") == []


def test_weights_are_written_and_read_as_safetensors_only():
    assert offending(r"safe_serialization\s*=\s*False") == []
    assert offending(r"use_safetensors\s*=\s*False") == []


def test_remote_code_is_never_trusted_on_the_users_behalf():
    assert offending(r"trust_remote_code\s*=\s*True") == []
