"""`seqreg-hf explain`: print the shapes of output, h_n (and c_n, for an LSTM) and which slices are the sentence vector;
with `--pair_encoding`, how a pair model reads a pair of texts.

Everything printed is measured from a real forward pass (a bare torch RNN, or a tiny seqreg model) on a right-padded
batch, so the numbers answer "which tensor is the sentence vector?" for the exact architecture asked about.
"""

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .configuration_seqreg import SeqRegConfig
from .modeling_seqreg import RNN_CLASSES, SeqRegForSequenceRegression, SeqRegModel

SEPARATOR = 1  # the separator's id in the pair view's tiny vocabulary; words are 2 and up


def _verdict(ok):
    return "yes" if ok else "NO"


def explain(rnn_type="lstm", bidirectional=False, num_layers=1, hidden_size=4, input_size=3, lengths=(5, 3)):
    """Return the report as a list of lines."""
    torch.manual_seed(0)
    directions = 2 if bidirectional else 1
    rnn = RNN_CLASSES[rnn_type](input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                           batch_first=True)
    batch, seq_len, h = len(lengths), max(lengths), hidden_size
    inputs = torch.randn(batch, seq_len, input_size)
    for row, length in enumerate(lengths):
        inputs[row, length:] = 0.0  # padding
    lengths_t = torch.tensor(lengths)
    with torch.no_grad():
        naive_output, _ = rnn(inputs)  # padded batch run as if padding were text
        packed, state = rnn(pack_padded_sequence(inputs, lengths_t, batch_first=True, enforce_sorted=False))
        output, _ = pad_packed_sequence(packed, batch_first=True)
    h_n, c_n = state if rnn_type == "lstm" else (state, None)
    name = f"{'bidirectional ' if bidirectional else ''}{rnn_type.upper()}, {num_layers} layer(s), hidden_size={h}"
    lines = [
        f"{name}; a right-padded batch of {batch} sentences with lengths {list(lengths)} (batch_first=True)",
        "",
        "Shapes",
        f"  output  {tuple(output.shape)}  = (batch, seq_len, num_directions * hidden_size): top layer only, "
        "every position",
        f"  h_n     {tuple(h_n.shape)}  = (num_layers * num_directions, batch, hidden_size): every layer, last step",
    ]
    if c_n is not None:
        lines.append(f"  c_n     {tuple(c_n.shape)}  = same as h_n: the LSTM cell state (GRU and RNN have none)")
    lines += [
        f"  h_n.view(num_layers, num_directions, batch, hidden_size)[-1] is the top layer: h_n[-{directions}:]",
        "",
        "Identities (checked on this forward pass, for each sentence of length L)",
    ]
    top = h_n.view(num_layers, directions, batch, h)[-1]
    forward_ok = all(torch.allclose(output[r, length - 1, :h], top[0, r], atol=1e-6) for r, length in enumerate(lengths))
    lines.append(f"  forward final state h_n[-{directions}] == output[:, L-1, :hidden_size]         "
                 f"{_verdict(forward_ok)}")
    if bidirectional:
        backward_ok = all(torch.allclose(output[r, 0, h:], top[1, r], atol=1e-6) for r in range(batch))
        lines.append(f"  backward final state h_n[-1] == output[:, 0, hidden_size:]             {_verdict(backward_ok)}")
    short = min(range(batch), key=lambda r: lengths[r])
    naive_last = naive_output[short, -1]
    true_last = torch.cat(list(top[:, short]))
    lines += [
        "",
        "Why output[:, -1] is wrong",
        f"  padded row (L={lengths[short]} of {seq_len}): output[:, -1] of an unpacked run == final state?    "
        f"{_verdict(torch.allclose(naive_last, true_last, atol=1e-6))}",
        "    the forward direction kept reading padding after the sentence ended.",
    ]
    if bidirectional:
        longest = max(range(batch), key=lambda r: lengths[r])
        lines += [
            f"  even the unpadded row: output[:, -1, hidden_size:] == backward final state?       "
            f"{_verdict(torch.allclose(output[longest, -1, h:], top[1, longest], atol=1e-6))}",
            "    at the last position the backward direction has read one token; its summary of the",
            "    whole sentence is at position 0.",
        ]
    lines += ["", "Merging the two directions (config.direction_merge) into the pooled vector"]
    for merge in ("concat", "sum", "mean"):
        config = SeqRegConfig(vocab_size=10, embedding_dim=input_size, hidden_size=h, num_layers=num_layers,
                              rnn_type=rnn_type, bidirectional=bidirectional, direction_merge=merge,
                              pooling="last", ensemble_size=1)  # the final states, of one network, as above
        model = SeqRegModel(config).eval()
        ids = torch.randint(1, 10, (batch, seq_len))
        mask = (torch.arange(seq_len)[None, :] < lengths_t[:, None]).long()
        with torch.no_grad():
            out = model(ids * mask, attention_mask=mask)
        lines.append(f"  {merge:6s}: last_hidden_state {tuple(out.last_hidden_state.shape)}, h_n {tuple(out.h_n.shape)}, "
                     f"pooler_output {tuple(out.pooler_output.shape)}")
    lines += [
        "  concat keeps both directions apart (2 * hidden_size features, a head twice as wide);",
        "  sum and mean keep hidden_size features: the head is cheaper but the directions share every unit.",
        "  mean is sum / 2, the same model up to scale; it keeps activations in the range of one direction.",
    ]
    return lines


