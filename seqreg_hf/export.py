"""ONNX export of a trained model, checked against torch before it is written (the session that predicts with the
graph is `seqreg_hf.onnx_session`'s; what the folder holds besides its graphs, `seqreg_hf.onnx_repo`'s).

The graph is traced from the encoder's dense padded path (`SeqRegEncoder._dense`): every row reads only its own
tokens through ordinary LSTM / GRU / RNN nodes, with no packed sequences, so one graph serves any batch size and
length. It takes `input_ids` and `attention_mask` (batch_size, sequence_length), int64, right-padded, and returns
`logits` (batch_size, num_labels) and `member_logits` (ensemble_size, batch_size, num_labels), both in the labels'
own units (optimum's names). A contextual model's graph holds its frozen transformer too: one graph from token ids
to scores. A siamese pair model's graph (pair_encoding "siamese" or "cosine") also takes the second texts,
`pair_input_ids` and `pair_attention_mask` (batch_size, pair_sequence_length), right-padded on their own: the shared
encoder reads each side at its own length and the head compares the two sentence vectors. A cross model reads one
sequence per pair, so its graph is the single-text graph. Every check runs on the inputs the model takes: padded
pairs, each side with its own lengths and padding, for a siamese model.

Exporter: torch's TorchScript-based `torch.onnx.export(..., dynamo=False)`. The dynamo exporter was tried on torch
2.13: it takes 20-100x longer and fixes the length axis to the example's for the tanh RNN (whose backward direction
reverses each row by indexing), so its graphs reject other lengths.
"""

import contextlib
import json
import logging
import os
import tempfile
import time

import numpy as np
import torch
from torch import nn

from .model_dir import load_model_dir
from .onnx_repo import write_card, write_config
from .onnx_session import AXES, ONNX_FILE, OUTPUTS, PAIR_AXIS, PAIR_INPUTS, OnnxSession, graph_inputs
from .tokenization import truncation_length

logger = logging.getLogger(__name__)

INT8_FILE = "model.int8.onnx"
REPORT_FILE = "onnx_export.json"
OPSET = 17
# A protobuf file holds at most 2 GiB, so a larger graph keeps its weights in one file beside it, `model.onnx_data`
# (optimum's name; onnxruntime finds it by the name stored in the graph). Graphs under the limit stay one file.
EXTERNAL_DATA_BYTES = 2**31 - 2**24  # a 16 MiB margin for the graph's own nodes
EXTERNAL_DATA_SUFFIX = "_data"

# The ops whose weights onnxruntime's dynamic quantizer stores as 8-bit integers: the embedding matrix (Gather) and
# the heads (MatMul, once quant_pre_process has turned their Gemm into one). Left out on purpose:
# - LSTM: onnxruntime's DynamicQuantizeLSTM gives the input weights one scale per direction, and once
#   quant_pre_process folds them, those weights carry the padding feature's saturating column (2**100). Every
#   other input weight rounds to 0 and the cell no longer reads its tokens (measured: 128 of 8,448 weights left
#   non-zero; on the trained model below, r .52-.68).
# - GRU and RNN: onnxruntime has no 8-bit kernel for them.
# So the recurrent weights stay float32; the report lists which initializers are 8-bit and their bytes.
INT8_OPS = ("Gather", "MatMul")
# A contextual graph's transformer layers, by the node names the exporter gives them (the model's attribute path);
# their MatMuls stay float32 (see `transformer_matmuls`).
TRANSFORMER_LAYERS = "/contextual/encoder/"
# The int8 gate, on the check set (check_batches and random_batches, 273 rows), per label. Measured on two models
# trained on EmoBank: the recipe's 3 bidirectional GRUs (hidden 64, 1 epoch on 3,000 rows) and the bidirectional
# LSTM pair of tests/test_export_onnx_checks.py (400 rows). Rounding alone gives r >= .9997 (GRU) and .9971 (LSTM, V)
# and differences of at most .062 / .081 label stds; on the EmoBank test split r >= .9989 and at most .110 stds.
# Broken graphs are far past both bounds: with LSTM quantized, r .52-.68 and .26-.37 stds; with every token read
# as id 0, r -.49 to -.67 and .84-.87 stds. So r >= .99 leaves room for models that round a little worse, and a
# quarter of a label std (the units the model was trained in) is over twice the largest rounding measured, and
# under what either broken graph moves.
INT8_MIN_R = 0.99
INT8_MAX_DIFF_STDS = 0.25


