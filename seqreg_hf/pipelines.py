"""The "text-regression" pipeline: `pipeline("text-regression", model=DIR)` returns {label: score} per text."""

from transformers import AutoModelForSequenceClassification, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY


class TextRegressionPipeline(Pipeline):
    def _sanitize_parameters(self, truncation=True, max_length=None, **kwargs):
        preprocess = {"truncation": truncation}
        if max_length is not None:
            preprocess["max_length"] = max_length
        return preprocess, {}, {}

    def preprocess(self, text, truncation=True, max_length=None):
        text = "" if text is None else str(text)
        return self.tokenizer(text, truncation=truncation, max_length=max_length, return_tensors="pt",
                              return_token_type_ids=False)

    def _forward(self, model_inputs):
        return self.model(**model_inputs)

    def postprocess(self, model_outputs):
        scores = model_outputs["logits"][0].float().tolist()
        return {self.model.config.id2label[i]: score for i, score in enumerate(scores)}


def register():
    if "text-regression" not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline("text-regression", pipeline_class=TextRegressionPipeline,
                                            pt_model=AutoModelForSequenceClassification, type="text")
