"""Mixture weights of training data: `--train DIR@K` reads a prepared folder K times per epoch
(`data.prepared.parse_train_entry`), so a small real set is not drowned by large rendered ones."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from texscribe.config import load_config
from texscribe.data.datamodule import LatexDataModule
from texscribe.data.prepare import prepare
from texscribe.data.prepared import parse_train_entry
from texscribe.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "sample_crohme"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mixture") / "sample"
    prepare([f"{EXAMPLES}:train"], out, workers=1, progress=False)
    return out


def test_entries_name_a_folder_and_a_repeat_count(tmp_path: Path) -> None:
    assert parse_train_entry("prepared/crohme_train") == ("prepared/crohme_train", 1)
    assert parse_train_entry("prepared/crohme_train@4") == ("prepared/crohme_train", 4)
    assert parse_train_entry("me@host/data") == ("me@host/data", 1)  # not a count: part of the path
    literal = tmp_path / "set@2"
    literal.mkdir()
    assert parse_train_entry(str(literal)) == (str(literal), 1)  # an existing path is taken as written
    for bad in ("prepared/crohme_train@0", "prepared/crohme_train@-2"):
        with pytest.raises(ConfigError, match="crohme_train@"):
            parse_train_entry(bad)


def test_a_repeated_folder_appears_k_times_per_epoch_and_is_decoded_once(prepared: Path) -> None:
    base = ["data.batch_max_size=4", "data.max_label_len=50"]
    once = LatexDataModule(load_config("tiny", [f"data.train=[{prepared}]", *base]))
    thrice = LatexDataModule(load_config("tiny", [f"data.train=['{prepared}@3']", *base]))
    once.setup("fit")
    thrice.setup("fit")
    n = len(once.train_data)
    assert n > 0 and len(thrice.train_data) == 3 * n
    assert thrice.vocab.itos == once.vocab.itos
    seen = Counter(sid for batch in thrice.train_dataloader() for sid in batch.sample_ids)
    assert set(seen.values()) == {3} and len(seen) == n  # every record three times in one epoch
    cache = thrice.train_data.image_cache
    assert cache is not None and cache.misses == n and cache.hits == 2 * n  # one decode per image file
