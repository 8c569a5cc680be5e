"""API key administration (admin scope): create (the key is shown once), list, revoke."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Path

from store import keys

from ..deps import ADMIN, FarmDep
from ..schemas import KeyIn, KeyOut, NewKeyOut
from ..vocab import INT32

router = APIRouter(prefix="/keys", tags=["keys"], dependencies=[ADMIN])
SCOPES = (keys.SUBMIT, keys.READ, keys.ADMIN)

@router.post("", status_code=201, response_model=NewKeyOut)
def create_key(body: KeyIn, farm: FarmDep) -> dict[str, Any]:
    unknown = sorted(set(body.scopes) - set(SCOPES))
    if unknown:
        raise HTTPException(422, f"unknown scopes {unknown}; choose from {list(SCOPES)}")
    with farm.sessions() as session, session.begin():
        info, plaintext = keys.create(session, body.name, tuple(body.scopes))
    return {"id": info.id, "name": info.name, "prefix": info.prefix,
            "scopes": sorted(info.scopes), "key": plaintext}


@router.get("", response_model=list[KeyOut])
def list_keys(farm: FarmDep) -> list[dict[str, Any]]:
    with farm.sessions() as session:
        return keys.listing(session)


@router.delete("/{key_id}", status_code=204)
def revoke_key(farm: FarmDep, key_id: int = Path(ge=1, le=INT32[1])) -> None:
    with farm.sessions() as session, session.begin():
        if not keys.revoke(session, key_id):
            raise HTTPException(404, f"no active key with id {key_id}")
    farm.key_cache.forget(key_id)  # refused here from now on; other processes: api/keycache.py
