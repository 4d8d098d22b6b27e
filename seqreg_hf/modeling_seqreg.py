"""Recurrent sentence regressors over frozen pretrained word embeddings.

Reads top to bottom: building blocks (embeddings, recurrent encoder, pooler, head), then
``SeqRegPreTrainedModel``, the bare ``SeqRegModel`` encoder and ``SeqRegForSequenceRegression``.
This file imports only torch, transformers and ``configuration_seqreg`` so that checkpoints can
carry it and load with ``trust_remote_code=True``.

Padding contract: right padding. ``attention_mask`` is 1 for the real tokens and then 0; a mask
with a 1 after a 0 (left padding, holes) is refused rather than silently mis-read.
"""

import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import _VF, nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import ModelOutput

from .configuration_seqreg import SeqRegConfig

RNN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
_KERNELS = {"LSTM": _VF.lstm, "GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu}
_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


@dataclass
class SeqRegModelOutput(ModelOutput):
    """
    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, seq_len, rnn_output_size)`):
            per-token outputs of the top layer, directions merged by `config.direction_merge`, zero at padding.
        pooler_output (`torch.FloatTensor` of shape `(batch, pooled_size)`): the sentence vector.
        h_n (`torch.FloatTensor` of shape `(num_layers, batch, rnn_output_size)`): the final hidden state of
            every layer, directions merged by the same rule. For the backward direction "final" means after
            reading the sentence back to its first token.
        c_n (`torch.FloatTensor` of shape `(num_layers, batch, rnn_output_size)`, LSTM only): final cell states.

        pair_pooler_output (`torch.FloatTensor` of shape `(batch, pooled_size)`, siamese pair models only): the
            second text's sentence vector, from the same encoder; the other fields are the first text's.

    With `config.ensemble_size = K > 1` each of these holds the K members' tensors side by side on the last axis
    (width K * rnn_output_size, or K * pooled_size), in member order.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    h_n: torch.FloatTensor | None = None
    c_n: torch.FloatTensor | None = None
    pair_pooler_output: torch.FloatTensor | None = None


def _compiling():
    """Whether torch.compile (dynamo) is tracing this call."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and getattr(compiler, "is_compiling", None) and compiler.is_compiling())


def merge_directions(x, num_directions, mode):
    """Combine a trailing `(..., num_directions * hidden)` axis laid out as [forward, backward]."""
    if num_directions == 1 or mode == "concat":
        return x
    forward, backward = x.chunk(2, dim=-1)
    merged = forward + backward
    return merged / 2 if mode == "mean" else merged


def check_prefix_mask(attention_mask):
    """Return the per-row lengths of a right-padded mask, or raise if it is not one."""
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must have shape (batch, seq_len), got {tuple(attention_mask.shape)}.")
    if ((attention_mask != 0) & (attention_mask != 1)).any():
        raise ValueError("attention_mask must hold only 0 and 1.")
    mask = attention_mask.bool()
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        raise ValueError(
            "attention_mask is not a prefix mask: seqreg models need right padding (1s for the real tokens, then "
            "0s). Pad on the right, e.g. tokenizer.padding_side = 'right', and keep no gaps inside a sentence."
        )
    return mask.sum(dim=1)


def check_token_ids(input_ids, vocab_size):
    """Raise, naming the id, if `input_ids` holds one outside the vocabulary 0..vocab_size - 1 (a tokenizer that does
    not match the model). The model checks its inputs with this, and the onnxruntime backend, which runs no torch
    model, with this too."""
    if input_ids.numel():
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= vocab_size:
            bad = low if low < 0 else high
            raise ValueError(
                f"input_ids contains id {bad}, outside the vocabulary 0..{vocab_size - 1}. The tokenizer does not "
                "match this model: use the tokenizer saved in the model directory."
            )


def concordance_correlation(predictions, targets):
    """Lin's concordance correlation coefficient per column of (batch, num_labels) tensors:
    2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2), with population (1/n) moments."""
    mean_p, mean_t = predictions.mean(dim=0), targets.mean(dim=0)
    var_p = predictions.var(dim=0, unbiased=False)
    var_t = targets.var(dim=0, unbiased=False)
    covariance = ((predictions - mean_p) * (targets - mean_t)).mean(dim=0)
    denominator = var_p + var_t + (mean_p - mean_t).pow(2)
    return 2.0 * covariance / denominator.clamp(min=torch.finfo(predictions.dtype).eps)


def _pad_to(tensor, width, value, dim=1):
    """`tensor` right-padded with `value` along `dim` to `width` positions."""
    missing = width - tensor.size(dim)
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor, tensor.new_full(shape, value)], dim=dim)


