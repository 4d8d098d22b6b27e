"""What an ONNX export folder holds besides its graphs, so that it is a repository of its own: a config.json without
the remote code it does not carry (no `auto_map`, no `custom_pipelines`), and a card (README.md) for onnxruntime
users, with a snippet that runs where seqreg_hf (and transformers) is not installed: the tokenizer through
`tokenizers`, the graph through an onnxruntime InferenceSession.

The card's metadata says `library_name: onnx` (the Hub's library for a repository of .onnx files, which it infers
from them anyway) with the tags `onnx` and `onnxruntime`; the source card's license, languages, datasets, base
model and results are carried over, its widget is not (no inference widget runs a bare ONNX graph).
"""

import json
import os

from huggingface_hub import ModelCard, ModelCardData

from .onnx_session import INPUTS, ONNX_FILE, OUTPUTS, PAIR_AXIS, PAIR_INPUTS
from .tokenization import MAX_LENGTH

# Keys of the torch model's config.json that name files the ONNX folder does not hold.
REMOTE_CODE_KEYS = ("auto_map", "custom_pipelines")
# What the ONNX card keeps of the source card's metadata.
CARRIED_METADATA = ("license", "language", "datasets", "base_model", "metrics", "model-index", "pipeline_tag")
CARD_TAGS = ["onnx", "onnxruntime", "seqreg", "text-regression"]
EXAMPLES = ["What a wonderful day!", "I am not sure this is going to work."]
PAIR_EXAMPLES = [("A man is playing a guitar.", "A man plays the guitar."),
                 ("A cat sits on the mat.", "The stock market fell sharply today.")]


def write_config(config, output_dir):
    """config.json of the folder: the model's config (label statistics, calibration, everything) without the keys
    that point at model code the folder does not hold."""
    values = json.loads(config.to_json_string(use_diff=True))
    for key in REMOTE_CODE_KEYS:
        values.pop(key, None)
    with open(os.path.join(output_dir, "config.json"), "w", encoding="utf-8") as handle:
        json.dump(values, handle, indent=2, sort_keys=True)
        handle.write("\n")


def snippet(max_length=MAX_LENGTH, pair_encoding=None):
    """Python that scores two texts (or, for a pair model, two pairs) with the folder's graph and prints one JSON line
    each; it runs in the folder (a clone or download of the repository) with onnxruntime, numpy and tokenizers only.
    A siamese pair model's graph reads each side tokenized on its own; a cross model's, each pair as one sequence
    (the tokenizer's pair template puts its separator between the texts)."""
    ids, mask = INPUTS
    head = f'''import json

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

with open("config.json", encoding="utf-8") as handle:
    config = json.load(handle)
labels = [label for _, label in sorted((int(k), v) for k, v in config["id2label"].items())]
tokenizer = Tokenizer.from_file("tokenizer.json")
pad = config["pad_token_id"]
tokenizer.enable_padding(pad_id=pad, pad_token=tokenizer.id_to_token(pad))  # right padding, to the longest text
tokenizer.enable_truncation(max_length={max_length})
session = onnxruntime.InferenceSession("{ONNX_FILE}", providers=["CPUExecutionProvider"])


def padded(encodings):
    """(ids, mask) int64 arrays of a batch; a batch of empty texts gets one padding column, masked out (a graph
    cannot read a width of 0)."""
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    if ids.shape[1] == 0:
        ids, mask = np.full((len(encodings), 1), pad, dtype=np.int64), np.zeros((len(encodings), 1), dtype=np.int64)
    return ids, mask


'''
    if pair_encoding is None:
        rows, fields = f"texts = {EXAMPLES!r}", '"text": text'
        body = f'''inputs = dict(zip(["{ids}", "{mask}"], padded(tokenizer.encode_batch(texts))))
'''
    elif pair_encoding == "cross":
        rows, fields = f"texts = {PAIR_EXAMPLES!r}  # (text, text_pair)", '"text": text[0], "text_pair": text[1]'
        body = f'''encodings = tokenizer.encode_batch(texts)  # each pair as one sequence: text [SEP] text_pair
inputs = dict(zip(["{ids}", "{mask}"], padded(encodings)))
'''
    else:
        pair_ids, pair_mask = PAIR_INPUTS
        rows, fields = f"texts = {PAIR_EXAMPLES!r}  # (text, text_pair)", '"text": text[0], "text_pair": text[1]'
        body = f'''inputs = {{}}
for side, names in enumerate([("{ids}", "{mask}"), ("{pair_ids}", "{pair_mask}")]):
    encodings = tokenizer.encode_batch([pair[side] for pair in texts])  # each side padded on its own
    inputs.update(zip(names, padded(encodings)))
'''
    return head + rows + "\n" + body + f'''{OUTPUTS[0]}, {OUTPUTS[1]} = session.run(["{OUTPUTS[0]}", "{OUTPUTS[1]}"], inputs)
for text, scores, spread in zip(texts, {OUTPUTS[0]}, {OUTPUTS[1]}.std(axis=0)):
    print(json.dumps({{{fields}, **dict(zip(labels, scores.tolist())),
                      **{{f"{{label}}_std": float(s) for label, s in zip(labels, spread)}}}}))
'''


