"""What keeps keys and results where they belong: API keys never reach the access log (the
OpenRLHF route takes `?api_key=` because OpenRLHF sends no headers), and no response is stored
by a browser or a proxy cache (they carry verdicts and history: api/edge.py)."""

from __future__ import annotations

import logging
import re

# A query parameter named like a key (api_key, apikey, key, token), whatever its case.
KEY_PARAM = re.compile(r"(?i)([?&](?:api[-_]?key|key|token|access_token)=)[^&#\s\"]*")
REDACTED = r"\1[redacted]"


def redact_query(text: str) -> str:
    return KEY_PARAM.sub(REDACTED, text)


class RedactKeys(logging.Filter):
    """For uvicorn's access logger: its record's args are (client, method, path?query, http
    version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_query(a) if isinstance(a, str) else a
                                for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact_query(record.msg)
        return True


def install_log_redaction() -> None:
    """Idempotent: one filter on each logger that writes request lines."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in logger.filters):
            logger.addFilter(RedactKeys())
