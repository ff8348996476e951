"""Bills: hash-chained, Merkle-committed statements a metrology authority can re-check."""
