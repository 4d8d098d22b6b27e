"""embedding_type="contextual": a frozen transformer's hidden states as the recurrent network's input, checked
against the transformer run directly with transformers."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

import seqreg_hf
from seqreg_hf import SeqRegForSequenceRegression, init_model_dir
from seqreg_hf.embeddings import default_embeddings_path, load_embeddings

from .conftest import tiny_config

TEXTS = ["a calm evening by the lake", "no", "What a terrible, terrible day it was for all of us!", ""]


def direct_states(source, batch, layers):
    reference = AutoModel.from_pretrained(source).eval()
    with torch.no_grad():
        states = reference(**batch, output_hidden_states=True).hidden_states
    return torch.stack([states[i] for i in layers]).mean(dim=0)


@pytest.mark.parametrize("which,layers,expected", [("tiny", [1, -1], [1, 3]), ("tiny", None, [0, 1, 2, 3]),
                                                   ("minilm", None, list(range(7)))])
def test_the_states_the_rnn_reads_are_the_transformers_own(which, layers, expected, tiny_bert, tmp_path):
    source = str(tiny_bert) if which == "tiny" else default_embeddings_path()
    model, _ = init_model_dir(tmp_path / "model", source, embedding_type="contextual", embedding_layers=layers,
                              id2label={0: "V"}, hidden_size=8)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt", return_token_type_ids=False)
    embeddings = model.train().base_model.embeddings  # training mode: the frozen transformer must stay in eval
    got = embeddings.lookup(batch["input_ids"], None, batch["attention_mask"])
    torch.testing.assert_close(got, direct_states(source, batch, expected), atol=1e-5, rtol=0)
    assert not embeddings.contextual.training


@pytest.fixture(scope="module")
def scalar_model(tiny_bert, tmp_path_factory):
    folder = tmp_path_factory.mktemp("contextual") / "model"
    torch.manual_seed(1)
    model, _ = init_model_dir(folder, str(tiny_bert), embedding_type="contextual", layer_mix="scalar",
                              id2label={0: "V", 1: "A"}, hidden_size=8, ensemble_size=2, pooling="mean_max")
    with torch.no_grad():  # a mix that is not the mean, so that the weights matter
        model.base_model.embeddings.mix_weights.copy_(torch.tensor([0.5, -1.0, 0.2, 1.5]))
        model.base_model.embeddings.mix_scale.fill_(1.7)
    model.save_pretrained(folder)
    return model.eval(), folder


def test_the_scalar_mix_is_elmos_and_only_it_trains_on_the_embedding_side(scalar_model, tiny_bert):
    model, folder = scalar_model
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt", return_token_type_ids=False)
    reference = AutoModel.from_pretrained(tiny_bert).eval()
    with torch.no_grad():
        states = torch.stack(reference(**batch, output_hidden_states=True).hidden_states)
        weights = torch.softmax(torch.tensor([0.5, -1.0, 0.2, 1.5]), dim=0)
        want = 1.7 * (weights.view(-1, 1, 1, 1) * states).sum(dim=0)
        got = model.base_model.embeddings.lookup(batch["input_ids"], None, batch["attention_mask"])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and n.startswith("seqreg.embeddings.")]
    assert trainable == ["seqreg.embeddings.mix_weights", "seqreg.embeddings.mix_scale"]
    model.train()
    loss = model(**batch, labels=torch.ones(len(TEXTS), 2)).loss
    loss.backward()
    assert all(p.grad is None for p in model.base_model.embeddings.contextual.parameters())
    assert model.base_model.embeddings.mix_weights.grad is not None
    model.zero_grad()
    model.eval()


def test_a_padded_batch_equals_each_text_alone(scalar_model):
    model, folder = scalar_model
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        together = model(**batch).logits
        alone = torch.cat([model(**tokenizer([t], return_tensors="pt", return_token_type_ids=False)).logits
                           for t in TEXTS])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_save_and_load_are_bit_identical_and_hold_the_transformer(scalar_model):
    model, folder = scalar_model
    loaded = SeqRegForSequenceRegression.from_pretrained(folder).eval()
    saved, again = model.state_dict(), loaded.state_dict()
    assert saved.keys() == again.keys() and any(k.startswith("seqreg.embeddings.contextual.") for k in saved)
    assert all(torch.equal(saved[k], again[k]) for k in saved)
    assert not any(p.requires_grad for p in loaded.base_model.embeddings.contextual.parameters())
    config = json.loads((folder / "config.json").read_text())
    assert config["embedding_type"] == "contextual" and config["contextual_config"]["model_type"] == "bert"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
        via_auto = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        assert torch.equal(via_auto(**batch).logits, model(**batch).logits)


LOADER = textwrap.dedent("""
    import json, sys
    sys.modules["seqreg_hf"] = None  # any import of the package now fails
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, texts = sys.argv[1], json.loads(sys.argv[2])
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    batch = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        print("RESULT", json.dumps(model(**batch).logits.tolist()))
""")


def test_remote_code_loads_it_where_seqreg_hf_cannot_be_imported(scalar_model, tmp_path):
    model, folder = scalar_model
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        expected = model(**tokenizer(TEXTS, padding=True, return_tensors="pt", return_token_type_ids=False)).logits
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", LOADER, str(folder), json.dumps(TEXTS)], capture_output=True,
                            text=True, env=env, stdin=subprocess.DEVNULL, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(torch.tensor(json.loads(result.stdout.split("RESULT", 1)[1])), expected, atol=0,
                               rtol=0)


@pytest.mark.parametrize("overrides,message", [
    ({"embedding_type": "contextual"}, "needs contextual_config"),
    ({"embedding_type": "contextual", "contextual_config": {"model_type": "bert", "num_hidden_layers": 3},
      "embedding_layers": [4]}, r"the transformer has 4 hidden states, 0..3"),
    ({"embedding_type": "contextual", "contextual_config": {"model_type": "bert"}, "freeze_embeddings": False},
     "keeps the transformer frozen"),
    ({"layer_mix": "attention"}, "layer_mix='attention' is not supported"),
])
def test_bad_contextual_options_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_a_static_vector_file_cannot_be_contextual(tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("good 0.1 0.2\nbad -0.1 0.3\n")
    with pytest.raises(ValueError, match="needs a transformers model directory or Hub id"):
        init_model_dir(tmp_path / "model", str(vectors), embedding_type="contextual", id2label={0: "V"})


def test_init_and_train_take_the_contextual_options(tiny_bert, tmp_path, capsys):
    import pandas as pd

    from seqreg_hf.cli import main as cli

    assert cli(["init", "--embeddings", str(tiny_bert), "--embedding_type", "contextual", "--embedding_layers", "0",
                "-1", "--layer_mix", "scalar", "--output_dir", str(tmp_path / "init"), "--label_columns", "y",
                "--hidden_size", "8"]) == 0
    config = json.loads((tmp_path / "init" / "config.json").read_text())
    assert (config["embedding_type"], config["embedding_layers"], config["layer_mix"]) == ("contextual", [0, -1],
                                                                                         "scalar")
    rows = pd.DataFrame({"text": [f"text {i} {'good ' * (i % 4)}" for i in range(40)], "y": [i % 5 for i in range(40)]})
    rows.to_csv(tmp_path / "train.csv", index=False)
    rows.to_csv(tmp_path / "dev.csv", index=False)
    assert cli(["train", "--train_file", str(tmp_path / "train.csv"), "--validation_file", str(tmp_path / "dev.csv"),
                "--label_columns", "y", "--embeddings", str(tiny_bert), "--embedding_type", "contextual",
                "--output_dir", str(tmp_path / "run"), "--hidden_size", "8", "--ensemble_size", "1",
                "--num_train_epochs", "1", "--report_to", "none", "--plots", "false", "--disable_tqdm", "true"]) == 0
    trained = SeqRegForSequenceRegression.from_pretrained(tmp_path / "run")
    source = AutoModel.from_pretrained(tiny_bert)
    for name, value in source.state_dict().items():  # trained, and the transformer did not move
        if not name.startswith("pooler."):
            assert torch.equal(trained.base_model.embeddings.contextual.state_dict()[name], value), name


@pytest.fixture
def tokenized_file(tmp_path):
    import pandas as pd

    from seqreg_hf.data import load_raw_datasets, tokenize_splits

    pd.DataFrame({"text": TEXTS * 5, "y": list(range(len(TEXTS) * 5))}).to_csv(tmp_path / "data.csv", index=False)
    raw = load_raw_datasets(train_file=tmp_path / "data.csv")
    tokenizer = load_embeddings(None).tokenizer
    return tokenize_splits(raw, tokenizer, "text", ["y"], 128), tokenizer


@pytest.mark.parametrize("mix", ["mean", "scalar"])
def test_cached_states_are_the_live_ones_in_float16(tiny_bert, tokenized_file, tmp_path, mix):
    from seqreg_hf.contextual_cache import COLUMN, StatesCollator, cache_contextual_states, stored_layers

    splits, tokenizer = tokenized_file
    model, _ = init_model_dir(tmp_path / "model", str(tiny_bert), embedding_type="contextual", layer_mix=mix,
                              embedding_layers=[1, 2, 3], id2label={0: "y"}, hidden_size=8)
    model.eval()
    cached = cache_contextual_states(splits, model, tokenizer.pad_token_id)["train"]
    assert stored_layers(model) == (1 if mix == "mean" else 3)
    collate = StatesCollator(tokenizer, stored_layers(model), 16)
    batch = collate([{k: cached[i][k] for k in ("input_ids", "attention_mask", COLUMN)} for i in range(len(TEXTS))])
    embeddings = model.base_model.embeddings
    with torch.no_grad():
        live = embeddings.contextual_states(batch["input_ids"], batch["attention_mask"])  # (3, B, T, H)
        if mix == "mean":
            live = live.mean(dim=0, keepdim=True)
        live = live.half().float().transpose(0, 1)  # what the cache keeps, as the collator hands it over
        real = batch["attention_mask"].bool()[:, None, :, None]
        assert torch.equal(batch[COLUMN] * real, live * real)
        from_cache = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                           contextual_states=batch[COLUMN]).logits
        from_live = model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(from_cache, from_live, atol=5e-3, rtol=0)  # float16 states, float32 everything else


def test_the_cache_is_reused_and_rebuilt_when_the_layers_change(tiny_bert, tokenized_file, tmp_path, monkeypatch):
    from seqreg_hf.contextual_cache import COLUMN, cache_contextual_states
    from seqreg_hf.modeling_seqreg import SeqRegEmbeddings

    splits, tokenizer = tokenized_file
    calls = []
    real = SeqRegEmbeddings.contextual_states
    monkeypatch.setattr(SeqRegEmbeddings, "contextual_states", lambda self, *a: calls.append(1) or real(self, *a))

    def cache(layers):
        torch.manual_seed(0)
        model, _ = init_model_dir(tmp_path / f"model{layers}", str(tiny_bert), embedding_type="contextual",
                                  embedding_layers=layers, id2label={0: "y"}, hidden_size=8)
        return cache_contextual_states(splits, model.eval(), tokenizer.pad_token_id)["train"]

    first = cache([1, 2])
    assert len(calls) == 1 and first.cache_files
    again = cache([1, 2])  # another model object, same transformer and layers: the Arrow cache answers
    assert len(calls) == 1 and again.cache_files == first.cache_files
    assert np.array_equal(again[0][COLUMN], first[0][COLUMN])
    other = cache([3])
    assert len(calls) == 2 and other.cache_files != first.cache_files


def test_the_contextual_recipe_is_the_default_and_the_static_one_a_config_file():
    """scripts/configs/emobank.json (data only) trains the contextual default; emobank_static.json the static one."""
    from seqreg_hf.arguments import SeqRegTrainingArguments, parse_arguments

    from .conftest import REPO

    run = parse_arguments([str(REPO / "scripts" / "configs" / "emobank.json"), "--seed", "3"])
    assert run.architecture.embedding_type is None  # the embeddings decide
    assert run.architecture == parse_arguments(["--output_dir", "o"]).architecture  # the recipe: data only
    defaults = SeqRegTrainingArguments(output_dir="o")
    assert run.training.seed == 3 and run.training.num_train_epochs == defaults.num_train_epochs
    assert run.data.label_columns == ["V", "A", "D"] and run.data.split_column == "split"
    static = parse_arguments([str(REPO / "scripts" / "configs" / "emobank_static.json")])
    assert static.architecture.embedding_type == "static" and static.architecture.ensemble_size == 3
    # the file spells out the architecture its README figures were measured with (three BiGRU-256, mean_max)
    assert (static.architecture.rnn_type, static.architecture.hidden_size, static.architecture.num_layers,
            static.architecture.pooling) == ("gru", 256, 1, "mean_max")
    assert static.training.learning_rate == 2e-3
    assert static.training.num_train_epochs == 15 and static.training.early_stopping_patience == 4

def test_the_transformer_sees_length_sorted_batches_and_the_states_return_in_row_order(tiny_bert, tmp_path,
                                                                                      monkeypatch):
    """Each batch pads only to its own longest row: the rows reach the transformer sorted by length, and each row's
    states come back to its own row."""
    import pandas as pd

    from seqreg_hf.contextual_cache import COLUMN, cache_contextual_states
    from seqreg_hf.data import load_raw_datasets, tokenize_splits
    from seqreg_hf.modeling_seqreg import SeqRegEmbeddings

    texts = [" ".join(["word"] * (1 + (7 * i) % 23)) for i in range(50)]  # lengths in no order
    pd.DataFrame({"text": texts, "y": range(50)}).to_csv(tmp_path / "data.csv", index=False)
    tokenizer = load_embeddings(None).tokenizer
    splits = tokenize_splits(load_raw_datasets(train_file=tmp_path / "data.csv"), tokenizer, "text", ["y"], 128)
    model, _ = init_model_dir(tmp_path / "model", str(tiny_bert), embedding_type="contextual", id2label={0: "y"},
                              hidden_size=8, layer_mix="mean")  # the cache then holds the layers' mean
    seen, real = [], SeqRegEmbeddings.contextual_states
    monkeypatch.setattr(SeqRegEmbeddings, "contextual_states",
                        lambda self, ids, mask: seen.append(mask.sum(dim=1).tolist()) or real(self, ids, mask))
    cached = cache_contextual_states(splits, model.eval(), tokenizer.pad_token_id, batch_size=8)["train"]
    lengths = [len(ids) for ids in splits["train"]["input_ids"]]
    assert [n for batch in seen for n in batch] == sorted(lengths)  # no batch pads a short row to a long one
    hidden = model.config.embedding_dim
    for row in (0, 1, 17, 49):  # each row's states are its own: a row alone through the transformer
        ids = torch.tensor([splits["train"][row]["input_ids"]])
        with torch.no_grad():
            alone = real(model.base_model.embeddings, ids, torch.ones_like(ids)).mean(dim=0)[0].half().numpy()
        assert np.allclose(cached[row][COLUMN].reshape(-1, hidden), alone, atol=2e-3)


def test_the_default_model_through_every_door(emobank_path, tmp_path):
    """No embeddings and no embedding_type: `seqreg_hf.train` builds the contextual MiniLM-L6 model, and init,
    evaluate, predict and Predictor all take it; predict (the transformer live, float32) gives the scores training
    wrote from its cached float16 states."""
    import pandas as pd

    from seqreg_hf.cli import main as cli

    frame = pd.read_csv(emobank_path, keep_default_na=False)
    for split, n in (("train", 48), ("dev", 16), ("test", 16)):
        frame[frame.split == split].head(n)[["text", "V"]].to_csv(tmp_path / f"{split}.csv", index=False)
    out = tmp_path / "run"
    metrics = seqreg_hf.train(train_file=str(tmp_path / "train.csv"), validation_file=str(tmp_path / "dev.csv"),
                              test_file=str(tmp_path / "test.csv"), label_columns=["V"], output_dir=str(out),
                              hidden_size=8, num_train_epochs=1, report_to="none", disable_tqdm=True, plots=False)
    config = json.loads((out / "config.json").read_text())
    assert (config["embedding_type"], config["contextual_config"]["model_type"], config["ensemble_size"],
            config["num_layers"], config["layer_mix"]) == ("contextual", "bert", 2, 2, "scalar")
    trained = pd.read_csv(out / "_predictions" / "test_predictions.csv", keep_default_na=False)["pred_V"].to_numpy()
    assert cli(["predict", "--model_name_or_path", str(out), "--test_file", str(tmp_path / "test.csv"),
                "--output_file", str(tmp_path / "scored.csv")]) == 0
    live = pd.read_csv(tmp_path / "scored.csv", keep_default_na=False)["pred_V"].to_numpy()
    np.testing.assert_allclose(live, trained, atol=2e-3)
    texts = list(pd.read_csv(tmp_path / "test.csv", keep_default_na=False)["text"])
    np.testing.assert_allclose(seqreg_hf.Predictor.from_dir(out).predict(texts)[:, 0], live, atol=1e-5)
    assert cli(["evaluate", "--model_name_or_path", str(out), "--test_file", str(tmp_path / "test.csv"),
                "--output_dir", str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval" / "test_results.json").read_text())
    assert abs(evaluated["test_pearson_V"] - metrics["test"]["test_pearson_V"]) < 5e-3
    assert cli(["init", "--output_dir", str(tmp_path / "init"), "--label_columns", "V", "--hidden_size", "8"]) == 0
    assert json.loads((tmp_path / "init" / "config.json").read_text())["embedding_type"] == "contextual"
