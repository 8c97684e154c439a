#!/usr/bin/env python3
"""Checks infra/openapi.yaml against the code's contract and the SAM template.

Run from anywhere with the repo's virtualenv (no network access needed):

    .venv/bin/python infra/openapi/check.py

1. The document is a valid OpenAPI 3.1 document (openapi_spec_validator).
2. Its (METHOD, path) pairs are exactly the HttpApi events of infra/template.yaml, and
   each operation's security matches the event's authorizer (none: AWS_IAM, the default;
   DashboardJwt; NONE).
3. Every response `example` validates against its response schema (JSON Schema draft
   2020-12, `$ref`s resolved within the document), and every 2xx response with a body has
   one. Request body examples are validated the same way.
4. The bodies of the sample events in infra/events/ that target an HTTP route validate
   against that route's request body schema.

Prints what is wrong and exits 1, or prints a one-line summary and exits 0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import referencing.exceptions
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "infra" / "openapi.yaml"
TEMPLATE = ROOT / "infra" / "template.yaml"
EVENTS = ROOT / "infra" / "events"
DOC_URI = "urn:agent-credits:openapi"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

# Template authorizer name -> the security scheme the document must name ([] = open).
AUTH_SCHEMES = {"AWS_IAM": ["iam"], "DashboardJwt": ["dashboardJwt"], "NONE": []}


class CfnLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation's short tags (!Ref, !Sub, !GetAtt, ...)
    as the plain value under the tag."""


