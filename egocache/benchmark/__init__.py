"""FLOPs, parameters, latency, accuracy tables, plots and the benchmark report."""
