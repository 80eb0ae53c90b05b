"""Data layer: readers (one module per source format) -> `Sample` -> cleaning -> prepared datasets -> batches."""