class ExportCheckError(ValueError):
    """The exported graph does not reproduce torch within the tolerance; nothing was written under its name."""


class OnnxGraph(nn.Module):
    """What the ONNX graph computes: the model's forward without its Python-side input checks (the onnxruntime
    session checks inputs before it runs the graph), ending in the model's own `to_label_units`.

    A siamese pair model's two sides run through the shared encoder one after the other, each at its own length
    (the torch model pads both to one length and runs one batch; every row reads only its own tokens, so the
    sentence vectors are the same, and swapping the sides swaps them exactly)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, pair_input_ids=None, pair_attention_mask=None):
        pooled = self.sentence_vectors(input_ids, attention_mask)
        pair_pooled = None if pair_input_ids is None else self.sentence_vectors(pair_input_ids, pair_attention_mask)
        return self.model.to_label_units(self.model.seqreg.ensemble.predict(pooled, pair_pooled))

    def sentence_vectors(self, input_ids, attention_mask):
        """(batch, ensemble_size * pooled size): the members' sentence vectors of one side."""
        seqreg = self.model.seqreg
        lengths = attention_mask.sum(dim=1)
        words = seqreg.embeddings.lookup(input_ids, None, attention_mask)
        _, pooled, _, _ = seqreg.ensemble.encode(seqreg.embeddings, words, input_ids, lengths, attention_mask.bool())
        return pooled


@contextlib.contextmanager
def dense_path_only(model):
    """Trace the padded path: the no-padding shortcut is a Python branch that a trace would freeze."""
    encoders = [member.encoder for member in model.seqreg.ensemble.members]
    for encoder in encoders:
        encoder.unpadded_fast_path = False
    try:
        yield
    finally:
        for encoder in encoders:
            del encoder.unpadded_fast_path  # back to the class attribute


@contextlib.contextmanager
def working_directory(path):
    """Run the block with `path` as the current directory (contextlib.chdir, which Python 3.10 lacks)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def padded(lengths, vocab_size, pad_token_id, generator):
    """(ids, mask) of random token ids, right-padded to the longest of `lengths` (a list or a tensor)."""
    lengths = torch.as_tensor(lengths)
    mask = (torch.arange(int(lengths.max())) < lengths.unsqueeze(1)).long()
    ids = torch.randint(0, vocab_size, mask.shape, generator=generator)
    return torch.where(mask.bool(), ids, torch.full_like(ids, pad_token_id)), mask


# The check batches' lengths: mixed lengths with empty rows, one batch without padding, a single text. For pairs, the
# second texts' lengths (another width, other rows padded, an empty side beside a full one, both sides empty).
CHECK_LENGTHS = ([7, 3, 0, 1, 5], [4, 4, 4], [1], [0, 2], [33, 1, 17, 0, 9, 2])
CHECK_PAIR_LENGTHS = ([2, 9, 4, 0, 5], [1, 6, 2], [3], [0, 0], [5, 20, 0, 12, 1, 40])


def check_batches(vocab_size, pad_token_id, seed=0):
    """Right-padded batches of mixed lengths with empty rows, one without padding, and a single text."""
    generator = torch.Generator().manual_seed(seed)
    return [padded(lengths, vocab_size, pad_token_id, generator) for lengths in CHECK_LENGTHS]


def pair_check_batches(vocab_size, pad_token_id, seed=0):
    """check_batches for a siamese pair model: (ids, mask, pair_ids, pair_mask), the second texts right-padded on
    their own to other lengths (CHECK_PAIR_LENGTHS)."""
    generator = torch.Generator().manual_seed(seed)
    return [padded(lengths, vocab_size, pad_token_id, generator) + padded(pair_lengths, vocab_size, pad_token_id,
                                                                          generator)
            for lengths, pair_lengths in zip(CHECK_LENGTHS, CHECK_PAIR_LENGTHS)]


def random_batches(vocab_size, pad_token_id, rows=256, batch_size=32, max_length=48, seed=2, pairs=False):
    """Right-padded batches of random token ids and lengths 1..max_length: enough rows for a correlation. pairs=True:
    (ids, mask, pair_ids, pair_mask), each side with lengths of its own."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(rows // batch_size):
        batch = ()
        for _ in range(2 if pairs else 1):
            batch += padded(torch.randint(1, max_length + 1, (batch_size,), generator=generator), vocab_size,
                            pad_token_id, generator)
        batches.append(batch)
    return batches


