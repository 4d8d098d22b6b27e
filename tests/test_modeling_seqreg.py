"""The recurrent regressor: exactness against bare torch RNNs, padding, heads, losses, bad input."""

import itertools

import pytest
import torch
from torch import nn

from seqreg_hf import SeqRegForSequenceRegression, SeqRegModel

from .conftest import member, right_padded, tiny_config

SENTENCES = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17], [18]]
CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
ARCHITECTURES = list(itertools.product(["lstm", "gru", "rnn"], [False, True], [1, 2], ["concat", "sum", "mean"]))


def bare_final_states(model, sentence):
    """h_n (and c_n) of a bare torch RNN with the model's weights, run on one unpadded sentence."""
    config = model.config
    bare = CELLS[config.rnn_type](config.embedding_dim, config.hidden_size, num_layers=config.num_layers,
                                  bidirectional=config.bidirectional)
    bare.load_state_dict(member(model, 0).encoder.rnn.state_dict())
    vectors = model.base_model.embeddings.word_embeddings.weight[torch.tensor(sentence)].unsqueeze(1)  # (len, 1, E)
    output, state = bare(vectors)
    h_n, c_n = state if config.rnn_type == "lstm" else (state, None)
    return output[:, 0], h_n[:, 0], None if c_n is None else c_n[:, 0]


def merged(state, layer, config):
    """Merge the directions of one layer of a torch (L * D, H) state by hand."""
    if not config.bidirectional:
        return state[layer]
    forward, backward = state[2 * layer], state[2 * layer + 1]
    return {"concat": torch.cat([forward, backward]), "sum": forward + backward,
            "mean": (forward + backward) / 2}[config.direction_merge]


@pytest.mark.parametrize("rnn_type,bidirectional,num_layers,merge", ARCHITECTURES)
def test_last_pooling_equals_bare_h_n_of_each_sentence_alone(rnn_type, bidirectional, num_layers, merge):
    config = tiny_config(rnn_type=rnn_type, bidirectional=bidirectional, num_layers=num_layers,
                         direction_merge=merge, pooling="last")
    model = SeqRegModel(config).eval()
    ids, mask = right_padded(SENTENCES)
    with torch.no_grad():
        out = model(ids, attention_mask=mask)
        for row, sentence in enumerate(SENTENCES):
            _, h_n, c_n = bare_final_states(model, sentence)
            torch.testing.assert_close(out.pooler_output[row], merged(h_n, num_layers - 1, config), atol=1e-6, rtol=0)
            for layer in range(num_layers):
                torch.testing.assert_close(out.h_n[layer, row], merged(h_n, layer, config), atol=1e-6, rtol=0)
                if c_n is not None:
                    torch.testing.assert_close(out.c_n[layer, row], merged(c_n, layer, config), atol=1e-6, rtol=0)
    assert out.h_n.shape == (num_layers, len(SENTENCES), config.rnn_output_size)
    assert (out.c_n is None) == (rnn_type != "lstm")


