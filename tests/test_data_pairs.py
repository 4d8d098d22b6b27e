"""Pairs of texts in the data layer: cleaning, tokenization, the pair collator and the cached pair states."""

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Dataset

from seqreg_hf.data import (
    DataError,
    PairCollator,
    bad_row_mask,
    clean_split,
    load_raw_datasets,
    read_texts,
    tokenize_splits,
)
from seqreg_hf.embeddings import load_embeddings
from seqreg_hf.modeling_seqreg import SeqRegForSequenceRegression

from .conftest import tiny_config

PAIRS = [("A plane is taking off.", "An air plane is taking off."),
         ("A man is playing a large flute.", "A man plays a flute."),
         ("Three men are playing chess.", "Two men are playing chess."),
         ("A cat.", "A woman is slicing an onion into thin rings on a wooden board."),
         ("Some dogs run on the beach near the water.", "Dogs run.")]


@pytest.fixture(scope="module")
def tokenizer():
    return load_embeddings(None).tokenizer


def pair_frame(**columns):
    frame = pd.DataFrame({"sentence1": [a for a, _ in PAIRS], "sentence2": [b for _, b in PAIRS],
                          "score": [5.0, 3.8, 2.6, 0.0, 2.2]})
    for name, values in columns.items():
        frame[name] = values
    return frame


def test_an_empty_second_text_is_dropped_as_an_empty_first_text_is():
    frame = pair_frame(sentence2=["x", "  ", None, "y", "z"])
    dataset = Dataset.from_pandas(frame)
    mask = bad_row_mask(dataset, "sentence1", ["score"], text_pair_column="sentence2")
    assert mask.tolist() == [False, True, True, False, False]
    kept, report = clean_split(dataset, "train", "sentence1", ["score"], text_pair_column="sentence2")
    assert kept["sentence2"] == ["x", "y", "z"] and report["dropped"] == 2
    assert report["examples"] == ["row 1: empty text in column 'sentence2'", "row 2: empty text in column 'sentence2'"]
    # The same rows with the texts swapped: the first column's rule is the same rule.
    swapped = Dataset.from_pandas(frame.rename(columns={"sentence1": "sentence2", "sentence2": "sentence1"}))
    assert bad_row_mask(swapped, "sentence1", ["score"], text_pair_column="sentence2").tolist() == mask.tolist()
    with pytest.raises(DataError, match=r"row 1 .*empty text in column 'sentence2'.*--on_bad_rows drop"):
        clean_split(dataset, "train", "sentence1", ["score"], on_bad_rows="error", text_pair_column="sentence2")


def test_a_missing_pair_column_is_one_line_naming_the_column_and_the_flag():
    dataset = Dataset.from_pandas(pair_frame())
    with pytest.raises(DataError) as error:
        clean_split(dataset, "validation", "sentence1", ["score"], source="dev.csv", text_pair_column="sentence_b")
    message = str(error.value)
    assert "\n" not in message and "'sentence_b'" in message and "--text_pair_column" in message
    assert "dev.csv" in message


def test_a_nested_second_text_is_refused_as_a_nested_first_text_is(tmp_path):
    path = tmp_path / "pairs.jsonl"
    pd.DataFrame({"a": ["one", "two"], "b": [["not"], ["a", "text"]], "score": [1.0, 2.0]}).to_json(
        path, orient="records", lines=True)
    dataset = load_raw_datasets(train_file=path)["train"]
    with pytest.raises(DataError, match=r"row 0 .*column 'b' holds a JSON list.*--text_pair_column"):
        clean_split(dataset, "train", "a", ["score"], text_pair_column="b")
    with pytest.raises(DataError, match=r"column 'b' holds a JSON list"):
        clean_split(dataset, "train", "b", ["score"])


def test_every_row_empty_on_one_side_names_both_columns():
    dataset = Dataset.from_pandas(pair_frame(sentence2=[""] * len(PAIRS)))
    with pytest.raises(DataError, match=r"none of its 5 rows is usable.*'sentence1' or 'sentence2'"):
        clean_split(dataset, "train", "sentence1", ["score"], text_pair_column="sentence2")


def test_read_texts_gives_pairs_from_a_file(tmp_path):
    pair_frame().to_csv(tmp_path / "p.csv", index=False)
    assert read_texts(tmp_path / "p.csv", "sentence1", "sentence2") == PAIRS
    (tmp_path / "t.txt").write_text("a\n")
    with pytest.raises(DataError, match="--text_pair_column"):
        read_texts(tmp_path / "t.txt", "text", "sentence2")


