"""Training of N_mp: state and optimiser, data-parallel step, loop, orbax checkpoints, metrics."""
