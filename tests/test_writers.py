"""predict's output writer without a model: rows written in parts and joined in order read back, with pandas alone,
as one file in the format its name says; an input without rows still gives the columns."""

import os

import pandas as pd

from seqreg_hf.formats import FORMATS, atomic_write
from seqreg_hf.writers import OutputWriter

from .test_formats import OUTPUT_NAMES, read_back

FRAME = pd.DataFrame({"id": ["1", "2", "3", "4", "5"], "text": ["a", "b, with a comma", "c\twith a tab", 'd "quoted"',
                                                                 "e\nsecond line"],
                      "pred_V": [0.5, -1.25, 2.0, 3.5, 0.0], "pred_A": [1.0, 2.0, 3.0, 4.0, 5.0]})


def write(writer, frame, folder, chunk_rows=2):
    chunks = [frame.iloc[i : i + chunk_rows] for i in range(0, len(frame), chunk_rows)]
    parts = [os.path.join(folder, f".part{i}") for i in range(len(chunks))]
    for index, (chunk, part) in enumerate(zip(chunks, parts)):
        writer.write_part(chunk.reset_index(drop=True), part, first=index == 0)
    with atomic_write(writer.path) as partial:
        writer.join(parts, list(frame.columns), partial)
    for part in parts:
        os.remove(part)


def test_parts_joined_in_order_read_back_as_one_file_of_every_writable_name(tmp_path):
    for name in OUTPUT_NAMES:
        write(OutputWriter(str(tmp_path / name)), FRAME, tmp_path)
        got = read_back(tmp_path / name)
        assert got["text"].tolist() == FRAME["text"].tolist(), name
        assert got["pred_V"].tolist() == FRAME["pred_V"].tolist() and got["pred_A"].tolist() == FRAME["pred_A"].tolist()
    assert sorted(os.listdir(tmp_path)) == sorted(OUTPUT_NAMES)
    assert (tmp_path / "out.tsv").read_text().startswith("id\ttext\tpred_V\tpred_A\n")  # the table's separator


def test_an_input_without_rows_gives_the_columns(tmp_path):
    for name in ("out.csv", "out.tsv", "out.parquet", "out.json", "out.jsonl"):
        write(OutputWriter(str(tmp_path / name)), FRAME.iloc[:0], tmp_path)
    separator = {ext: FORMATS[ext].options.get("delimiter", ",") for ext in (".csv", ".tsv")}
    assert (tmp_path / "out.csv").read_text() == separator[".csv"].join(FRAME.columns) + "\n"
    assert (tmp_path / "out.tsv").read_text() == separator[".tsv"].join(FRAME.columns) + "\n"
    assert list(pd.read_parquet(tmp_path / "out.parquet").columns) == list(FRAME.columns)
    assert (tmp_path / "out.json").read_text() == "[]\n" and (tmp_path / "out.jsonl").read_text() == ""