@pytest.mark.parametrize("encoding", ["siamese", "cross"])
def test_tokenized_pairs_are_the_tokenizers_own(tokenizer, encoding):
    raw = {"train": Dataset.from_pandas(pair_frame())}
    split = tokenize_splits(raw, tokenizer, "sentence1", ["score"], 128, text_pair_column="sentence2",
                            pair_encoding=encoding)["train"]
    firsts, seconds = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    if encoding == "siamese":
        assert split["input_ids"] == tokenizer(firsts)["input_ids"]
        assert split["pair_input_ids"] == tokenizer(seconds)["input_ids"]
        assert split["length"] == [max(len(a), len(b)) for a, b in zip(split["input_ids"], split["pair_input_ids"])]
    else:
        joined = tokenizer(firsts, seconds)["input_ids"]
        assert split["input_ids"] == joined and "pair_input_ids" not in split.column_names
        assert split["length"] == [len(ids) for ids in joined]
    assert split["labels"] == [[5.0], [3.8], [2.6], [0.0], [2.2]]


def test_tokenizing_pairs_for_the_wrong_kind_of_model_is_one_line(tokenizer):
    raw = {"train": Dataset.from_pandas(pair_frame())}
    with pytest.raises(DataError, match="--text_pair_column"):
        tokenize_splits(raw, tokenizer, "sentence1", ["score"], 128, pair_encoding="siamese")
    with pytest.raises(DataError, match="one text per row.*drop --text_pair_column"):
        tokenize_splits(raw, tokenizer, "sentence1", ["score"], 128, text_pair_column="sentence2")


def siamese_rows(tokenizer):
    raw = {"train": Dataset.from_pandas(pair_frame())}
    return tokenize_splits(raw, tokenizer, "sentence1", ["score"], 128, text_pair_column="sentence2",
                           pair_encoding="siamese")["train"]


def test_the_collators_padded_batch_scores_each_pair_as_alone(tokenizer):
    """Both sides are padded, each to its own longest text (row 3: a short first, a long second text; row 4 the
    reverse), and every row's score equals that pair's score in a batch of its own."""
    split = siamese_rows(tokenizer)
    torch.manual_seed(0)
    model = SeqRegForSequenceRegression(tiny_config(vocab_size=tokenizer.vocab_size, num_labels=1,
                                                    pair_encoding="siamese")).eval()
    features = [{k: split[i][k] for k in ("input_ids", "attention_mask", "pair_input_ids", "pair_attention_mask",
                                          "labels")} for i in range(len(PAIRS))]
    batch = PairCollator(tokenizer)([dict(f) for f in features])
    first, second = tokenizer([a for a, _ in PAIRS]), tokenizer([b for _, b in PAIRS])
    assert batch["input_ids"].shape == (5, max(map(len, first["input_ids"])))
    assert batch["pair_input_ids"].shape == (5, max(map(len, second["input_ids"])))
    assert batch["pair_attention_mask"].sum(dim=1).tolist() == [len(ids) for ids in second["input_ids"]]
    with torch.no_grad():
        together = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        alone = torch.cat([model(torch.tensor([f["input_ids"]]), torch.tensor([f["attention_mask"]]),
                                 pair_input_ids=torch.tensor([f["pair_input_ids"]]),
                                 pair_attention_mask=torch.tensor([f["pair_attention_mask"]])).logits
                           for f in features])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=0)
    torch.testing.assert_close(batch["labels"], torch.tensor([[5.0], [3.8], [2.6], [0.0], [2.2]]))


@pytest.mark.parametrize("mix", ["mean", "scalar"])
def test_cached_pair_states_give_the_live_transformers_scores(tiny_bert, tokenizer, tmp_path, mix):
    from seqreg_hf.contextual_cache import COLUMN, PAIR_COLUMN, StatesCollator, cache_contextual_states, stored_layers
    from seqreg_hf.model_dir import init_model_dir

    split = siamese_rows(tokenizer)
    model, _ = init_model_dir(tmp_path / "model", str(tiny_bert), embedding_type="contextual", layer_mix=mix,
                              embedding_layers=[1, 2, 3], id2label={0: "score"}, hidden_size=8,
                              pair_encoding="siamese")
    model.eval()
    cached = cache_contextual_states({"train": split}, model, tokenizer.pad_token_id)["train"]
    assert PAIR_COLUMN in cached.column_names
    names = ("input_ids", "attention_mask", "pair_input_ids", "pair_attention_mask", COLUMN, PAIR_COLUMN)
    batch = StatesCollator(tokenizer, stored_layers(model), 16)([{k: cached[i][k] for k in names}
                                                                for i in range(len(PAIRS))])
    assert batch[PAIR_COLUMN].shape[2] == batch["pair_input_ids"].shape[1] != batch[COLUMN].shape[2]
    inputs = {k: batch[k] for k in names[:4]}
    with torch.no_grad():
        from_cache = model(**inputs, contextual_states=batch[COLUMN], pair_contextual_states=batch[PAIR_COLUMN]).logits
        from_live = model(**inputs).logits
        # Without the second side's states the model would read the first side's for both: a wrong number.
        swapped = model(**inputs, contextual_states=batch[COLUMN],
                        pair_contextual_states=torch.flip(batch[PAIR_COLUMN], dims=[0])).logits
    torch.testing.assert_close(from_cache, from_live, atol=5e-3, rtol=0)  # float16 states, float32 everything else
    assert not torch.allclose(swapped, from_live, atol=5e-3, rtol=0)