def model_check_batches(config, seed=0):
    """The check batches of the inputs `config`'s model takes: pairs for a siamese pair model."""
    batches = pair_check_batches if config.siamese else check_batches
    return batches(config.vocab_size, config.pad_token_id, seed)


def _both_outputs(model, path, batches):
    """(got, want): onnxruntime's and torch's [scores (rows, labels), member scores (members, rows, labels)] over
    `batches` ((ids, mask) or, for a siamese pair model, (ids, mask, pair_ids, pair_mask)); torch is the model's own
    forward (and member_predictions), not the traced wrapper, and the graph runs in the session that predicts with
    it."""
    session = OnnxSession(path, model.config)
    got, want = [], []
    with torch.no_grad():
        for batch in batches:
            inputs = dict(zip(graph_inputs(model.config), batch))
            ids, mask = inputs.pop("input_ids"), inputs.pop("attention_mask")
            want.append([model(ids, attention_mask=mask, **inputs).logits.numpy(),
                         model.member_predictions(ids, attention_mask=mask, **inputs).numpy()])
            got.append(session.run(ids.numpy(), mask.numpy(), **{k: v.numpy() for k, v in inputs.items()}))
    joined = [[np.concatenate([part[k] for part in parts], axis=k) for k in range(2)] for parts in (got, want)]
    return joined[0], joined[1]


def max_difference(model, path, batches):
    """Largest |onnxruntime - torch| over the scores and member scores of `batches`."""
    got, want = _both_outputs(model, path, batches)
    return max(float(np.abs(g - w).max()) for g, w in zip(got, want))


def pearson_r(got, want):
    """Pearson r of two columns; 0 where `got` is constant and `want` is not (it follows nothing), None where
    `want` is constant (there is nothing to follow)."""
    got, want = got - got.mean(), want - want.mean()
    if not want.any():
        return None
    scale = np.sqrt((got * got).sum() * (want * want).sum())
    return float((got * want).sum() / scale) if scale else 0.0


def int8_agreement(model, path, batches):
    """Per label: Pearson r of the int8 scores with torch's, and the largest difference (scores and members) in
    label stds; with the largest difference in the labels' units."""
    (scores, members), (want_scores, want_members) = _both_outputs(model, path, batches)
    # A model without label statistics undoes none (to_label_units): its units count as standardized ones.
    stds = np.asarray(model.config.label_stds or [1.0] * model.config.num_labels, dtype=np.float64)
    names = model.config.label_names
    worst = np.maximum(np.abs(scores - want_scores).max(axis=0), np.abs(members - want_members).max(axis=(0, 1)))
    return {"check_rows": len(scores), "max_abs_difference_vs_torch": float(worst.max()),
            "max_abs_difference_in_label_stds": {n: round(float(w / s), 5) for n, w, s in zip(names, worst, stds)},
            "pearson_r_vs_torch": {n: pearson_r(scores[:, k].astype(np.float64), want_scores[:, k].astype(np.float64))
                                   for k, n in enumerate(names)},
            "tolerance": {"min_pearson_r": INT8_MIN_R, "max_difference_in_label_stds": INT8_MAX_DIFF_STDS}}


