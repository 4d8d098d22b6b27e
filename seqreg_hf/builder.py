"""Build an untrained model directory (config, safetensors, tokenizer, model code) from pretrained embeddings."""

import json
import os

import torch
from torch import nn

from .configuration_seqreg import SeqRegConfig
from .embeddings import Embeddings, load_embeddings
from .modeling_seqreg import SeqRegForSequenceRegression

REPORT_FILE = "embeddings_report.json"


def build_model(embeddings: Embeddings, **config_kwargs):
    """A regressor whose (frozen) embedding matrix is `embeddings.matrix`, shared without a copy."""
    rows, dim = embeddings.matrix.shape
    if config_kwargs.get("embedding_dim", dim) != dim:
        raise ValueError(f"{embeddings.source}: the vectors have {dim} dimensions but the config asks for "
                         f"embedding_dim={config_kwargs['embedding_dim']}. Drop embedding_dim (it is read from the "
                         "vectors) or use vectors of that size.")
    config_kwargs.pop("embedding_dim", None)
    config = SeqRegConfig(vocab_size=rows, embedding_dim=dim, pad_token_id=embeddings.pad_token_id,
                          embeddings_source=embeddings.source, **config_kwargs)
    model = SeqRegForSequenceRegression(config)
    weight = torch.from_numpy(embeddings.matrix)
    model.set_input_embeddings(nn.Embedding.from_pretrained(weight, freeze=config.freeze_embeddings,
                                                            padding_idx=config.pad_token_id))
    return model.round_embeddings_to_storage()


def save_model_dir(model, tokenizer, output_dir, report=None):
    """Write config + model.safetensors + model code + tokenizer (+ the embeddings report) to `output_dir`."""
    os.makedirs(output_dir, exist_ok=True)
    from .model_card import card_context, write_model_card

    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    write_model_card(output_dir, card_context(model))
    if report is not None:
        with open(os.path.join(output_dir, REPORT_FILE), "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return output_dir


def build_contextual_model(embeddings: Embeddings, location=None, **config_kwargs):
    """A regressor reading the hidden states of the frozen transformer `embeddings` came from (a transformers
    directory or Hub id, at `location` if its source names it otherwise): its config is nested in the model's,
    its weights copied from its safetensors."""
    from transformers import AutoConfig, AutoModel

    if embeddings.kind != "transformers":
        raise ValueError(f"embedding_type='contextual' needs a transformers model directory or Hub id; "
                         f"{embeddings.source} is a {embeddings.kind} source. Give --embeddings DIR_OR_ID.")
    location = location or embeddings.source
    trust = embeddings.trust_remote_code  # the user's answer when the embeddings were loaded
    inner = AutoConfig.from_pretrained(location, trust_remote_code=trust)
    # safetensors only, never pickles
    encoder = AutoModel.from_pretrained(location, use_safetensors=True, trust_remote_code=trust)
    for key in ("vocab_size", "embedding_dim"):
        config_kwargs.pop(key, None)
    config = SeqRegConfig(vocab_size=inner.vocab_size, embedding_dim=inner.hidden_size,
                          pad_token_id=embeddings.tokenizer.pad_token_id, embeddings_source=embeddings.source,
                          contextual_config=inner.to_dict(), **config_kwargs)
    model = SeqRegForSequenceRegression(config)
    weights = {k: v for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
    result = model.base_model.embeddings.contextual.load_state_dict(weights, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    model.base_model.embeddings.freeze()
    return model


def build_from(source, spec, **config_kwargs):
    """build_model, or build_contextual_model with embedding_type="contextual" (`spec`: what --embeddings named)."""
    if config_kwargs.get("embedding_type") != "contextual":
        return build_model(source, **config_kwargs)
    from .embeddings import default_embeddings_path

    return build_contextual_model(source, default_embeddings_path() if spec in (None, "minilm") else spec,
                                  **config_kwargs)


def init_model_dir(output_dir, embeddings=None, *, embeddings_options=None, trust_remote_code=False, **config_kwargs):
    """Load `embeddings` (see :func:`seqreg_hf.embeddings.load_embeddings`), build a model, save it, return it.
    With embedding_type="contextual" the model reads the hidden states of the transformer `embeddings` names.
    trust_remote_code=True runs the custom code (auto_map) of a transformers `embeddings` directory."""
    options = dict(embeddings_options or {})
    options["trust_remote_code"] = trust_remote_code or options.get("trust_remote_code", False)
    source = load_embeddings(embeddings, **options)
    model = build_from(source, embeddings, **config_kwargs)
    save_model_dir(model, source.tokenizer, output_dir, report={"source": source.source, "kind": source.kind,
                                                                **source.report})
    return model, source


def main(argv=None):
    """`seqreg-hf init`."""
    import json
    import sys

    from .arguments import parse_command
    from .data import read_texts
    from .logs import configure

    init_args, embedding_args, arch_args, run = parse_command("init", sys.argv[1:] if argv is None else argv)
    configure(run.log_level, run.disable_tqdm)
    if not init_args.output_dir:
        raise ValueError("--output_dir is required: where to write the model directory.")
    corpus = read_texts(init_args.train_file, init_args.text_column) if init_args.train_file else None
    model, source = init_model_dir(
        init_args.output_dir, embedding_args.embeddings,
        embeddings_options=embedding_args.loader_options(corpus, not run.disable_tqdm),
        id2label=dict(enumerate(init_args.label_columns)), **arch_args.config_kwargs(),
    )
    trainable = model.num_parameters(only_trainable=True)
    print(f"wrote {init_args.output_dir}: {model.config.vocab_size} x {model.config.embedding_dim} frozen "
          f"embeddings from {source.source} ({source.kind}), {trainable:,} trainable parameters")
    print(json.dumps(source.report, indent=2))