class SeqRegEmbeddings(nn.Module):
    """What the recurrent network reads per token: frozen pretrained word vectors (embedding_type "static"),
    optionally joined by per-token numeric features, or a frozen transformer's hidden states ("contextual"),
    a layer mean or a scalar mix of the chosen layers."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.contextual = None
        if config.embedding_type == "contextual":
            from transformers import AutoConfig, AutoModel

            settings = dict(config.contextual_config)
            inner = AutoConfig.for_model(settings.pop("model_type"), **settings)
            # A built-in architecture (for_model knows it by model_type): no directory's code is involved.
            self.contextual = AutoModel.from_config(inner, trust_remote_code=False).eval()  # frozen: no dropout
            if getattr(self.contextual, "pooler", None) is not None:
                self.contextual.pooler = None  # the sentence pooler is never read: no weights for it
            self.word_embeddings = None
            states = inner.num_hidden_layers + 1
            self.layers = [i % states for i in (config.embedding_layers or range(states))]
            if config.layer_mix == "scalar":
                self.mix_weights = nn.Parameter(torch.zeros(len(self.layers)))  # softmax: an equal mix at first
                self.mix_scale = nn.Parameter(torch.ones(1))
        else:
            self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_dim,
                                                padding_idx=config.pad_token_id)
        self.freeze()
        self.norm = nn.LayerNorm(config.embedding_dim) if config.embedding_norm == "layer_norm" else None
        self.dropout = nn.Dropout(config.embedding_dropout)

    def freeze(self):
        """Frozen means no gradient: the static matrix (with freeze_embeddings) or the whole transformer."""
        if self.contextual is not None:
            self.contextual.requires_grad_(False)
        else:
            self.word_embeddings.weight.requires_grad_(not self.config.freeze_embeddings)

    def input_embeddings(self):
        return self.word_embeddings if self.contextual is None else self.contextual.get_input_embeddings()

    def train(self, mode=True):
        super().train(mode)
        if self.contextual is not None:
            self.contextual.eval()  # frozen: its own dropout stays off while the rest trains
        return self

    def forward(self, input_ids, token_features=None, attention_mask=None):
        return self.regularize(self.lookup(input_ids, token_features, attention_mask), input_ids)

    def contextual_states(self, input_ids, attention_mask=None):
        """(len(layers), batch, seq_len, hidden): the chosen hidden states of the frozen transformer."""
        with torch.no_grad():
            output = self.contextual(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return torch.stack([output.hidden_states[i] for i in self.layers])

    def mix(self, states):
        """The layer mix of (len(layers), batch, seq_len, hidden) states."""
        if self.config.layer_mix == "mean":
            return states.mean(dim=0)
        weights = torch.softmax(self.mix_weights, dim=0).to(states.dtype)
        return self.mix_scale.to(states.dtype) * torch.einsum("l,lbth->bth", weights, states)

    def lookup(self, input_ids, token_features=None, attention_mask=None, contextual_states=None):
        """The vectors per token (normalized, features joined), before any dropout. A contextual model reads
        `contextual_states` (batch, stored layers, seq_len, hidden) when given, else runs its transformer."""
        if contextual_states is not None:
            if self.contextual is None:
                raise ValueError("contextual_states were given to a model with embedding_type='static'.")
            dtype = next(self.contextual.parameters()).dtype
            embeddings = self.mix(contextual_states.transpose(0, 1).to(dtype))
        elif self.contextual is not None:
            embeddings = self.mix(self.contextual_states(input_ids, attention_mask))
        else:
            embeddings = self.word_embeddings(input_ids)  # (batch, seq_len, embedding_dim)
        if self.norm is not None:
            embeddings = self.norm(embeddings)
        if self.config.num_token_features:
            embeddings = torch.cat([embeddings, token_features.to(embeddings.dtype)], dim=-1)
        return embeddings

    def regularize(self, embeddings, input_ids):
        """Embedding dropout, then word dropout; each ensemble member calls this for masks of its own."""
        embeddings = self.dropout(embeddings)
        if self.training and self.config.word_dropout > 0:
            keep = torch.rand(input_ids.shape, device=embeddings.device) >= self.config.word_dropout
            embeddings = embeddings * keep.unsqueeze(-1).to(embeddings.dtype)  # (batch, seq_len, 1): whole tokens
        return embeddings


class SeqRegEncoder(nn.Module):
    """An LSTM / GRU / RNN over right-padded batches, run with the dense kernels (no packing) and exact: every row
    reads only its own tokens, as if it were run alone.

    The parameters live in ``self.rnn`` (so checkpoint keys are those of a plain torch RNN); ``forward`` calls the
    functional kernels one layer at a time with those parameters:

    - Forward direction: an RNN is causal, so its outputs at real positions ignore the padding after them; the final
      hidden state of a row is its output at position length - 1 (gathered).
    - Backward direction (LSTM, GRU, ReLU RNN): the bidirectional kernel reads a right-padded row back to front, i.e.
      padding first. An extra input feature, 1 at padding and 0 at real tokens, with a huge weight saturates gates
      there: LSTM input gate 0 and forget gate 1, GRU update gate 1, ReLU pre-activation very negative. From the zero
      initial state every padding step then leaves the state exactly zero, so the backward run starts on the last
      real token from zeros, as alone. At real tokens the feature is 0 and contributes exactly nothing. (Padding
      values are never read, provided they are finite; the model's own padding vectors always are.)
    - LSTM cell state: the outputs hold h but not c. The same feature keeps c exactly unchanged (forget 1, input 0)
      through the forward direction's trailing padding, so the kernel's final c is the c at position length - 1.
    - Backward direction of a tanh RNN (nothing saturates to zero there): each row is reversed within its length by
      a precomputed index (padding stays after), run forward-in-time with the reverse weights, and reversed back.
    Saturated gates have a derivative of exactly 0, so no gradient flows through padding either.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        kwargs = {"nonlinearity": config.rnn_nonlinearity} if config.rnn_type == "rnn" else {}
        self.rnn = RNN_CLASSES[config.rnn_type](
            input_size=config.embedding_dim + config.num_token_features,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            dropout=config.rnn_dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
            **kwargs,
        )

    def forward(self, inputs, lengths):
        config = self.config
        lengths = lengths.to(inputs.device)
        groups = self._length_groups(lengths, inputs)
        if groups is None:
            output, h_n, c_n = self._encode(inputs, lengths)
        else:
            output, h_n, c_n = self._encode_groups(inputs, lengths, groups)
        # An empty text has read nothing: its states are the initial zeros (its outputs are all padding, already 0).
        nonempty = lengths > 0
        return (
            merge_directions(output, config.num_directions, config.direction_merge),
            self._merge_state(h_n, nonempty),
            None if c_n is None else self._merge_state(c_n, nonempty),
        )

    # Class attributes so that tests (and the benchmark's old-path row) can switch them off: the module's own call on
    # batches without padding, and the length groups of padded batches.
    unpadded_fast_path = True
    group_by_length = True
    # The cost model of `_length_groups`, in row-steps (one row read for one time step): a kernel's fixed cost per
    # time step (the recurrent step is sequential, so a group of T steps pays it T times) and per group (the index
    # copies, the per-layer calls). Measured for the dense kernels (BiLSTM-256, batch 1 to 256, 2 threads, an idle
    # CPU): a step costs about as much as 4 more rows, a group about 30 row-steps. On a GPU a step costs the same
    # for any batch up to hundreds of rows, so groups pay there only for extreme padding.
    group_costs = {"cpu": (4, 32)}
    group_costs_elsewhere = (512, 4096)

    def _encode(self, inputs, lengths):
        """Torch-layout (output, h_n, c_n) of one batch: per-token outputs zero at padding, states unmasked."""
        batch, seq_len, _ = inputs.shape
        config = self.config
        if seq_len == 0:  # every text in the batch is empty: run one padding step, which reads nothing
            output, h_n, c_n = self._dense(inputs.new_zeros(batch, 1, inputs.size(-1)), lengths)
            return output[:, :0], h_n, c_n
        if self.unpadded_fast_path and bool((lengths == seq_len).all()):
            # No padding at all (Predictor's and --length_buckets' batches): the module's own call is exact here,
            # and skips the padding feature and the per-layer calls.
            output, state = self.rnn(inputs)
            h_n, c_n = state if config.rnn_type == "lstm" else (state, None)
            return output, h_n, c_n
        return self._dense(inputs, lengths)

    def _length_groups(self, lengths, inputs):
        """None to run the batch as it is, or [(rows, width)]: row indices (a tensor) and the padded length to read,
        groups of similar lengths whose runs read less padding than the whole batch would, at the cost model's price.

        The dense kernel's time grows with rows x padded length, so a batch in input order (a pipeline's, a user's
        DataLoader's: often half padding) pays for every padded position. Sorted by length, the rows split into
        contiguous groups chosen by dynamic programming over the distinct lengths, each group costing
        width x (rows + per-step cost) + per-group cost; a single group is the whole batch, unchanged. Each group
        runs the exact dense path, so the result is exact either way. A trace (the ONNX export) or a compiled
        graph cannot follow a data-dependent split, so they get the whole batch."""
        batch, seq_len = lengths.numel(), inputs.size(1)
        if not self.group_by_length or batch < 2 or seq_len < 2 or torch.jit.is_tracing() or _compiling():
            return None
        step, per_group = self.group_costs.get(inputs.device.type, self.group_costs_elsewhere)
        values, counts = torch.unique(lengths, sorted=True, return_counts=True)
        values, counts = values.tolist()[::-1], counts.tolist()[::-1]  # distinct lengths, longest first
        if len(values) < 2 or values[0] * batch <= sum(v * c for v, c in zip(values, counts)) + per_group:
            return None  # one length, or too little padding to pay for a second group
        # best[j]: the cheapest split of the j longest distinct lengths; a group's width is its longest length.
        best, start, rows_before = [0.0], [0], [0]
        for count in counts:
            rows_before.append(rows_before[-1] + count)
        for j in range(1, len(values) + 1):
            cost, first = min((best[i] + values[i] * (rows_before[j] - rows_before[i] + step) + per_group, i)
                              for i in range(j))
            best.append(cost)
            start.append(first)
        bounds, j = [], len(values)
        while j:
            bounds.append((start[j], j))
            j = start[j]
        if len(bounds) == 1:
            return None
        order = torch.sort(lengths, descending=True, stable=True).indices
        return [(order[rows_before[i] : rows_before[j]], values[i]) for i, j in reversed(bounds)]

    def _encode_groups(self, inputs, lengths, groups):
        """`_encode` run per length group, each on its rows cut to its width, written back to the rows' places."""
        batch, seq_len, _ = inputs.shape
        output = h_n = c_n = None
        for rows, width in groups:
            part, h_part, c_part = self._encode(inputs[:, :width].index_select(0, rows), lengths.index_select(0, rows))
            if output is None:  # zeros: the padding every group skipped (dtype and width as the kernel gives them)
                output = part.new_zeros(batch, seq_len, part.size(-1))
                h_n = h_part.new_zeros(h_part.size(0), batch, h_part.size(-1))
                c_n = None if c_part is None else c_part.new_zeros(h_n.shape)
            output[:, :width].index_copy_(0, rows, part)
            h_n.index_copy_(1, rows, h_part)
            if c_n is not None:
                c_n.index_copy_(1, rows, c_part)
        return output, h_n, c_n

    def _dense(self, inputs, lengths):
        """Per-token outputs (batch, seq_len, D * hidden), zero at padding, and torch-layout h_n and c_n."""
        config = self.config
        batch, seq_len, _ = inputs.shape
        hidden, directions = config.hidden_size, config.num_directions
        real = (torch.arange(seq_len, device=inputs.device) < lengths.unsqueeze(1)).unsqueeze(-1)  # (B, T, 1)
        last = (lengths - 1).clamp(min=0).view(batch, 1, 1).expand(batch, 1, hidden)  # position length - 1
        saturate = self._saturates()
        if saturate:
            padding = (~real).to(inputs.dtype)
        elif directions == 2:
            # tanh RNN: per-row reversal within length; the map is its own inverse (padding maps to padding).
            steps = torch.arange(seq_len, device=inputs.device)
            order = torch.where(real.squeeze(-1), lengths.unsqueeze(1) - 1 - steps, steps)
            order = (order + seq_len * torch.arange(batch, device=inputs.device).unsqueeze(1)).reshape(-1)
        x, h_n, c_n = inputs, [], []

        def flip(t):  # (batch, seq_len, features) reversed within each row's length
            return t.reshape(batch * seq_len, -1).index_select(0, order).view(batch, seq_len, -1)

        for layer in range(config.num_layers):
            if layer and config.rnn_dropout and self.training:
                x = F.dropout(x, config.rnn_dropout, training=True)  # where torch applies it: between layers
            if saturate:
                output, _, c = self._run(torch.cat([x, padding], dim=-1), layer, range(directions), saturate=True)
            else:
                output, _, _ = self._run(x, layer, [0])
                if directions == 2:
                    output = torch.cat([output, flip(self._run(flip(x), layer, [1])[0])], dim=-1)
            # Outputs at padding are bounded (|h| <= 1: LSTM, GRU, tanh) or exactly 0 (saturated ReLU), and the next
            # layer never reads them, so only the top layer's are zeroed.
            h_n.append(output[..., :hidden].gather(1, last).squeeze(1))
            if directions == 2:
                h_n.append(output[:, 0, hidden:])  # the backward direction ends on the first token
            if config.rnn_type == "lstm":
                c_n.extend(c.unbind(0))
            x = output
        return x * real.to(x.dtype), torch.stack(h_n), torch.stack(c_n) if c_n else None

    def _saturates(self):
        """Whether the padding feature is used: for the LSTM cell state, for the backward direction of every cell
        with a gate or activation that saturates to an exact hold (all but the tanh RNN), and for the ReLU RNN
        always, whose outputs at padding would otherwise be unbounded (they are then exactly 0)."""
        mode = self.rnn.mode
        return mode in ("LSTM", "RNN_RELU") or (self.config.num_directions == 2 and mode == "GRU")

    def _run(self, x, layer, directions, saturate=False):
        """One layer, the given directions (0 forward, 1 backward) in one dense kernel call: (output, h_n, c_n).
        With ``saturate``, ``x`` carries the padding feature last and the weights get its saturating column."""
        rnn = self.rnn
        weights = []
        for direction in directions:
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            w_ih = getattr(rnn, "weight_ih" + suffix)
            if saturate:
                w_ih = torch.cat([w_ih, self._saturating_column(w_ih, x.dtype)], dim=1)
            weights += [w_ih, getattr(rnn, "weight_hh" + suffix), getattr(rnn, "bias_ih" + suffix),
                        getattr(rnn, "bias_hh" + suffix)]
        h0 = x.new_zeros(len(directions), x.size(0), rnn.hidden_size)
        kernel = _KERNELS[rnn.mode]
        args = ((h0, h0) if rnn.mode == "LSTM" else h0, weights, True, 1, 0.0, self.training, len(directions) == 2, True)
        if x.is_cuda:
            # cuDNN warns that these weights are not one flat buffer (they are fresh tensors or a subset); it
            # copies them, which is cheap next to the run.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
                result = kernel(x, *args)
        else:
            result = kernel(x, *args)
        return result[0], result[1], result[2] if rnn.mode == "LSTM" else None

    def _saturating_column(self, w_ih, dtype):
        """The weights of the padding feature, (gates * hidden, 1), in torch's gate order."""
        hidden = self.rnn.hidden_size
        # Far beyond any real pre-activation, yet finite in float16 (autocast casts the weights to it).
        half = dtype == torch.float16 or (torch.is_autocast_enabled(w_ih.device.type)
                                          and torch.get_autocast_dtype(w_ih.device.type) == torch.float16)
        big = 2.0**14 if half else 2.0**100
        column = w_ih.new_zeros(w_ih.size(0), 1)
        mode = self.rnn.mode
        if mode == "LSTM":  # gates i, f, g, o: input gate 0, forget gate 1
            column[:hidden] = -big
            column[hidden : 2 * hidden] = big
        elif mode == "GRU":  # gates r, z, n: update gate 1, so h' = (1 - z) n + z h keeps a zero h exactly zero
            column[hidden : 2 * hidden] = big
        else:  # ReLU RNN: relu(-big) = 0
            column.fill_(-big)
        return column

    def _merge_state(self, state, nonempty):
        # torch lays states out as (num_layers * num_directions, batch, hidden), layer-major.
        config = self.config
        state = state * nonempty.view(1, -1, 1).to(state.dtype)
        state = state.view(config.num_layers, config.num_directions, state.size(1), config.hidden_size)
        state = torch.cat(state.unbind(dim=1), dim=-1)  # (num_layers, batch, D * hidden), [forward, backward]
        return merge_directions(state, config.num_directions, config.direction_merge)


class SeqRegPooler(nn.Module):
    """Turns merged per-token outputs into one sentence vector, ignoring padding."""

    def __init__(self, config):
        super().__init__()
        self.mode = config.pooling
        self.attention = nn.Linear(config.rnn_output_size, 1) if self.mode == "attention" else None

    def forward(self, output, h_n, mask):
        if self.mode == "last":
            return h_n[-1]
        if self.mode == "mean":
            return self.masked_mean(output, mask)
        if self.mode == "max":
            return self._max(output, mask)
        if self.mode == "attention":
            scores = self.attention(output).masked_fill(~mask.unsqueeze(-1), torch.finfo(output.dtype).min)
            return (scores.softmax(dim=1) * output).sum(dim=1)  # empty rows average zero outputs: 0
        return torch.cat([self.masked_mean(output, mask), self._max(output, mask)], dim=-1)

    @staticmethod
    def masked_mean(output, mask):
        weights = mask.unsqueeze(-1).to(output.dtype)  # (batch, seq_len, 1)
        return (output * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    @staticmethod
    def _max(output, mask):
        if output.size(1) == 0:
            return output.new_zeros(output.size(0), output.size(2))
        maximum = output.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        return torch.where(mask.any(dim=1, keepdim=True), maximum, torch.zeros_like(maximum))  # empty rows: 0


class SeqRegHead(nn.Module):
    """Dropout, an optional MLP, then a linear layer with no output activation."""

    def __init__(self, config):
        super().__init__()
        layers, width = [nn.Dropout(config.head_dropout)], config.head_input_size
        for hidden in config.head_hidden_sizes:
            layers += [nn.Linear(width, hidden), _ACTIVATIONS[config.head_activation](), nn.Dropout(config.head_dropout)]
            width = hidden
        layers.append(nn.Linear(width, config.num_labels))
        self.layers = nn.Sequential(*layers)

    def forward(self, pooled):
        return self.layers(pooled)


class SeqRegCosineHead(nn.Module):
    """A pair's score from the cosine of its two sentence vectors: `scale * cos(u, v) + shift`, one trained scale and
    shift per target (pair_encoding "cosine"). Symmetric in u and v, and bounded by |scale| around shift."""

    def __init__(self, config):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(config.num_labels))
        self.shift = nn.Parameter(torch.zeros(config.num_labels))

    def forward(self, u, v):
        cosine = F.cosine_similarity(u, v, dim=-1, eps=1e-8).unsqueeze(-1)  # (batch, 1); a zero vector scores 0
        return cosine * self.scale + self.shift


def pair_features(u, v):
    """What a siamese head reads of two sentence vectors: [u + v, |u - v|, u * v], each term symmetric in u and v
    (exactly, in floating point too), so the score of (a, b) is the score of (b, a)."""
    return torch.cat([u + v, (u - v).abs(), u * v], dim=-1)


class SeqRegMember(nn.Module):
    """One complete network of an ensemble: its own recurrent encoder, pooler and regression head."""

    def __init__(self, config):
        super().__init__()
        self.encoder = SeqRegEncoder(config)
        self.pooler = SeqRegPooler(config)
        self.head = SeqRegCosineHead(config) if config.pair_encoding == "cosine" else SeqRegHead(config)
        self.pair_encoding = config.pair_encoding
        self.input_pooling = getattr(config, "input_pooling", "none")

    def score(self, vector, pair_vector=None):
        """(batch, num_labels) in standardized units: the head on one sentence vector, or on a siamese pair's."""
        if self.pair_encoding == "cosine":
            return self.head(vector, pair_vector)
        if self.pair_encoding == "siamese":
            return self.head(pair_features(vector, pair_vector))
        return self.head(vector)

    def forward(self, inputs, lengths, mask):
        """(per-token outputs, sentence vector, h_n, c_n) of this member; with `input_pooling="mean"` the sentence
        vector ends with the mean of this member's input vectors over real tokens."""
        output, h_n, c_n = self.encoder(inputs, lengths)
        pooled = self.pooler(output, h_n, mask)
        if self.input_pooling == "mean":
            pooled = torch.cat([pooled, SeqRegPooler.masked_mean(inputs, mask)], dim=-1)
        return output, pooled, h_n, c_n


class SeqRegEnsemble(nn.Module):
    """K independent members over one shared embedding layer (`config.ensemble_size`; K = 1 is a single network).

    Everything about the ensemble is here: each member reads the embeddings through its own dropout masks, the
    bare model reports the members' tensors side by side on the feature axis, a prediction is the mean of the
    members' predictions, and the training loss is the mean of the members' own losses (each learns as if alone).
    """

    def __init__(self, config):
        super().__init__()
        self.members = nn.ModuleList(SeqRegMember(config) for _ in range(config.ensemble_size))

    def encode(self, embeddings, words, input_ids, lengths, mask):
        """(output, pooled, h_n, c_n), each the members' tensors concatenated on the last axis (None for no c_n)."""
        parts = [member(embeddings.regularize(words, input_ids), lengths, mask) for member in self.members]
        if len(parts) == 1:
            return parts[0]
        return tuple(None if group[0] is None else torch.cat(group, dim=-1) for group in zip(*parts))

    def predict(self, pooled, pair_pooled=None):
        """(K, batch, num_labels): each member's head on its own slice of the concatenated sentence vectors (and,
        for a siamese pair model, of the second texts' vectors)."""
        vectors = pooled.split(pooled.size(-1) // len(self.members), dim=-1)
        if pair_pooled is None:
            return torch.stack([member.score(vector) for member, vector in zip(self.members, vectors)])
        pair_vectors = pair_pooled.split(pair_pooled.size(-1) // len(self.members), dim=-1)
        return torch.stack([member.score(vector, pair_vector)
                            for member, vector, pair_vector in zip(self.members, vectors, pair_vectors)])

    @staticmethod
    def combine(member_predictions):
        return member_predictions.mean(dim=0)

    @staticmethod
    def loss(member_predictions, targets, loss_fn):
        return torch.stack([loss_fn(prediction, targets) for prediction in member_predictions]).mean()


# Checkpoints written before the ensemble became one class (seqreg_hf 0.1) named member 0's modules at the top
# and members 1.. in two lists; these patterns rename them on load, so such checkpoints keep loading.
LEGACY_KEYS = {
    r"^(seqreg\.)?encoder\.": r"\1ensemble.members.0.encoder.",
    r"^(seqreg\.)?pooler\.": r"\1ensemble.members.0.pooler.",
    r"^head\.": "seqreg.ensemble.members.0.head.",
    **{rf"^(seqreg\.)?members\.{i}\.": rf"\1ensemble.members.{i + 1}." for i in range(63)},
    **{rf"^member_heads\.{i}\.": f"seqreg.ensemble.members.{i + 1}.head." for i in range(63)},
}


_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}  # safetensors' names for the dtypes a weight may be stored in
_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")


def _weight_files(where, kwargs):
    """The local safetensors file(s) from_pretrained will read for `where` (a directory or Hub id), or []."""
    from transformers.utils import cached_file

    hub = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}

    def find(name):
        return cached_file(where, name, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False, **hub)

    if index := find("model.safetensors.index.json"):
        with open(index, encoding="utf-8") as handle:
            shards = sorted(set(json.load(handle)["weight_map"].values()))
        return [path for path in map(find, shards) if path]
    single = find("model.safetensors")
    return [single] if single else []


def _stored_tensors(files):
    """{key: (shape, dtype name)} from the headers of safetensors `files`: nothing is read but the headers."""
    from safetensors import safe_open

    found = {}
    for path in files:
        with safe_open(path, framework="pt") as handle:
            for key in handle.keys():
                tensor = handle.get_slice(key)
                found[key] = (list(tensor.get_shape()), tensor.get_dtype())
    return found


class SeqRegPreTrainedModel(PreTrainedModel):
    config_class = SeqRegConfig
    base_model_prefix = "seqreg"
    main_input_name = "input_ids"

    def _embedding_key(self, state_dict):
        weight = self.get_input_embeddings().weight
        return next((k for k, v in state_dict.items() if v is weight or (v.data_ptr() == weight.data_ptr()
                                                                         and v.shape == weight.shape)), None)

    def round_embeddings_to_storage(self):
        """With embeddings_dtype="float16", round the matrix in memory to the values a save keeps, so that a run
        trains, selects and resumes on exactly the vectors its checkpoints hold."""
        if getattr(self.config, "embeddings_dtype", "float32") == "float16":
            weight = self.get_input_embeddings().weight
            with torch.no_grad():
                weight.copy_(weight.to(torch.float16).to(weight.dtype))
        return self

    def save_pretrained(self, save_directory, *args, **kwargs):
        """With config.embeddings_dtype="float16" the frozen matrix is written in float16 (half the bytes);
        everything else keeps its dtype. This and the pipeline copy below live in the model, not in
        `seqreg_hf.model_dir`, so that a plain `model.save_pretrained(DIR)` (Trainer's saves included, and the
        remote-code copy, which cannot import seqreg_hf) writes the same directory."""
        if getattr(self.config, "embeddings_dtype", "float32") == "float16":
            state_dict = dict(kwargs.get("state_dict") or self.state_dict())
            key = self._embedding_key(state_dict)
            if key is not None:
                state_dict[key] = state_dict[key].to(torch.float16)
                kwargs["state_dict"] = state_dict
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def check_stored_weights(cls, where, kwargs):
        """Compare the checkpoint's tensors (names, shapes, dtypes, read from the safetensors header) with the model
        its config builds, before anything is allocated: a missing or unexpected tensor is never re-initialized or
        dropped in silence, and a config.json asking for a huge matrix fails here instead of allocating it."""
        files = _weight_files(where, kwargs)
        if not files:
            return  # no safetensors: from_pretrained says so itself
        config = kwargs.get("config")
        if not isinstance(config, SeqRegConfig):
            config_kwargs = {k: v for k, v in kwargs.items() if k not in ("key_mapping", "config")}
            config, _ = cls.config_class.from_pretrained(where, return_unused_kwargs=True, **config_kwargs)
        with torch.device("meta"):  # shapes only: no memory
            expected = {k: (list(v.shape), v.dtype.is_floating_point) for k, v in cls(config).state_dict().items()}
        stored = {}
        for key, value in _stored_tensors(files).items():
            for pattern, replacement in (kwargs.get("key_mapping") or {}).items():
                key = re.sub(pattern, replacement, key, count=1)
            prefix = f"{cls.base_model_prefix}."
            if key.startswith(prefix) and key[len(prefix):] in expected:  # a regressor's file read by the encoder
                key = key[len(prefix):]
            elif prefix + key in expected:  # an encoder's file read by the regressor
                key = prefix + key
            stored[key] = value
        tolerated = re.compile("|".join(cls.__dict__.get("_keys_to_ignore_on_load_missing") or ["(?!)"]))
        problems = []
        if missing := sorted(k for k in expected.keys() - stored.keys() if not tolerated.search(k)):
            problems.append(f"missing {', '.join(missing)}")
        if unexpected := sorted(stored.keys() - expected.keys()):
            problems.append(f"unexpected {', '.join(unexpected)}")
        for key in sorted(stored.keys() & expected.keys()):
            (shape, dtype), (want_shape, floating) = stored[key], expected[key]
            if floating != (dtype in _FLOAT_DTYPES):
                problems.append(f"{key} is stored as {dtype}, not a {'floating-point' if floating else 'integer'} "
                                "type")
            elif shape != want_shape and not kwargs.get("ignore_mismatched_sizes"):
                problems.append(f"{key} is {shape} in the file where the config needs {want_shape}")
        if problems:
            sizes = ", ".join(f"{k}={getattr(config, k)}" for k in ("vocab_size", "embedding_dim", "hidden_size",
                                                                      "num_layers", "num_labels", "ensemble_size"))
            raise ValueError(f"{where}: model.safetensors does not hold the weights its config ({sizes}) describes: "
                             f"{'; '.join(problems)}. Use the config.json and model.safetensors saved together "
                             "(restore them from a checkpoint), or retrain.")

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        kwargs.setdefault("key_mapping", LEGACY_KEYS)
        where = args[0] if args else kwargs.get("pretrained_model_name_or_path")
        try:
            if where is not None and kwargs.get("state_dict") is None:
                cls.check_stored_weights(where, kwargs)
            model = super().from_pretrained(*args, **kwargs)
        except Exception as error:
            if isinstance(error, OSError) and "not a valid JSON file" in str(error):  # a corrupt config.json
                raise OSError(f"{error} Restore it from a checkpoint (checkpoint-*/config.json) or from the "
                              "directory the model was saved in, or download it again.") from None
            if type(error).__name__ == "SafetensorError":  # truncated or corrupt weights: name the file
                raise ValueError(f"{where}: model.safetensors cannot be read ({error}); the file is truncated or "
                                 "corrupt. Restore it from a checkpoint (checkpoint-*/model.safetensors), download "
                                 "it again, or retrain.") from None
            if not isinstance(error, RuntimeError) or "mismatch" not in str(error).lower():
                raise
            raise ValueError(
                f"{where}: the checkpoint's weights do not "
                "fit the requested config (a different num_labels, hidden_size or vocabulary?). Load it without "
                "overriding its config, or pass ignore_mismatched_sizes=True to re-initialize the mismatched layers."
            ) from None
        # Legacy names are read, never written back: drop those renamings from what save_pretrained would revert.
        conversions = getattr(model, "_weight_conversions", None)
        if conversions:
            model._weight_conversions = [c for c in conversions
                                         if not set(getattr(c, "source_patterns", ())) & set(LEGACY_KEYS)]
        # The loader materializes fresh parameters with requires_grad=True; frozen means frozen.
        model.base_model.embeddings.freeze()
        # Loaded tensors can sit at unaligned addresses, where CPU kernels take other SIMD paths and round
        # differently; give them freshly allocated (aligned) memory so a reload is bit-identical.
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.device.type == "cpu" and parameter.data_ptr() % 64:
                    parameter.data = parameter.data.clone()
        return model

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, SeqRegCosineHead):
            init.ones_(module.scale)
            init.zeros_(module.shift)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.RNNBase):
            for name, param in module.named_parameters():
                if name.startswith("weight_ih"):
                    init.xavier_uniform_(param)
                elif name.startswith("weight_hh"):
                    init.orthogonal_(param)
                elif name.startswith("bias"):
                    init.zeros_(param)
            if isinstance(module, nn.LSTM):
                # A forget-gate bias of 1 lets early training carry state across long sentences.
                hidden = module.hidden_size
                for name, param in module.named_parameters():
                    if name.startswith("bias_ih") and not getattr(param, "_is_hf_initialized", False):
                        param[hidden : 2 * hidden].fill_(1.0)


