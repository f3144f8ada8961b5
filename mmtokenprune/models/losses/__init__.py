"""Training losses registered in ``mmtokenprune.registry.MODELS``."""
# One import line per loss module (each registers its losses).
