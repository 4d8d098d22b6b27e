"""The "text-regression" pipeline: `pipeline("text-regression", model=DIR)` returns {label: score} per text; with
`return_std=True` (ensembles) also {label}_std, the spread of the members' scores; with `interval=0.9` (a calibrated
model) also {label}_lo and {label}_hi, the split-conformal interval at that level.

This file is copied beside every checkpoint and runs where seqreg_hf is not installed, so it reads the calibration in
config.json itself; `seqreg_hf.conformal` defines it (the same rank k = ceil((n + 1)·L), the same bounds).
"""

import bisect
import math

from transformers import AutoModelForSequenceClassification, AutoTokenizer, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY


class TextRegressionPipeline(Pipeline):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        source = getattr(self.model, "name_or_path", "") or "the model directory"
        if self.tokenizer is None:  # pipeline() could not load it: say why, with the file
            reason = "no tokenizer files"
            try:
                AutoTokenizer.from_pretrained(source, trust_remote_code=False)  # only to say why: never runs code
            except Exception as error:  # tokenizers and json raise their own types for a corrupt file
                reason = f"{type(error).__name__}: {error}"
            raise ValueError(f"{source}: the tokenizer cannot be loaded ({reason}). Restore tokenizer.json and "
                             "tokenizer_config.json from the directory the model was saved in, or pass tokenizer=.")
        vocab_size = getattr(self.model.config, "vocab_size", None)
        if vocab_size is not None and len(self.tokenizer) > vocab_size:
            raise ValueError(f"{source}: the tokenizer has {len(self.tokenizer)} tokens but the model's vocabulary "
                             f"has {vocab_size} rows: they were not saved together. Use the tokenizer saved with "
                             "the model.")

    def _sanitize_parameters(self, truncation=True, max_length=None, return_std=None, interval=None, **kwargs):
        preprocess = {"truncation": truncation}
        if max_length is not None:
            preprocess["max_length"] = max_length
        forward, postprocess = {}, {}
        if return_std is not None:
            if return_std and getattr(self.model.config, "ensemble_size", 1) < 2:
                raise ValueError(f"a single network (ensemble_size={getattr(self.model.config, 'ensemble_size', 1)}) "
                                 "has no spread between members, so no std: train an ensemble (--ensemble_size 3 or "
                                 "more) for a per-text uncertainty.")
            forward["return_std"] = postprocess["return_std"] = bool(return_std)
        if interval is not None:
            postprocess["interval"] = self._half_widths(interval)
            if postprocess["interval"][1]:  # adaptive: the members' spread scales the width
                forward["return_std"] = True
        return preprocess, forward, postprocess

    def _half_widths(self, interval):
        """({label: q}, {label: floor} or None) of the calibration at level `interval`, or a one-line refusal."""
        config = self.model.config
        source = getattr(config, "name_or_path", "") or "MODEL"
        fix = (f"seqreg-hf calibrate --model_name_or_path {source} --validation_file FILE` (FILE: labelled texts the "
               "model was not trained on)")
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval < 1:
            raise ValueError(f"interval={interval!r} must be a coverage level strictly between 0 and 1, e.g. 0.9.")
        calibration = getattr(config, "calibration", None)
        names = [config.id2label[i] for i in range(config.num_labels)]
        if not calibration:
            raise ValueError(f"{source} has no calibration, so no interval: run `{fix}) first (`seqreg-hf train` "
                             "calibrates on its validation split).")
        if calibration.get("kind") not in ("adaptive", "constant") or sorted(calibration.get("scores", {})) != sorted(
                names):
            raise ValueError(f"{source}: its calibration does not match its targets {names}; run `{fix}) again.")
        n = calibration["n"]
        k = math.ceil((n + 1) * float(interval) - 1e-9)  # the finite-sample conformal rank
        if k > n:
            raise ValueError(f"interval={interval} needs more calibration rows: with n={n} the highest level is "
                             f"{n / (n + 1):.4f} (n/(n+1)); choose a lower level, or run `{fix}) with more rows.")
        ranks = calibration.get("ranks")
        index = k - 1 if ranks is None else bisect.bisect_left(ranks, k)
        quantiles = {name: calibration["scores"][name][index] for name in names}
        return quantiles, calibration.get("floor") if calibration["kind"] == "adaptive" else None

    def preprocess(self, text, truncation=True, max_length=None):
        text = "" if text is None else str(text)
        return self.tokenizer(text, truncation=truncation, max_length=max_length, return_tensors="pt",
                              return_token_type_ids=False)

    def _forward(self, model_inputs, return_std=False):
        if not return_std:
            return self.model(**model_inputs)
        members = self.model.member_predictions(**model_inputs)  # (K, 1, num_labels), the labels' units
        return {"logits": members.mean(dim=0), "std": members.std(dim=0, unbiased=False)}

    def postprocess(self, model_outputs, return_std=False, interval=None):
        names = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        scores = model_outputs["logits"][0].float().tolist()
        result = dict(zip(names, scores))
        spread = model_outputs["std"][0].float().tolist() if "std" in model_outputs else None
        if return_std:
            result.update({f"{n}_std": v for n, v in zip(names, spread)})
        if interval is not None:
            quantiles, floor = interval
            for j, name in enumerate(names):
                half = quantiles[name] * (max(spread[j], floor[name]) if floor is not None else 1.0)
                result[f"{name}_lo"], result[f"{name}_hi"] = scores[j] - half, scores[j] + half
        return result


def register():
    if "text-regression" not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline("text-regression", pipeline_class=TextRegressionPipeline,
                                            pt_model=AutoModelForSequenceClassification, type="text")
