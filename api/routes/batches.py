"""Batch submission (thousands of attempts per request, idempotent), progress and results, and
a stream of results as they finish."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response, StreamingResponse
from pydantic_core import to_jsonable_python
from starlette.concurrency import run_in_threadpool

from store import attempts, reads
from store.models import DONE

from ..deps import READ, FarmDep, SubmitKey
from ..farm import Farm
from ..schemas import BatchAccepted, BatchIn, BatchOut
from ..submit import remembers, submit
from ..vocab import StreamFormat
from ..waiting import wait_limit, wait_until
from .attempts import WAIT

router = APIRouter(prefix="/batches", tags=["batches"])
STREAM_TYPES = {"ndjson": "application/x-ndjson", "sse": "text/event-stream"}


@router.post("", status_code=202, response_model=BatchAccepted)
def create_batch(body: BatchIn, farm: FarmDep, key: SubmitKey) -> dict[str, Any]:
    """Queue a batch of attempts with run / step / model metadata. Answers at once (202);
    results come from GET /batches/{id} (?wait=) or its /stream."""
    items = [attempts.NewAttempt(variant_id=a.variant_id, assembly=a.assembly,
                                 idempotency_key=a.idempotency_key, seed=a.seed,
                                 completion=a.completion, step=a.step, meta=a.meta,
                                 seed_scope=a.seed_scope or body.seed_scope)
             for a in body.attempts]
    done = submit(farm, key.id, items, run_id=body.run_id, step=body.step, model=body.model,
                  batch_key=body.idempotency_key)
    accepted = [{"position": i, "attempt_id": a, "idempotency_key": it.idempotency_key}
                for i, (a, it) in enumerate(zip(done.attempt_ids, body.attempts, strict=False))]
    return {"batch_id": done.batch_id, "total": len(done.attempt_ids),
            "created": len(done.created), "existing": len(done.attempt_ids) - len(done.created),
            "batch_reused": done.batch_reused, "attempts": accepted,
            "results": f"/batches/{done.batch_id}", "stream": f"/batches/{done.batch_id}/stream"}


@router.get("/{batch_id}", response_model=BatchOut, dependencies=[READ])
async def get_batch(batch_id: str, farm: FarmDep, wait: float = WAIT,
                    results: bool = True) -> Response:
    """Progress of a batch and the results so far, in submission order; with ?wait=N, held
    open until every attempt is done or N seconds pass."""

    def status() -> dict[str, Any] | None:
        with farm.sessions() as session:
            return reads.batch_status(session, batch_id)

    found = await run_in_threadpool(status)
    if found is None:
        raise HTTPException(404, f"no batch {batch_id[:64]!r}")
    if not found["complete"] and wait > 0:
        await wait_until(farm, lambda s: (reads.batch_status(s, batch_id) or {}).get("complete"),
                         wait_limit(farm, wait))
        found = await run_in_threadpool(status)
    if results:
        def fetch() -> list[dict[str, Any]]:
            keys: dict[str, str] = {}
            with farm.sessions() as session:
                rows = reads.batch_results(session, batch_id, content_keys=keys)
            remember_answers(farm, rows, keys)
            return rows

        found["results"] = await run_in_threadpool(fetch)
    return stored_json(found)


def remember_answers(farm: Farm, rows: list[dict[str, Any]], keys: dict[str, str]) -> None:
    """Keep the verdicts a batch's results brings for their duplicates (api/recent.py): a
    trainer that resubmits the batch is then answered from memory, not from the database. Only
    keys not remembered yet: an Answer is worked out once."""
    if not remembers(farm):
        return
    for row in rows:
        key = keys.get(row["attempt_id"])
        if key and row["verdict"] and row["status"] == DONE and key not in farm.recent:
            farm.recent.put(key, row["verdict"])


def stored_json(doc: dict[str, Any]) -> Response:
    """A batch's progress and results serialised as stored (the verdicts are JSON already),
    not validated against BatchOut (which documents them): validating every verdict of a
    large batch cost more than reading it. Datetimes as pydantic writes them."""
    return Response(json.dumps(doc, default=to_jsonable_python, separators=(",", ":")),
                    media_type="application/json")


def _frame(kind: str, payload: dict[str, Any], event: str | None = None) -> str:
    data = json.dumps(jsonable_encoder(payload), separators=(",", ":"))
    if kind == "sse":
        return (f"event: {event}\n" if event else "") + f"data: {data}\n\n"
    return data + "\n"


@router.get("/{batch_id}/stream", dependencies=[READ],
            responses={200: {"content": {v: {} for v in STREAM_TYPES.values()}}})
async def stream_batch(batch_id: str, request: Request, farm: FarmDep,
                       format: StreamFormat | None = None) -> StreamingResponse:
    """Each attempt's result as soon as it is done, one JSON object per line (NDJSON), or as
    server-sent events with ?format=sse or `Accept: text/event-stream`; a final
    `{"event": "end", ...progress}` closes the stream."""
    accept = request.headers.get("accept", "")
    kind = format or ("sse" if "text/event-stream" in accept else "ndjson")
    if kind not in STREAM_TYPES:
        raise HTTPException(422, f"format must be one of {', '.join(STREAM_TYPES)}")
    def batch_order() -> list[str]:
        with farm.sessions() as session:
            return reads.batch_order(session, batch_id)

    order = await run_in_threadpool(batch_order)  # not on the event loop: 1000 streams open
    if not order:
        raise HTTPException(404, f"no batch {batch_id[:64]!r}")
    position = {a: i for i, a in enumerate(order)}

    def new_results(sent: set[str]) -> list[dict[str, Any]]:
        with farm.sessions() as session:
            fresh = list(reads.batch_done_ids(session, batch_id) - sent)
            found = reads.attempts_by_id(session, fresh)
        return sorted(found, key=lambda r: position[r["attempt_id"]])

    async def frames() -> AsyncIterator[str]:
        sent: set[str] = set()
        deadline = time.monotonic() + farm.settings.max_wait_s * 30
        interval = farm.settings.poll_interval_s
        while len(sent) < len(position) and time.monotonic() < deadline:
            for result in await run_in_threadpool(new_results, sent):
                sent.add(result["attempt_id"])
                yield _frame(kind, {"position": position[result["attempt_id"]], **result},
                             "result")
            if len(sent) < len(position):
                if await request.is_disconnected():
                    return
                # Woken by a notice: look at once next time too; else less and less often.
                woken = await farm.hub.changes(interval)
                interval = farm.settings.poll_interval_s if woken else \
                    farm.hub.next_poll(interval)
        yield _frame(kind, {"event": "end", "batch_id": batch_id, "total": len(position),
                            "done": len(sent), "complete": len(sent) == len(position)}, "end")

    return StreamingResponse(frames(), media_type=STREAM_TYPES[kind])