@pytest.mark.parametrize("rnn_type", ["lstm", "gru", "rnn"])
def test_bidirectional_identities_and_why_output_minus_one_is_wrong(rnn_type):
    config = tiny_config(rnn_type=rnn_type, bidirectional=True, direction_merge="concat")
    model = SeqRegModel(config).eval()
    ids, mask = right_padded(SENTENCES)
    hidden = config.hidden_size
    with torch.no_grad():
        out = model(ids, attention_mask=mask)
    for row, sentence in enumerate(SENTENCES):
        output = out.last_hidden_state[row]
        forward_final, backward_final = out.h_n[-1, row, :hidden], out.h_n[-1, row, hidden:]
        # The forward direction ends at the last real token, the backward one at position 0.
        torch.testing.assert_close(output[len(sentence) - 1, :hidden], forward_final, atol=1e-6, rtol=0)
        torch.testing.assert_close(output[0, hidden:], backward_final, atol=1e-6, rtol=0)
        # Padding positions are zero, so output[-1] of a padded row is not the sentence vector.
        if len(sentence) < ids.size(1):
            assert torch.count_nonzero(output[len(sentence):]) == 0
    # Even for the longest (unpadded) row, output[-1]'s backward half has read one token only.
    longest = out.last_hidden_state[0]
    assert not torch.allclose(longest[-1, hidden:], out.h_n[-1, 0, hidden:])


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "mean_max", "attention"])
@pytest.mark.parametrize("rnn_type,bidirectional,num_layers", [("lstm", True, 2), ("gru", True, 1), ("rnn", False, 2)])
def test_padding_invariance(pooling, rnn_type, bidirectional, num_layers):
    config = tiny_config(pooling=pooling, rnn_type=rnn_type, bidirectional=bidirectional, num_layers=num_layers,
                         head_hidden_sizes=[6])
    model = SeqRegForSequenceRegression(config).eval()
    batch_ids, batch_mask = right_padded(SENTENCES)
    with torch.no_grad():
        together = model(batch_ids, attention_mask=batch_mask).logits
        for row, sentence in enumerate(SENTENCES):
            alone = model(torch.tensor([sentence]), attention_mask=torch.ones(1, len(sentence), dtype=torch.long)).logits
            torch.testing.assert_close(together[row], alone[0], atol=1e-5, rtol=0)


def test_masked_mean_and_max_ignore_padding_against_a_hand_computation():
    config = tiny_config(pooling="mean_max", bidirectional=False)
    model = SeqRegModel(config).eval()
    ids, mask = right_padded(SENTENCES)
    with torch.no_grad():
        out = model(ids, attention_mask=mask)
    for row, sentence in enumerate(SENTENCES):
        bare_output, _, _ = bare_final_states(model, sentence)
        expected = torch.cat([bare_output.mean(dim=0), bare_output.max(dim=0).values])
        torch.testing.assert_close(out.pooler_output[row], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "mean_max", "attention"])
def test_empty_text_gives_a_defined_prediction(pooling):
    config = tiny_config(pooling=pooling, num_layers=2)
    model = SeqRegForSequenceRegression(config).eval()
    ids, mask = right_padded([[5, 6, 7], []])
    with torch.no_grad():
        mixed = model(ids, attention_mask=mask).logits
        only_empty = model(torch.zeros(2, 0, dtype=torch.long), attention_mask=torch.zeros(2, 0, dtype=torch.long))
        head_of_zero = member(model, 0).head(torch.zeros(1, config.pooled_size))
    assert torch.isfinite(mixed).all()
    # Reading nothing leaves the states at their initial zeros, so the sentence vector is zero.
    torch.testing.assert_close(mixed[1], head_of_zero[0])
    torch.testing.assert_close(only_empty.logits, head_of_zero.expand(2, -1))


def test_frozen_embeddings_stay_fixed_and_are_not_trainable():
    config = tiny_config()
    model = SeqRegForSequenceRegression(config)
    embeddings = model.get_input_embeddings().weight
    before = embeddings.detach().clone()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert "seqreg.embeddings.word_embeddings.weight" not in trainable
    assert model.num_parameters(only_trainable=True) == model.num_parameters() - embeddings.numel()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)  # even if handed every parameter
    ids, mask = right_padded(SENTENCES)
    for _ in range(3):
        optimizer.zero_grad()
        model(ids, attention_mask=mask, labels=torch.randn(len(SENTENCES), 2)).loss.backward()
        optimizer.step()
    assert torch.equal(embeddings, before)
    unfrozen = SeqRegForSequenceRegression(tiny_config(freeze_embeddings=False))
    assert unfrozen.get_input_embeddings().weight.requires_grad


def test_save_and_load_are_bit_identical(tmp_path):
    config = tiny_config(rnn_type="gru", num_layers=2, pooling="attention", head_hidden_sizes=[5],
                         label_means=[3.0, -1.0], label_stds=[0.5, 2.0], id2label={0: "V", 1: "A"})
    model = SeqRegForSequenceRegression(config).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    loaded = SeqRegForSequenceRegression.from_pretrained(tmp_path).eval()
    ids, mask = right_padded(SENTENCES)
    with torch.no_grad():
        assert torch.equal(model(ids, attention_mask=mask).logits, loaded(ids, attention_mask=mask).logits)
    assert loaded.config.label_names == ["V", "A"]
    assert not loaded.get_input_embeddings().weight.requires_grad


