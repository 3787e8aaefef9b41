#!/usr/bin/env python3
"""A tasklog worker in plain Python: only the standard library, only HTTP.

It speaks the worker protocol of `tasklog serve` (docs/api.md, "Worker protocol"):
claim a task of the kinds it knows (long-polling), report progress and checkpoints under its
lease, heartbeat while it works, then complete or fail the task. Every call after the claim
carries the fencing token; a 409 `lease_lost` means another worker owns the task now, so this
one drops it.

    tasklog serve --dir ./tasks &                        # prints: listening on http://...
    python3 examples/python/worker.py --url http://127.0.0.1:7878 --submit 10 --exit-when-idle

Handlers live in HANDLERS below: a function of (task, input, ctx) returning the result.
A task resumed after a crash finds its last checkpoint in `ctx.checkpoint`.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request


class LeaseLost(Exception):
    """The server fenced this worker off the task (409 lease_lost)."""


class Problem(Exception):
    """An error answer (application/problem+json) from the server."""

    def __init__(self, status, body):
        self.status = status
        self.body = body
        self.retry_after = None
        super().__init__(f"HTTP {status}: {body.get('code')}: {body.get('detail')}")


class Client:
    def __init__(self, url, token=None, timeout=90):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method, path, body=None, headers=None):
        """One request; follows a 307/308 to the JetStream lease holder (same path, body and
        token) and retries a 503 that carries Retry-After (a takeover in progress), both
        bounded like the CLI's client so two servers pointing at each other cannot loop."""
        base, redirects, retries = self.url, 0, 0
        while True:
            try:
                return self._call_once(base, method, path, body, headers)
            except _Redirect as r:
                if redirects >= REDIRECTS_MAX:
                    raise Problem(r.status, {"detail": f"more than {REDIRECTS_MAX} redirects"}) from None
                redirects += 1
                base = r.origin
            except Problem as p:
                wait = p.retry_after
                if p.status != 503 or wait is None or retries >= UNAVAILABLE_RETRIES_MAX:
                    raise
                retries += 1
                time.sleep(min(wait, RETRY_AFTER_MAX_S))

    def _call_once(self, base, method, path, body, headers):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with _OPENER.open(req, timeout=self.timeout) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            if e.code in (307, 308):
                origin = _origin(e.headers.get("Location") or "")
                if origin:
                    raise _Redirect(e.code, origin) from None
            try:
                problem = json.loads(raw)
            except ValueError:
                problem = {"detail": raw.decode(errors="replace")}
            if e.code == 409 and problem.get("code") == "lease_lost":
                raise LeaseLost(problem.get("detail")) from None
            err = Problem(e.code, problem)
            try:
                err.retry_after = int((e.headers.get("Retry-After") or "").strip())
            except ValueError:
                pass
            raise err from None


# Bounds on following a JetStream deployment's redirects and 503s (as crates/cli/src/client.rs).
REDIRECTS_MAX = 5
UNAVAILABLE_RETRIES_MAX = 10
RETRY_AFTER_MAX_S = 5


class _Redirect(Exception):
    def __init__(self, status, origin):
        self.status = status
        self.origin = origin


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are followed by Client.call: urllib's own would not resend a POST body."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _origin(location):
    """scheme://authority of an absolute http(s) Location, or None."""
    for scheme in ("http://", "https://"):
        if location.startswith(scheme):
            rest = location[len(scheme):]
            authority = rest.split("/")[0].split("?")[0].split("#")[0]
            return scheme + authority if authority else None
    return None


class Context:
    """What a handler may do while it runs: all calls are fenced by the claim's token."""

    def __init__(self, client, owner, claim):
        self.client = client
        self.owner = owner
        self.task = claim["task"]
        self.token = claim["token"]
        self.checkpoint = claim.get("checkpoint")

    def _post(self, verb, **fields):
        body = {"owner": self.owner, "token": self.token, **fields}
        return self.client.call("POST", f"/v1/workers/tasks/{self.task['id']}/{verb}", body)

    def progress(self, percent, step=None, message=None):
        self._post("progress", percent=percent, step=step, message=message)

    def save_checkpoint(self, name, data, progress=None):
        self._post("checkpoint", name=name, data=data, progress=progress)

    def output(self, content, kind="log"):
        self._post("output", kind=kind, content=content)

    def heartbeat(self, lease_ms):
        self._post("heartbeat", lease_ms=lease_ms)


