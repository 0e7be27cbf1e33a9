"""The MongoDB catalog, through PyMongo's own asyncio client.

Motor is deprecated in favour of ``pymongo.AsyncMongoClient`` (PyMongo 4.13
and later), which is native asyncio rather than a thread-pool wrapper, and
is the driver MongoDB maintains from now on: aiart uses it. The backend
only needs a database object with that client's collection API, so tests
can hand it an in-memory double.
"""

from __future__ import annotations

from typing import Any

from aiart.catalog.records import Deployment, Query, newest_first

COLLECTION = "deployments"


class MongoCatalog:
    def __init__(self, database: Any) -> None:
        self.collection = database[COLLECTION]

    @classmethod
    def connect(cls, url: str, database: str = "aiart") -> MongoCatalog:
        from pymongo import AsyncMongoClient

        # Short server selection: a catalog that is down must fail fast,
        # not hold an operator worker for the driver's default 30 s.
        client: Any = AsyncMongoClient(url, serverSelectionTimeoutMS=5000, tz_aware=True)
        return cls(client[database])

    async def record_deployment(self, deployment: Deployment) -> None:
        doc = deployment.to_doc()
        history, status = doc.pop("history"), doc.pop("status")
        await self.collection.update_one(
            {"_id": deployment.key},
            {"$set": doc, "$setOnInsert": {"history": history, "status": status}},
            upsert=True)

    async def record_status(self, key: str, status: str, message: str, at: str) -> None:
        doc = await self.collection.find_one({"_id": key})
        if doc is None:
            return
        old = Deployment.from_doc(doc)
        new = old.with_status(status, message, at)
        if new is old:
            return
        await self.collection.update_one(
            {"_id": key}, {"$set": {"status": new.status, "history": new.to_doc()["history"]}})

    async def find(self, query: Query) -> list[Deployment]:
        # The server narrows by the indexed fields; Query.matches applies the
        # rest, so both backends answer a query exactly alike.
        selector = {k: v for k, v in (("model", query.name), ("version", query.version),
                                       ("runtime", query.runtime)) if v is not None}
        docs = await self.collection.find(selector).to_list(None)
        return newest_first([d for d in map(Deployment.from_doc, docs) if query.matches(d)])

    async def get(self, key: str) -> Deployment | None:
        doc = await self.collection.find_one({"_id": key})
        return Deployment.from_doc(doc) if doc is not None else None
