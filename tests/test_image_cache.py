"""Decoded-image cache of training datasets (`data/prepared.DecodedImageCache`, `data.image_cache_mb`):
later epochs read images from memory, bit-identical to decoding the PNG, within the byte budget."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from texscribe.config import DataConfig
from texscribe.data.datamodule import LatexDataset
from texscribe.data.prepare import prepare
from texscribe.data.prepared import DecodedImageCache, PreparedDataset

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "sample_crohme"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    out = tmp_path_factory.mktemp("cache") / "sample"
    prepare([f"{EXAMPLES}:train"], out, workers=1, progress=False)
    return PreparedDataset.open(out)


def test_cached_images_equal_decoded_pngs(prepared: PreparedDataset) -> None:
    cache = DecodedImageCache(max_bytes=10**8)
    first = [cache.load(i, prepared, rec) for i, rec in enumerate(prepared.records)]
    second = [cache.load(i, prepared, rec) for i, rec in enumerate(prepared.records)]
    assert cache.misses == len(prepared.records) and cache.hits == len(prepared.records)
    for rec, a, b in zip(prepared.records, first, second):
        reference = prepared.load_image(rec)
        assert (
            a.dtype == b.dtype == np.float32 and np.array_equal(a, reference) and np.array_equal(b, reference)
        )
    assert cache.bytes == sum(im.size for im in first)  # one byte a pixel


def test_cache_stops_filling_at_its_budget(prepared: PreparedDataset) -> None:
    sizes = [prepared.load_image(rec).size for rec in prepared.records]
    cache = DecodedImageCache(max_bytes=sizes[0] + sizes[1])
    for _ in range(2):
        for i, rec in enumerate(prepared.records):
            cache.load(i, prepared, rec)
    assert cache.bytes <= sizes[0] + sizes[1] and cache.hits >= 2
    assert cache.misses >= 2 * len(prepared.records) - 2  # images beyond the budget are decoded every time


def test_dataset_items_are_the_same_with_and_without_cache(prepared: PreparedDataset) -> None:
    config = DataConfig(img_max_height=64, img_max_width=256, scale=0.5)
    plain = LatexDataset([prepared], prepared.vocab, replace(config, image_cache_mb=0))
    cached = LatexDataset([prepared], prepared.vocab, config)
    assert plain.image_cache is None and cached.image_cache is not None
    for _epoch in range(2):
        for i in range(len(plain)):
            a, b = plain[i], cached[i]
            assert a.id == b.id and np.array_equal(a.image, b.image) and a.token_ids == b.token_ids
    assert cached.image_cache.hits == len(cached)
