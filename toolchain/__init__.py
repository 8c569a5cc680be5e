"""ARM-Gym verification core: kernel suite, baselines, gates and reward, with no service dependencies."""

VERIFIER_VERSION = "0.1.0"
