#!/usr/bin/env python3
"""Talk to the functions that `infra/local/up` serves, as API Gateway would.

`cargo lambda watch` takes Lambda events on its invoke endpoint
(`POST /2015-03-31/functions/<function>/invocations`). This builds those events from
the sample events of `infra/events/`:

  event METHOD PATH [BODY] [--as SUB | --operator]
                                        print an API Gateway v2 event: with --as, a
                                        dashboard request (JWT claims sub=SUB); with
                                        --operator, an operator's IAM-signed request (model
                                        rates); else the agent runtime's IAM-signed request
  call FUNCTION METHOD PATH [BODY] [--as SUB | --operator]
                                        send it and print the status and the JSON answer

Standard library only. WATCH_PORT (9000) as in `infra/local/up`.
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WATCH = f"http://127.0.0.1:{os.environ.get('WATCH_PORT', '9000')}"


def sample(name):
    with open(os.path.join(REPO, "infra", "events", name), encoding="utf-8") as f:
        return json.load(f)


def event(method, path, body=None, sub=None, operator=False):
    """An API Gateway v2 event of `method path` (path may carry a query)."""
    if sub:
        e = sample("account/get-org.json")
    elif operator:
        e = sample("usage/put-rate.json")
    else:
        e = sample("usage/may-i-run.json")
    raw_path, _, query = path.partition("?")
    e["routeKey"] = f"{method} {raw_path}"
    e["rawPath"] = raw_path
    e["rawQueryString"] = query
    pairs = urllib.parse.parse_qsl(query)
    e["queryStringParameters"] = dict(pairs) if pairs else None
    e["requestContext"]["http"]["method"] = method
    e["requestContext"]["http"]["path"] = raw_path
    e["requestContext"]["routeKey"] = e["routeKey"]
    if sub:
        claims = e["requestContext"]["authorizer"]["jwt"]["claims"]
        claims["sub"] = sub
        claims["email"] = f"{sub}@example.com"
    if body is None:
        e.pop("body", None)
    else:
        e["body"] = body if isinstance(body, str) else json.dumps(body)
    return e


def post(url, payload, timeout=900):
    """POST JSON; answers (status, parsed JSON or text). The first call to a function
    under `cargo lambda watch` waits for its build, hence the long timeout."""
    data = json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def invoke(function, e):
    """Invokes `function` with event `e`; answers the HTTP status and JSON body it returned."""
    status, out = post(f"{WATCH}/2015-03-31/functions/{function}/invocations", e)
    if status != 200 or not isinstance(out, dict) or "statusCode" not in out:
        raise SystemExit(f"invoking {function} failed: {status} {out}")
    body = out.get("body") or ""
    try:
        body = json.loads(body)
    except ValueError:
        pass
    return out["statusCode"], body


def _args(argv):
    sub = None
    if "--as" in argv:
        i = argv.index("--as")
        sub = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    operator = "--operator" in argv
    argv = [a for a in argv if a != "--operator"]
    return argv, sub, operator


def main(argv):
    argv, sub, operator = _args(argv)
    if len(argv) >= 3 and argv[0] == "event":
        print(json.dumps(event(argv[1], argv[2], argv[3] if len(argv) > 3 else None, sub, operator)))
    elif len(argv) >= 4 and argv[0] == "call":
        body = argv[4] if len(argv) > 4 else None
        status, body = invoke(argv[1], event(argv[2], argv[3], body, sub, operator))
        print(status)
        print(json.dumps(body, indent=2) if not isinstance(body, str) else body)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
