"""The word tokenizer's saved form: a tokenizer loaded and saved again writes the tokenizer_config.json it was
loaded from, never how it was loaded (transformers 5 adds `is_local` and `local_files_only` on every load; a Hub
id's load is checked end to end in test_e2e_clean_repos.py)."""

import json

from transformers import AutoTokenizer

from seqreg_hf.tokenization import build_word_tokenizer, drop_load_time_keys


def test_a_loaded_tokenizer_saves_the_config_it_was_loaded_from(tmp_path):
    original = tmp_path / "original"
    build_word_tokenizer(["calm", "sea"], lowercase=True).save_pretrained(original)
    written = json.loads((original / "tokenizer_config.json").read_text())

    AutoTokenizer.from_pretrained(original, trust_remote_code=False).save_pretrained(tmp_path / "as_loaded")
    leaked = set(json.loads((tmp_path / "as_loaded" / "tokenizer_config.json").read_text())) - set(written)
    assert leaked == {"is_local", "local_files_only"}  # what transformers adds: the check below can fail

    tokenizer = drop_load_time_keys(AutoTokenizer.from_pretrained(original, trust_remote_code=False))
    tokenizer.save_pretrained(tmp_path / "cleaned")
    assert json.loads((tmp_path / "cleaned" / "tokenizer_config.json").read_text()) == written
    assert tokenizer(["calm sea"])["input_ids"] == [[2, 3]]  # it still is the same tokenizer