def inputs_text(config):
    """The card's line on the graph's inputs."""
    ids, mask = INPUTS
    text = f"Inputs: `{ids}` and `{mask}`, int64 (batch_size, sequence_length), right-padded"
    if config.pair_encoding == "cross":
        return text + (", each pair as one sequence (`tokenizer(text, text_pair)`: the tokenizer's separator "
                       "between the two texts).")
    if config.siamese:
        return text + (f", the first texts; `{PAIR_INPUTS[0]}` and `{PAIR_INPUTS[1]}` (batch_size, {PAIR_AXIS}), "
                       "the second texts, tokenized and right-padded on their own.")
    return text + "."


def source_metadata(source):
    """The source card's metadata (a dict; empty without a card)."""
    path = os.path.join(os.fspath(source), "README.md")
    if not os.path.isfile(path):
        return {}
    return ModelCard.load(path).data.to_dict()


def card_text(config, source, report, max_length=MAX_LENGTH):
    """The card of an export folder, from the model's config, its source folder and the export's report; its snippet
    cuts texts at `max_length` tokens (the saved tokenizer's limit, as `seqreg-hf predict` cuts them)."""
    carried = source_metadata(source)
    metadata = {key: carried[key] for key in CARRIED_METADATA if carried.get(key)}
    tags = CARD_TAGS + [tag for tag in carried.get("tags") or [] if tag not in CARD_TAGS]
    data = ModelCardData(library_name="onnx", tags=tags, **metadata)
    name = carried.get("model_name") or os.path.basename(os.path.abspath(os.fspath(source)))
    labels = ", ".join(config.label_names)
    if config.embedding_type == "contextual":
        what = ("the frozen transformer whose hidden states the recurrent network reads, the recurrent network and "
                "its head, in one graph")
    else:
        what = "the frozen word-embedding matrix, the recurrent network and its head, in one graph"
    unit = "text"
    if config.reads_pairs:
        unit = (f"pair of texts (pair_encoding `{config.pair_encoding}`: "
                + ("both texts read as one sequence)" if config.pair_encoding == "cross" else
                   "each text read by the same encoder, the two sentence vectors compared symmetrically)"))
    # A pair file's columns, by the agreed flags (STS-B's names as the example).
    test_file, pair_flags = ("pairs.csv", " --text_column sentence1 --text_pair_column sentence2") if config.reads_pairs \
        else ("texts.csv", "")
    int8 = report.get("int8")
    files = [f"- `{ONNX_FILE}`: float32, equal to the PyTorch model within "
             f"{report['max_abs_difference_vs_torch']:.1e} on padded check batches of mixed lengths"
             + (" (pairs, each side padded on its own)." if config.siamese else ".")]
    if report.get("external_data"):
        files.append(f"- `{report['external_data']}`: the weights of `{ONNX_FILE}` (over 2 GB; onnxruntime reads it "
                     "from beside the graph).")
    if int8:
        rs = [r for r in int8["pearson_r_vs_torch"].values() if r is not None]
        agreement = f"Pearson r >= {min(rs):.4f}" if rs else "scores within tolerance"
        files.append("- `model.int8.onnx`: the embeddings' and heads' weights stored as 8-bit integers (onnxruntime "
                     f"dynamic quantization); {agreement} with the PyTorch model on {int8['check_rows']} check rows.")
    files += ["- `config.json`: labels, label statistics and the architecture (the graph needs none of it to run).",
              "- `tokenizer.json`, `tokenizer_config.json`: the tokenizer.",
              "- `onnx_export.json`: the export's report (versions, checks, sizes)."]
    calibration = ("\nThe conformal calibration of the model is kept in `config.json` (`calibration`); "
                   "seqreg_hf turns it into intervals.\n" if getattr(config, "calibration", None) else "")
    body = f"""
# {name} (ONNX)

The ONNX export of a seqreg_hf sentence regressor: {what}.
It predicts {config.num_labels} real-valued score(s) per {unit} ({labels}) in the labels' own units,
from an ensemble of {config.ensemble_size} member(s).

## Use with onnxruntime

In a copy of this repository (`hf download REPO_ID --local-dir model && cd model`), with
`pip install onnxruntime tokenizers numpy` (neither seqreg_hf nor torch is needed):

```python
{snippet(max_length, config.pair_encoding)}```

{inputs_text(config)} Outputs: `{OUTPUTS[0]}`
(batch_size, num_labels), the scores, and `{OUTPUTS[1]}` (ensemble_size, batch_size, num_labels), each member's
scores; their std over members is the ensemble's disagreement. For the int8 graph, open `model.int8.onnx`.
Texts are cut at {max_length} tokens, as `seqreg-hf predict` cuts them by default.

With seqreg_hf installed, `seqreg-hf predict --model_name_or_path . --backend onnx --test_file {test_file}
--output_file scored.csv{pair_flags}` runs the same graph with length-grouped batches.
{calibration}
## Files

{chr(10).join(files)}

Exported with {report['exporter']}, opset {report['opset']} (torch {report['torch']}, onnxruntime
{report['onnxruntime']}).
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def write_card(config, source, output_dir, report, max_length=MAX_LENGTH):
    card_text(config, source, report, max_length).save(os.path.join(output_dir, "README.md"))


__all__ = ["write_config", "write_card", "card_text", "snippet", "REMOTE_CODE_KEYS", "EXAMPLES", "PAIR_EXAMPLES"]
