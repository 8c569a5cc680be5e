"""The closed sets the API's parameters take, declared as enums in its OpenAPI schema: a client
(or a fuzzer) reads there exactly which values are valid, and a value outside them is a 422
that lists them. Variant ids are a closed set too, but 1,596 of them; they stay text, and an
unknown one is 404 wherever it appears, like any other name of something that does not exist.
"""

from __future__ import annotations

from typing import Literal

from store import keys
from store.models import DONE, QUEUED, RUNNING
from toolchain import baselines, kernels
from toolchain.errors import ErrorKind
from toolchain.reward import PROFILES
from toolchain.verify import SEED_SCOPES

# Literal[tuple] is Literal of its items: plain strings in the handlers, enums in the schema.
Template = Literal[kernels.templates()]  # type: ignore[valid-type]
DType = Literal[tuple(kernels.DType.__members__)]  # type: ignore[valid-type]
Profile = Literal[tuple(sorted(PROFILES))]  # type: ignore[valid-type]
Status = Literal[QUEUED, RUNNING, DONE]  # type: ignore[valid-type]
Compiler = Literal[baselines.COMPILERS]  # type: ignore[valid-type]
ErrorKindName = Literal[tuple(k.value for k in ErrorKind)]  # type: ignore[valid-type]
Split = Literal["train", "eval"]
Scope = Literal[keys.SUBMIT, keys.READ, keys.ADMIN]  # type: ignore[valid-type]
StreamFormat = Literal["ndjson", "sse"]
SeedScope = Literal[SEED_SCOPES]  # type: ignore[valid-type]
INT32 = (-(2**31), 2**31 - 1)  # PostgreSQL `integer` columns (step, key ids)
STEP_RANGE = {"ge": INT32[0], "le": INT32[1]}  # a step is stored in an integer column
# Text stored in PostgreSQL, which refuses NUL characters: declared here, refused by
# api.submit with its own message (a NUL inside `meta`, free-form JSON, is refused too).
NO_NUL = {"pattern": r"^[^\x00]*$"}