def _padded(rows):
    """(input_ids, attention_mask) of token-id lists, right-padded with 0."""
    width = max(len(row) for row in rows)
    ids = torch.tensor([row + [0] * (width - len(row)) for row in rows])
    return ids, (ids != 0).long()


def explain_pair(pair_encoding, rnn_type="gru", bidirectional=True, num_layers=1, hidden_size=4, input_size=3,
                 lengths=(5, 3), pair_lengths=(2, 3)):
    """Return the report of how a pair model (`pair_encoding`) reads a batch of pairs, as a list of lines."""
    torch.manual_seed(0)
    config = SeqRegConfig(vocab_size=20, embedding_dim=input_size, hidden_size=hidden_size, num_layers=num_layers,
                          rnn_type=rnn_type, bidirectional=bidirectional, ensemble_size=1, pair_encoding=pair_encoding)
    model = SeqRegForSequenceRegression(config).eval()
    texts = [torch.randint(2, 20, (n,)).tolist() for n in lengths]
    pairs = [torch.randint(2, 20, (n,)).tolist() for n in pair_lengths]
    name = f"{'bidirectional ' if bidirectional else ''}{rnn_type.upper()}, {num_layers} layer(s), hidden_size={hidden_size}"
    lines = [f"pair_encoding={pair_encoding!r}: {name}, pooling {config.pooling!r}; a batch of {len(texts)} pairs, "
             f"texts of lengths {list(lengths)}, second texts of lengths {list(pair_lengths)}", ""]
    if pair_encoding == "cross":
        return lines + _cross_lines(model, texts, pairs)
    return lines + _siamese_lines(model, texts, pairs)


