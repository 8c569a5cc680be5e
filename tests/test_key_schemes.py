"""What /openapi.json says about API keys (api/deps.py KeyCheck): the three schemes, and on
every operation that needs a key, either the Bearer header or X-API-Key (OpenRLHF's route the
query parameter too); the operations that need none declare none. Generated clients and
schemathesis (tests/farm/test_fuzz.py) send keys by these."""

from __future__ import annotations

from pathlib import Path

from api.app import create_app
from store.settings import FarmSettings

EITHER = [{"bearer": []}, {"apiKeyHeader": []}]
OPEN = {("get", "/health"), ("get", "/tasks"), ("post", "/reset"), ("get", "/baselines"),
        ("get", "/baselines/{variant_id}")}


def test_keyed_operations_declare_bearer_or_x_api_key(tmp_path: Path) -> None:
    schema = create_app(FarmSettings(data_dir=str(tmp_path))).openapi()
    assert schema["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "`Authorization: Bearer <key>`"},
        "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                         "description": "`X-API-Key: <key>`"},
        "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key",
                        "description": "`?api_key=<key>` (POST /openrlhf/get_reward only)"}}
    declared = {(method, path): op.get("security")
                for path, ops in schema["paths"].items() for method, op in ops.items()}
    assert declared[("post", "/openrlhf/get_reward")] == [{"apiKeyQuery": []}, *EITHER]
    for where in (("post", "/step"), ("post", "/batches"), ("get", "/attempts"),
                  ("post", "/keys"), ("get", "/best/{variant_id}")):
        assert declared[where] == EITHER, where
    for where in OPEN & set(declared):
        assert declared[where] is None, where
    keyed = [w for w, s in declared.items() if s is not None]
    assert all(declared[w][-2:] == EITHER for w in keyed), keyed
