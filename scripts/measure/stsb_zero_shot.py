"""The baseline every STS-B row in the README stands beside: the frozen MiniLM-L6 (the packaged
all-MiniLM-L6-v2) as the sentence encoder it was trained to be, no training on STS-B: each sentence's last hidden
state averaged over its real tokens, and the pair scored by the cosine of the two means. Pearson r and Spearman rho
on the validation and test splits, with the number of pairs that went through.

    python -m scripts.measure.stsb_zero_shot
"""

import os
import sys

import pandas as pd
import torch
from scipy.stats import pearsonr, spearmanr
from transformers import AutoModel, AutoTokenizer

from scripts.common import REPO
from seqreg_hf.embeddings import default_embeddings_path

STSB_CSV = os.path.join(os.path.dirname(REPO), "shared", "data", "stsb.csv")


def sentence_embeddings(model, tokenizer, texts, batch_size=128, max_length=128):
    """(len(texts), hidden): the mean of the last hidden state over real tokens, unit length."""
    parts = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt")
        with torch.inference_mode():
            states = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        parts.append(torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1))
    return torch.cat(parts)


def main(path=STSB_CSV):
    folder = default_embeddings_path()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    model = AutoModel.from_pretrained(folder, trust_remote_code=False).eval()
    data = pd.read_csv(path, keep_default_na=False)
    print("split       pairs  Pearson r  Spearman rho   (frozen MiniLM-L6, mean of its last state, cosine)")
    for split in ("validation", "test"):
        rows = data[data["split"] == split]
        first = sentence_embeddings(model, tokenizer, rows["sentence1"].tolist())
        second = sentence_embeddings(model, tokenizer, rows["sentence2"].tolist())
        cosine = (first * second).sum(-1).numpy()
        assert len(cosine) == len(rows)
        print(f"{split:<11} {len(rows):>5}  {pearsonr(cosine, rows['score'])[0]:.4f}     "
              f"{spearmanr(cosine, rows['score'])[0]:.4f}")


if __name__ == "__main__":
    sys.exit(main())
