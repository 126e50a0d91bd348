"""Layers over a backend, each a pass-through that changes one thing: the circuit breaker, async coalescing,
the local tier and the invalidation tracking that keeps it coherent."""
