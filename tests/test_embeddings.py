"""Model directories built from gensim-trained vectors, the bundled MiniLM directory and model2vec."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from seqreg_hf.embeddings import Embeddings, default_embeddings_path, load_embeddings
from seqreg_hf.model_dir import build_model, init_model_dir, load_model_dir
from seqreg_hf.tokenization import build_word_tokenizer

from .test_vectors import keyed_vectors, vector_files  # noqa: F401  (module fixtures)


@pytest.mark.parametrize("name", ["word2vec", "word2vec_binary", "glove", "glove_gz"])
def test_token_ids_map_to_gensim_vectors(name, vector_files, keyed_vectors, tmp_path):  # noqa: F811
    model, source = init_model_dir(tmp_path / "model", vector_files[name], hidden_size=6, num_labels=1,
                                   embeddings_options={"progress": False})
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    sentence = "the happy dog barks"
    ids = tokenizer(sentence)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == sentence.split()
    weight = model.get_input_embeddings().weight.detach().numpy()
    expected = np.stack([keyed_vectors[word] for word in sentence.split()])
    np.testing.assert_allclose(weight[ids], expected, atol=1e-5)
    assert model.config.embedding_dim == 12 and model.config.vocab_size == len(keyed_vectors) + 2
    np.testing.assert_array_equal(weight[tokenizer.pad_token_id], 0.0)  # [PAD] is zeros


def test_oov_words_map_to_unk_with_the_mean_vector(vector_files, keyed_vectors):  # noqa: F811
    source = load_embeddings(vector_files["word2vec"], progress=False)
    ids = source.tokenizer("the zebra")["input_ids"]
    assert ids[1] == source.tokenizer.unk_token_id
    np.testing.assert_allclose(source.matrix[source.tokenizer.unk_token_id], keyed_vectors.vectors.mean(axis=0),
                               atol=1e-6)
    zeros = load_embeddings(vector_files["word2vec"], unk_init="zeros", progress=False)
    np.testing.assert_array_equal(zeros.matrix[zeros.tokenizer.unk_token_id], 0.0)
    with pytest.raises(ValueError, match="unk_init='random' is not supported"):
        load_embeddings(vector_files["word2vec"], unk_init="random", progress=False)


def test_cased_vectors_keep_case_and_uncased_lowercase(vector_files):  # noqa: F811
    cased = load_embeddings(vector_files["word2vec"], progress=False)
    assert cased.report["lowercase"] is False
    tokens = cased.tokenizer.convert_ids_to_tokens(cased.tokenizer("The Fox")["input_ids"])
    assert tokens == ["The", "Fox"]
    forced = load_embeddings(vector_files["word2vec"], lowercase=True, progress=False)
    assert forced.tokenizer.convert_ids_to_tokens(forced.tokenizer("The Fox")["input_ids"]) == ["the", "fox"]


def test_trimming_keeps_corpus_words_and_top_n_with_lowercase_fallback(vector_files, keyed_vectors):  # noqa: F811
    corpus = ["The DOG barks at a zebra", "London calling"]
    source = load_embeddings(vector_files["word2vec"], corpus=corpus, top_n=3, progress=False)
    vocab = source.tokenizer.get_vocab()
    top3 = keyed_vectors.index_to_key[:3]
    assert set(top3) <= set(vocab)
    assert {"The", "DOG", "barks", "a", "London"} <= set(vocab)
    assert not {"at", "zebra", "calling", "sleeps"} & set(vocab)  # no vector, or neither in corpus nor top 3
    # "DOG" has no vector of its own: it gets a copy of "dog", so no vector is lost.
    np.testing.assert_allclose(source.matrix[vocab["DOG"]], keyed_vectors["dog"], atol=1e-5)
    report = source.report
    assert report["kept_words"] == len(vocab) - 2 and report["corpus_types"] == 8
    assert report["corpus_types_with_vector"] == 5 and report["corpus_token_coverage"] == pytest.approx(5 / 8)
    assert report["rows"] == report["kept_words"] + 2 < report["source_vocab_size"]


def test_dimension_mismatch_with_the_config_is_refused(vector_files):  # noqa: F811
    source = load_embeddings(vector_files["glove"], progress=False)
    with pytest.raises(ValueError, match=r"glove.txt: the vectors have 12 dimensions but the config asks for "
                                         r"embedding_dim=300"):
        build_model(source, embedding_dim=300)


def test_tokenizer_larger_than_the_matrix_is_refused():
    tokenizer = build_word_tokenizer(["a", "b", "c"], lowercase=True)
    with pytest.raises(ValueError, match="the tokenizer has 5 tokens but the embedding matrix has 4 rows"):
        Embeddings(np.zeros((4, 3), dtype=np.float32), tokenizer, source="toy", kind="vectors")


def test_model_dir_with_a_foreign_tokenizer_is_refused(vector_files, tmp_path):  # noqa: F811
    init_model_dir(tmp_path / "model", vector_files["glove"], hidden_size=4, embeddings_options={"progress": False})
    build_word_tokenizer([f"w{i}" for i in range(500)], lowercase=True).save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match="tokenizer has 502 tokens but the embedding matrix has"):
        load_model_dir(tmp_path / "model")


def test_tokenizer_round_trips_through_auto_tokenizer(vector_files, tmp_path):  # noqa: F811
    source = load_embeddings(vector_files["word2vec"], progress=False)
    source.tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    texts = ["The dog doesn't sleep.", "", "London, Paris & the fox!"]
    assert again(texts)["input_ids"] == source.tokenizer(texts)["input_ids"]
    assert again.padding_side == "right" and again.pad_token_id == 0 and again.unk_token_id == 1
    assert again.model_input_names == ["input_ids", "attention_mask"]


def test_minilm_directory_gives_its_input_embeddings_and_its_own_tokenizer(tmp_path):
    path = default_embeddings_path()
    model, source = init_model_dir(tmp_path / "model", None, embedding_type="static", hidden_size=8, num_labels=3)
    reference = AutoModel.from_pretrained(path)
    torch.testing.assert_close(model.get_input_embeddings().weight, reference.get_input_embeddings().weight,
                               rtol=0, atol=0)
    own = AutoTokenizer.from_pretrained(path)
    ours = AutoTokenizer.from_pretrained(tmp_path / "model")
    texts = ["I can't believe it's not butter!", "EmoBank: valence, arousal & dominance."]
    assert ours(texts)["input_ids"] == own(texts)["input_ids"]
    loaded, tokenizer = load_model_dir(tmp_path / "model")
    assert not loaded.get_input_embeddings().weight.requires_grad
    report = json.loads((tmp_path / "model" / "embeddings_report.json").read_text())
    assert report["kind"] == "transformers" and report["rows"] == 30522 and report["dim"] == 384
    with pytest.raises(ValueError, match="trimming .* applies to vector files"):
        load_embeddings(None, top_n=10)


def test_model2vec_directory(vector_files, keyed_vectors, tmp_path):  # noqa: F811
    from model2vec import StaticModel

    words = ["[PAD]", "[UNK]"] + list(keyed_vectors.index_to_key)
    vectors = np.vstack([np.zeros((2, 12), np.float32), keyed_vectors.vectors])
    backend = build_word_tokenizer(keyed_vectors.index_to_key, lowercase=True).backend_tokenizer
    assert list(backend.get_vocab()) and len(words) == backend.get_vocab_size()
    StaticModel(vectors=vectors, tokenizer=backend).save_pretrained(str(tmp_path / "m2v"))
    model, source = init_model_dir(tmp_path / "model", tmp_path / "m2v", hidden_size=4)
    assert source.kind == "model2vec"
    ids = source.tokenizer("happy dog")["input_ids"]
    np.testing.assert_allclose(model.get_input_embeddings().weight[ids].detach().numpy(),
                               np.stack([keyed_vectors["happy"], keyed_vectors["dog"]]), atol=1e-6)
