"""The onnxruntime backend of `Predictor`: what an exported graph looks like (its file name, input and output names)
and `OnnxSession`, which checks a graph's form when it loads and then runs it. `seqreg_hf.export` writes graphs of
this form; prediction runs them without the exporter.

Outputs carry optimum's names: `logits` (batch_size, num_labels) and `member_logits` (ensemble_size, batch_size,
num_labels), both in the labels' own units, with dynamic axes `batch_size` and `sequence_length`. Earlier exports
named them `scores` and `member_scores`; those compute the same thing, so the session reads either pair (whichever
the graph has) and an old export keeps working without a re-export.

The graph of a siamese pair model (pair_encoding "siamese" or "cosine") also takes the second texts,
`pair_input_ids` and `pair_attention_mask` (batch_size, pair_sequence_length), right-padded on their own, and
`OnnxSession.run` takes them as keywords; a cross model's graph is a single-text graph (one sequence per pair).
"""

import os

import numpy as np
import torch

from .modeling_seqreg import check_token_ids

ONNX_FILE = "model.onnx"
INPUTS = ("input_ids", "attention_mask")
PAIR_INPUTS = ("pair_input_ids", "pair_attention_mask")  # a siamese pair model's second texts
OUTPUTS = ("logits", "member_logits")
LEGACY_OUTPUTS = ("scores", "member_scores")  # the same outputs, as earlier exports name them
AXES = ("batch_size", "sequence_length")
PAIR_AXIS = "pair_sequence_length"  # the second texts' own length axis (their batch axis is batch_size)


def graph_inputs(config):
    """The input names of `config`'s graph: the second texts' too for a siamese pair model."""
    return INPUTS + PAIR_INPUTS if config.siamese else INPUTS


