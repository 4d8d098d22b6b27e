"""The "text-regression" pipeline: `pipeline("text-regression", model=DIR)` returns {label: score} per text (a pair
model takes {"text": ..., "text_pair": ...} dicts, as transformers' text-classification pipeline does); with
`return_std=True` (ensembles) also {label}_std, the spread of the members' scores; with `interval=0.9` (a calibrated
model) also {label}_lo and {label}_hi, the split-conformal interval at that level.

This file is copied beside every checkpoint and runs where seqreg_hf is not installed, so it reads the calibration in
config.json itself; `seqreg_hf.conformal` defines it (the same rank k = ceil((n + 1)·L), the same bounds). For the same
reason it spells out the pair encodings that `seqreg_hf.tokenization.encode_texts` defines: a siamese model ("siamese",
"cosine") gets each text tokenized on its own (the second as pair_input_ids / pair_attention_mask), a "cross" model
one sequence, tokenizer(text, text_pair).
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
                                 "has no spread between members, so no std: train an ensemble (--ensemble_size 2 or "
                                 "more, the default) for a per-text uncertainty.")
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

    def preprocess(self, inputs, truncation=True, max_length=None):
        encoding = getattr(self.model.config, "pair_encoding", None)
        text, text_pair = self._split(inputs, encoding)
        options = {"truncation": truncation, "max_length": max_length, "return_tensors": "pt",
                   "return_token_type_ids": False}
        if encoding == "cross":  # one sequence: the tokenizer's pair template puts its separator between the two
            # As a batch of one: called with two strings, a tokenizer drops an empty text_pair (and its separator).
            return self.tokenizer([text], [text_pair], **options)
        encoded = self.tokenizer(text, **options)
        if encoding is not None:  # siamese / cosine: each text on its own
            second = self.tokenizer(text_pair, **options)
            encoded["pair_input_ids"], encoded["pair_attention_mask"] = second["input_ids"], second["attention_mask"]
        return encoded

    def __call__(self, inputs, *args, **kwargs):
        encoding = getattr(self.model.config, "pair_encoding", None)
        if encoding is not None and isinstance(inputs, list):  # a batch: name the input whose side is not a text
            for i, value in enumerate(inputs):
                self._split(value, encoding, f"input {i}")
        return super().__call__(inputs, *args, **kwargs)

    @staticmethod
    def _split(inputs, encoding, where="an input"):
        """(text, text_pair or None) of one input: a string, or a pair as {"text": .., "text_pair": ..} or [a, b]."""
        if isinstance(inputs, dict):
            if sorted(inputs) != ["text", "text_pair"]:
                raise ValueError(f"an input dict has keys {sorted(inputs)}; a pair is {{\"text\": ..., \"text_pair\": "
                                 "...}.")
            inputs = (inputs["text"], inputs["text_pair"])
        elif isinstance(inputs, (list, tuple)) and len(inputs) != 2:
            raise ValueError(f"an input is a {type(inputs).__name__} of {len(inputs)} items; a pair is two texts, "
                             '{"text": ..., "text_pair": ...}.')
        as_text = lambda value: "" if value is None else str(value)  # noqa: E731
        if isinstance(inputs, (list, tuple)):
            if encoding is None:
                raise ValueError("this model reads one text per input, and a pair of texts was given: give strings "
                                 "(or use a model trained on pairs).")
            for key, side in zip(("text", "text_pair"), inputs):
                if isinstance(side, (dict, list, tuple)):  # str() of it would be scored as a text
                    raise ValueError(f"{where}'s {key} is a {type(side).__name__}, not a text: a pair is two texts, "
                                     '{"text": ..., "text_pair": ...}.')
            return as_text(inputs[0]), as_text(inputs[1])
        if encoding is not None:
            raise ValueError(f"this model scores pairs of texts (pair_encoding={encoding!r}), and a single text was "
                             'given: give {"text": ..., "text_pair": ...} dicts.')
        return as_text(inputs), None

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


# A checkpoint's copy of this file (transformers imports it from the checkpoint, as config.json's custom_pipelines
# says) hands over to the installed seqreg_hf's pipeline when one is importable, so that an old checkpoint runs the
# installed code after an upgrade; the class above runs only where seqreg_hf is absent.
if __name__ != "seqreg_hf.pipelines":
    try:
        from seqreg_hf.pipelines import TextRegressionPipeline  # noqa: F811
    except ImportError:
        pass
