"""`seqreg-hf explain`: print the shapes of output, h_n (and c_n, for an LSTM) and which slices are the sentence vector.

Everything printed is measured from a real forward pass of a bare torch RNN on a right-padded batch,
so the numbers answer "which tensor is the sentence vector?" for the exact architecture asked about.
"""

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .configuration_seqreg import SeqRegConfig
from .modeling_seqreg import RNN_CLASSES, SeqRegModel


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


def main(argv=None):
    """`seqreg-hf explain`."""
    import sys

    from .arguments import parse_command

    (args,) = parse_command("explain", sys.argv[1:] if argv is None else argv)
    print("\n".join(explain(args.rnn_type, args.bidirectional, args.num_layers, args.hidden_size)))
