"""Safe loading is enforced on the package's own source: no pickle, remote code only when the user asks.

Every load through a transformers Auto class (`from_pretrained`, `from_config`) or `pipeline(...)` must pass
`trust_remote_code` explicitly: left out, transformers asks "run the custom code? [y/N]" on stdin, which a text
piped to `seqreg-hf predict` can answer.

The check parses the code (`ast`): it sees calls, not text, so a docstring that mentions `torch.load(` is not a
hit, a call split over several lines is still one call, and an alias (`from torch import load as l`) is resolved.
"""

import ast

import pytest

from .conftest import REPO

SOURCES = sorted((REPO / "seqreg_hf").rglob("*.py")) + sorted((REPO / "scripts").rglob("*.py")) + [
    REPO / "seqreg_hf_cli.py"]

PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}
PICKLE_CALLS = {"pandas.read_pickle", "torch.serialization.load"}


def dotted(node, aliases):
    """'torch.load' for `torch.load`, `t.load` (import torch as t) or `load` (from torch import load)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def keyword(call, name):
    """The constant value of keyword `name` in `call`; a missing keyword is None, a non-constant one is '?'."""
    for item in call.keywords:
        if item.arg == name:
            return item.value.value if isinstance(item.value, ast.Constant) else "?"
    return None


def loads_code_of_a_directory(name):
    """Whether the call `name` may run a directory's custom code: an Auto class's loader, or pipeline()."""
    parts = name.split(".")
    if parts[-1] == "pipeline":
        return parts[0] in ("transformers", "pipeline")
    return len(parts) >= 2 and parts[-1] in ("from_pretrained", "from_config") and parts[-2].startswith("Auto")


def problems(source, where="<code>"):
    """Every unsafe load or save in `source`, as 'where:line: what'."""
    tree = ast.parse(source)
    aliases = {"np": "numpy", "pd": "pandas"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for name in node.names:
                aliases[name.asname or name.name.split(".")[0]] = name.name if name.asname else name.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for name in node.names:
                aliases[name.asname or name.name] = f"{node.module}.{name.name}"
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [n.name for n in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if module.split(".")[0] in PICKLE_MODULES:
                    found.append(f"{where}:{node.lineno}: imports {module}")
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func, aliases) or ""
        if name in ("torch.load",) and keyword(node, "weights_only") is not True:
            found.append(f"{where}:{node.lineno}: torch.load without weights_only=True")
        if name == "numpy.load" and keyword(node, "allow_pickle") is not False:
            found.append(f"{where}:{node.lineno}: numpy.load without allow_pickle=False")
        if name in PICKLE_CALLS or name.split(".")[0] in PICKLE_MODULES:
            found.append(f"{where}:{node.lineno}: {name}")
        if keyword(node, "safe_serialization") is False or keyword(node, "use_safetensors") is False:
            found.append(f"{where}:{node.lineno}: {name} writes or reads pickled weights")
        if keyword(node, "trust_remote_code") not in (None, False, "?"):
            found.append(f"{where}:{node.lineno}: {name} trusts remote code on the user's behalf")
        elif loads_code_of_a_directory(name) and not any(k.arg == "trust_remote_code" for k in node.keywords):
            found.append(f"{where}:{node.lineno}: {name} without trust_remote_code (transformers would ask on stdin)")
    return found


def test_sources_were_found():
    assert any(p.name == "modeling_seqreg.py" for p in SOURCES) and len(SOURCES) > 10


def test_the_package_loads_and_saves_nothing_unsafe():
    hits = [hit for path in SOURCES for hit in problems(path.read_text(encoding="utf-8"), path.relative_to(REPO))]
    assert hits == []


@pytest.mark.parametrize("code", [
    "import torch\nstate = torch.load(path)",
    "import torch\nstate = torch.load(path, weights_only=False)",
    "from torch import load as fetch\nstate = fetch(path)",
    "import torch as t\nstate = t.load(\n    path,\n    map_location='cpu',\n)",
    "import pickle\nobj = pickle.loads(data)",
    "import dill",
    "from joblib import load",
    "import pandas as pd\nframe = pd.read_pickle('x.pkl')",
    "import numpy as np\nx = np.load('a.npy')",
    "import numpy\nx = numpy.load('a.npy', allow_pickle=True)",
    "model.save_pretrained(out, safe_serialization=False)",
    "m = Model.from_pretrained(d, use_safetensors=False)",
    "m = AutoModel.from_pretrained(d, trust_remote_code=True)",
    "note = 'see `x`'; m = AutoModel.from_pretrained(d, trust_remote_code=True)",  # a backtick on the line
    "from transformers import AutoTokenizer\ntok = AutoTokenizer.from_pretrained(d)",
    "import transformers\nc = transformers.AutoConfig.from_pretrained(\n    d,\n    revision='main',\n)",
    "from transformers import AutoModelForSequenceClassification as Auto\nm = Auto.from_pretrained(d, **options)",
    "from transformers import AutoModel\nm = AutoModel.from_config(config)",
    "from transformers import pipeline\np = pipeline('text-regression', model=d)",
    "import transformers\np = transformers.pipeline(model=d)",
])
def test_each_unsafe_pattern_is_caught(code):
    assert problems(code), code


@pytest.mark.parametrize("code", [
    '"""Never call `torch.load(path)` or pickle.loads(data): trust_remote_code=True is the user\'s choice."""',
    "import torch\nstate = torch.load(\n    path,\n    weights_only=True,\n)",
    "import numpy as np\nx = np.load('a.npy', allow_pickle=False)",
    "m = AutoModel.from_pretrained(d, trust_remote_code=args.trust_remote_code)",
    "from transformers import AutoTokenizer\ntok = AutoTokenizer.from_pretrained(d, trust_remote_code=False)",
    "from transformers import pipeline\np = pipeline('text-regression', model=d, trust_remote_code=trust)",
    "from seqreg_hf import SeqRegForSequenceRegression\nm = SeqRegForSequenceRegression.from_pretrained(d)",
    "from transformers import AutoConfig\nc = AutoConfig.for_model('bert')",  # builds a known class, no code
    "# torch.load(path) in a comment",
])
def test_safe_code_and_prose_are_not_flagged(code):
    assert problems(code) == []