def int8_failures(agreement):
    """What in `agreement` is past the tolerance, as text; empty when the int8 graph passes."""
    r = agreement["pearson_r_vs_torch"]
    far = agreement["max_abs_difference_in_label_stds"]
    return ([f"Pearson r {name} {value:.3f} < {INT8_MIN_R}" for name, value in r.items()
             if value is not None and value < INT8_MIN_R]
            + [f"difference {name} {value:.3f} label stds > {INT8_MAX_DIFF_STDS}" for name, value in far.items()
               if value > INT8_MAX_DIFF_STDS])


def export_graph(model, path, opset=OPSET):
    """Trace `model` (eval mode, CPU, float32) into an ONNX file with dynamic batch and length axes (the second
    texts' length axis of its own, for a siamese pair model). torch writes a graph over 2 GiB with its weights in
    files beside it: `store_graph` gathers them."""
    config = model.config
    example = model_check_batches(config)[0]  # padded, so the padded path is traced
    batch, length = AXES
    axes = {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length},
            OUTPUTS[0]: {0: batch}, OUTPUTS[1]: {1: batch}}
    if config.siamese:
        axes.update({name: {0: batch, 1: PAIR_AXIS} for name in PAIR_INPUTS})
    with dense_path_only(model), torch.no_grad(), _quiet_exporter():
        torch.onnx.export(
            OnnxGraph(model).eval(), tuple(example), os.fspath(path), dynamo=False, opset_version=opset,
            input_names=list(graph_inputs(config)), output_names=list(OUTPUTS), dynamic_axes=axes)
    model.eval()  # the exporter restores the wrapper's mode on everything under it


def store_graph(exported, path, limit=None):
    """Write the graph `exported` to `path`: one file when it holds at most `limit` bytes (EXTERNAL_DATA_BYTES),
    else the graph with its weights in one file beside it, named `path`'s name + "_data". Returns that file's name,
    or None."""
    import onnx

    limit = EXTERNAL_DATA_BYTES if limit is None else limit
    folder = os.path.dirname(exported)
    size = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))  # torch's files beside
    if size <= limit:
        os.replace(exported, path)
        return None
    data = os.path.basename(path) + EXTERNAL_DATA_SUFFIX
    onnx.save_model(onnx.load(exported), path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data, size_threshold=1024)
    return data


def _remove_stale(output_dir, keep):
    """An earlier export's graphs and weight files that this one did not write: they would no longer match."""
    for name in (ONNX_FILE + EXTERNAL_DATA_SUFFIX, INT8_FILE, INT8_FILE + ".data"):
        stale = os.path.join(output_dir, name)
        if name not in keep and os.path.exists(stale):
            os.remove(stale)
            if name == INT8_FILE:
                logger.warning("removed %s: it was quantized from an earlier export (add --quantize int8 for a new "
                               "one).", stale)


