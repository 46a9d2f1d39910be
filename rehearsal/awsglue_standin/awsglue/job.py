"""``Job`` of the stand-in: ``init``/``commit`` and the job bookmark (see the package docstring)."""

from __future__ import annotations

import json

from awsglue import _s3


class Job:
    def __init__(self, glue_context):
        self._glue_context = glue_context
        self._name = None
        self._option = "job-bookmark-disable"
        self._state: dict = {}
        self._pending: dict = {}
        self._initialized = False
        self._committed = False

    @staticmethod
    def continuation_options():
        return ["--continuation-option", "continuation-enabled", "continuation-readonly", "continuation-ignore"]

    @staticmethod
    def job_bookmark_options():
        return ["--job-bookmark-option", "job-bookmark-enable", "job-bookmark-disable", "job-bookmark-pause"]

    def _store(self):
        return _s3.state_dir() / "bookmarks" / f"{self._name}.json"

    def init(self, job_name, args=None):
        if self._initialized:
            raise RuntimeError("Job.init called twice")
        args = dict(args or {})
        self._name = job_name
        self._option = args.get("job_bookmark_option") or "job-bookmark-disable"
        store = self._store()
        self._state = json.loads(store.read_text()) if store.exists() else {}
        self._glue_context._job = self
        self._initialized = True

    def _bookmark_filter(self, ctx, objects):
        if self._option == "job-bookmark-disable":
            return objects
        seen = self._state.get(ctx, {})
        new = [o for o in objects if seen.get(f"s3://{o['Bucket']}/{o['Key']}") != o["ETag"]]
        pending = self._pending.setdefault(ctx, {})
        for o in new:
            pending[f"s3://{o['Bucket']}/{o['Key']}"] = o["ETag"]
        return new

    def commit(self):
        if not self._initialized:
            raise RuntimeError("Job.commit before Job.init")
        if self._option == "job-bookmark-enable":
            for ctx, entries in self._pending.items():
                self._state.setdefault(ctx, {}).update(entries)
            store = self._store()
            store.parent.mkdir(parents=True, exist_ok=True)
            store.write_text(json.dumps(self._state, indent=1, sort_keys=True))
        self._pending = {}
        self._committed = True
