"""SeqRegConfig: validation, defaults, the regression contract and Auto-class registration."""

import pytest
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from seqreg_hf import SeqRegConfig, SeqRegForSequenceRegression, SeqRegModel

from .conftest import tiny_config


@pytest.mark.parametrize("option,value,allowed", [
    ("rnn_type", "transformer", "'lstm', 'gru', 'rnn'"),
    ("direction_merge", "max", "'concat', 'sum', 'mean'"),
    ("pooling", "first", "'last', 'mean', 'max', 'mean_max', 'attention'"),
    ("loss", "mae", "'mse', 'l1', 'huber', 'ccc'"),
    ("head_activation", "swish", "'relu', 'gelu', 'tanh'"),
    ("embedding_norm", "batch_norm", "'none', 'layer_norm'"),
])
def test_unknown_options_list_the_allowed_values(option, value, allowed):
    with pytest.raises(ValueError, match=f"{option}='{value}' is not supported; choose one of {allowed}"):
        SeqRegConfig(**{option: value})


@pytest.mark.parametrize("overrides,message", [
    ({"hidden_size": 0}, "hidden_size=0 must be an integer >= 1"),
    ({"num_layers": 1.5}, "num_layers=1.5 must be an integer"),
    ({"head_dropout": 1.0}, "head_dropout=1.0 must be a probability"),
    ({"word_dropout": -0.1}, "word_dropout=-0.1 must be a probability"),
    ({"ensemble_size": 0}, "ensemble_size=0 must be an integer >= 1"),
    ({"pad_token_id": 40}, "pad_token_id=40 must be a row"),
    ({"label_means": [0.0], "label_stds": [1.0, 1.0]}, "label_means has 1 values but num_labels=2"),
    ({"label_means": [0.0, 0.0], "label_stds": [1.0, 0.0]}, "must all be finite and > 0"),
    ({"label_means": [0.0, 0.0]}, "label_means and label_stds go together"),
    ({"problem_type": "multi_label_classification"}, "problem_type is always 'regression'"),
])
def test_invalid_values_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_regression_is_fixed_and_label_names_round_trip(tmp_path):
    config = tiny_config(num_labels=3, id2label={0: "V", 1: "A", 2: "D"})
    assert config.problem_type == "regression"
    assert config.label2id == {"V": 0, "A": 1, "D": 2}
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, SeqRegConfig)
    assert loaded.label_names == ["V", "A", "D"] and loaded.problem_type == "regression"
    assert SeqRegConfig().num_labels == 1


@pytest.mark.parametrize("bidirectional,merge,pooling,expected", [
    (True, "concat", "last", 16), (True, "sum", "last", 8), (True, "mean", "mean_max", 16),
    (False, "concat", "mean_max", 16), (False, "concat", "attention", 8),
])
def test_derived_sizes(bidirectional, merge, pooling, expected):
    config = tiny_config(bidirectional=bidirectional, direction_merge=merge, pooling=pooling)
    assert config.pooled_size == expected


def test_auto_classes_resolve_after_import():
    config = tiny_config()
    assert isinstance(AutoModel.from_config(config), SeqRegModel)
    assert isinstance(AutoModelForSequenceClassification.from_config(config), SeqRegForSequenceRegression)
    assert AutoConfig.for_model("seqreg", vocab_size=12).vocab_size == 12


def test_set_label_stats_validates():
    config = tiny_config()
    config.set_label_stats([1.0, 2.0], [0.1, 0.2])
    assert config.label_stds == [0.1, 0.2]
    with pytest.raises(ValueError, match="finite and > 0"):
        config.set_label_stats([1.0, 2.0], [0.1, -1.0])
