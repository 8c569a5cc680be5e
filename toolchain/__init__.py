"""ARM-Gym verification core: kernel suite, baselines, gates, reward; no service dependencies."""

VERIFIER_VERSION = "0.6.7"
