"""Output types follow the name: every name of the format table is written as that format (read back here with
pandas / pyarrow alone) with the same rows and scores as the CSV; every input name reads the same texts; any other
name is refused in one line before the model is even loaded."""

import bz2
import gzip
import io
import lzma
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from seqreg_hf.cli import main as cli
from seqreg_hf.embeddings import default_embeddings_path
from seqreg_hf.formats import atomic_write
from seqreg_hf.model_dir import init_model_dir
from seqreg_hf.prediction import Predictor, predict_file

from .conftest import EMOBANK

ROWS = 23  # chunks of 5: four whole chunks and a short one
PLAIN = [".csv", ".tsv", ".jsonl", ".json"]
COMPRESSED = ["", ".gz", ".bz2", ".xz", ".zst"]
OUTPUT_NAMES = [f"out{ext}{c}" for ext in PLAIN for c in COMPRESSED] + ["out.parquet"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    frame = pd.read_csv(EMOBANK, keep_default_na=False).head(ROWS)[["id", "text"]]
    frame.to_csv(folder / "texts.csv", index=False)
    init_model_dir(folder / "model", default_embeddings_path(), embedding_type="static", id2label={0: "V", 1: "A"},
                   hidden_size=8, ensemble_size=1)
    return folder, frame, Predictor.from_dir(folder / "model")


def decompressed(path):
    """The bytes of `path`, decompressed by its suffix with the standard library and pyarrow (not seqreg_hf)."""
    data = path.read_bytes()
    opener = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress,
              ".zst": lambda b: pa.input_stream(io.BytesIO(b), compression="zstd").read()}
    return opener.get(path.suffix, lambda b: b)(data)


def read_back(path):
    name = path.name.removesuffix(path.suffix) if path.suffix in (".gz", ".bz2", ".xz", ".zst") else path.name
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    data = io.BytesIO(decompressed(path))
    if name.endswith(".csv") or name.endswith(".tsv"):
        return pd.read_csv(data, sep="\t" if name.endswith(".tsv") else ",", dtype={"id": str, "text": str},
                           keep_default_na=False)
    return pd.read_json(data, lines=name.endswith(".jsonl"), dtype={"id": str, "text": str})


def assert_same_rows(got, want):
    assert list(got.columns) == list(want.columns)
    assert got["id"].astype(str).tolist() == want["id"].astype(str).tolist()
    assert got["text"].tolist() == want["text"].tolist()
    for column in ("pred_V", "pred_A"):
        np.testing.assert_allclose(got[column].to_numpy(float), want[column].to_numpy(float), rtol=1e-6, atol=1e-7)


def test_every_output_name_is_written_in_its_format_with_the_csv_rows(setup, tmp_path):
    folder, frame, predictor = setup
    predict_file(predictor, str(folder / "texts.csv"), str(tmp_path / "out.csv"), chunk_rows=5)
    want = pd.read_csv(tmp_path / "out.csv", dtype={"id": str}, keep_default_na=False)
    assert want["text"].tolist() == frame["text"].tolist() and len(want) == ROWS
    for name in OUTPUT_NAMES[1:]:
        counts = predict_file(predictor, str(folder / "texts.csv"), str(tmp_path / name), chunk_rows=5)
        assert counts["chunks"] == 5
        assert_same_rows(read_back(tmp_path / name), want)
    assert sorted(os.listdir(tmp_path)) == sorted(OUTPUT_NAMES)  # no parts or temporary files left
    # JSON is one array, not JSON Lines; a compressed file really is compressed
    assert (tmp_path / "out.json").read_text().startswith("[{") and (tmp_path / "out.csv.gz").read_bytes()[:2] == b"\x1f\x8b"


def test_the_cli_writes_compressed_csv_and_parquet_that_read_back(setup, tmp_path):
    folder, _, predictor = setup
    predict_file(predictor, str(folder / "texts.csv"), str(tmp_path / "ref.csv"))
    want = pd.read_csv(tmp_path / "ref.csv", dtype={"id": str}, keep_default_na=False)
    for name in ("out.csv.gz", "out.parquet"):
        assert cli(["predict", "--model_name_or_path", str(folder / "model"), "--test_file", str(folder / "texts.csv"),
                    "--output_file", str(tmp_path / name), "--chunk_rows", "4", "--disable_tqdm", "true"]) == 0
        assert_same_rows(read_back(tmp_path / name), want)
    assert_same_rows(pd.read_csv(tmp_path / "out.csv.gz", dtype={"id": str}, keep_default_na=False), want)