def _siamese_lines(model, texts, pairs):
    config, head = model.config, model.base_model.ensemble.members[0].head
    ids, mask = _padded(texts)
    pair_ids, pair_mask = _padded(pairs)
    with torch.no_grad():
        out = model.base_model(ids, attention_mask=mask, pair_input_ids=pair_ids, pair_attention_mask=pair_mask)
        logits = model(ids, attention_mask=mask, pair_input_ids=pair_ids, pair_attention_mask=pair_mask).logits
        swapped = model(pair_ids, attention_mask=pair_mask, pair_input_ids=ids, pair_attention_mask=mask).logits
        alone = torch.cat([model(torch.tensor([a]), pair_input_ids=torch.tensor([b])).logits
                           for a, b in zip(texts, pairs)])
    u, v = out.pooler_output, out.pair_pooler_output
    lines = [
        "Inputs: each text of a pair is tokenized and right-padded on its own",
        f"  input_ids       {tuple(ids.shape)}  the first texts",
        f"  pair_input_ids  {tuple(pair_ids.shape)}  the second texts (pair_attention_mask alike)",
        "",
        f"One shared encoder reads both sides, as one batch of {2 * len(texts)} rows",
        f"  u = pooler_output       {tuple(u.shape)}  = (batch, pooled_size): the first texts' sentence vectors",
        f"  v = pair_pooler_output  {tuple(v.shape)}  the second texts', from the same weights",
        "",
    ]
    if config.pair_encoding == "cosine":
        cosine = (u * v).sum(-1, keepdim=True) / (u.norm(dim=-1, keepdim=True) * v.norm(dim=-1, keepdim=True))
        by_hand = cosine * head.scale + head.shift
        lines += [
            "The score: scale * cos(u, v) + shift (no MLP)",
            f"  cos(u, v)  {tuple(cosine.shape)};  scale {tuple(head.scale.shape)}, shift {tuple(head.shift.shape)}: "
            "one trained scale and shift per target",
            f"  the head reads {config.head_input_size} features per side (config.head_input_size = pooled_size)",
            "",
            "Checked on this forward pass",
            f"  scale * cos(u, v) + shift == logits                 "
            f"{_verdict(torch.allclose(by_hand, logits, atol=1e-6))}",
        ]
    else:
        terms = [("u + v", u + v), ("|u - v|", (u - v).abs()), ("u * v", u * v)]
        features = torch.cat([t for _, t in terms], dim=-1)
        linear = head.layers[1]  # after the dropout
        with torch.no_grad():
            by_hand = head(features)
        lines += ["The features the head reads, each symmetric in u and v"]
        lines += [f"  {label:8s}  {tuple(term.shape)}" for label, term in terms]
        lines += [
            f"  [u + v, |u - v|, u * v]  {tuple(features.shape)}  = 3 * pooled_size: config.head_input_size "
            f"{config.head_input_size}, the head's first layer reads {linear.in_features}",
            "",
            "Checked on this forward pass",
            f"  head([u + v, |u - v|, u * v]) == logits             "
            f"{_verdict(torch.allclose(by_hand, logits, atol=1e-6))}",
        ]
    lines += [
        f"  each pair alone == its row of the padded batch      {_verdict(torch.allclose(alone, logits, atol=1e-5))}",
        f"  f(a, b) == f(b, a)                                  {_verdict(torch.allclose(swapped, logits, atol=1e-6))}",
    ]
    return lines


def _cross_lines(model, texts, pairs):
    config = model.config
    joined = [a + [SEPARATOR] + b for a, b in zip(texts, pairs)]
    reversed_pairs = [b + [SEPARATOR] + a for a, b in zip(texts, pairs)]
    ids, mask = _padded(joined)
    with torch.no_grad():
        out = model.base_model(ids, attention_mask=mask)
        logits = model(ids, attention_mask=mask).logits
        swapped = model(*_padded(reversed_pairs)).logits
    try:
        model(ids, attention_mask=mask, pair_input_ids=ids, pair_attention_mask=mask)
        refusal = "accepted"
    except ValueError as error:
        refusal = f"refused: {error}"
    lengths = ", ".join(f"{len(a)} + 1 + {len(b)} = {len(a) + 1 + len(b)}" for a, b in zip(texts, pairs))
    return [
        "Inputs: one sequence per pair, text, separator, text_pair (tokenizer(texts, texts_pair)), right-padded",
        f"  tokens per pair: {lengths}",
        f"  input_ids          {tuple(ids.shape)}  (no pair_input_ids: the encoder reads both texts in one pass)",
        "",
        "The encoder reads it as one text",
        f"  last_hidden_state  {tuple(out.last_hidden_state.shape)}  = (batch, seq_len, rnn_output_size)",
        f"  pooler_output      {tuple(out.pooler_output.shape)}  = (batch, pooled_size): the head reads "
        f"{config.head_input_size} features",
        "",
        "Checked on this forward pass",
        f"  f(a, b) == f(b, a)                                  {_verdict(torch.allclose(swapped, logits, atol=1e-6))}",
        "    the encoder sees the texts in order, so a cross score need not be symmetric",
        f"  pair_input_ids given to a cross model: {refusal}",
    ]


def main(argv=None):
    """`seqreg-hf explain`."""
    import sys

    from .arguments import parse_command

    (args,) = parse_command("explain", sys.argv[1:] if argv is None else argv)
    if args.pair_encoding:
        print("\n".join(explain_pair(args.pair_encoding, args.rnn_type, args.bidirectional, args.num_layers,
                                      args.hidden_size)))
    else:
        print("\n".join(explain(args.rnn_type, args.bidirectional, args.num_layers, args.hidden_size)))
