"""The onnxruntime backend of `Predictor`: what an exported graph looks like (its file name, input and output names)
and `OnnxSession`, which checks a graph's form when it loads and then runs it. `seqreg_hf.export` writes graphs of
this form; prediction runs them without the exporter.

Outputs carry optimum's names: `logits` (batch_size, num_labels) and `member_logits` (ensemble_size, batch_size,
num_labels), both in the labels' own units, with dynamic axes `batch_size` and `sequence_length`. Earlier exports
named them `scores` and `member_scores`; those compute the same thing, so the session reads either pair (whichever
the graph has) and an old export keeps working without a re-export.
"""

import os

import numpy as np
import torch

from .modeling_seqreg import check_token_ids

ONNX_FILE = "model.onnx"
INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("logits", "member_logits")
LEGACY_OUTPUTS = ("scores", "member_scores")  # the same outputs, as earlier exports name them
AXES = ("batch_size", "sequence_length")


class OnnxSession:
    """Runs an exported graph; the same inputs and checks as the torch model, without building it. The graph's form
    (input and output names, dtypes, widths against the config) is checked when it is loaded."""

    def __init__(self, path, config):
        import onnxruntime

        self.path, self.config = os.fspath(path), config
        self.outputs = OUTPUTS
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
        if set(inputs) != set(INPUTS):
            self._refuse(f"inputs {', '.join(INPUTS)}", ", ".join(inputs) or "none")
        if not set(OUTPUTS) <= set(outputs):
            if not set(LEGACY_OUTPUTS) <= set(outputs):
                self._refuse(f"outputs {', '.join(OUTPUTS)} (or the earlier {', '.join(LEGACY_OUTPUTS)})",
                             ", ".join(outputs) or "none")
            self.outputs = LEGACY_OUTPUTS
        for kind, nodes, names, dtype in (("input", inputs, INPUTS, "int64"), ("output", outputs, self.outputs,
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
        try:
            return self.session.run(list(self.outputs), {"input_ids": ids, "attention_mask": np.ones_like(ids)})
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

    def run(self, input_ids, attention_mask):
        """(scores (batch, num_labels), member scores (ensemble_size, batch, num_labels)) as numpy arrays for int64
        arrays (batch, length)."""
        input_ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        attention_mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        check_token_ids(torch.from_numpy(input_ids), self.config.vocab_size)  # shares the array's memory
        if input_ids.shape[1] == 0:  # every text empty: one padding position, which the graph reads as nothing
            input_ids = np.full((input_ids.shape[0], 1), self.config.pad_token_id, dtype=np.int64)
            attention_mask = np.zeros_like(input_ids)
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        scores, members = self.session.run(list(self.outputs), feed)
        return scores, members


__all__ = ["OnnxSession", "ONNX_FILE", "INPUTS", "OUTPUTS", "LEGACY_OUTPUTS", "AXES"]