# ----- handlers: kind -> function(task, input, ctx) -> result -------------------------------


def count_words(task, data, ctx):
    text = (data or {}).get("text", task["title"])
    ctx.progress(50, "counting")
    return {"words": len(text.split())}


def resize_images(task, data, ctx):
    total = int((data or {}).get("images", 5))
    start = (ctx.checkpoint or {}).get("data", {}).get("done", 0)
    for done in range(start + 1, total + 1):
        time.sleep(0.01)
        ctx.progress(done * 100 // total, "resize", f"{done} of {total}")
        ctx.save_checkpoint("resized", {"done": done})
    ctx.output(f"resized {total} images", kind="stdout")
    return {"resized": total}


def always_fails(task, data, ctx):
    raise RuntimeError("this kind always fails")


HANDLERS = {"count": count_words, "resize": resize_images, "fail": always_fails}


# ----- the loop -----------------------------------------------------------------------------


def run_one(client, owner, claim, lease_ms):
    ctx = Context(client, owner, claim)
    task = ctx.task
    kind = task.get("metadata", {}).get("runtime.kind")
    data = task.get("metadata", {}).get("runtime.input")
    stop = threading.Event()

    def beat():
        while not stop.wait(lease_ms / 3000):
            try:
                ctx.heartbeat(lease_ms)
            except (LeaseLost, Problem, OSError):
                return

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    try:
        handler = HANDLERS.get(kind)
        if handler is None:
            raise RuntimeError(f"no handler for kind {kind!r}")
        result = handler(task, data, ctx)
        ctx._post("complete", result=result)
        return "completed"
    except LeaseLost as e:
        print(f"{owner}: lost the lease on {task['id']}: {e}", file=sys.stderr)
        return "lost"
    except Exception as e:  # the handler failed: record it on the task
        try:
            ctx._post("fail", error=f"{type(e).__name__}: {e}")
        except LeaseLost:
            return "lost"
        return "failed"
    finally:
        stop.set()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("TASKLOG_URL", "http://127.0.0.1:7878"))
    ap.add_argument("--token", default=os.environ.get("TASKLOG_TOKEN"))
    ap.add_argument("--owner", default=f"py-{os.getpid()}")
    ap.add_argument("--kinds", default=",".join(HANDLERS))
    ap.add_argument("--lease-ms", type=int, default=30000)
    ap.add_argument("--wait-ms", type=int, default=2000)
    ap.add_argument("--submit", type=int, default=0, help="first submit N tasks of each kind")
    ap.add_argument("--exit-when-idle", action="store_true", help="stop after one empty poll")
    ap.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    args = ap.parse_args()

    client = Client(args.url, args.token)
    kinds = [k for k in args.kinds.split(",") if k]
    for i in range(args.submit):
        for kind in kinds:
            body = {
                "title": f"{kind} #{i}",
                "kind": kind,
                "input": {"text": "the quick brown fox", "images": 3},
                "priority": i % 3,
                "request_id": f"{args.owner}-{kind}-{i}",
            }
            client.call("POST", "/v1/tasks", body)

    counts = {"completed": 0, "failed": 0, "lost": 0}
    while True:
        status, claim = client.call(
            "POST",
            "/v1/workers/claim",
            {"owner": args.owner, "kinds": kinds, "lease_ms": args.lease_ms, "wait_ms": args.wait_ms},
        )
        if status == 204 or claim is None:
            if args.exit_when_idle:
                break
            continue
        outcome = run_one(client, args.owner, claim, args.lease_ms)
        counts[outcome] += 1
        print(f"{args.owner}: {claim['task']['id']} {outcome}", file=sys.stderr)
    if args.json:
        print(json.dumps(counts))
    else:
        print(f"{args.owner}: {counts['completed']} completed, {counts['failed']} failed, "
              f"{counts['lost']} lost")


if __name__ == "__main__":
    main()