@pytest.mark.parametrize("target", [0.25, -1.7])
def test_seed_example_one_sentence_is_fit(target):
    model = SeqRegForSequenceRegression(tiny_config(num_labels=1, hidden_size=16))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    ids = torch.tensor([[3, 9, 4, 21]])
    labels = torch.tensor([target])
    for _ in range(300):
        optimizer.zero_grad()
        model(ids, labels=labels).loss.backward()
        optimizer.step()
    prediction = model.eval()(ids).logits.item()
    assert abs(prediction - target) < 1e-3


def test_label_standardization_loss_and_units():
    means, stds = [3.0, -2.0], [0.5, 4.0]
    model = SeqRegForSequenceRegression(tiny_config(label_means=means, label_stds=stds)).eval()
    ids, mask = right_padded(SENTENCES)
    labels = torch.tensor([[3.1, -1.0], [2.9, 5.0], [3.5, -10.0], [2.0, 0.0]])
    with torch.no_grad():
        out = model(ids, attention_mask=mask, labels=labels)
        z = member(model, 0).head(model.seqreg(ids, attention_mask=mask).pooler_output)
    mean, std = torch.tensor(means), torch.tensor(stds)
    torch.testing.assert_close(out.logits, z * std + mean)
    expected_loss = (((labels - mean) / std - z) ** 2).mean()
    torch.testing.assert_close(out.loss, expected_loss)


@pytest.mark.parametrize("loss", ["mse", "l1", "huber"])
def test_losses_against_hand_formulas(loss):
    model = SeqRegForSequenceRegression(tiny_config(loss=loss, huber_delta=0.5)).eval()
    ids, mask = right_padded(SENTENCES)
    labels = torch.tensor([[1.0, -1.0], [0.0, 0.2], [2.0, 0.0], [-0.3, 0.1]])
    with torch.no_grad():
        out = model(ids, attention_mask=mask, labels=labels)
    diff = (out.logits - labels).abs()
    expected = {"mse": (diff**2).mean(), "l1": diff.mean(),
                "huber": torch.where(diff < 0.5, 0.5 * diff**2, 0.5 * (diff - 0.25)).mean()}[loss]
    torch.testing.assert_close(out.loss, expected)


def test_no_loss_without_labels_and_logits_shape():
    model = SeqRegForSequenceRegression(tiny_config(num_labels=3)).eval()
    ids, mask = right_padded(SENTENCES)
    out = model(ids, attention_mask=mask)
    assert out.loss is None and out.logits.shape == (len(SENTENCES), 3)


def test_token_features_are_concatenated_and_checked():
    model = SeqRegForSequenceRegression(tiny_config(num_token_features=3)).eval()
    ids, mask = right_padded(SENTENCES)
    features = torch.randn(*ids.shape, 3)
    with torch.no_grad():
        base = model(ids, attention_mask=mask, token_features=features).logits
        changed = model(ids, attention_mask=mask, token_features=features + 1).logits
    assert not torch.allclose(base, changed)
    assert member(model, 0).encoder.rnn.input_size == 8 + 3
    with pytest.raises(ValueError, match="token_features must have shape"):
        model(ids, attention_mask=mask)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(ids, attention_mask=mask, token_features=torch.full((*ids.shape, 3), float("nan")))


def test_missing_attention_mask_is_derived_from_padding():
    model = SeqRegForSequenceRegression(tiny_config()).eval()
    ids, mask = right_padded(SENTENCES)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, model(ids, attention_mask=mask).logits)


def test_left_padding_is_refused_with_the_fix():
    model = SeqRegForSequenceRegression(tiny_config())
    ids = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 10]])
    mask = (ids != 0).long()
    with pytest.raises(ValueError, match="prefix mask.*right padding.*padding_side = 'right'"):
        model(ids, attention_mask=mask)


