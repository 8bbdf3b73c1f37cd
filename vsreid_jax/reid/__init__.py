"""Re-identification for Algorithm 2: the ReID net (model), its metric loss (losses), training data
and loop (data, train) and the runtime `Embedder` (embedder) the solver calls."""
