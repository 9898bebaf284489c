"""Scripts run once, by hand, to make test fixtures; and what they share with the benchmarks."""
