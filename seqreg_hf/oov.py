"""Out-of-vocabulary rates of a text collection under a model directory's tokenizer (`seqreg-hf oov`)."""

from collections import Counter

from .tokenization import pre_tokenize


def oov_report(tokenizer, texts, top=20):
    """Token and type OOV rates, and the most frequent OOV words.

    A word is out of vocabulary when the tokenizer maps it (or any of its pieces) to the unknown token.
    """
    unk = tokenizer.unk_token_id
    counts = Counter(word for text in texts for word in pre_tokenize(tokenizer, text))
    oov = Counter()
    for word, n in counts.items():
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if unk is not None and unk in ids:
            oov[word] = n
    tokens, types = sum(counts.values()), len(counts)
    return {
        "texts": len(texts),
        "tokens": tokens,
        "types": types,
        "oov_tokens": sum(oov.values()),
        "oov_types": len(oov),
        "token_oov_rate": sum(oov.values()) / max(tokens, 1),
        "type_oov_rate": len(oov) / max(types, 1),
        "most_frequent_oov": oov.most_common(top),
    }


def format_report(report):
    lines = [
        f"texts: {report['texts']}",
        f"tokens: {report['tokens']}, out of vocabulary: {report['oov_tokens']} ({report['token_oov_rate']:.2%})",
        f"types:  {report['types']}, out of vocabulary: {report['oov_types']} ({report['type_oov_rate']:.2%})",
        "most frequent OOV words: " + ", ".join(f"{w} ({n})" for w, n in report["most_frequent_oov"]),
    ]
    return "\n".join(lines)
