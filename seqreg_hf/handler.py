"""The Inference Endpoints handler every checkpoint carries as handler.py (Hugging Face's custom-handler contract).

`EndpointHandler(path)` loads the model folder once; `handler({"inputs": "a text" | ["text", ...], "parameters":
{"return_std": true, "interval": 0.9}})` answers what `seqreg_hf.predict` answers: {label: score} for a text, a list
of them for a list. A pair model takes pairs the same way: `{"text": .., "text_pair": ..}` or a list of them (or of
`[text, text_pair]` lists); with "return_std" also {label}_std (ensembles), with "interval" also {label}_lo / {label}_hi
(calibrated models). A bad request raises ValueError in one line, naming the problem.

With seqreg_hf installed it answers through `seqreg_hf.predict` (batched, the installed code). Without it, through the
folder's own pipeline (pipelines.py), on plain transformers and torch; that pipeline reads the model's calibration
(config.json) itself. Nothing here is imported from seqreg_hf at module level, so the file runs where seqreg_hf is
absent. It trusts the code of the folder it lies in, and of no other folder: whoever deploys handler.py already runs
that folder's code.
"""

import inspect
import math
import os

PARAMETERS = ("return_std", "interval")


def read_input(value, where, pairs=None):
    """A text, or a pair as {"text": .., "text_pair": ..} (from a dict or a [text, text_pair] list). `pairs`: whether
    the model reads pairs (None: unknown), so that a wrong object is told what this model takes."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return {"text": value[0], "text_pair": value[1]}
    if isinstance(value, dict):
        if sorted(value) != ["text", "text_pair"]:
            if pairs is False:
                raise ValueError(f"{where} is an object with keys {sorted(value)}, and this model reads one text per "
                                 "input: send a string, or a list of strings.")
            raise ValueError(f'{where} has keys {sorted(value)}; a pair is {{"text": ..., "text_pair": ...}}.')
        wrong = next((k for k in ("text", "text_pair") if not isinstance(value[k], str)), None)
        if wrong is not None:
            raise ValueError(f'{where}["{wrong}"] is {type(value[wrong]).__name__}, not a text.')
        return dict(value)
    raise ValueError(f'{where} is {type(value).__name__}, not a text: send a list of strings (or of pairs, '
                     '{"text": ..., "text_pair": ...}).')


def read_request(data, pairs=None):
    """(texts or pairs, one input or not, parameters) of a request, or ValueError naming what is wrong with it;
    `pairs`: whether the model reads pairs of texts (None: unknown)."""
    if not isinstance(data, dict) or "inputs" not in data:
        raise ValueError('the request must be a JSON object with "inputs": a text or a list of texts, e.g. '
                         '{"inputs": "What a day!", "parameters": {"return_std": true}}.')
    inputs, parameters = data["inputs"], data.get("parameters") or {}
    single = isinstance(inputs, (str, dict))
    if not single and not isinstance(inputs, list):
        raise ValueError(f'"inputs" must be a text or a list of texts, not {type(inputs).__name__}.')
    texts = [read_input(inputs, '"inputs"', pairs)] if single else [read_input(value, f'"inputs"[{i}]', pairs)
                                                                   for i, value in enumerate(inputs)]
    if not isinstance(parameters, dict):
        raise ValueError(f'"parameters" must be an object, not {type(parameters).__name__}.')
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise ValueError(f'unknown parameter(s) {", ".join(unknown)}: the parameters are {", ".join(PARAMETERS)}.')
    if not isinstance(parameters.get("return_std", False), bool):
        raise ValueError(f'"return_std" must be true or false, not {parameters["return_std"]!r}.')
    interval = parameters.get("interval")
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, (int, float))
                                 or not math.isfinite(interval) or not 0 < interval < 1):
        raise ValueError(f'"interval" must be a coverage between 0 and 1 (e.g. 0.9), not {interval!r}.')
    return texts, single, {k: v for k, v in parameters.items() if v is not None}


class EndpointHandler:
    def __init__(self, path=""):
        here = os.path.dirname(os.path.abspath(__file__))
        self.path = path or here
        try:
            from seqreg_hf.prediction import Predictor, predict
        except ImportError:  # plain transformers: the folder's own pipeline
            Predictor = predict = None
        self.predict, self.pipeline = predict, None
        if Predictor is not None:
            self.predictor = Predictor.from_dir(self.path)
            self.pairs = getattr(self.predictor.config, "pair_encoding", None) is not None
            return
        from transformers import pipeline

        own = os.path.isdir(self.path) and os.path.samefile(here, self.path)
        if not own:
            raise ValueError(f"{self.path}: this handler.py runs the code of its own folder ({here}) only; copy "
                             "handler.py into the model folder, or install seqreg_hf (pip install seqreg-hf).")
        self.pipeline = pipeline("text-regression", model=self.path, trust_remote_code=own)
        self.pairs = getattr(self.pipeline.model.config, "pair_encoding", None) is not None

    def __call__(self, data):
        texts, single, parameters = read_request(data, self.pairs)
        no_intervals = ValueError('"interval": this model\'s code has no calibrated intervals (written before '
                                  "seqreg_hf had them); install a seqreg_hf that has them beside it (pip install -U "
                                  "seqreg-hf).")
        if self.pipeline is None:
            if "interval" in parameters and "interval" not in inspect.signature(self.predict).parameters:
                raise no_intervals
            results = self.predict(self.predictor, texts, **parameters)
        else:  # the folder's pipeline reads the calibration in config.json itself; an older one ignores "interval"
            results = self.pipeline(texts, **parameters) if texts else []
            if "interval" in parameters and results and not any(key.endswith("_lo") for key in results[0]):
                raise no_intervals
        return results[0] if single else results
