"""Client of the ARM-Gym verification farm for training loops: score a whole generation step in
one call, retry overload politely, and keep the model's failures apart from the farm's own
(`infra_error` results are dropped, never scored)."""

__version__ = "0.1.0"

from .client import AsyncClient, Client  # noqa: E402
from .errors import APIError, ArmGymError, FarmUnavailable, InfraErrorResult  # noqa: E402
from .models import BestKernel, Result, StepResult, Submission, Verdict  # noqa: E402
from .plans import PendingStep  # noqa: E402
from .retry import RetryPolicy  # noqa: E402

__all__ = [
    "APIError", "ArmGymError", "AsyncClient", "BestKernel", "Client", "FarmUnavailable",
    "InfraErrorResult", "PendingStep", "Result", "RetryPolicy", "StepResult", "Submission",
    "Verdict",
    "__version__",
]
