"""Evaluation: the official DAVIS 2017 semi-supervised J&F measures."""
from vsreid_jax.eval.davis import EvalResult
from vsreid_jax.eval.davis import evaluate
from vsreid_jax.eval.davis import evaluate_sequences
from vsreid_jax.eval.davis import format_tables
from vsreid_jax.eval.davis import summarize
from vsreid_jax.eval.davis import write_csv
from vsreid_jax.eval.metrics import f_measure
from vsreid_jax.eval.metrics import jaccard
from vsreid_jax.eval.metrics import seg2bmap
from vsreid_jax.eval.metrics import statistics
