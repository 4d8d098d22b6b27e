"""Configuration of the seqreg recurrent sentence regressor.

This file imports only transformers, so that ``save_pretrained`` can copy it next
to a checkpoint and plain transformers can load it with ``trust_remote_code=True``.
"""

import math

from transformers import PretrainedConfig

RNN_TYPES = ("lstm", "gru", "rnn")
DIRECTION_MERGES = ("concat", "sum", "mean")
POOLINGS = ("last", "mean", "max", "mean_max", "attention")
LOSSES = ("mse", "l1", "huber", "ccc")
ACTIVATIONS = ("relu", "gelu", "tanh")
NONLINEARITIES = ("tanh", "relu")
EMBEDDING_NORMS = ("none", "layer_norm")
EMBEDDING_DTYPES = ("float32", "float16")
EMBEDDING_TYPES = ("static", "contextual")
LAYER_MIXES = ("mean", "scalar")
INPUT_POOLINGS = ("none", "mean")
# How a model reads a pair of texts (None: one text per row). "siamese" and "cosine" run one shared encoder over each
# text and compare the two sentence vectors symmetrically; "cross" reads one sequence, text [SEP] text_pair.
PAIR_ENCODINGS = ("siamese", "cosine", "cross")
# Every option with a fixed set of values; the command line turns each into a typed choice.
CHOICES = {
    "rnn_type": RNN_TYPES,
    "rnn_nonlinearity": NONLINEARITIES,
    "direction_merge": DIRECTION_MERGES,
    "pooling": POOLINGS,
    "loss": LOSSES,
    "head_activation": ACTIVATIONS,
    "embedding_norm": EMBEDDING_NORMS,
    "embeddings_dtype": EMBEDDING_DTYPES,
    "embedding_type": EMBEDDING_TYPES,
    "layer_mix": LAYER_MIXES,
    "pair_encoding": PAIR_ENCODINGS,
    "input_pooling": INPUT_POOLINGS,
}

# Options that only change how a trained model learns from here on (a run that continues a checkpoint may set them);
# every other option fixes the shape or meaning of its weights.
TRAINING_TIME_OPTIONS = ("embedding_dropout", "word_dropout", "rnn_dropout", "head_dropout", "loss", "huber_delta",
                         "freeze_embeddings", "embeddings_dtype")

# What a stored config.json from before an option existed meant by leaving it out (seqreg_hf 0.1's first checkpoints
# have none of these): one network, no word dropout, the layers' mean. Every other option has been written since the
# first release, and a missing one takes its default.
ABSENT_FROM_A_STORED_CONFIG = {"ensemble_size": 1, "word_dropout": 0.0, "layer_mix": "mean"}

# The auto classes a checkpoint maps to; ``save_pretrained`` writes this into config.json
# so that AutoConfig / AutoModel / AutoModelForSequenceClassification all resolve with
# ``trust_remote_code=True`` from any checkpoint of the family.
AUTO_MAP = {
    "AutoConfig": "configuration_seqreg.SeqRegConfig",
    "AutoModel": "modeling_seqreg.SeqRegModel",
    "AutoModelForSequenceClassification": "modeling_seqreg.SeqRegForSequenceRegression",
}


def _choice(name, value):
    allowed = CHOICES[name]
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(map(repr, allowed))}.")
    return value


def _probability(name, value):
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name}={value!r} must be a probability in [0, 1).")
    return float(value)


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}.")
    return value


def _stats(name, values, num_labels, positive):
    if values is None:
        return None
    values = [float(v) for v in values]
    if len(values) != num_labels:
        raise ValueError(f"{name} has {len(values)} values but num_labels={num_labels}; give one value per target.")
    for v in values:
        if not math.isfinite(v) or (positive and v <= 0):
            kind = "finite and > 0" if positive else "finite"
            raise ValueError(f"{name}={values} must all be {kind}.")
    return values


