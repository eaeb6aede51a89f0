"""What deduplication compares: a text's digest (the same text) and its MinHash signature (nearly the same text).

Both are computed on the truncated text, the teacher's prompt and the `d` of
[d; t]. The digest is a hash of the text after `dedup.normalize` (Unicode
NFC, whitespace, optionally case). The signature is datasketch's MinHash over
the text's word n-grams (lowercase words of the NFC text, `n_grams` words a
shingle, each hashed with xxHash), with `num_perm` permutations drawn from
`seed`: the same on every worker, so signatures compare across the run. Its
`num_buckets` bands of `hashes_per_bucket` rows are the LSH buckets.
"""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np

from tpt.config import MinHashConfig, NormalizeConfig


def normalize(text: str, config: NormalizeConfig) -> str:
    """`text` as exact deduplication compares it."""
    if config.nfc:
        text = unicodedata.normalize("NFC", text)
    if config.whitespace:
        text = " ".join(text.split())
    if config.lowercase:
        text = text.lower()
    return text


def digest(text: str, config: NormalizeConfig) -> str:
    """Equal for texts that are the same after normalisation."""
    return hashlib.blake2b(normalize(text, config).encode("utf-8"), digest_size=16).hexdigest()


def shingles(text: str, n: int) -> list[str]:
    """The word n-grams near-duplicate detection compares (a text of fewer words is one shingle)."""
    words = unicodedata.normalize("NFC", text).lower().split()
    if len(words) <= n:
        return [" ".join(words)] if words else []
    return list(map(" ".join, zip(*(words[i:] for i in range(n)))))


class Signer:
    """MinHash signatures and their LSH bands; datasketch is loaded on first use, in the worker that signs."""

    def __init__(self, config: MinHashConfig):
        self.config = config
        self._minhash = None

    def signature(self, text: str) -> np.ndarray | None:
        """The text's MinHash values (uint32, `num_perm` of them), or None for a text without words."""
        grams = shingles(text, self.config.n_grams)
        if not grams:
            return None
        minhash = self._fresh()
        minhash.update_batch(grams)
        return minhash.hashvalues

    def bands(self, signature: np.ndarray) -> list[str]:
        """The signature's LSH buckets: one key per band; two texts sharing a key are a candidate pair."""
        rows = self.config.hashes_per_bucket
        return [f"{band}:{hashlib.blake2b(signature[band * rows:(band + 1) * rows].tobytes(), digest_size=8).hexdigest()}"
                for band in range(self.config.num_buckets)]

    def _fresh(self):
        if self._minhash is None:
            import xxhash
            from datasketch import MinHash

            self._minhash = MinHash(num_perm=self.config.permutations, seed=self.config.seed,
                                    hashfunc=xxhash.xxh32_intdigest, scheme="affine32")
        return self._minhash.copy()
