"""Answers for replicas: the pods of one template are admitted as the same bytes but for `request.uid`.

Why it holds: a controller creates replicas with `generateName`, and the API server generates the name only
after mutating admission (kubernetes#46107, #76680), so a webhook sees `metadata.name` empty. The pods have
no uid yet either, and managedFields carry a timestamp in whole seconds. A ReplicaSet or Job scaling up in
one burst therefore sends AdmissionReviews whose bytes differ only in the request uid. The answer to the
first is the answer to all of them, with the uid replaced, as long as capability, namespace labels and
settings have not changed.

The key is the body with the uid's characters cut out. The API server writes the AdmissionReview with Go's
encoding/json, TypeMeta first, then `"request":{"uid":"...` (admission/v1 types.go field order), so the
first such anchor is the request uid. An answer is stored only when parsing confirmed that the cut-out
characters equal the request uid. A later body with the same key has the same bytes everywhere else: if it
is in the API server's form (one `request`, its uid first), so was the stored one, and it is the same
request with another uid. Only a crafted body (two `request` keys, say) can be answered wrongly, and only
by sharing its key with another crafted body: it can never poison the answer to a real one. A body that does
not fit the pattern (no anchor, an escaped or unusual uid, a body over REPLAY_BODY_LIMIT) takes the full
path. Bounded in entries and bytes; entries from an older capability or namespace snapshot are dropped at
once.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NamedTuple

from webhook.core.admission import Review
from webhook.loops.state import View

_ANCHOR = b'"request":{"uid":"'
_PLAIN_UID = re.compile(rb"[0-9A-Za-z._:-]{1,128}")
REPLAY_BODY_LIMIT = 256 * 1024  # the usual pod is 2-40 KB; hashing a larger key stops paying for itself
REPLAY_ENTRIES = 256  # bursts hit within a few requests; more entries only cost the misses (GC, cache lines)
REPLAY_BYTES = 8 * 1024 * 1024


def split_uid(body: bytes) -> tuple[bytes, bytes] | None:
    """(the body without its request uid, the uid), or None when the body is not in the API server's form."""
    start = body.find(_ANCHOR)
    if start < 0 or len(body) > REPLAY_BODY_LIMIT:
        return None
    start += len(_ANCHOR)
    end = body.find(b'"', start, start + 130)
    if end < 0 or _PLAIN_UID.fullmatch(body, start, end) is None:
        return None
    return body[:start] + body[end:], body[start:end]


class Replay(NamedTuple):
    """A stored answer: the response's bytes around the uid, and what the edge counts and logs about it.
    No reference to the parsed request or the Review: a thousand held pods would only feed the garbage
    collector (measured: ~3 us more per request with the whole Review kept)."""

    before_uid: bytes
    after_uid: bytes
    outcome: str
    applied: str | None  # as in v4only.io/applied
    ops: int
    namespace: str

    def render(self, uid: bytes) -> bytes:
        return self.before_uid + uid + self.after_uid

    @property
    def size(self) -> int:
        return len(self.before_uid) + len(self.after_uid)


class ReplayCache:
    """Answers by body-without-uid, for one capability and namespace snapshot: call `rebase` first."""

    def __init__(self, *, max_entries: int = REPLAY_ENTRIES, max_bytes: int = REPLAY_BYTES) -> None:
        self._max_entries, self._max_bytes = max_entries, max_bytes
        # OrderedDict: dropping the oldest is O(1); a plain dict's iterator walks the holes its deletions left.
        self._entries: OrderedDict[bytes, Replay] = OrderedDict()
        self._bytes = 0
        self._basis: tuple[object, object] = (None, None)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes held in keys and answers."""
        return self._bytes

    def rebase(self, view: View) -> None:
        """Entries belong to the snapshot they were decided with: a new one empties the cache. A stale view
        is a new `unknown` capability on every call, so nothing is replayed while capability is stale."""
        if view.capability is not self._basis[0] or view.namespaces is not self._basis[1]:
            self._entries.clear()
            self._bytes = 0
            self._basis = (view.capability, view.namespaces)

    def get(self, key: bytes) -> Replay | None:
        return self._entries.get(key)

    def put(self, key: bytes, uid: bytes, request: Mapping[str, Any], review: Review, answer: bytes) -> None:
        """Store `review`, answered as `answer`, if parsing confirmed that `uid` is the request uid."""
        if request.get("uid") != uid.decode("ascii"):
            return
        marker = b'"response":{"uid":"' + uid + b'"'
        at = answer.find(marker)
        if at < 0:
            return
        uid_at = at + len(marker) - 1 - len(uid)
        namespace = request.get("namespace")
        namespace = namespace if isinstance(namespace, str) else ""
        replay = Replay(
            answer[:uid_at], answer[uid_at + len(uid) :], review.outcome, review.applied, len(review.plan.ops),
            namespace,
        )
        size = len(key) + replay.size
        if size > self._max_bytes:
            return
        if (old := self._entries.pop(key, None)) is not None:
            self._bytes -= len(key) + old.size
        while self._entries and (len(self._entries) >= self._max_entries or self._bytes + size > self._max_bytes):
            oldest, dropped = self._entries.popitem(last=False)
            self._bytes -= len(oldest) + dropped.size
        self._entries[key] = replay
        self._bytes += size