class SeqRegModel(SeqRegPreTrainedModel):
    """The encoder: embeddings -> recurrent network -> pooled sentence vector."""

    # The members' heads live in the ensemble, but the bare model never runs them: a checkpoint of a bare model
    # from before they moved there (seqreg_hf 0.1) has none, and that is not worth a warning.
    _keys_to_ignore_on_load_missing = [r"ensemble\.members\.\d+\.head\."]

    def __init__(self, config):
        super().__init__(config)
        self.embeddings = SeqRegEmbeddings(config)
        self.ensemble = SeqRegEnsemble(config)  # the members' heads live here too; the bare model does not run them
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.input_embeddings()

    def set_input_embeddings(self, value):
        if self.embeddings.contextual is not None:
            self.embeddings.contextual.set_input_embeddings(value)
        else:
            self.embeddings.word_embeddings = value

    def forward(self, input_ids=None, attention_mask=None, token_features=None, token_type_ids=None, return_dict=None,
                contextual_states=None, pair_input_ids=None, pair_attention_mask=None, pair_contextual_states=None,
                pair_token_type_ids=None):
        """`contextual_states` (batch, stored layers, seq_len, hidden): a contextual model's transformer states computed
        ahead (seqreg_hf.contextual_cache), read instead of running the transformer. token_type_ids is accepted (BERT-style
        tokenizers emit it) and ignored: a recurrent encoder has no segments.

        A siamese pair model (`config.pair_encoding` "siamese" or "cosine") also takes the second texts,
        `pair_input_ids` / `pair_attention_mask` (and `pair_contextual_states`), right-padded on their own; both
        sides run through the encoder as one batch, each row exactly as alone, and `pair_pooler_output` holds the
        second texts' sentence vectors."""
        config = self.config
        self._check_pair_inputs(pair_input_ids, pair_attention_mask, pair_contextual_states)
        lengths, mask = self._validate(input_ids, attention_mask, token_features)
        batch, seq_len = input_ids.shape
        ids, states = input_ids, contextual_states
        if config.siamese:  # one batch of 2 * batch rows: the texts, then the second texts, padded to one length
            pair_lengths, pair_mask = self._validate(pair_input_ids, pair_attention_mask, None, "pair_")
            if pair_input_ids.size(0) != batch:
                raise ValueError(f"pair_input_ids has {pair_input_ids.size(0)} rows and input_ids {batch}: one "
                                 "second text per text.")
            if (contextual_states is None) != (pair_contextual_states is None):
                raise ValueError("give contextual_states for both texts of the pairs (contextual_states and "
                                 "pair_contextual_states), or for neither.")
            width = max(seq_len, pair_input_ids.size(1))
            ids = torch.cat([_pad_to(input_ids, width, config.pad_token_id),
                             _pad_to(pair_input_ids.to(input_ids.dtype), width, config.pad_token_id)])
            mask = torch.cat([_pad_to(mask, width, False), _pad_to(pair_mask, width, False)])
            lengths = torch.cat([lengths, pair_lengths])
            if contextual_states is not None:
                states = torch.cat([_pad_to(contextual_states, width, 0.0, dim=2),
                                    _pad_to(pair_contextual_states.to(contextual_states.dtype), width, 0.0, dim=2)])
        words = self.embeddings.lookup(ids, token_features, mask.long(), states)  # (B, T, dim [+ f])
        output, pooled, h_n, c_n = self.ensemble.encode(self.embeddings, words, ids, lengths, mask)
        pair_pooled = None
        if config.siamese:
            output, pooled, pair_pooled = output[:batch, :seq_len], pooled[:batch], pooled[batch:]
            h_n = h_n[:, :batch]
            c_n = None if c_n is None else c_n[:, :batch]
        result = SeqRegModelOutput(last_hidden_state=output, pooler_output=pooled, h_n=h_n, c_n=c_n,
                                   pair_pooler_output=pair_pooled)
        return_dict = return_dict if return_dict is not None else config.return_dict
        return result if return_dict else result.to_tuple()

    def _check_pair_inputs(self, pair_input_ids, pair_attention_mask, pair_contextual_states):
        config = self.config
        given = pair_input_ids is not None or pair_attention_mask is not None or pair_contextual_states is not None
        if config.siamese and pair_input_ids is None:
            raise ValueError(f"this model scores pairs of texts (pair_encoding={config.pair_encoding!r}): give the "
                             "second texts as pair_input_ids and pair_attention_mask (tokenize them on their own, "
                             "e.g. tokenizer(texts_pair, padding=True)).")
        if given and not config.siamese:
            if config.pair_encoding == "cross":
                raise ValueError("this model reads a pair as one sequence (pair_encoding='cross'): tokenize "
                                 "tokenizer(texts, texts_pair) and give input_ids only, no pair_input_ids.")
            raise ValueError("this model scores one text per row: pair_input_ids is only for pair models "
                             "(pair_encoding='siamese' or 'cosine').")

    def _validate(self, input_ids, attention_mask, token_features, prefix=""):
        config = self.config
        if input_ids is None:
            raise ValueError(f"{prefix}input_ids is required.")
        if input_ids.dim() != 2 or input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"{prefix}input_ids must be integer token ids of shape (batch, seq_len), got "
                             f"{input_ids.dtype} {tuple(input_ids.shape)}.")
        check_token_ids(input_ids, config.vocab_size)
        if attention_mask is None:
            attention_mask = (input_ids != config.pad_token_id).long()
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"{prefix}attention_mask shape {tuple(attention_mask.shape)} differs from {prefix}input_ids "
                             f"shape {tuple(input_ids.shape)}.")
        lengths = check_prefix_mask(attention_mask)
        if config.num_token_features:
            expected = (*input_ids.shape, config.num_token_features)
            if token_features is None or tuple(token_features.shape) != expected:
                got = None if token_features is None else tuple(token_features.shape)
                raise ValueError(f"token_features must have shape (batch, seq_len, num_token_features) = {expected}, "
                                 f"got {got}.")
            if not torch.isfinite(token_features).all():
                raise ValueError("token_features contains NaN or infinite values.")
        elif token_features is not None:
            raise ValueError("token_features were given but config.num_token_features is 0.")
        return lengths, attention_mask.bool()


