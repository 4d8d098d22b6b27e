"""Vector files written by gensim, read back by seqreg_hf's reader; bad files give named errors."""

import gzip

import numpy as np
import pytest
from gensim.models import KeyedVectors, Word2Vec

from seqreg_hf.vectors import VectorFileError, detect_format, load_vectors

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "The dog sleeps while the Fox runs",
    "a happy child laughs and the happy dog barks",
    "sad news makes the child cry",
    "London is a big city and Paris is a big city too",
] * 20


@pytest.fixture(scope="module")
def keyed_vectors():
    model = Word2Vec([line.split() for line in CORPUS], vector_size=12, min_count=1, seed=3, workers=1, epochs=5)
    return model.wv


@pytest.fixture(scope="module")
def vector_files(keyed_vectors, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vectors")
    files = {
        "word2vec": folder / "vectors.txt",
        "word2vec_binary": folder / "vectors.bin",
        "glove": folder / "glove.txt",
        "word2vec_gz": folder / "vectors.txt.gz",
        "word2vec_binary_gz": folder / "vectors.bin.gz",
        "glove_gz": folder / "glove.txt.gz",
    }
    keyed_vectors.save_word2vec_format(str(files["word2vec"]), binary=False)
    keyed_vectors.save_word2vec_format(str(files["word2vec_binary"]), binary=True)
    keyed_vectors.save_word2vec_format(str(files["glove"]), binary=False, write_header=False)
    for name in ("word2vec", "word2vec_binary", "glove"):
        files[f"{name}_gz"].write_bytes(gzip.compress(files[name].read_bytes()))
    return files


@pytest.mark.parametrize("name", ["word2vec", "word2vec_binary", "glove", "word2vec_gz", "word2vec_binary_gz",
                                  "glove_gz"])
def test_every_format_reads_the_vectors_gensim_wrote(name, vector_files, keyed_vectors):
    vectors = load_vectors(vector_files[name], progress=False)
    assert vectors.words == list(keyed_vectors.index_to_key)
    assert vectors.vectors.dtype == np.float32
    if "binary" in name:
        np.testing.assert_array_equal(vectors.vectors, keyed_vectors.vectors)
    else:  # gensim writes text with limited precision; compare with gensim's own reading of the file
        no_header = name.startswith("glove")
        reread = KeyedVectors.load_word2vec_format(str(vector_files[name]), binary=False, no_header=no_header)
        np.testing.assert_array_equal(vectors.vectors, reread.vectors)
        np.testing.assert_allclose(vectors.vectors, keyed_vectors.vectors, atol=1e-5)


def test_format_detection(vector_files):
    assert detect_format(vector_files["word2vec"]) == "word2vec"
    assert detect_format(vector_files["glove_gz"]) == "glove"
    assert detect_format(vector_files["word2vec_binary_gz"]) == "word2vec_binary"


@pytest.mark.parametrize("name", ["word2vec", "glove", "word2vec_binary"])
def test_limit_keeps_the_most_frequent_words(name, vector_files, keyed_vectors):
    vectors = load_vectors(vector_files[name], limit=5, progress=False)
    assert vectors.words == keyed_vectors.index_to_key[:5]
    assert vectors.vectors.shape == (5, 12)


def test_casing_detection(vector_files):
    vectors = load_vectors(vector_files["word2vec"], progress=False)
    assert vectors.is_cased()  # the corpus has "The", "Fox", "London"
    assert vectors.lookup("Fox") == vectors.index["Fox"]
    assert vectors.lookup("DOG") == vectors.index["dog"]  # exact first, then lowercase
    assert vectors.lookup("zebra") is None


def write(path, text_or_bytes):
    data = text_or_bytes.encode("utf-8") if isinstance(text_or_bytes, str) else text_or_bytes
    path.write_bytes(data)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.vec"):
        load_vectors(tmp_path / "nowhere.vec")


def test_wrong_number_of_values_names_the_line(tmp_path):
    path = write(tmp_path / "short.txt", "3 4\ncat 1 2 3 4\ndog 1 2 3\nfox 1 2 3 4\n")
    with pytest.raises(VectorFileError, match=r"short.txt, line 3: 3 values where the file has 4"):
        load_vectors(path, progress=False)


def test_non_numeric_value_names_the_line(tmp_path):
    path = write(tmp_path / "glove.txt", "cat 1 2 3\ndog 1 x 3\n")
    with pytest.raises(VectorFileError, match=r"glove.txt, line 2: 'x' is not a number"):
        load_vectors(path, progress=False)


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = write(tmp_path / "latin.txt", b"cat 1 2\n" + "caf\xe9 1 2\n".encode("latin-1"))
    with pytest.raises(VectorFileError, match=r"latin.txt, line 2: .* not UTF-8.*Re-encode"):
        load_vectors(path, progress=False)


def test_duplicated_word_is_an_error_that_says_how_to_keep_either(tmp_path):
    path = write(tmp_path / "dup.txt", "cat 1 2\ndog 3 4\ncat 5 6\n")
    with pytest.raises(VectorFileError, match=r"line 3: the word 'cat' was already defined at line 1.*"
                                              r"on_duplicate='first' to keep line 1.*on_duplicate='last' to keep line 3"):
        load_vectors(path, progress=False)
    first = load_vectors(path, on_duplicate="first", progress=False)
    last = load_vectors(path, on_duplicate="last", progress=False)
    assert first.words == last.words == ["cat", "dog"]
    np.testing.assert_array_equal(first.vectors[0], [1, 2])
    np.testing.assert_array_equal(last.vectors[0], [5, 6])
    assert first.duplicates == [("cat", "line 1", "line 3")]
    assert last.duplicates == [("cat", "line 3", "line 1")]


def test_truncated_files(tmp_path, vector_files):
    text = write(tmp_path / "cut.txt", "5 2\ncat 1 2\ndog 3 4\n")
    with pytest.raises(VectorFileError, match="header promises 5 words but the file holds 2; the file is truncated"):
        load_vectors(text, progress=False)
    data = vector_files["word2vec_binary"].read_bytes()
    binary = write(tmp_path / "cut.bin", data[: len(data) // 2])
    with pytest.raises(VectorFileError, match=r"cut.bin, entry \d+ of \d+: .*truncated"):
        load_vectors(binary, progress=False)


def test_nan_vectors_are_refused(tmp_path):
    path = write(tmp_path / "nan.txt", "cat 1 2\ndog nan 4\n")
    with pytest.raises(VectorFileError, match="line 2: the vector holds NaN"):
        load_vectors(path, progress=False)


def test_multi_word_glove_tokens_keep_the_last_values_as_the_vector(tmp_path):
    path = write(tmp_path / "840b.txt", "cat 1 2\n. . . 3 4\n")
    vectors = load_vectors(path, format="glove", progress=False)
    assert vectors.words == ["cat", ". . ."]
    np.testing.assert_array_equal(vectors.vectors[1], [3, 4])


def test_unknown_options_are_refused(vector_files):
    with pytest.raises(ValueError, match="format='glove2' is not supported"):
        load_vectors(vector_files["glove"], format="glove2")
    with pytest.raises(ValueError, match="on_duplicate='keep'"):
        load_vectors(vector_files["glove"], on_duplicate="keep")
    with pytest.raises(VectorFileError, match="is a word2vec header; use format='word2vec'"):
        load_vectors(vector_files["word2vec"], format="glove")
