"""Training losses registered in ``mmtokenprune.registry.MODELS``."""
# One import line per loss module (each registers its losses).
from .class_weighted_ce import ClassWeightedCrossEntropyLoss  # noqa: F401
from .distill import DistillKLLoss, FeatureMSELoss  # noqa: F401
from .keep_ratio import KeepRatioLoss  # noqa: F401
from .latency_budget import LatencyBudgetLoss  # noqa: F401
