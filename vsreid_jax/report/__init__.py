"""The static HTML report of a results folder: `vsreid report`, `vsreid segment --report`."""
from vsreid_jax.report.build import build_report
from vsreid_jax.report.layout import find_sequences
from vsreid_jax.report.layout import write_timing