def test_out_of_vocabulary_ids_are_refused():
    model = SeqRegForSequenceRegression(tiny_config(vocab_size=40))
    with pytest.raises(ValueError, match="id 40, outside the vocabulary 0..39.*tokenizer"):
        model(torch.tensor([[3, 40]]))
    with pytest.raises(ValueError, match="id -1"):
        model(torch.tensor([[3, -1]]))


def test_labels_of_the_wrong_width_are_refused():
    model = SeqRegForSequenceRegression(tiny_config(num_labels=3, id2label={0: "V", 1: "A", 2: "D"}))
    ids, mask = right_padded(SENTENCES)
    with pytest.raises(ValueError, match=r"labels have shape \(4, 2\), expected \(4, 3\).*\['V', 'A', 'D'\]"):
        model(ids, attention_mask=mask, labels=torch.zeros(4, 2))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_labels_are_refused(bad):
    model = SeqRegForSequenceRegression(tiny_config())
    ids, mask = right_padded(SENTENCES)
    labels = torch.zeros(4, 2)
    labels[2, 1] = bad
    with pytest.raises(ValueError, match=r"NaN or infinite values \(batch rows \[2\]\)"):
        model(ids, attention_mask=mask, labels=labels)


def test_negative_targets_are_not_clamped():
    model = SeqRegForSequenceRegression(tiny_config(num_labels=1))
    with torch.no_grad():
        member(model, 0).head.layers[-1].bias.fill_(-5.0)
    assert (model.eval()(torch.tensor([[3, 4]])).logits < -4).all()