def test_the_search_collator_hands_each_side_its_chosen_layers(tiny_bert, tokenizer, tmp_path):
    from seqreg_hf.contextual_cache import COLUMN, PAIR_COLUMN, cache_contextual_states
    from seqreg_hf.model_dir import init_model_dir
    from seqreg_hf.search import LayerChoiceCollator

    split = siamese_rows(tokenizer)
    probe, _ = init_model_dir(tmp_path / "probe", str(tiny_bert), embedding_type="contextual", layer_mix="scalar",
                              embedding_layers=[0, 1, 2, 3], id2label={0: "score"}, hidden_size=8,
                              pair_encoding="siamese")
    cached = cache_contextual_states({"train": split}, probe.eval(), tokenizer.pad_token_id)["train"]
    trial, _ = init_model_dir(tmp_path / "trial", str(tiny_bert), embedding_type="contextual", layer_mix="scalar",
                              embedding_layers=[2, 3], id2label={0: "score"}, hidden_size=8, pair_encoding="siamese")
    collator = LayerChoiceCollator(tokenizer, [0, 1, 2, 3], 16)
    collator.choose(trial)
    names = ("input_ids", "attention_mask", "pair_input_ids", "pair_attention_mask", COLUMN, PAIR_COLUMN)
    batch = collator([{k: cached[i][k] for k in names} for i in range(len(PAIRS))])
    assert batch[PAIR_COLUMN].shape[1] == 2
    inputs = {k: batch[k] for k in names[:4]}
    with torch.no_grad():
        from_cache = trial.eval()(**inputs, contextual_states=batch[COLUMN],
                                  pair_contextual_states=batch[PAIR_COLUMN]).logits
        from_live = trial(**inputs).logits
    np.testing.assert_allclose(from_cache.numpy(), from_live.numpy(), atol=5e-3)


def test_length_buckets_batch_pairs_by_their_longer_side_and_keep_both_sides(tokenizer, tmp_path):
    from seqreg_hf.arguments import SeqRegTrainingArguments
    from seqreg_hf.trainer import SeqRegTrainer

    raw = {"train": Dataset.from_pandas(pd.concat([pair_frame()] * 4, ignore_index=True))}
    split = tokenize_splits(raw, tokenizer, "sentence1", ["score"], 128, text_pair_column="sentence2",
                            pair_encoding="siamese")["train"]
    model = SeqRegForSequenceRegression(tiny_config(vocab_size=tokenizer.vocab_size, num_labels=1,
                                                    pair_encoding="siamese"))
    args = SeqRegTrainingArguments(output_dir=str(tmp_path), report_to="none", per_device_train_batch_size=3,
                                   eval_strategy="no", save_strategy="no", load_best_model_at_end=False, use_cpu=True)
    trainer = SeqRegTrainer(model=model, args=args, length_buckets=True, train_dataset=split,
                            processing_class=tokenizer, data_collator=PairCollator(tokenizer))
    longer = {max(len(a), len(b)) for a, b in zip(split["input_ids"], split["pair_input_ids"])}
    seen = []
    for batch in trainer.get_train_dataloader():
        assert {"pair_input_ids", "pair_attention_mask"} <= set(batch)  # the Trainer keeps the second side
        sides = torch.stack([batch["attention_mask"].sum(1), batch["pair_attention_mask"].sum(1)]).max(0).values
        assert len(set(sides.tolist())) == 1  # one longer-side length per batch
        seen += sides.tolist()
    assert sorted(seen) == sorted(split["length"]) and set(seen) == longer


def test_a_streamed_split_cleans_pairs_by_the_same_rule(tmp_path):
    from seqreg_hf.data import clean_stream, stream_split

    pair_frame(sentence2=["x", "", "y", None, "z"]).to_csv(tmp_path / "p.csv", index=False)
    stream = stream_split(tmp_path / "p.csv", "train")
    clean, report, means, _ = clean_stream(stream, "train", "sentence1", ["score"], text_pair_column="sentence2")
    assert report["dropped"] == 2 and report["examples"][0] == "row 1: empty text in column 'sentence2'"
    kept = list(clean)
    assert [row["sentence2"] for row in kept] == ["x", "y", "z"]
    assert means == pytest.approx([np.mean([5.0, 2.6, 2.2])])
    with pytest.raises(DataError, match="'sentence_b'.*--text_pair_column"):
        clean_stream(stream, "train", "sentence1", ["score"], text_pair_column="sentence_b")
