"""ONNX export of a trained model, and an onnxruntime session that predicts with it.

The graph is traced from the encoder's dense padded path (`SeqRegEncoder._dense`): every row reads only its own
tokens through ordinary LSTM / GRU / RNN nodes, with no packed sequences, so one graph serves any batch size and
length. It takes `input_ids` and `attention_mask` (batch, length), int64, right-padded, and returns `scores`
(batch, num_labels) and `member_scores` (ensemble_size, batch, num_labels), both in the labels' own units.

Exporter: torch's TorchScript-based `torch.onnx.export(..., dynamo=False)`. The dynamo exporter was tried on torch
2.13: it takes 20-100x longer and fixes the length axis to the example's for the tanh RNN (whose backward direction
reverses each row by indexing), so its graphs reject other lengths.
"""

import contextlib
import json
import logging
import os
import shutil
import time

import numpy as np
import torch
from torch import nn

from .loading import load_model_dir

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
REPORT_FILE = "onnx_export.json"
OPSET = 17
INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("scores", "member_scores")


class ExportCheckError(ValueError):
    """The exported graph does not reproduce torch within the tolerance; nothing was written under its name."""


class OnnxGraph(nn.Module):
    """What the ONNX graph computes: the model's forward without its Python-side input checks (the onnxruntime
    predictor checks inputs before it runs the graph)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        seqreg = self.model.seqreg
        lengths = attention_mask.sum(dim=1)
        words = seqreg.embeddings.lookup(input_ids, None, attention_mask)
        _, pooled, _, _ = seqreg.ensemble.encode(seqreg.embeddings, words, input_ids, lengths, attention_mask.bool())
        members = seqreg.ensemble.predict(pooled)
        mean, std = self.model._label_stats(members)
        members = members * std + mean
        return members.mean(dim=0), members


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


def check_batches(vocab_size, pad_token_id, seed=0):
    """Right-padded batches of mixed lengths with empty rows, one without padding, and a single text."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for lengths in ([7, 3, 0, 1, 5], [4, 4, 4], [1], [0, 2], [33, 1, 17, 0, 9, 2]):
        width = max(lengths)
        mask = (torch.arange(width) < torch.tensor(lengths).unsqueeze(1)).long()
        ids = torch.randint(0, vocab_size, (len(lengths), width), generator=generator)
        batches.append((torch.where(mask.bool(), ids, torch.full_like(ids, pad_token_id)), mask))
    return batches


def _session(path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])


