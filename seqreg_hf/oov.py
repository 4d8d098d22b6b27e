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


def main(argv=None):
    """`seqreg-hf oov`: the report of a file's texts under a model's (or embeddings') tokenizer."""
    import json
    import sys

    from .arguments import parse_command
    from .data import read_texts
    from .embeddings import load_embeddings
    from .logs import configure
    from .model_dir import load_tokenizer

    args, run = parse_command("oov", sys.argv[1:] if argv is None else argv)
    configure(run.log_level, run.disable_tqdm)
    if args.model_name_or_path and args.embeddings:
        raise ValueError("give --model_name_or_path or --embeddings, not both: the tokenizer comes from one of them.")
    if not args.train_file:
        raise ValueError("--train_file is required: the file of texts to measure.")
    trust = args.trust_remote_code
    if args.model_name_or_path:
        tokenizer = load_tokenizer(args.model_name_or_path, trust_remote_code=trust)
    else:
        tokenizer = load_embeddings(args.embeddings, progress=not run.disable_tqdm, trust_remote_code=trust).tokenizer
    texts = read_texts(args.train_file, args.text_column, args.text_pair_column)
    if args.text_pair_column:  # both texts of each pair count
        texts = [text for pair in texts for text in pair]
    report = oov_report(tokenizer, texts, top=args.top)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