class OnnxSession:
    """Runs an exported graph; the same inputs and checks as the torch model, without building it. The graph's form
    (input and output names, dtypes, widths against the config) is checked when it is loaded."""

    def __init__(self, path, config):
        import onnxruntime

        self.path, self.config = os.fspath(path), config
        self.inputs, self.outputs = graph_inputs(config), OUTPUTS
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self._check_form()

    def _refuse(self, expected, found):
        from .model_dir import ModelDirError

        folder = os.path.dirname(os.path.abspath(self.path))
        raise ModelDirError(f"{self.path}: not a seqreg-hf graph for this model: expected {expected}, found {found}. "
                            f"Re-export it with `seqreg-hf export --model_name_or_path MODEL --output_dir {folder}`.")

    def _check_form(self):
        inputs = {node.name: node for node in self.session.get_inputs()}
        outputs = {node.name: node for node in self.session.get_outputs()}
        if set(inputs) != set(self.inputs):
            self._refuse(f"inputs {', '.join(self.inputs)}", ", ".join(inputs) or "none")
        if not set(OUTPUTS) <= set(outputs):
            if not set(LEGACY_OUTPUTS) <= set(outputs):
                self._refuse(f"outputs {', '.join(OUTPUTS)} (or the earlier {', '.join(LEGACY_OUTPUTS)})",
                             ", ".join(outputs) or "none")
            self.outputs = LEGACY_OUTPUTS
        for kind, nodes, names, dtype in (("input", inputs, self.inputs, "int64"), ("output", outputs, self.outputs,
                                                                               "float")):
            for name in names:
                found = nodes[name].type.removeprefix("tensor(").removesuffix(")")
                if found != dtype:
                    self._refuse(f"{kind} {name} of type {dtype}", found)
        scores, members = (outputs[name].shape for name in self.outputs)  # ints, names of symbolic dims, or None
        widths = scores[-1:] + members[:1] + members[-1:]
        if len(widths) < 3 or not all(isinstance(dim, int) for dim in widths):
            scores, members = (list(result.shape) for result in self._tiny_run())  # one text tells
        self._check_widths(scores, members)

    def _tiny_run(self):
        ids = np.full((1, 1), self.config.pad_token_id, dtype=np.int64)
        feed = {name: ids if name.endswith("input_ids") else np.ones_like(ids) for name in self.inputs}
        try:
            return self.session.run(list(self.outputs), feed)
        except Exception as error:  # onnxruntime raises its own types
            self._refuse("a graph that scores one text", f"an error ({error})")

    def _check_widths(self, scores, members):
        """`scores` (batch, num_labels) and `members` (ensemble_size, batch, num_labels) shapes, as declared or
        as run; symbolic batch dims are strings."""
        config = self.config
        name, member_name = self.outputs
        labels = f"{config.num_labels} (num_labels, {' '.join(config.label_names)})"
        if len(scores) != 2:
            self._refuse(f"{name} of shape (batch_size, {config.num_labels})", f"shape {tuple(scores)}")
        if len(members) != 3:
            self._refuse(f"{member_name} of shape ({config.ensemble_size}, batch_size, {config.num_labels})",
                         f"shape {tuple(members)}")
        if scores[1] != config.num_labels:
            self._refuse(f"{name} of width {labels}", f"width {scores[1]}")
        if members[2] != config.num_labels:
            self._refuse(f"{member_name} of width {labels}", f"width {members[2]}")
        if members[0] != config.ensemble_size:
            self._refuse(f"{member_name} of {config.ensemble_size} members (ensemble_size)", members[0])

    def run(self, input_ids, attention_mask, pair_input_ids=None, pair_attention_mask=None):
        """(scores (batch, num_labels), member scores (ensemble_size, batch, num_labels)) as numpy arrays for int64
        arrays (batch, length); a siamese pair model's graph also takes the second texts, `pair_input_ids` and
        `pair_attention_mask` (batch, pair length), right-padded on their own."""
        self._check_pair_inputs(pair_input_ids, pair_attention_mask)
        feed = dict(zip(INPUTS, self._side(input_ids, attention_mask)))
        if self.config.siamese:
            feed.update(zip(PAIR_INPUTS, self._side(pair_input_ids, pair_attention_mask, "pair_")))
            if len(feed["pair_input_ids"]) != len(feed["input_ids"]):
                raise ValueError(f"pair_input_ids has {len(feed['pair_input_ids'])} rows and input_ids "
                                 f"{len(feed['input_ids'])}: one second text per text.")
        scores, members = self.session.run(list(self.outputs), feed)
        return scores, members

    def _check_pair_inputs(self, pair_input_ids, pair_attention_mask):
        given = [name for name, value in zip(PAIR_INPUTS, (pair_input_ids, pair_attention_mask)) if value is not None]
        encoding = self.config.pair_encoding
        if self.config.siamese and len(given) < 2:
            raise ValueError(f"this graph scores pairs of texts (pair_encoding={encoding!r}): give the second texts "
                             "as pair_input_ids and pair_attention_mask (tokenized on their own).")
        if given and not self.config.siamese:
            fix = ("tokenize each pair as one sequence, tokenizer(texts, texts_pair), and give input_ids only"
                   if encoding == "cross" else "give input_ids and attention_mask only")
            raise ValueError(f"{' and '.join(given)} given to a graph that reads one sequence per row "
                             f"(pair_encoding={encoding!r}): {fix}.")

    def _side(self, input_ids, attention_mask, prefix=""):
        """One side's (ids, mask) as contiguous int64 arrays, checked against the vocabulary."""
        input_ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        attention_mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        if input_ids.ndim != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(f"{prefix}input_ids and {prefix}attention_mask must be arrays of one shape (batch, "
                             f"length), got {input_ids.shape} and {attention_mask.shape}.")
        check_token_ids(torch.from_numpy(input_ids), self.config.vocab_size)  # shares the array's memory
        if input_ids.shape[1] == 0:  # every text empty: one padding position, which the graph reads as nothing
            input_ids = np.full((input_ids.shape[0], 1), self.config.pad_token_id, dtype=np.int64)
            attention_mask = np.zeros_like(input_ids)
        return input_ids, attention_mask


__all__ = ["OnnxSession", "ONNX_FILE", "INPUTS", "PAIR_INPUTS", "OUTPUTS", "LEGACY_OUTPUTS", "AXES", "PAIR_AXIS",
           "graph_inputs"]