class SeqRegConfig(PretrainedConfig):
    r"""
    Configuration of a recurrent sentence regressor over frozen pretrained word embeddings.

    The defaults are the recommended model, the one that won `seqreg-hf search` on EmoBank's dev split (and kept its
    lead over seeds 42-44): an ensemble of two members, each a two-layer bidirectional LSTM-128 read by attention
    pooling, over a learned (scalar) mix of all the frozen hidden states of a transformer (the packaged MiniLM-L6
    when built by `seqreg-hf train` / `init`), with dropout on the words, their vectors, between the layers and on
    the sentence vector; see the README's Search and EmoBank sections. Over a static table (`embedding_type="static"`)
    the EmoBank recipe is `scripts/configs/emobank_static.json` (three BiGRU-256 members). The textbook model,
    one bidirectional LSTM read at its final states, is
    `SeqRegConfig(num_layers=1, pooling="last", ensemble_size=1)`.

    Args:
        vocab_size (`int`, defaults to 30522): rows of the embedding matrix.
        embedding_dim (`int`, defaults to 384): width of one word vector.
        pad_token_id (`int`, defaults to 0): the padding row; it is all zeros.
        freeze_embeddings (`bool`, defaults to `True`): keep the pretrained vectors fixed. Frozen
            embeddings get no gradient, are not counted as trainable and stay out of the optimizer.
        embedding_norm (`str`, defaults to `"none"`): `"layer_norm"` puts a trainable LayerNorm on the word vectors
            before the RNN. Pretrained vectors are often small (MiniLM's have a per-dimension std near 0.06), so
            at initialization they barely move the gates; normalizing restores their weight. The vectors stay frozen.
        embedding_type (`str`, *optional*): `"static"` reads one vector per token from a frozen matrix;
            `"contextual"` reads a frozen transformer's hidden states (its config nested as `contextual_config`,
            its weights in the checkpoint), computed under no_grad and never trained. Default: the embeddings
            decide, contextual for a transformer (the packaged MiniLM-L6 included), static for a vector file or
            model2vec; a config on its own is contextual when it has a `contextual_config`, static otherwise.
        embedding_layers (`list[int]`, *optional*): with `"contextual"`, the hidden states to combine: 0 is the
            transformer's embedding output, 1..N its layers, negative counts from the last (default: all).
        layer_mix (`str`, defaults to `"scalar"`): with `"contextual"`, how the chosen layers are combined: their
            `"mean"`, or `"scalar"` (ELMo's softmax-weighted sum with a trainable scale, the only trainable
            parameters on the embedding side).
        embeddings_dtype (`str`, defaults to `"float32"`): how the frozen matrix is stored on disk. `"float16"`
            halves it (MiniLM's: 47 MB to 23 MB); it is read back as float32 unless the model is loaded with another
            dtype, so only the stored values are rounded.
        num_token_features (`int`, defaults to 0): extra numeric features per token, given to
            `forward` as `token_features` (batch, seq_len, num_token_features) and concatenated to
            the word vectors.
        rnn_type (`str`, defaults to `"lstm"`): one of `"lstm"`, `"gru"`, `"rnn"`.
        rnn_nonlinearity (`str`, defaults to `"tanh"`): `"tanh"` or `"relu"`, only for `rnn_type="rnn"`.
        hidden_size (`int`, defaults to 128): state size of one direction of one layer.
        num_layers (`int`, defaults to 2): stacked recurrent layers.
        bidirectional (`bool`, defaults to `True`): add a backward direction.
        direction_merge (`str`, defaults to `"concat"`): how the forward and backward vectors are
            combined, for the per-token outputs and for the final states alike. `"concat"` gives
            2 * hidden_size features, `"sum"` and `"mean"` give hidden_size.
        pooling (`str`, defaults to `"attention"`): how a sentence vector is made from the merged outputs.
            `"last"` is the final state of every direction: the forward state after the last real
            token and the backward state after reading back to the first token (never a state at
            padding). `"mean"` / `"max"` pool over real tokens only, `"mean_max"` concatenates both,
            `"attention"` is a learned softmax over real tokens.
        input_pooling (`str`, defaults to `"none"`): `"mean"` adds the mean of the recurrent network's input vectors
            over real tokens (after their dropout) to the sentence vector, after the pooled outputs: a path around
            the RNN. Over a sentence encoder's frozen states (MiniLM-L6's last layer) that mean is the encoder's own
            sentence embedding, which a newly initialized RNN would otherwise have to relearn.
        embedding_dropout (`float`, defaults to 0.47): dropout on the word vectors.
        word_dropout (`float`, defaults to 0.22): in training, the probability that a whole token's input vector is
            zeroed (the token is "forgotten"), so the model cannot lean on a few words. Applied after
            `embedding_dropout`; no effect in eval mode.
        rnn_dropout (`float`, defaults to 0.3): dropout between stacked layers (needs num_layers > 1).
        head_dropout (`float`, defaults to 0.05): dropout on the sentence vector before the head.
        head_hidden_sizes (`list[int]`, defaults to `[]`): hidden layers of an optional MLP head;
            empty means one linear layer. No activation follows the last layer, so any real value,
            negative included, can be predicted.
        head_activation (`str`, defaults to `"relu"`): activation between MLP head layers.
        loss (`str`, defaults to `"mse"`): `"mse"`, `"l1"`, `"huber"` or `"ccc"`. `"ccc"` is 1 minus Lin's
            concordance correlation coefficient of the batch, averaged over targets: it rewards correlation (what
            Pearson r measures) while still penalizing a shifted or rescaled prediction. It needs batches of at
            least 2 rows; a batch of one row falls back to MSE.
        huber_delta (`float`, defaults to 1.0): the Huber threshold, in standardized units.
        ensemble_size (`int`, defaults to 2): independent members (each its own recurrent encoder, pooler and
            head, with its own initialization and dropout masks) over the one shared embedding matrix. `logits` are
            the mean of the members' predictions; the loss is the mean of the members' own losses, so each member
            learns as a separate model would (no co-adaptation) and averaging cancels part of their errors.
            Compute and trainable parameters grow K-fold. The bare `SeqRegModel` concatenates the members'
            vectors along the feature axis, in member order.
        label_means, label_stds (`list[float]`, *optional*): per-target statistics of the training
            labels. When set, the loss is computed on standardized targets and `logits` come back in
            the labels' own units.
        num_labels / id2label: how many targets and their names (EmoBank: `V`, `A`, `D`).
        pair_encoding (`str`, *optional*): how a pair of texts (STS-B's `sentence1`, `sentence2`) is read; `None`
            (the default) reads one text per row. `"siamese"`: one encoder (the same weights) reads each text into a
            sentence vector, u and v, and the head reads `[u + v, |u - v|, u * v]`, so the score of (a, b) is
            exactly the score of (b, a). `"cosine"`: the same two vectors, scored `scale * cos(u, v) + shift` (one
            scale and shift per target, trained). `"cross"`: one sequence, the text, the tokenizer's separator, then
            the second text (`tokenizer(text, text_pair)`), read by the encoder as one text: the encoder sees both
            texts at once, but the score is not symmetric. A siamese model takes the second text as
            `pair_input_ids` / `pair_attention_mask`; a cross model takes nothing new.
        problem_type: always `"regression"`; anything else is refused.
        embeddings_source (`str`, *optional*): where the vectors came from (file, directory or Hub id).

    Example:

    ```python
    >>> config = SeqRegConfig(vocab_size=1000, embedding_dim=50, rnn_type="gru", num_labels=3)
    >>> model = SeqRegForSequenceRegression(config)
    ```
    """

    model_type = "seqreg"

    def __init__(
        self,
        vocab_size=30522,
        embedding_dim=384,
        pad_token_id=0,
        freeze_embeddings=True,
        embedding_norm="none",
        embeddings_dtype="float32",
        embedding_type=None,
        contextual_config=None,
        embedding_layers=None,
        layer_mix="scalar",
        num_token_features=0,
        rnn_type="lstm",
        rnn_nonlinearity="tanh",
        hidden_size=128,
        num_layers=2,
        bidirectional=True,
        direction_merge="concat",
        pooling="attention",
        input_pooling="none",
        embedding_dropout=0.47,
        word_dropout=0.22,
        rnn_dropout=0.3,
        head_dropout=0.05,
        head_hidden_sizes=None,
        head_activation="relu",
        loss="mse",
        huber_delta=1.0,
        ensemble_size=2,
        label_means=None,
        label_stds=None,
        initializer_range=0.02,
        embeddings_source=None,
        pair_encoding=None,
        **kwargs,
    ):
        problem_type = kwargs.pop("problem_type", None) or "regression"
        if problem_type != "regression":
            raise ValueError(
                f"problem_type={problem_type!r} is not supported: seqreg models are regressors, problem_type is "
                "always 'regression' (float labels with num_labels > 1 are several targets, not multi-label classes)."
            )
        if "id2label" not in kwargs and "num_labels" not in kwargs:
            kwargs["num_labels"] = 1
        kwargs.setdefault("auto_map", dict(AUTO_MAP))
        super().__init__(problem_type="regression", **kwargs)
        if not self.label2id:
            self.label2id = {name: i for i, name in self.id2label.items()}

        self.vocab_size = _positive_int("vocab_size", vocab_size)
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        if isinstance(pad_token_id, bool) or not isinstance(pad_token_id, int) or not 0 <= pad_token_id < vocab_size:
            raise ValueError(f"pad_token_id={pad_token_id!r} must be a row of the embedding matrix (0..{vocab_size - 1}).")
        self.pad_token_id = pad_token_id
        self.freeze_embeddings = bool(freeze_embeddings)
        self.embedding_norm = _choice("embedding_norm", embedding_norm)
        self.embeddings_dtype = _choice("embeddings_dtype", embeddings_dtype)
        if self.embeddings_dtype == "float16" and not self.freeze_embeddings:
            raise ValueError("embeddings_dtype='float16' rounds the stored matrix, which suits frozen vectors only; "
                             "with freeze_embeddings=False every save would round the trained vectors. Keep "
                             "'float32', or freeze the embeddings.")
        if embedding_type is None:  # a builder decides from the embeddings; a bare config from what it holds
            embedding_type = "contextual" if contextual_config is not None else "static"
        self.embedding_type = _choice("embedding_type", embedding_type)
        self.layer_mix = _choice("layer_mix", layer_mix)
        self.contextual_config = dict(contextual_config) if contextual_config is not None else None
        self.embedding_layers = [int(i) for i in embedding_layers or []] or None  # None (or []): every state
        if self.embedding_type == "contextual":
            if not self.contextual_config or "model_type" not in self.contextual_config:
                raise ValueError("embedding_type='contextual' needs contextual_config: the frozen transformer's config "
                                 "as a dict with its model_type (seqreg_hf.init_model_dir fills it in).")
            if not self.freeze_embeddings:
                raise ValueError("embedding_type='contextual' keeps the transformer frozen; freeze_embeddings=False "
                                 "is not supported with it.")
            states = self.contextual_config.get("num_hidden_layers", 0) + 1
            bad = [i for i in self.embedding_layers or [] if not -states <= i < states]
            if bad:
                raise ValueError(f"embedding_layers={self.embedding_layers!r}: the transformer has {states} hidden "
                                 f"states, 0..{states - 1} (or -{states}..-1).")
        self.num_token_features = _positive_int("num_token_features", num_token_features, minimum=0)
        self.rnn_type = _choice("rnn_type", rnn_type)
        self.rnn_nonlinearity = _choice("rnn_nonlinearity", rnn_nonlinearity)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.num_layers = _positive_int("num_layers", num_layers)
        self.bidirectional = bool(bidirectional)
        self.direction_merge = _choice("direction_merge", direction_merge)
        self.pooling = _choice("pooling", pooling)
        self.input_pooling = _choice("input_pooling", input_pooling)
        self.embedding_dropout = _probability("embedding_dropout", embedding_dropout)
        self.word_dropout = _probability("word_dropout", word_dropout)
        self.rnn_dropout = _probability("rnn_dropout", rnn_dropout)
        self.head_dropout = _probability("head_dropout", head_dropout)
        self.head_hidden_sizes = [_positive_int("head_hidden_sizes[]", h) for h in (head_hidden_sizes or [])]
        self.head_activation = _choice("head_activation", head_activation)
        self.loss = _choice("loss", loss)
        if not isinstance(huber_delta, (int, float)) or not huber_delta > 0:
            raise ValueError(f"huber_delta={huber_delta!r} must be > 0.")
        self.huber_delta = float(huber_delta)
        self.ensemble_size = _positive_int("ensemble_size", ensemble_size)
        self.label_means = _stats("label_means", label_means, self.num_labels, positive=False)
        self.label_stds = _stats("label_stds", label_stds, self.num_labels, positive=True)
        if (self.label_means is None) != (self.label_stds is None):
            raise ValueError("label_means and label_stds go together: set both or neither.")
        self.initializer_range = float(initializer_range)
        self.embeddings_source = embeddings_source
        self.pair_encoding = None if pair_encoding is None else _choice("pair_encoding", pair_encoding)
        if self.pair_encoding in ("siamese", "cosine") and self.num_token_features:
            raise ValueError(f"pair_encoding={self.pair_encoding!r} reads texts only; num_token_features must be 0 "
                             "(or use pair_encoding='cross', one sequence per pair).")
        if self.pair_encoding == "cosine" and self.head_hidden_sizes:
            raise ValueError("pair_encoding='cosine' scores scale * cos(u, v) + shift and has no MLP; drop "
                             "head_hidden_sizes, or use pair_encoding='siamese'.")

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        # A stored config.json (it has transformers_version) that lacks an option was written before the option
        # existed, and meant the behaviour before it; today's defaults are for new models.
        if "transformers_version" in config_dict:
            config_dict = {**ABSENT_FROM_A_STORED_CONFIG, **config_dict}
        return super().from_dict(config_dict, **kwargs)

    def to_diff_dict(self):
        # transformers drops id2label when it equals its own 2-label default; always keep the target names,
        # or a 2-target checkpoint would reload with this class's default of 1 target.
        output = super().to_diff_dict()
        output["id2label"] = {str(i): name for i, name in self.id2label.items()}
        output["label2id"] = dict(self.label2id)
        return output

    def set_label_stats(self, means, stds):
        """Store per-target label statistics (computed on the train split only)."""
        self.label_means = _stats("label_means", means, self.num_labels, positive=False)
        self.label_stds = _stats("label_stds", stds, self.num_labels, positive=True)

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def rnn_output_size(self):
        """Width of one merged per-token output (and of one merged final state)."""
        if self.bidirectional and self.direction_merge == "concat":
            return 2 * self.hidden_size
        return self.hidden_size

    @property
    def pooled_size(self):
        """Width of the sentence vector that the head reads."""
        width = 2 * self.rnn_output_size if self.pooling == "mean_max" else self.rnn_output_size
        if self.input_pooling == "mean":
            width += self.embedding_dim + self.num_token_features
        return width

    @property
    def reads_pairs(self):
        """Whether a row is a pair of texts (any `pair_encoding`)."""
        return self.pair_encoding is not None

    @property
    def siamese(self):
        """Whether the two texts of a pair are encoded apart (`pair_input_ids`): "siamese" and "cosine"."""
        return self.pair_encoding in ("siamese", "cosine")

    @property
    def head_input_size(self):
        """Width of what one member's head reads: the sentence vector, or a siamese pair's [u + v, |u - v|, u * v]."""
        return 3 * self.pooled_size if self.pair_encoding == "siamese" else self.pooled_size

    @property
    def label_names(self):
        return [self.id2label[i] for i in range(self.num_labels)]


__all__ = ["SeqRegConfig"]