def write_input(frame, path):
    """`frame` written as the name says, with pandas / pyarrow / the standard library alone."""
    name = path.name
    compression = next((c for c in (".gz", ".bz2", ".xz", ".zst") if name.endswith(c)), "")
    plain = name.removesuffix(compression)
    if plain.endswith(".parquet"):
        frame.to_parquet(path)
        return
    if plain.endswith(".txt"):
        data = "".join(f"{t}\n" for t in frame["text"]).encode()
    elif plain.endswith((".csv", ".tsv")):
        data = frame.to_csv(index=False, sep="\t" if plain.endswith(".tsv") else ",").encode()
    else:
        data = frame.to_json(orient="records", lines=plain.endswith(".jsonl"), force_ascii=False).encode()
    compress = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress, "": lambda b: b}
    if compression == ".zst":
        with pa.output_stream(str(path), compression="zstd") as stream:
            stream.write(data)
    else:
        path.write_bytes(compress[compression](data))


def test_every_input_name_gives_the_scores_of_the_csv(setup, tmp_path):
    folder, frame, predictor = setup
    predict_file(predictor, str(folder / "texts.csv"), str(tmp_path / "ref.csv"), chunk_rows=5)
    want = pd.read_csv(tmp_path / "ref.csv", keep_default_na=False)
    names = [f"in{ext}{c}" for ext in [*PLAIN, ".txt"] for c in COMPRESSED] + ["in.parquet"]
    for name in names:
        write_input(frame, tmp_path / name)
        predict_file(predictor, str(tmp_path / name), str(tmp_path / "scored.jsonl"), chunk_rows=5)
        got = pd.read_json(tmp_path / "scored.jsonl", lines=True, dtype={"id": str, "text": str})
        assert got["text"].tolist() == frame["text"].tolist(), name
        np.testing.assert_allclose(got[["pred_V", "pred_A"]].to_numpy(), want[["pred_V", "pred_A"]].to_numpy(),
                                   rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("option, name", [("--output_file", "out.xlsx"), ("--output_file", "out.txt"),
                                          ("--output_file", "out.parquet.gz"), ("--output_file", "out.csv.lz4"),
                                          ("--output_file", "predictions"), ("--test_file", "texts.xlsx")])
def test_an_unknown_name_is_refused_before_the_model_loads(setup, tmp_path, monkeypatch, capsys, option, name):
    folder, _, _ = setup

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded: the name was not checked first")

    monkeypatch.setattr(Predictor, "from_dir", never)
    (tmp_path / "texts.xlsx").write_bytes(b"PK\x03\x04")
    paths = {"--test_file": str(folder / "texts.csv"), "--output_file": str(tmp_path / "out.csv"),
             option: str(tmp_path / name)}
    assert cli(["predict", "--model_name_or_path", str(folder / "model"), *[x for kv in paths.items() for x in kv]]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("seqreg-hf predict: error:")]
    assert len(lines) == 1 and "Traceback" not in err and f"{tmp_path / name}: unsupported file type" in lines[0]
    assert "(each optionally compressed: .gz, .bz2, .xz, .zst) or .parquet" in lines[0]
    assert os.listdir(tmp_path) == ["texts.xlsx"]  # no output, no parts


@pytest.mark.parametrize("stop", [RuntimeError("the disk is full"), KeyboardInterrupt()])
def test_a_write_stopped_half_way_leaves_the_old_file_whole_and_no_temporary_file(tmp_path, stop):
    target = tmp_path / "scores.csv"
    target.write_text("text,pred_V\nold,1.0\n")
    with pytest.raises(type(stop)):
        with atomic_write(target) as partial:
            with open(partial, "w") as handle:
                handle.write("text,pred_V\nnew,")  # half of the new file
            raise stop
    assert target.read_text() == "text,pred_V\nold,1.0\n" and os.listdir(tmp_path) == ["scores.csv"]
    with atomic_write(target) as partial:
        with open(partial, "w") as handle:
            handle.write("text,pred_V\nnew,2.0\n")
        assert os.path.dirname(partial) == str(tmp_path)  # beside the target: the rename cannot cross file systems
        assert target.read_text() == "text,pred_V\nold,1.0\n"  # nothing shows until the block ends
    assert target.read_text() == "text,pred_V\nnew,2.0\n" and os.listdir(tmp_path) == ["scores.csv"]