# The pipeline a checkpoint carries (config.json's custom_pipelines; transformers resolves "impl" in the checkpoint's
# own pipelines.py, and "pt" among its Auto classes).
PIPELINE_TASKS = {"text-regression": {"impl": "pipelines.TextRegressionPipeline",
                                      "pt": ["AutoModelForSequenceClassification"], "tf": [], "type": "text"}}
CARRIED_FILES = ("pipelines.py", "handler.py")  # copied beside every save, from the package (or the remote code)


class SeqRegForSequenceRegression(SeqRegPreTrainedModel):
    """The encoder plus a regression head; `logits` are in the labels' own units."""

    def __init__(self, config):
        super().__init__(config)
        self.seqreg = SeqRegModel(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.seqreg.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.seqreg.set_input_embeddings(value)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """save_pretrained, plus the "text-regression" pipeline: its code (pipelines.py) and `custom_pipelines` in
        config.json, so that `pipeline("text-regression", model=DIR, trust_remote_code=True)` works where seqreg_hf
        is not installed; and handler.py, the folder's Inference Endpoints handler."""
        here = os.path.dirname(os.path.abspath(__file__))
        if os.path.isfile(os.path.join(here, "pipelines.py")):
            self.config.custom_pipelines = PIPELINE_TASKS
        result = super().save_pretrained(save_directory, *args, **kwargs)  # (the float16 matrix, if asked)
        for name in CARRIED_FILES if kwargs.get("is_main_process", True) else ():
            source, target = os.path.join(here, name), os.path.join(save_directory, name)
            if os.path.isfile(source) and not (os.path.exists(target) and os.path.samefile(source, target)):
                shutil.copyfile(source, target)
        return result

    def forward(self, input_ids=None, attention_mask=None, token_features=None, labels=None, token_type_ids=None,
                return_dict=None, contextual_states=None, pair_input_ids=None, pair_attention_mask=None,
                pair_contextual_states=None, pair_token_type_ids=None):
        """A siamese pair model (`config.pair_encoding` "siamese" or "cosine") also takes the second texts as
        `pair_input_ids` / `pair_attention_mask` (and `pair_contextual_states`); see `SeqRegModel.forward`."""
        encoded = self.seqreg(input_ids, attention_mask=attention_mask, token_features=token_features, return_dict=True,
                              contextual_states=contextual_states, pair_input_ids=pair_input_ids,
                              pair_attention_mask=pair_attention_mask, pair_contextual_states=pair_contextual_states)
        ensemble = self.seqreg.ensemble
        members = ensemble.predict(encoded.pooler_output, encoded.pair_pooler_output)  # (K, batch, labels), standardized
        logits, _ = self.to_label_units(members)
        loss = None
        if labels is not None:
            # The loss is taken in the standardized units the heads learn in: targets of every scale weigh alike.
            labels = self._check_labels(labels, members.size(1)).to(members.dtype)
            mean, std = self._label_stats(members)
            targets = (labels - mean) / std
            loss = ensemble.loss(members, targets, self._loss)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return (logits,) if loss is None else (loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def member_predictions(self, input_ids=None, attention_mask=None, token_features=None, pair_input_ids=None,
                           pair_attention_mask=None):
        """(ensemble_size, batch, num_labels): each member's scores in the labels' own units. Their mean is
        `logits`; their spread (`std(dim=0)`) is the ensemble's disagreement, a per-text uncertainty."""
        encoded = self.seqreg(input_ids, attention_mask=attention_mask, token_features=token_features, return_dict=True,
                              pair_input_ids=pair_input_ids, pair_attention_mask=pair_attention_mask)
        _, members = self.to_label_units(self.seqreg.ensemble.predict(encoded.pooler_output,
                                                                      encoded.pair_pooler_output))
        return members

    def to_label_units(self, member_predictions):
        """(scores (batch, num_labels), member scores (ensemble_size, batch, num_labels)) in the labels' own units,
        from the heads' `member_predictions` (ensemble_size, batch, num_labels) in the standardized units they learn
        in (`config.label_means` / `label_stds`). The one place those statistics are undone: forward,
        member_predictions and the ONNX graph all end here. Scores are the members' mean taken before the statistics
        are undone, as forward has always taken it: so runs reproduce their figures to the last bit (an ensemble's
        scores differ from `member_scores.mean(0)` by rounding only)."""
        mean, std = self._label_stats(member_predictions)
        scores = self.seqreg.ensemble.combine(member_predictions) * std + mean
        return scores, member_predictions * std + mean

    def _label_stats(self, like):
        config = self.config
        if config.label_means is None:
            return 0.0, 1.0
        mean = torch.tensor(config.label_means, dtype=like.dtype, device=like.device)
        std = torch.tensor(config.label_stds, dtype=like.dtype, device=like.device)
        return mean, std

    def _check_labels(self, labels, batch):
        config = self.config
        labels = torch.as_tensor(labels)
        if labels.dim() == 1 and config.num_labels == 1:
            labels = labels.unsqueeze(-1)
        if labels.dim() != 2 or labels.shape != (batch, config.num_labels):
            raise ValueError(
                f"labels have shape {tuple(labels.shape)}, expected ({batch}, {config.num_labels}): one column per "
                f"target {config.label_names}. Pass that many label columns, or build the model with num_labels="
                f"{labels.shape[-1] if labels.dim() else 1}."
            )
        if not labels.is_floating_point():
            labels = labels.float()
        if not torch.isfinite(labels).all():
            rows = torch.nonzero(~torch.isfinite(labels).all(dim=1)).flatten().tolist()
            raise ValueError(f"labels contain NaN or infinite values (batch rows {rows[:10]}). Drop or fix those rows.")
        return labels

    def _loss(self, predictions, targets):
        if self.config.loss == "l1":
            return F.l1_loss(predictions, targets)
        if self.config.loss == "huber":
            return F.huber_loss(predictions, targets, delta=self.config.huber_delta)
        if self.config.loss == "ccc" and predictions.size(0) > 1:
            return (1.0 - concordance_correlation(predictions, targets)).mean()
        return F.mse_loss(predictions, targets)


__all__ = ["SeqRegModel", "SeqRegForSequenceRegression", "SeqRegPreTrainedModel", "SeqRegModelOutput"]
