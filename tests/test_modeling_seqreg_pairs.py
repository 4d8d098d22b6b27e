"""Pairs of texts in the model (pair_encoding siamese, cosine, cross), each against a computation of its own: the
sentence vectors of a single-text model with the same weights, the head's weights applied by hand, the pair alone."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from seqreg_hf import SeqRegConfig, SeqRegForSequenceRegression, SeqRegModel

from .conftest import member, right_padded, tiny_config

TEXTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17], [18], [19, 20, 21]]
PAIRS = [[22, 23], [24, 25, 26, 27, 28, 29, 30, 31, 32], [33], [34, 35, 36], []]  # an empty second text too
ARCHITECTURES = list(itertools.product(["lstm", "gru", "rnn"], [False, True], [1, 2]))
POOLINGS = ["last", "mean", "max", "mean_max", "attention"]


def pair_model(pair_encoding, **overrides):
    torch.manual_seed(0)
    return SeqRegForSequenceRegression(tiny_config(pair_encoding=pair_encoding, **overrides)).eval()


def scores(model, texts, pairs):
    ids, mask = right_padded(texts)
    pair_ids, pair_mask = right_padded(pairs)
    with torch.no_grad():
        return model(ids, attention_mask=mask, pair_input_ids=pair_ids, pair_attention_mask=pair_mask).logits


def alone(sentence):
    """(input_ids, attention_mask) of one unpadded text."""
    return torch.tensor([sentence], dtype=torch.long).view(1, len(sentence)), torch.ones(1, len(sentence),
                                                                                         dtype=torch.long)


def single_text_twin(model):
    """A single-text SeqRegModel holding `model`'s embeddings, encoders and poolers (not its pair heads): the
    sentence vectors it gives for one text alone are the independent u and v."""
    config = SeqRegConfig(**{**model.config.to_dict(), "pair_encoding": None})
    twin = SeqRegModel(config).eval()
    kept = {k.removeprefix("seqreg."): v for k, v in model.state_dict().items() if ".head." not in k}
    missing, unexpected = twin.load_state_dict(kept, strict=False)
    assert not unexpected and all(".head." in k for k in missing)
    return twin


def sentence_vector(twin, sentence):
    with torch.no_grad():
        return twin(*alone(sentence)).pooler_output[0]  # (K * pooled_size,)


@pytest.mark.parametrize("ensemble_size", [1, 2])
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("rnn_type,bidirectional,num_layers", ARCHITECTURES)
@pytest.mark.parametrize("encoding", ["siamese", "cosine"])
def test_a_padded_pair_batch_scores_each_pair_as_alone_and_symmetrically(encoding, rnn_type, bidirectional,
                                                                          num_layers, pooling, ensemble_size):
    model = pair_model(encoding, rnn_type=rnn_type, bidirectional=bidirectional, num_layers=num_layers,
                       pooling=pooling, ensemble_size=ensemble_size)
    together = scores(model, TEXTS, PAIRS)
    swapped = scores(model, PAIRS, TEXTS)
    for row, (text, pair) in enumerate(zip(TEXTS, PAIRS)):
        with torch.no_grad():
            by_itself = model(*alone(text), pair_input_ids=alone(pair)[0], pair_attention_mask=alone(pair)[1]).logits
        torch.testing.assert_close(together[row], by_itself[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(swapped, together, atol=1e-6, rtol=0)


@pytest.mark.parametrize("rnn_type,bidirectional,num_layers", ARCHITECTURES)
@pytest.mark.parametrize("ensemble_size", [1, 2])
def test_siamese_scores_are_the_head_on_u_plus_v_abs_diff_and_product_of_the_single_text_vectors(
        rnn_type, bidirectional, num_layers, ensemble_size):
    model = pair_model("siamese", rnn_type=rnn_type, bidirectional=bidirectional, num_layers=num_layers,
                       pooling="mean_max", ensemble_size=ensemble_size, label_means=[1.0, -2.0],
                       label_stds=[0.5, 3.0])
    twin = single_text_twin(model)
    got = scores(model, TEXTS, PAIRS)
    width = model.config.pooled_size
    assert model.config.head_input_size == 3 * width
    for row, (text, pair) in enumerate(zip(TEXTS, PAIRS)):
        u_all, v_all = sentence_vector(twin, text), sentence_vector(twin, pair)
        members = []
        for k in range(ensemble_size):
            u, v = u_all[k * width:(k + 1) * width], v_all[k * width:(k + 1) * width]
            linear = member(model, k).head.layers[-1]
            features = torch.cat([u + v, (u - v).abs(), u * v])
            members.append(linear.weight @ features + linear.bias)
        expected = torch.stack(members).mean(dim=0) * torch.tensor([0.5, 3.0]) + torch.tensor([1.0, -2.0])
        torch.testing.assert_close(got[row], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("ensemble_size", [1, 2])
def test_the_cosine_head_is_scale_times_cos_plus_shift_of_the_bare_models_vectors(ensemble_size):
    model = pair_model("cosine", pooling="mean", ensemble_size=ensemble_size, label_means=[1.0, -2.0],
                       label_stds=[0.5, 3.0])
    with torch.no_grad():
        for k in range(ensemble_size):  # trained-looking values, not the initial 1 and 0
            member(model, k).head.scale.copy_(torch.tensor([2.0 + k, -0.5]))
            member(model, k).head.shift.copy_(torch.tensor([0.25, 1.5 - k]))
    ids, mask = right_padded(TEXTS)
    pair_ids, pair_mask = right_padded(PAIRS)
    with torch.no_grad():
        bare = model.base_model(ids, attention_mask=mask, pair_input_ids=pair_ids, pair_attention_mask=pair_mask)
        logits = model(ids, attention_mask=mask, pair_input_ids=pair_ids, pair_attention_mask=pair_mask).logits
        members = model.member_predictions(ids, attention_mask=mask, pair_input_ids=pair_ids,
                                           pair_attention_mask=pair_mask)
    twin = single_text_twin(model)
    width = model.config.pooled_size
    assert bare.pooler_output.shape == bare.pair_pooler_output.shape == (len(TEXTS), ensemble_size * width)
    expected_members = []
    for k in range(ensemble_size):
        head = member(model, k).head
        u = bare.pooler_output[:, k * width:(k + 1) * width]
        v = bare.pair_pooler_output[:, k * width:(k + 1) * width]
        cosine = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1)).clamp(min=1e-8)
        expected_members.append((cosine[:, None] * head.scale + head.shift) * torch.tensor([0.5, 3.0])
                                + torch.tensor([1.0, -2.0]))
    torch.testing.assert_close(members, torch.stack(expected_members), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, torch.stack(expected_members).mean(dim=0), atol=1e-5, rtol=0)
    # The bare model's vectors are each text's own, as a single-text model reads it alone.
    for row, (text, pair) in enumerate(zip(TEXTS, PAIRS)):
        torch.testing.assert_close(bare.pooler_output[row], sentence_vector(twin, text), atol=1e-6, rtol=0)
        torch.testing.assert_close(bare.pair_pooler_output[row], sentence_vector(twin, pair), atol=1e-6, rtol=0)
    # An empty second text reads nothing: a zero vector, whose cosine is defined as 0 (the score is the shift).
    assert torch.count_nonzero(bare.pair_pooler_output[-1]) == 0
    torch.testing.assert_close(members[:, -1], torch.stack([member(model, k).head.shift * torch.tensor([0.5, 3.0])
                                                            + torch.tensor([1.0, -2.0])
                                                            for k in range(ensemble_size)]), atol=1e-6, rtol=0)


def test_the_bare_model_returns_the_first_texts_states_and_no_pair_vector_without_pairs():
    model = pair_model("siamese", pooling="last")
    ids, mask = right_padded(TEXTS)
    pair_ids, pair_mask = right_padded(PAIRS)  # longer than the texts: the first texts' outputs keep their width
    with torch.no_grad():
        out = model.base_model(ids, attention_mask=mask, pair_input_ids=pair_ids, pair_attention_mask=pair_mask)
        single = single_text_twin(model)(ids, attention_mask=mask)
    assert out.last_hidden_state.shape == single.last_hidden_state.shape
    torch.testing.assert_close(out.last_hidden_state, single.last_hidden_state, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.h_n, single.h_n, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.c_n, single.c_n, atol=1e-6, rtol=0)
    assert single.pair_pooler_output is None


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("ensemble_size", [1, 2])
def test_cross_is_the_single_text_model_on_the_joined_sequence(pooling, ensemble_size):
    cross = pair_model("cross", pooling=pooling, ensemble_size=ensemble_size, head_hidden_sizes=[6])
    single = SeqRegForSequenceRegression(tiny_config(pooling=pooling, ensemble_size=ensemble_size,
                                                     head_hidden_sizes=[6])).eval()
    single.load_state_dict(cross.state_dict())  # a cross model has exactly a single-text model's weights
    sep = 3
    joined = [text + [sep] + pair for text, pair in zip(TEXTS, PAIRS)]
    ids, mask = right_padded(joined)
    with torch.no_grad():
        got = cross(ids, attention_mask=mask).logits
        want = single(ids, attention_mask=mask).logits
        for row, sequence in enumerate(joined):
            torch.testing.assert_close(got[row], cross(*alone(sequence)).logits[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert cross.config.head_input_size == cross.config.pooled_size


@pytest.mark.parametrize("encoding", ["siamese", "cosine"])
def test_gradients_reach_both_texts_and_never_their_padding(encoding):
    """Token 39 fills every padded position (mask 0) of both sides and is in no text: the loss must not depend on it."""
    model = pair_model(encoding, freeze_embeddings=False, pooling="mean_max", ensemble_size=2).train()
    filler = 39
    texts, pairs = TEXTS[:4], PAIRS[:4]
    ids, mask = right_padded(texts, pad_id=filler)
    pair_ids, pair_mask = right_padded(pairs, pad_id=filler)
    assert (ids == filler).any() and (pair_ids == filler).any()
    loss = model(ids, attention_mask=mask, pair_input_ids=pair_ids, pair_attention_mask=pair_mask,
                 labels=torch.randn(len(texts), 2)).loss
    loss.backward()
    grad = model.get_input_embeddings().weight.grad
    first_only = {t for s in texts for t in s} - {t for s in pairs for t in s}
    second_only = {t for s in pairs for t in s} - {t for s in texts for t in s}
    assert first_only and second_only
    assert all(grad[t].abs().sum() > 0 for t in first_only)
    assert all(grad[t].abs().sum() > 0 for t in second_only)
    assert torch.count_nonzero(grad[filler]) == 0
    for k in range(2):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in member(model, k).encoder.parameters())


def test_contextual_pair_states_computed_ahead_are_the_live_transformers(tiny_bert, tmp_path):
    from seqreg_hf.model_dir import init_model_dir

    torch.manual_seed(0)
    model, source = init_model_dir(tmp_path / "model", str(tiny_bert), embedding_type="contextual",
                                   pair_encoding="siamese", id2label={0: "y"}, hidden_size=8, ensemble_size=2)
    model.eval()
    tokenizer = source.tokenizer
    first = tokenizer(["a quiet evening by the sea", "no"], padding=True, return_tensors="pt")
    second = tokenizer(["calm", "the storm broke over the hills at dawn"], padding=True, return_tensors="pt")
    transformer = model.base_model.embeddings.contextual
    layers = model.base_model.embeddings.layers

    def states(batch):  # (batch, stored layers, seq_len, hidden), from the transformer itself
        with torch.no_grad():
            hidden = transformer(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 output_hidden_states=True).hidden_states
        return torch.stack([hidden[i] for i in layers], dim=1)

    inputs = dict(input_ids=first["input_ids"], attention_mask=first["attention_mask"],
                  pair_input_ids=second["input_ids"], pair_attention_mask=second["attention_mask"])
    with torch.no_grad():
        live = model(**inputs).logits
        cached = model(**inputs, contextual_states=states(first), pair_contextual_states=states(second)).logits
        swapped = model(input_ids=second["input_ids"], attention_mask=second["attention_mask"],
                        pair_input_ids=first["input_ids"], pair_attention_mask=first["attention_mask"]).logits
    torch.testing.assert_close(cached, live, atol=1e-5, rtol=0)
    torch.testing.assert_close(swapped, live, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="for both texts of the pairs"):
        model(**inputs, contextual_states=states(first))
    with pytest.raises(ValueError, match="for both texts of the pairs"):
        model(**inputs, pair_contextual_states=states(second))


@pytest.mark.parametrize("encoding", ["siamese", "cosine", "cross"])
def test_save_and_load_keep_the_pair_encoding_and_the_scores(encoding, tmp_path):
    model = pair_model(encoding, ensemble_size=2, label_means=[1.0, 2.0], label_stds=[0.5, 0.5])
    if encoding == "cosine":
        with torch.no_grad():
            member(model, 1).head.scale.fill_(3.0)  # not the initial value: the load must read it
    model.save_pretrained(tmp_path)
    loaded = SeqRegForSequenceRegression.from_pretrained(tmp_path).eval()
    assert loaded.config.pair_encoding == encoding and loaded.config.reads_pairs
    assert loaded.config.siamese == (encoding != "cross")
    if encoding == "cross":
        ids, mask = right_padded([t + [3] + p for t, p in zip(TEXTS, PAIRS)])
        with torch.no_grad():
            before, after = model(ids, attention_mask=mask).logits, loaded(ids, attention_mask=mask).logits
    else:
        before, after = scores(model, TEXTS, PAIRS), scores(loaded, TEXTS, PAIRS)
    torch.testing.assert_close(after, before, atol=0, rtol=0)


@pytest.mark.parametrize("overrides, message", [
    (dict(pair_encoding="cosine", head_hidden_sizes=[4]), "has no MLP; drop head_hidden_sizes"),
    (dict(pair_encoding="siamese", num_token_features=2), "num_token_features must be 0"),
    (dict(pair_encoding="cosine", num_token_features=2), "num_token_features must be 0"),
    (dict(pair_encoding="pairs"), "pair_encoding='pairs' is not supported; choose one of 'siamese', 'cosine', 'cross'"),
])
def test_the_config_refuses_what_a_pair_encoding_cannot_do(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny_config(**overrides)


def test_the_config_allows_what_it_can_do():
    assert tiny_config(pair_encoding="cross", num_token_features=2).head_input_size == tiny_config().pooled_size
    assert tiny_config(pair_encoding="siamese", head_hidden_sizes=[4]).head_input_size == 3 * tiny_config().pooled_size
    assert not tiny_config().reads_pairs and not tiny_config(pair_encoding="cross").siamese


def test_the_forward_refuses_pair_inputs_that_do_not_fit_the_model():
    ids, mask = right_padded(TEXTS)
    pair_ids, pair_mask = right_padded(PAIRS)
    pair = dict(pair_input_ids=pair_ids, pair_attention_mask=pair_mask)
    with pytest.raises(ValueError, match="give the second texts as pair_input_ids"):
        pair_model("siamese")(ids, attention_mask=mask)
    with pytest.raises(ValueError, match="give the second texts as pair_input_ids"):
        pair_model("cosine").member_predictions(ids, attention_mask=mask)
    with pytest.raises(ValueError, match=r"tokenize tokenizer\(texts, texts_pair\) and give input_ids only"):
        pair_model("cross")(ids, attention_mask=mask, **pair)
    with pytest.raises(ValueError, match="pair_input_ids is only for pair models"):
        pair_model(None)(ids, attention_mask=mask, **pair)
    with pytest.raises(ValueError, match="pair_input_ids is only for pair models"):
        pair_model(None)(ids, attention_mask=mask, pair_attention_mask=pair_mask)
    with pytest.raises(ValueError, match="pair_input_ids has 4 rows and input_ids 5: one second text per text"):
        pair_model("siamese")(ids, attention_mask=mask, pair_input_ids=pair_ids[:4], pair_attention_mask=pair_mask[:4])
    with pytest.raises(ValueError, match="pair_attention_mask shape .* differs from pair_input_ids"):
        pair_model("siamese")(ids, attention_mask=mask, pair_input_ids=pair_ids, pair_attention_mask=pair_mask[:, :2])
    with pytest.raises(ValueError, match="for both texts of the pairs"):  # a static model: states on one side only
        pair_model("siamese")(ids, attention_mask=mask, **pair, pair_contextual_states=torch.zeros(5, 1, 9, 8))


def test_an_all_empty_second_side_is_defined_and_equals_empty_first_texts():
    model = pair_model("siamese", pooling="mean_max", ensemble_size=2)
    empty = [[] for _ in TEXTS]
    torch.testing.assert_close(scores(model, TEXTS, empty), scores(model, empty, TEXTS), atol=1e-6, rtol=0)
    assert torch.isfinite(scores(model, empty, empty)).all()
    for row, text in enumerate(TEXTS):
        torch.testing.assert_close(scores(model, TEXTS, empty)[row], scores(model, [text], [[]])[0], atol=1e-5, rtol=0)


def test_member_predictions_of_a_pair_model_average_to_its_logits():
    model = pair_model("siamese", ensemble_size=3, label_means=[0.0, 1.0], label_stds=[2.0, 1.0])
    ids, mask = right_padded(TEXTS)
    pair_ids, pair_mask = right_padded(PAIRS)
    with torch.no_grad():
        members = model.member_predictions(ids, attention_mask=mask, pair_input_ids=pair_ids,
                                           pair_attention_mask=pair_mask)
    assert members.shape == (3, len(TEXTS), 2)
    torch.testing.assert_close(members.mean(dim=0), scores(model, TEXTS, PAIRS), atol=1e-6, rtol=0)
    assert F.pairwise_distance(members[0], members[1]).min() > 0  # the members are different networks


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("encoding", ["siamese", "cosine"])
def test_pairs_with_empty_texts_train_with_finite_gradients(encoding, pooling):
    """An empty second text (or first) is allowed: a zero sentence vector, whose cosine is defined, and |u - v| at
    u = v (identical texts): neither may turn a gradient into NaN."""
    model = pair_model(encoding, pooling=pooling).train()
    ids, mask = right_padded([[5, 6, 7], [8, 9], [], [10, 11]])
    pair_ids, pair_mask = right_padded([[], [12], [], [10, 11]])
    loss = model(ids, attention_mask=mask, pair_input_ids=pair_ids, pair_attention_mask=pair_mask,
                 labels=torch.randn(4, 2)).loss
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert torch.isfinite(loss) and grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("encoding", [None, "siamese", "cosine"])
@pytest.mark.parametrize("pooling", ["last", "mean_max", "attention"])
def test_input_pooling_appends_the_mean_of_each_members_input_vectors_over_real_tokens(encoding, pooling):
    """input_pooling="mean": each member's sentence vector ends with the mean of its input vectors (the frozen
    vectors, in eval mode) over the real tokens, computed here by hand; padded batches still score as alone, and a
    siamese pair symmetrically."""
    torch.manual_seed(0)
    model = SeqRegForSequenceRegression(tiny_config(pair_encoding=encoding, pooling=pooling, input_pooling="mean",
                                                    ensemble_size=2)).eval()
    plain = tiny_config(pooling=pooling)
    assert model.config.pooled_size == plain.pooled_size + plain.embedding_dim
    ids, mask = right_padded(TEXTS)
    pairs = {} if encoding is None else dict(zip(("pair_input_ids", "pair_attention_mask"), right_padded(PAIRS)))
    with torch.no_grad():
        output = model.seqreg(ids, attention_mask=mask, **pairs)
        vectors = model.seqreg.embeddings.word_embeddings(ids)
        logits = model(ids, attention_mask=mask, **pairs).logits
    by_hand = torch.stack([vectors[i, : len(t)].mean(dim=0) for i, t in enumerate(TEXTS)])
    width = model.config.pooled_size
    for k in range(2):  # member k's slice ends with the input mean; its first part is the recurrent pooling
        torch.testing.assert_close(output.pooler_output[:, (k + 1) * width - plain.embedding_dim : (k + 1) * width],
                                   by_hand, atol=1e-6, rtol=0)
    for row, text in enumerate(TEXTS):
        inputs = alone(text)
        extra = {} if encoding is None else dict(zip(("pair_input_ids", "pair_attention_mask"),
                                                     right_padded([PAIRS[row]])))
        with torch.no_grad():
            torch.testing.assert_close(model(*inputs, **extra).logits[0], logits[row], atol=1e-6, rtol=0)
    if encoding is not None:
        torch.testing.assert_close(scores(model, PAIRS, TEXTS), scores(model, TEXTS, PAIRS), atol=1e-6, rtol=0)
