"""The "text-regression" pipeline: `pipeline("text-regression", model=DIR)` returns {label: score} per text; with
`return_std=True` (ensembles) also {label}_std, the spread of the members' scores."""

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

    def _sanitize_parameters(self, truncation=True, max_length=None, return_std=None, **kwargs):
        preprocess = {"truncation": truncation}
        if max_length is not None:
            preprocess["max_length"] = max_length
        forward = {}
        if return_std is not None:
            if return_std and getattr(self.model.config, "ensemble_size", 1) < 2:
                raise ValueError(f"a single network (ensemble_size={getattr(self.model.config, 'ensemble_size', 1)}) "
                                 "has no spread between members, so no std: train an ensemble (--ensemble_size 3 or "
                                 "more) for a per-text uncertainty.")
            forward["return_std"] = bool(return_std)
        return preprocess, forward, {}

    def preprocess(self, text, truncation=True, max_length=None):
        text = "" if text is None else str(text)
        return self.tokenizer(text, truncation=truncation, max_length=max_length, return_tensors="pt",
                              return_token_type_ids=False)

    def _forward(self, model_inputs, return_std=False):
        if not return_std:
            return self.model(**model_inputs)
        members = self.model.member_predictions(**model_inputs)  # (K, 1, num_labels), the labels' units
        return {"logits": members.mean(dim=0), "std": members.std(dim=0, unbiased=False)}

    def postprocess(self, model_outputs):
        names = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        result = dict(zip(names, model_outputs["logits"][0].float().tolist()))
        if "std" in model_outputs:
            result.update({f"{n}_std": v for n, v in zip(names, model_outputs["std"][0].float().tolist())})
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