def test_embedding_layer_norm_normalizes_frozen_vectors_and_keeps_padding_invariance():
    config = tiny_config(embedding_norm="layer_norm", pooling="mean_max")
    model = SeqRegForSequenceRegression(config).eval()
    embeddings = model.base_model.embeddings
    raw = embeddings.word_embeddings.weight[torch.tensor([[5, 6, 7]])]
    expected = (raw - raw.mean(-1, keepdim=True)) / torch.sqrt(raw.var(-1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(embeddings(torch.tensor([[5, 6, 7]])), expected, atol=1e-5, rtol=0)
    assert embeddings.norm.weight.requires_grad and not embeddings.word_embeddings.weight.requires_grad
    ids, mask = right_padded(SENTENCES)
    with torch.no_grad():
        together = model(ids, attention_mask=mask).logits
        alone = model(torch.tensor([SENTENCES[1]])).logits
    torch.testing.assert_close(together[1], alone[0], atol=1e-5, rtol=0)


def numpy_ccc(x, y):
    """Lin's concordance correlation, from numpy's population moments: an independent computation."""
    import numpy as np

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    covariance = np.cov(x, y, bias=True)[0, 1]
    return 2 * covariance / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def test_ccc_loss_against_numpy_and_its_relation_to_pearson():
    from scipy.stats import pearsonr

    from seqreg_hf.modeling_seqreg import concordance_correlation

    means, stds = [3.0, -2.0], [0.5, 4.0]
    model = SeqRegForSequenceRegression(tiny_config(loss="ccc", label_means=means, label_stds=stds)).eval()
    ids, mask = right_padded(SENTENCES)
    labels = torch.tensor([[3.1, -1.0], [2.9, 5.0], [3.5, -10.0], [2.0, 0.0]])
    with torch.no_grad():
        out = model(ids, attention_mask=mask, labels=labels)
        z = member(model, 0).head(model.seqreg(ids, attention_mask=mask).pooler_output)
    targets = (labels - torch.tensor(means)) / torch.tensor(stds)  # the loss works in standardized units
    expected = sum(1 - numpy_ccc(z[:, k], targets[:, k]) for k in range(2)) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)

    x = torch.randn(50, 3, dtype=torch.float64)
    y = 0.5 * x + torch.randn(50, 3, dtype=torch.float64)
    ccc = concordance_correlation(x, y)
    for k in range(3):
        r = pearsonr(x[:, k].numpy(), y[:, k].numpy()).statistic
        assert ccc[k].item() == pytest.approx(numpy_ccc(x[:, k], y[:, k]), rel=1e-12)
        assert abs(ccc[k].item()) <= abs(r) + 1e-12  # never above |r|
    # Equal to r when the two columns have the same mean and variance; shifting one lowers CCC, not r.
    standardized = (y - y.mean(0)) / y.std(0, unbiased=False) * x.std(0, unbiased=False) + x.mean(0)
    r0 = pearsonr(x[:, 0].numpy(), standardized[:, 0].numpy()).statistic
    assert concordance_correlation(x, standardized)[0].item() == pytest.approx(r0, rel=1e-12)
    assert concordance_correlation(x, standardized + 1.0)[0].item() < r0 - 0.1
    # Perfect agreement: 1 (loss 0). A constant prediction: 0.
    torch.testing.assert_close(concordance_correlation(x, x.clone()), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(concordance_correlation(torch.zeros_like(x), y), torch.zeros(3, dtype=torch.float64))


def test_ccc_loss_on_a_one_row_batch_falls_back_to_mse():
    model = SeqRegForSequenceRegression(tiny_config(loss="ccc")).eval()
    labels = torch.tensor([[0.7, -0.2]])
    with torch.no_grad():
        out = model(torch.tensor([SENTENCES[0]]), labels=labels)
    torch.testing.assert_close(out.loss, ((out.logits - labels) ** 2).mean())
    assert torch.isfinite(out.loss)


def test_ccc_loss_trains_towards_correlated_predictions():
    torch.manual_seed(1)
    model = SeqRegForSequenceRegression(tiny_config(loss="ccc", num_labels=1, pooling="mean"))
    ids, mask = right_padded(SENTENCES)
    labels = torch.tensor([[1.0], [-1.0], [0.5], [-0.5]])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(500):
        optimizer.zero_grad()
        model(ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
    with torch.no_grad():
        out = model.eval()(ids, attention_mask=mask, labels=labels)
    assert out.loss.item() < 0.05
    assert numpy_ccc(out.logits[:, 0], labels[:, 0]) > 0.95


def test_word_dropout_zeroes_whole_tokens_in_training_only():
    config = tiny_config(vocab_size=40, word_dropout=0.3)
    embeddings = SeqRegForSequenceRegression(config).base_model.embeddings
    ids = torch.randint(1, 40, (64, 50))
    raw = embeddings.word_embeddings.weight[ids]
    assert (raw != 0).all()
    with torch.no_grad():
        torch.testing.assert_close(embeddings.eval()(ids), raw, rtol=0, atol=0)  # eval: untouched
        dropped = embeddings.train()(ids)
    zeroed = (dropped == 0).all(dim=-1)
    kept = (dropped == raw).all(dim=-1)
    assert (zeroed | kept).all()  # a token is either whole or gone, never partly
    assert abs(zeroed.float().mean().item() - 0.3) < 0.05  # 3,200 tokens: 0.05 is about 6 standard errors
    # The model still predicts the same in eval mode as a model without word dropout and the same weights.
    model = SeqRegForSequenceRegression(config)
    plain = SeqRegForSequenceRegression(tiny_config(vocab_size=40))
    plain.load_state_dict(model.state_dict())
    id_batch, mask = right_padded(SENTENCES)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(id_batch, attention_mask=mask).logits,
                                   plain.eval()(id_batch, attention_mask=mask).logits, rtol=0, atol=0)


def member_as_single_model(ensemble, k):
    """A model with ensemble_size=1 holding the shared embeddings and member k's encoder, pooler and head."""
    single = SeqRegForSequenceRegression(tiny_config(**{**ensemble.config.to_dict(), "ensemble_size": 1})).eval()
    single.base_model.embeddings.load_state_dict(ensemble.base_model.embeddings.state_dict())
    member(single, 0).load_state_dict(member(ensemble, k).state_dict())
    return single


@pytest.mark.parametrize("rnn_type,pooling", [("lstm", "attention"), ("gru", "mean_max")])
def test_ensemble_is_the_mean_of_its_members_run_alone(rnn_type, pooling):
    config = tiny_config(rnn_type=rnn_type, pooling=pooling, num_layers=2, ensemble_size=3, head_hidden_sizes=[5],
                         label_means=[3.0, -1.0], label_stds=[0.5, 2.0])
    ensemble = SeqRegForSequenceRegression(config).eval()
    with torch.no_grad():  # heads start near zero; spread the weights so that members clearly disagree
        for parameter in ensemble.parameters():
            if parameter.requires_grad:
                parameter.normal_(0.0, 0.5)
    singles = [member_as_single_model(ensemble, k) for k in range(3)]
    ids, mask = right_padded(SENTENCES)
    labels = torch.tensor([[3.2, -0.5], [2.5, 1.0], [3.0, -3.0], [3.9, 0.0]])
    with torch.no_grad():
        out = ensemble(ids, attention_mask=mask, labels=labels)
        alone = [single(ids, attention_mask=mask, labels=labels) for single in singles]
        encoded = ensemble.base_model(ids, attention_mask=mask)
        encoded_alone = [single.base_model(ids, attention_mask=mask) for single in singles]
    torch.testing.assert_close(out.logits, torch.stack([a.logits for a in alone]).mean(dim=0), atol=1e-6, rtol=0)
    # The loss is each member's own loss, averaged: not the loss of the averaged prediction.
    torch.testing.assert_close(out.loss, torch.stack([a.loss for a in alone]).mean(), atol=1e-6, rtol=1e-6)
    averaged_loss = nn.functional.mse_loss((out.logits - torch.tensor([3.0, -1.0])) / torch.tensor([0.5, 2.0]),
                                           (labels - torch.tensor([3.0, -1.0])) / torch.tensor([0.5, 2.0]))
    assert out.loss > averaged_loss  # Jensen: members disagree, so the mean of their losses is larger
    for field in ("last_hidden_state", "pooler_output", "h_n", "c_n"):
        parts = [getattr(e, field) for e in encoded_alone]
        if parts[0] is None:
            assert getattr(encoded, field) is None
            continue
        torch.testing.assert_close(getattr(encoded, field), torch.cat(parts, dim=-1), atol=1e-6, rtol=0)
    assert encoded.pooler_output.shape == (len(SENTENCES), 3 * config.pooled_size)
    assert encoded.h_n.shape == (2, len(SENTENCES), 3 * config.rnn_output_size)


def test_ensemble_members_start_apart_and_draw_their_own_dropout_masks():
    config = tiny_config(rnn_type="gru", pooling="mean", ensemble_size=2, embedding_dropout=0.5, word_dropout=0.3)
    model = SeqRegForSequenceRegression(config)
    first, second = member(model, 0), member(model, 1)
    assert not torch.equal(first.encoder.rnn.weight_ih_l0, second.encoder.rnn.weight_ih_l0)
    assert not torch.equal(first.head.layers[-1].weight, second.head.layers[-1].weight)
    # Same weights in both members: any difference in training mode comes from the dropout masks alone.
    second.load_state_dict(first.state_dict())
    ids, mask = right_padded(SENTENCES)
    with torch.no_grad():
        trained = model.train().base_model(ids, attention_mask=mask).pooler_output.chunk(2, dim=-1)
        evaluated = model.eval().base_model(ids, attention_mask=mask).pooler_output.chunk(2, dim=-1)
    assert not torch.allclose(trained[0], trained[1])
    torch.testing.assert_close(evaluated[0], evaluated[1], atol=0, rtol=0)


def test_the_ensemble_is_one_module_list_of_complete_members(tmp_path):
    ensemble = SeqRegForSequenceRegression(tiny_config(rnn_type="gru", ensemble_size=3))
    keys = set(ensemble.state_dict())
    members = {".".join(k.split(".")[:4]) for k in keys if not k.startswith("seqreg.embeddings.")}
    assert members == {f"seqreg.ensemble.members.{k}" for k in range(3)}
    for k in range(3):
        assert {f"seqreg.ensemble.members.{k}.encoder.rnn.weight_ih_l0",
                f"seqreg.ensemble.members.{k}.head.layers.1.weight"} <= keys
    ensemble.eval().save_pretrained(tmp_path)
    loaded = SeqRegForSequenceRegression.from_pretrained(tmp_path).eval()
    ids, mask = right_padded(SENTENCES)
    with torch.no_grad():
        assert torch.equal(ensemble(ids, attention_mask=mask).logits, loaded(ids, attention_mask=mask).logits)
    single = SeqRegForSequenceRegression(tiny_config(rnn_type="gru"))
    assert loaded.num_parameters(only_trainable=True) == 3 * single.num_parameters(only_trainable=True)


LEGACY_NAMES = [  # how seqreg_hf 0.1 named the modules of member 0, and of members 1.. in two lists
    (r"^seqreg\.ensemble\.members\.0\.(encoder|pooler)\.", r"seqreg.\1."),
    (r"^seqreg\.ensemble\.members\.0\.head\.", "head."),
    (r"^seqreg\.ensemble\.members\.(\d+)\.head\.", lambda m: f"member_heads.{int(m.group(1)) - 1}."),
    (r"^seqreg\.ensemble\.members\.(\d+)\.", lambda m: f"seqreg.members.{int(m.group(1)) - 1}."),
]


@pytest.mark.parametrize("ensemble_size", [1, 3])
def test_checkpoints_of_the_previous_layout_still_load(tmp_path, ensemble_size):
    import re

    from safetensors.torch import load_file, save_file

    model = SeqRegForSequenceRegression(tiny_config(rnn_type="lstm", pooling="attention", ensemble_size=ensemble_size))
    model.eval().save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    legacy = {}
    for key, tensor in state.items():
        for pattern, replacement in LEGACY_NAMES:
            if re.match(pattern, key):
                key = re.sub(pattern, replacement, key)
                break
        legacy[key] = tensor
    assert "head.layers.1.weight" in legacy and "seqreg.encoder.rnn.weight_ih_l0" in legacy
    save_file(legacy, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded = SeqRegForSequenceRegression.from_pretrained(tmp_path).eval()
    for key, tensor in state.items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    bare = SeqRegModel.from_pretrained(tmp_path)
    assert torch.equal(bare.state_dict()["ensemble.members.0.encoder.rnn.weight_hh_l0"],
                       state["seqreg.ensemble.members.0.encoder.rnn.weight_hh_l0"])
    loaded.save_pretrained(tmp_path / "again")  # saved back in the current layout
    assert set(load_file(tmp_path / "again" / "model.safetensors")) == set(state)


def test_a_stored_config_without_the_options_added_since_0_1_loads_as_it_was_trained(tmp_path):
    """seqreg_hf 0.1's first checkpoints have no `ensemble_size`, `word_dropout` or `layer_mix` in config.json (those
    options came later). Leaving one out meant the behaviour before it existed (one network, no word dropout, the
    layers' mean), not today's defaults (two members, 0.22, a scalar mix), so such a checkpoint still loads, as the
    one network it is, and learns on as it did."""
    import json

    from transformers import AutoConfig, AutoModelForSequenceClassification

    import seqreg_hf

    model = SeqRegForSequenceRegression(tiny_config(pooling="attention", word_dropout=0.0)).eval()
    model.save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    for key in ("ensemble_size", "word_dropout", "layer_mix"):
        del stored[key]
    (tmp_path / "config.json").write_text(json.dumps(stored))
    ids, mask = right_padded([[3, 4, 5, 6], [7, 8]])
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask).logits
    for load in (SeqRegForSequenceRegression.from_pretrained, AutoModelForSequenceClassification.from_pretrained):
        loaded = load(tmp_path).eval()
        assert (loaded.config.ensemble_size, loaded.config.word_dropout, loaded.config.layer_mix) == (1, 0.0, "mean")
        with torch.no_grad():
            assert torch.equal(loaded(input_ids=ids, attention_mask=mask).logits, want)
    assert AutoConfig.from_pretrained(tmp_path).ensemble_size == 1
    # a config given in full, or a new one, is what it says
    assert seqreg_hf.SeqRegConfig.from_dict({"vocab_size": 40}).ensemble_size == seqreg_hf.SeqRegConfig().ensemble_size
    assert seqreg_hf.SeqRegConfig.from_pretrained(tmp_path, ensemble_size=3).ensemble_size == 3
