"""Side-by-side benchmarks that print ratios."""
