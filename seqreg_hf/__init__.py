"""seqreg_hf: recurrent sentence regressors over frozen pretrained embeddings, as Hugging Face models.

Importing the package registers the model family with the Auto classes, so that ``AutoConfig``, ``AutoModel`` and
``AutoModelForSequenceClassification`` resolve ``model_type="seqreg"`` checkpoints to the classes below, and
registers the "text-regression" pipeline.

The Python API (imported on first use): ``train(**options)``, ``predict(model_or_path, texts)``, ``Predictor``,
``load_embeddings`` and ``init_model_dir``.
"""

import importlib

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from .configuration_seqreg import SeqRegConfig
from .modeling_seqreg import SeqRegForSequenceRegression, SeqRegModel, SeqRegModelOutput, SeqRegPreTrainedModel

__version__ = "0.2.0"

AutoConfig.register(SeqRegConfig.model_type, SeqRegConfig, exist_ok=True)
AutoModel.register(SeqRegConfig, SeqRegModel, exist_ok=True)
AutoModelForSequenceClassification.register(SeqRegConfig, SeqRegForSequenceRegression, exist_ok=True)

# Checkpoints carry the two model files, so plain transformers can load them with trust_remote_code=True.
SeqRegConfig.register_for_auto_class()
SeqRegModel.register_for_auto_class("AutoModel")
SeqRegForSequenceRegression.register_for_auto_class("AutoModelForSequenceClassification")

from .pipelines import TextRegressionPipeline  # noqa: E402
from .pipelines import register as _register_pipeline

_register_pipeline()

# The training and prediction side imports datasets and the Trainer: loaded when first used.
_LAZY = {
    "train": "training",
    "predict": "prediction",
    "Predictor": "prediction",
    "load_embeddings": "embeddings",
    "init_model_dir": "model_dir",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SeqRegConfig", "SeqRegModel", "SeqRegForSequenceRegression", "SeqRegModelOutput", "SeqRegPreTrainedModel",
           "TextRegressionPipeline", *_LAZY]
