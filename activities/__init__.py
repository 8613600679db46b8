"""Activities: every lookup, render and send a journey needs, idempotent and retry-safe."""