def export_onnx(model_name_or_path, output_dir, quantize=None, opset=OPSET, atol=1e-5, trust_remote_code=False):
    """Write `model.onnx` (and `model.int8.onnx` with quantize="int8") with the tokenizer, config and card beside
    it; check each graph against torch (float32 to `atol` on padded batches of mixed lengths, empty rows included;
    int8 within INT8_MIN_R and INT8_MAX_DIFF_STDS) before anything is written. Static and contextual models alike
    (a contextual graph runs the frozen transformer too); a siamese pair model's graph takes the second texts too
    and is checked on padded pairs. Returns the report also written to onnx_export.json."""
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize={quantize!r}: the choices are None and 'int8'.")
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("ONNX export needs onnx and onnxruntime: pip install 'seqreg-hf[onnx]'.") from None
    model, tokenizer = load_model_dir(model_name_or_path, trust_remote_code=trust_remote_code)
    model = model.float().cpu().eval()
    config = model.config
    if config.num_token_features:
        raise ValueError(f"{model_name_or_path} takes token_features (num_token_features={config.num_token_features}"
                         "); the ONNX graph takes input_ids and attention_mask only, so it cannot be exported.")
    os.makedirs(output_dir, exist_ok=True)
    start = time.perf_counter()
    # Everything is written in a temporary folder beside the output and each file renamed into place only once
    # every graph is checked (weight files before the graphs that name them); an error leaves the folder as it was.
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".export-") as work:
        os.mkdir(os.path.join(work, "traced"))
        export_graph(model, os.path.join(work, "traced", ONNX_FILE), opset)
        graph = os.path.join(work, ONNX_FILE)
        external = store_graph(os.path.join(work, "traced", ONNX_FILE), graph)
        seconds = time.perf_counter() - start
        batches = model_check_batches(config, seed=1)
        difference = max_difference(model, graph, batches)
        if difference > atol:
            raise ExportCheckError(f"the ONNX graph of {model_name_or_path} differs from torch by {difference:.2e} "
                                   f"(> {atol:g}) on the check batches, so it was not written. Please report this "
                                   "with the model's config.json.")
        if quantize == "int8":
            batches += random_batches(config.vocab_size, config.pad_token_id, pairs=config.siamese)
            int8 = quantize_int8(graph, os.path.join(work, INT8_FILE), model, batches, model_name_or_path,
                                 external is not None)
        written = sorted((name for name in os.listdir(work) if os.path.isfile(os.path.join(work, name))
                          and not name.startswith(INT8_FILE + ".pre")), key=lambda name: name.endswith(".onnx"))
        for name in written:
            os.replace(os.path.join(work, name), os.path.join(output_dir, name))
    _remove_stale(output_dir, written)
    # Exported into the model's own folder (as `predict --backend onnx` suggests for a folder without a graph), the
    # graph joins the torch repository: its config (auto_map and all) and card stay, since the folder holds the code.
    in_place = os.path.isdir(model_name_or_path) and os.path.samefile(model_name_or_path, output_dir)
    if not in_place:
        tokenizer.save_pretrained(output_dir)
        write_config(config, output_dir)
    report = {
        "exporter": "torch.onnx.export, TorchScript-based (dynamo=False)", "opset": opset,
        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "source": os.fspath(model_name_or_path),
        "embedding_type": config.embedding_type, "pair_encoding": config.pair_encoding,
        "inputs": list(graph_inputs(config)), "outputs": list(OUTPUTS),
        "dynamic_axes": list(AXES) + ([PAIR_AXIS] if config.siamese else []), "export_seconds": round(seconds, 3),
        "files": {name: os.path.getsize(os.path.join(output_dir, name)) for name in written},
        "external_data": external, "max_abs_difference_vs_torch": difference,
    }
    if quantize == "int8":
        report["int8"] = int8
    if not in_place:
        write_card(config, model_name_or_path, output_dir, report, truncation_length(tokenizer))
    with open(os.path.join(output_dir, REPORT_FILE), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    return report


def quantize_int8(path, int8_path, model, batches, source, external=False):
    """Dynamic 8-bit quantization with onnxruntime (weights stored as 8-bit integers, activations quantized on the
    fly; no calibration data), checked against torch on `batches`. Returns what is 8-bit and the check's figures;
    raises ExportCheckError past the tolerance. external=True: the graphs keep their weights in files beside them."""
    from onnxruntime import quantization
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # quant_pre_process (shape inference and onnxruntime's graph optimizations) folds the weights built at run
    # time into stored initializers and turns the heads' Gemm into MatMul, so the quantizer sees them. Its symbolic
    # shape inference gives up on a transformer's position slice (min(max_positions, length)); onnx's own shape
    # inference and the optimizations, which are what the folding needs, still run without it.
    # When its symbolic shape inference fails, onnxruntime saves the graph as sym_shape_infer_temp.onnx (and its
    # weights in uuid-named .data files) in the current directory and raises a bare Exception: it runs inside the
    # export's temporary folder (absolute paths), which takes the scratch files with it, and the failure is one line.
    contextual = model.config.embedding_type == "contextual"
    path, int8_path = os.path.abspath(path), os.path.abspath(int8_path)
    try:
        with working_directory(os.path.dirname(int8_path)):
            quant_pre_process(path, int8_path + ".pre", skip_symbolic_shape=contextual,
                              save_as_external_data=external, all_tensors_to_one_file=True,
                              external_data_location=os.path.basename(int8_path) + ".pre.data")
    except Exception as error:
        if "symbolic shape inference" not in str(error):
            raise
        raise ExportCheckError(
            f"onnxruntime's pre-processing for int8 of {source} failed ({error}), so nothing was written. Export "
            "without --quantize for the float32 graph, and please report this with the model's config.json.") from None
    quantization.quantize_dynamic(int8_path + ".pre", int8_path, weight_type=quantization.QuantType.QInt8,
                                  op_types_to_quantize=list(INT8_OPS), use_external_data_format=external,
                                  nodes_to_exclude=transformer_matmuls(int8_path + ".pre") if contextual else None)
    agreement = int8_agreement(model, int8_path, batches)
    failures = int8_failures(agreement)
    if failures:
        raise ExportCheckError(
            f"the int8 graph of {source} does not follow torch on {agreement['check_rows']} check rows "
            f"({'; '.join(failures)}; the tolerance is Pearson r >= {INT8_MIN_R} per label and differences <= "
            f"{INT8_MAX_DIFF_STDS} label stds), so it was not written, nor {ONNX_FILE}. Export without --quantize "
            "for the float32 graph, and please report this with the model's config.json.")
    return {"method": "onnxruntime.quantization: quant_pre_process, then quantize_dynamic with QInt8 weights on "
                      + ", ".join(INT8_OPS),
            **stored_weights(int8_path), **agreement}


def transformer_matmuls(path):
    """The names of a contextual graph's MatMul nodes inside its transformer's layers: they stay float32, as a
    static graph's RNN does. Quantizing them too (activations by one scale per tensor, and MiniLM's hidden states
    have a few large dimensions) moved the packaged MiniLM's scores to r .956-.987 with torch, below INT8_MIN_R;
    its embedding tables (Gather) and the heads are 8-bit, as in a static graph."""
    import onnx

    return [node.name for node in onnx.load(path, load_external_data=False).graph.node
            if node.op_type == "MatMul" and node.name.startswith(TRANSFORMER_LAYERS)]


def stored_weights(path):
    """The graph's 8-bit initializers (name: dtype and bytes) and its float32 ones (name: bytes), with totals:
    what the int8 file truly holds."""
    import onnx
    from onnx import TensorProto

    quantized, full = {}, {}
    for initializer in onnx.load(path).graph.initializer:
        size = int(np.prod(initializer.dims, dtype=np.int64)) * (4 if initializer.data_type == TensorProto.FLOAT else 1)
        if initializer.data_type in (TensorProto.INT8, TensorProto.UINT8):
            dtype = TensorProto.DataType.Name(initializer.data_type).lower()
            quantized[initializer.name] = {"dtype": dtype, "bytes": size}
        elif initializer.data_type == TensorProto.FLOAT:
            full[initializer.name] = size
    return {"int8_initializers": quantized, "int8_bytes": sum(v["bytes"] for v in quantized.values()),
            "float32_initializers": full, "float32_bytes": sum(full.values())}


@contextlib.contextmanager
def _quiet_exporter():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shapes read as Python ints: the graph is checked
        yield


__all__ = ["export_onnx", "export_graph", "OnnxGraph", "OnnxSession", "ONNX_FILE", "INT8_FILE", "dense_path_only",
           "check_batches", "pair_check_batches", "model_check_batches", "random_batches"]


def main(argv=None):
    """`seqreg-hf export`."""
    import json
    import sys

    from .arguments import parse_command
    from .logs import configure

    args, run = parse_command("export", sys.argv[1:] if argv is None else argv)
    configure(run.log_level, run.disable_tqdm)
    if not args.model_name_or_path or not args.output_dir:
        raise ValueError("--model_name_or_path and --output_dir are required: the model to export and where to.")
    report = export_onnx(args.model_name_or_path, args.output_dir, quantize=args.quantize, opset=args.opset,
                         trust_remote_code=args.trust_remote_code)
    print(json.dumps(report, indent=2))
