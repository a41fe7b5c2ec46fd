"""Row banks (genir.encoding.row_bank): document embeddings computed once per text and encoder, kept on disk."""

from __future__ import annotations

import numpy as np
import pytest

from genir.encoding.encoder import TextEncoder
from genir.encoding.row_bank import DIGESTS_FILE, OFFSETS_FILE, STATES_FILE

TEXTS = ["Cats sit on mats.", "Steam trains pull wagons.", "Parsing JSON into dictionaries.", "Cats sit on mats."]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def test_cached_embeddings_equal_fresh_ones_and_are_computed_once(encoder, tmp_path, monkeypatch):
    fresh = encoder.encode(TEXTS)
    first = encoder.encode(TEXTS, cache=tmp_path)
    np.testing.assert_allclose(first, fresh, atol=1e-6)
    (bank,) = tmp_path.iterdir()
    (shard,) = bank.iterdir()
    assert np.load(shard / DIGESTS_FILE, allow_pickle=False).shape == (3, 16)  # the repeated text stored once
    assert np.load(shard / STATES_FILE, allow_pickle=False).dtype == np.float32
    assert np.load(shard / OFFSETS_FILE, allow_pickle=False).tolist() == [0, 1, 2, 3]

    computed: list[int] = []
    real = TextEncoder._encode_ids

    def counting(self, ids, batch_size, progress):
        computed.append(len(ids))
        return real(self, ids, batch_size, progress)

    monkeypatch.setattr(TextEncoder, "_encode_ids", counting)
    np.testing.assert_array_equal(encoder.encode(TEXTS[::-1], cache=tmp_path), first[::-1])
    assert computed == []  # every text was in the bank
    mixed = encoder.encode(["A new text about bread.", TEXTS[1]], cache=tmp_path)
    assert computed == [1] and len(list(bank.iterdir())) == 2
    np.testing.assert_array_equal(mixed[1], first[1])


def test_another_max_length_is_another_bank(encoder, tmp_path):
    encoder.encode(TEXTS[:1], cache=tmp_path)
    short = TextEncoder(max_length=4)
    short.encode(TEXTS[:1], cache=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2