def max_difference(model, path, batches):
    """Largest |onnxruntime - torch| over the scores and member scores of `batches`; torch is the model's own
    forward (and member_predictions), not the traced wrapper."""
    session = _session(path)
    worst = 0.0
    with torch.no_grad():
        for ids, mask in batches:
            want = [model(ids, attention_mask=mask).logits.numpy(),
                    model.member_predictions(ids, attention_mask=mask).numpy()]
            got = session.run(list(OUTPUTS), {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
            worst = max(worst, *(float(np.abs(g - w).max()) for g, w in zip(got, want)))
    return worst


def export_graph(model, path, opset=OPSET):
    """Trace `model` (eval mode, CPU, float32) into an ONNX file with dynamic batch and length axes."""
    config = model.config
    example = check_batches(config.vocab_size, config.pad_token_id)[0]  # padded, so the padded path is traced
    with dense_path_only(model), torch.no_grad(), _quiet_exporter():
        torch.onnx.export(
            OnnxGraph(model).eval(), example, os.fspath(path), dynamo=False, opset_version=opset,
            input_names=list(INPUTS), output_names=list(OUTPUTS),
            dynamic_axes={"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"},
                          "scores": {0: "batch"}, "member_scores": {1: "batch"}})
    model.eval()  # the exporter restores the wrapper's mode on everything under it


def export_onnx(model_name_or_path, output_dir, quantize=None, opset=OPSET, atol=1e-5, trust_remote_code=False):
    """Write `model.onnx` (and `model.int8.onnx` with quantize="int8") with the tokenizer, config and card beside
    it; check the graph against torch on padded batches of mixed lengths, empty rows included. Returns the report
    also written to onnx_export.json."""
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
    path = os.path.join(output_dir, ONNX_FILE)
    partial = os.path.join(output_dir, f".{ONNX_FILE}.{os.getpid()}.part")  # kept under its name once checked
    start = time.perf_counter()
    try:
        export_graph(model, partial, opset)
        seconds = time.perf_counter() - start
        batches = check_batches(config.vocab_size, config.pad_token_id, seed=1)
        difference = max_difference(model, partial, batches)
        if difference > atol:
            raise ExportCheckError(f"the ONNX graph of {model_name_or_path} differs from torch by {difference:.2e} "
                                   f"(> {atol:g}) on the check batches, so it was not written. Please report this "
                                   "with the model's config.json.")
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    tokenizer.save_pretrained(output_dir)
    config.save_pretrained(output_dir)
    card, target = os.path.join(os.fspath(model_name_or_path), "README.md"), os.path.join(output_dir, "README.md")
    if os.path.isfile(card) and not (os.path.exists(target) and os.path.samefile(card, target)):
        shutil.copyfile(card, target)
    report = {
        "exporter": "torch.onnx.export, TorchScript-based (dynamo=False)", "opset": opset,
        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "source": os.fspath(model_name_or_path),
        "inputs": list(INPUTS), "outputs": list(OUTPUTS), "export_seconds": round(seconds, 3),
        "files": {ONNX_FILE: os.path.getsize(path)}, "max_abs_difference_vs_torch": difference,
    }
    if quantize == "int8":
        report["int8"] = quantize_int8(path, os.path.join(output_dir, INT8_FILE), model, batches)
        report["files"][INT8_FILE] = os.path.getsize(os.path.join(output_dir, INT8_FILE))
    with open(os.path.join(output_dir, REPORT_FILE), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    return report


def quantize_int8(path, int8_path, model, batches):
    """Dynamic int8 quantization with onnxruntime: weights stored as int8 (the embedding matrix too, through its
    Gather), activations quantized on the fly. No calibration data is needed."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level, root.level = root.level, max(root.level, logging.ERROR)  # it warns "run pre-processing" on the root logger
    try:
        quantize_dynamic(path, int8_path, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return {"method": "onnxruntime.quantization.quantize_dynamic, QInt8 weights",
            "max_abs_difference_vs_torch": max_difference(model, int8_path, batches)}


@contextlib.contextmanager
def _quiet_exporter():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shapes read as Python ints: the graph is checked
        yield


class OnnxSession:
    """Runs an exported graph; the same inputs and checks as the torch model, without torch."""

    def __init__(self, path, config):
        self.path, self.config = os.fspath(path), config
        self.session = _session(path)

    def run(self, input_ids, attention_mask):
        """(scores, member_scores) as numpy arrays for int64 arrays (batch, length)."""
        input_ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        attention_mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        if input_ids.size and (input_ids.min() < 0 or input_ids.max() >= self.config.vocab_size):
            bad = int(input_ids.min() if input_ids.min() < 0 else input_ids.max())
            raise ValueError(f"input_ids contains id {bad}, outside the vocabulary 0..{self.config.vocab_size - 1}. "
                             "The tokenizer does not match this model: use the tokenizer saved beside it.")
        if input_ids.shape[1] == 0:  # every text empty: one padding position, which the graph reads as nothing
            input_ids = np.full((input_ids.shape[0], 1), self.config.pad_token_id, dtype=np.int64)
            attention_mask = np.zeros_like(input_ids)
        scores, members = self.session.run(list(OUTPUTS), {"input_ids": input_ids, "attention_mask": attention_mask})
        return scores, members


__all__ = ["export_onnx", "export_graph", "OnnxGraph", "OnnxSession", "ONNX_FILE", "INT8_FILE", "dense_path_only",
           "check_batches"]
