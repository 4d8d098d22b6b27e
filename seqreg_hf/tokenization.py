"""Tokenizers that split text the way word vectors were made, built with the `tokenizers` library.

GloVe and word2vec were trained on text tokenized Penn-Treebank style: punctuation is its own token,
contractions split as "do n't" / "it 's", while hyphenated words ("e-mail"), inner apostrophes
("o'clock") and numbers ("3.5", "1,000") stay whole. Uncased vectors get a lowercasing normalizer,
cased ones keep the text as it is.
"""

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

PAD_TOKEN, UNK_TOKEN = "[PAD]", "[UNK]"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN)  # rows 0 and 1 of every vector-file model

# Contractions first, then any punctuation mark that is not inside a number or between two word characters.
_SPLIT = r"(?i:n't)\b|'(?i:s|re|ve|ll|d|m)\b|(?!(?<=\d)[.,:](?=\d)|(?<=\w)[-'](?=\w))[^\w\s]"


def pad_right(tokenizer):
    """Set the padding contract of every seqreg model on `tokenizer`: right padding (real tokens, then pads)."""
    tokenizer.padding_side = "right"
    return tokenizer


# What transformers 5 adds to a tokenizer's init_kwargs when it loads one (where from, whether offline), which its
# save_pretrained would then write into tokenizer_config.json as if they were options of the tokenizer.
LOAD_TIME_KEYS = ("is_local", "local_files_only")


def drop_load_time_keys(tokenizer):
    """Forget how `tokenizer` was loaded, so that a folder it is saved into holds what it is, not where it was read."""
    for key in LOAD_TIME_KEYS:
        tokenizer.init_kwargs.pop(key, None)
    return tokenizer


def word_normalizer(lowercase):
    steps = [normalizers.NFC(), normalizers.Replace("\u2019", "'"), normalizers.Replace("\u2018", "'"),
             normalizers.Replace("\u201c", '"'), normalizers.Replace("\u201d", '"')]
    if lowercase:
        steps.append(normalizers.Lowercase())
    return normalizers.Sequence(steps)


# Tokens kept per text by a new model's tokenizer (saved with it, so predict truncates alike): a sentence-regression
# text is a sentence or a short paragraph, and the RNN's cost grows with the longest row of a batch.
MAX_LENGTH = 128


def truncation_length(tokenizer):
    """The tokens per text predict keeps: the tokenizer's saved model_max_length (a tokenizer without a limit stores
    a huge sentinel, capped here), MAX_LENGTH where it has none."""
    return min(getattr(tokenizer, "model_max_length", MAX_LENGTH), 100_000)


def word_pre_tokenizer():
    return pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                    pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated")])


def build_word_tokenizer(words, lowercase, model_max_length=MAX_LENGTH):
    """A WordLevel tokenizer over [PAD], [UNK] and `words` (ids 0, 1, 2, ...), wrapped for transformers.

    `words` must not repeat and must not contain the special tokens.
    """
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in words:
        if word in vocab:
            raise ValueError(f"the word {word!r} appears twice or clashes with a special token.")
        vocab[word] = len(vocab)
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=UNK_TOKEN))
    tokenizer.normalizer = word_normalizer(lowercase)
    tokenizer.pre_tokenizer = word_pre_tokenizer()
    return pad_right(PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD_TOKEN, unk_token=UNK_TOKEN, truncation_side="right",
        model_max_length=model_max_length, model_input_names=["input_ids", "attention_mask"],
    ))


def pre_tokenize(tokenizer, text):
    """The words a tokenizer's normalizer and pre-tokenizer make of `text` (before the vocabulary lookup)."""
    backend = tokenizer.backend_tokenizer
    if backend.normalizer is not None:
        text = backend.normalizer.normalize_str(text)
    if backend.pre_tokenizer is None:
        return text.split()
    return [piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(text)]


def check_cross_tokenizer(tokenizer):
    """Raise unless `tokenizer` can join a pair into one sequence (pair_encoding "cross"): it needs a separator token
    that its pair template puts between the two texts (a transformer's tokenizer has one; a word-vector tokenizer
    does not)."""
    sep = getattr(tokenizer, "sep_token_id", None)
    if sep is None or sep not in tokenizer("a", "b")["input_ids"]:
        raise ValueError("pair_encoding='cross' joins the two texts with the tokenizer's separator token, and this "
                         "tokenizer has none (a word-vector tokenizer?); use pair_encoding='siamese' (or 'cosine'), "
                         "which reads each text on its own.")


def encode_texts(tokenizer, texts, texts_pair=None, pair_encoding=None, max_length=None, **kwargs):
    """The model inputs of `texts` (and of their second texts `texts_pair`, for a pair model), truncated to
    `max_length` tokens per text (the tokenizer's own limit by default); `kwargs` go to the tokenizer (padding,
    return_tensors). The one place the three pair encodings are spelled out:

    - no pair (`pair_encoding` None): input_ids / attention_mask of `texts`;
    - "siamese", "cosine": each side on its own, the second as pair_input_ids / pair_attention_mask;
    - "cross": one sequence per pair, `tokenizer(text, text_pair)` (the separator between), both sides truncated
      alike down to max_length ("longest_first").
    """
    if (texts_pair is None) != (pair_encoding is None):
        raise ValueError("a pair model needs the second texts, and a single-text model takes none."
                         if texts_pair is None else "second texts were given to a model that reads one text per row.")
    max_length = truncation_length(tokenizer) if max_length is None else max_length
    options = {"truncation": True, "max_length": max_length, "return_token_type_ids": False, **kwargs}
    if pair_encoding == "cross":
        check_cross_tokenizer(tokenizer)
        return dict(tokenizer(list(texts), list(texts_pair), **options))
    encoded = dict(tokenizer(list(texts), **options))
    if pair_encoding is not None:
        second = tokenizer(list(texts_pair), **options)
        encoded["pair_input_ids"], encoded["pair_attention_mask"] = second["input_ids"], second["attention_mask"]
    return encoded