def _cfn_tag(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


CfnLoader.add_multi_constructor("!", _cfn_tag)


PAGE_BINARY = "billing-page"


def page_routes() -> set[tuple[str, str]]:
    """(METHOD, path) of the billing page function's HttpApi events."""
    template = yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)
    out = set()
    for res in template["Resources"].values():
        binary = ((res.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
        if res.get("Type") != "AWS::Serverless::Function" or binary != PAGE_BINARY:
            continue
        for event in (res.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") == "HttpApi":
                out.add((event["Properties"]["Method"].upper(), event["Properties"]["Path"]))
    return out


def template_routes() -> dict[tuple[str, str], list[str]]:
    """(METHOD, path) -> expected security scheme names, from every HttpApi event."""
    template = yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)
    api_auth = {}
    for name, res in template["Resources"].items():
        if res.get("Type") == "AWS::Serverless::HttpApi":
            api_auth[name] = (res.get("Properties", {}).get("Auth") or {}).get("DefaultAuthorizer", "NONE")
    routes: dict[tuple[str, str], list[str]] = {}
    for res in template["Resources"].values():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        for event in (res.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties", {})
            api = props.get("ApiId")
            default = api_auth.get(api, "NONE") if api else "NONE"
            authorizer = (props.get("Auth") or {}).get("Authorizer", default)
            key = (props["Method"].upper(), props["Path"])
            routes[key] = AUTH_SCHEMES.get(authorizer, [f"<unknown authorizer {authorizer}>"])
    return routes


def operations(doc: dict):
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def resolve(doc: dict, node: dict) -> tuple[dict, str | None]:
    """Follows a local `$ref` (one level is all the document uses for responses and request
    bodies); returns the node and its JSON pointer when it came from a reference."""
    ref = node.get("$ref")
    if not ref:
        return node, None
    target = doc
    try:
        if not ref.startswith("#/"):
            raise KeyError(ref)
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
    except (KeyError, TypeError):
        return node, None  # openapi_spec_validator reports the broken reference
    return target, ref[1:]


def short(e: Exception, limit: int = 240) -> str:
    """The first line of an error, cut short: some messages embed the whole document."""
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def pointer(*parts: str) -> str:
    return "".join("/" + escape(p) for p in parts)


def main() -> int:
    try:
        doc = yaml.safe_load(DOC.read_text())
    except yaml.YAMLError as e:
        print(f"FAIL {DOC.relative_to(ROOT)} is not YAML: {e}")
        return 1
    problems: list[str] = []

    # 1. The document itself.
    try:
        validate(doc, cls=OpenAPIV31SpecValidator)
    except Exception as e:  # the validator's error names the offending place
        problems.append(f"openapi_spec_validator: {short(e)}")

    # 2. Routes and their authorizers.
    expected = template_routes()
    documented = {(m, p): op for m, p, op in operations(doc)}
    # The billing page's routes answer HTML, not the API: the README documents them.
    api = {k: v for k, v in expected.items() if k not in page_routes()}
    root_security = doc.get("security", [])
    for key in sorted(set(api) - set(documented)):
        problems.append(f"route in the template, not in the document: {key[0]} {key[1]}")
    for key in sorted(set(documented) - set(api)):
        problems.append(f"route in the document, not in the template: {key[0]} {key[1]}")
    for key in sorted(set(api) & set(documented)):
        security = documented[key].get("security", root_security)
        names = sorted(name for req in security for name in req)
        if names != sorted(expected[key]):
            problems.append(
                f"{key[0]} {key[1]}: security {names or 'open'}, template says {expected[key] or 'open'}"
            )

    # 3. Examples against their schemas, with `$ref`s resolved in the document.
    registry = Registry().with_resource(DOC_URI, Resource(contents=doc, specification=DRAFT202012))

    def check(schema_ptr: str, instance, where: str) -> None:
        validator = Draft202012Validator(
            {"$ref": f"{DOC_URI}#{schema_ptr}"},
            registry=registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        try:
            errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        except referencing.exceptions.Unresolvable as e:
            problems.append(f"{where}: its schema has an unresolvable $ref: {short(e)}")
            return
        for err in errors:
            at = "/".join(str(p) for p in err.absolute_path) or "(root)"
            problems.append(f"{where}: example invalid at {at}: {err.message}")

    def media_examples(media: dict):
        if "example" in media:
            yield "example", media["example"]
        for name, ex in (media.get("examples") or {}).items():
            ex, _ = resolve(doc, ex)
            if "value" in ex:
                yield f"examples/{name}", ex["value"]

    seen: set[tuple[str, str]] = set()
    for method, path, op in operations(doc):
        op_ptr = pointer("paths", path, method.lower())
        body = op.get("requestBody")
        if body:
            body, ref_ptr = resolve(doc, body)
            base = ref_ptr or op_ptr + "/requestBody"
            for mtype, media in (body.get("content") or {}).items():
                if "schema" not in media:
                    continue
                for label, value in media_examples(media):
                    check(f"{base}{pointer('content', mtype, 'schema')}", value, f"{method} {path} request {label}")
                    seen.add((base + pointer("content", mtype), label))
        for status, response in (op.get("responses") or {}).items():
            response, ref_ptr = resolve(doc, response)
            base = ref_ptr or op_ptr + pointer("responses", str(status))
            content = response.get("content") or {}
            for mtype, media in content.items():
                examples = list(media_examples(media))
                if str(status).startswith("2") and not examples:
                    problems.append(f"{method} {path} {status} {mtype}: no example")
                if "schema" not in media:
                    problems.append(f"{method} {path} {status} {mtype}: no schema")
                    continue
                for label, value in examples:
                    check(f"{base}{pointer('content', mtype, 'schema')}", value, f"{method} {path} {status} {label}")
                    seen.add((base + pointer("content", mtype), label))

    # 4. The sample events' bodies against the request schemas of their routes.
    events = 0
    for path in sorted(EVENTS.rglob("*.json")):
        event = json.loads(path.read_text())
        route = event.get("routeKey")
        if not route or " " not in route:
            continue  # not an API Gateway event (e.g. the scheduler's)
        method, route_path = route.split(" ", 1)
        rel = path.relative_to(ROOT)
        if (method, route_path) not in expected:
            problems.append(f"{rel}: routeKey {route} is no HttpApi route of the template")
            continue
        op = documented.get((method, route_path))
        body = op.get("requestBody") if op else None
        if not body or not event.get("body"):
            continue
        body, ref_ptr = resolve(doc, body)
        base = ref_ptr or pointer("paths", route_path, method.lower()) + "/requestBody"
        try:
            value = json.loads(event["body"])
        except json.JSONDecodeError as e:
            problems.append(f"{rel}: body is not JSON: {e}")
            continue
        check(f"{base}{pointer('content', 'application/json', 'schema')}", value, f"{rel} body")
        events += 1

    if problems:
        for p in problems:
            print(f"FAIL {p}")
        print(f"openapi check: {len(problems)} problem(s)")
        return 1
    print(
        f"openapi check: OK - valid OpenAPI 3.1; {len(documented)} operations = {len(api)} "
        f"template HttpApi routes of the API (security matches; {len(page_routes())} page routes apart); {len(seen)} examples and {events} sample event "
        "bodies validate"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
