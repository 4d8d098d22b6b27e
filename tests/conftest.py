import os
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from seqreg_hf import SeqRegConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EMOBANK = REPO.parent / "shared" / "data" / "emobank.csv"


# The textbook model (one bidirectional LSTM read at its final states, no dropout), which most unit tests take apart;
# SeqRegConfig's own defaults are the recommended model.
TEXTBOOK = dict(rnn_type="lstm", num_layers=1, pooling="last", ensemble_size=1, head_dropout=0.0,
                embedding_dropout=0.0, word_dropout=0.0, rnn_dropout=0.0, layer_mix="mean")


def tiny_config(**overrides):
    """A vocabulary of tens of words and dims of 8: fast enough to parametrize widely."""
    values = dict(vocab_size=40, embedding_dim=8, hidden_size=8, num_labels=2, **TEXTBOOK)
    values.update(overrides)
    return SeqRegConfig(**values)


def member(model, k):
    """Member k (encoder, pooler, head) of a SeqRegModel or SeqRegForSequenceRegression."""
    return model.base_model.ensemble.members[k]


def right_padded(sentences, pad_id=0):
    """Stack token-id lists into (input_ids, attention_mask), padding on the right."""
    width = max((len(s) for s in sentences), default=0)
    ids = torch.full((len(sentences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sentences), width), dtype=torch.long)
    for row, sentence in enumerate(sentences):
        ids[row, : len(sentence)] = torch.tensor(sentence, dtype=torch.long)
        mask[row, : len(sentence)] = 1
    return ids, mask


@pytest.fixture
def emobank_path():
    if not EMOBANK.exists():
        raise FileNotFoundError(f"EmoBank is expected at {EMOBANK} (the shared data folder beside the repository).")
    return EMOBANK


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def run_cli(*args, env=None, **kwargs):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "seqreg_hf.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=REPO, stdin=subprocess.DEVNULL, **kwargs)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A randomly initialized 3-layer BERT (4 hidden states) over MiniLM's WordPiece vocabulary, saved as
    safetensors: the contextual tests' transformer."""
    from transformers import BertConfig, BertModel

    from seqreg_hf.embeddings import load_embeddings

    folder = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder)
    load_embeddings(None).tokenizer.save_pretrained(folder)
    return folder


def write_word2vec(path, words, dim=4, decimals=4):
    """A word2vec text file of `words`, each a random vector of `dim` values (seeded: the same file every time)."""
    rng = np.random.default_rng(0)
    lines = [f"{len(words)} {dim}"] + [f"{w} " + " ".join(f"{v:.{decimals}f}" for v in rng.normal(size=dim))
                                       for w in words]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
