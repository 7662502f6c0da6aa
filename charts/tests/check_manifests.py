#!/usr/bin/env python3
"""Tests on the chart's rendered manifests (run by .ci/chart-check).

    check_manifests.py --helm HELM --steward STEWARD --chart DIR RENDERED=VALUES...

Each RENDERED file is `helm template` output for the VALUES file beside it.
Checks: every Deployment has gRPC startup/readiness/liveness probes on its
port, the restricted security context, resources, a preStop pause shorter than
its grace period; the migration Job is a pre-install,pre-upgrade hook whose
Secrets and ServiceAccount are hooks with a lower weight or come from values'
existingSecret; every component has a NetworkPolicy; the CRD objects carry
their essential fields; the rendered steward.toml and each Deployment's
environment are accepted by the real `steward` binary, and every key the
chart writes is one the binary reads (a wrong-typed value under it must make
the binary fail naming the key), except the keys documented as waiting for
the binary; bad values files make `helm lint` fail with a clear message.
"""
import argparse
import base64
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

COMPONENTS = ["gateway", "accounts", "billing", "quotas", "audit", "notifications"]
# Keys the chart writes that this binary does not read yet (see the chart README).
WAITING_FOR_BINARY = re.compile(r"^(quotas\.|notifications\.|metrics\.)")
# A throwaway Ed25519 seed for running the binary.
TEST_SEED = base64.b64encode(bytes(range(32))).decode()

passed = 0
failures = []


def check(cond, what):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
        print(f"FAIL: {what}")


def hook_weight(obj):
    return int(obj["metadata"].get("annotations", {}).get("helm.sh/hook-weight", "0"))


def hooks(obj):
    value = obj["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    return {h.strip() for h in value.split(",") if h.strip()}


def existing_secret_names(values):
    names = set()

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "existingSecret" and v:
                    names.add(v)
                walk(v)

    walk(values)
    return names


def secret_refs(pod_spec):
    for c in pod_spec.get("initContainers", []) + pod_spec["containers"]:
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                yield c["name"], e["name"], ref
    for v in pod_spec.get("volumes", []):
        if "secret" in v:
            yield "(volume)", v["name"], {"name": v["secret"]["secretName"]}


def check_deployment(d, label):
    name = d["metadata"]["name"]
    spec = d["spec"]["template"]["spec"]
    pod_sc = spec.get("securityContext", {})
    check(pod_sc.get("runAsNonRoot") is True, f"{label} {name}: pod runAsNonRoot")
    check(pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{label} {name}: seccomp RuntimeDefault")
    check(spec.get("automountServiceAccountToken") is False, f"{label} {name}: no service account token")
    grace = spec.get("terminationGracePeriodSeconds")
    check(isinstance(grace, int), f"{label} {name}: terminationGracePeriodSeconds set")
    for c in spec["containers"]:
        where = f"{label} {name}/{c['name']}"
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        check("grpc" in ports, f"{where}: has a grpc port")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            p = c.get(probe, {})
            check(p.get("grpc", {}).get("port") == ports.get("grpc"),
                  f"{where}: {probe} is a native gRPC probe on the grpc port")
        sc = c.get("securityContext", {})
        check(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
        check(sc.get("allowPrivilegeEscalation") is False, f"{where}: no privilege escalation")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: drops ALL capabilities")
        res = c.get("resources", {})
        check(bool(res.get("requests")) and bool(res.get("limits", {}).get("memory")),
              f"{where}: resources (requests and a memory limit)")
        pause = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
        check(isinstance(pause, int) and isinstance(grace, int) and grace > pause,
              f"{where}: preStop sleep shorter than the grace period")
        check(c.get("args", [None])[0] == "serve", f"{where}: runs `steward serve`")


def check_job(objs, values, label):
    jobs = [o for o in objs if o["kind"] == "Job"]
    check(len(jobs) == 1, f"{label}: one migration Job")
    if not jobs:
        return
    job = jobs[0]
    check({"pre-install", "pre-upgrade"} <= hooks(job), f"{label}: Job is a pre-install,pre-upgrade hook")
    weight = hook_weight(job)
    spec = job["spec"]["template"]["spec"]
    args = [c["args"] for c in spec.get("initContainers", []) + spec["containers"]]
    check(all(a[0] == "migrate" for a in args), f"{label}: Job runs `steward migrate` ({args})")
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    external = existing_secret_names(values)
    for container, env, ref in secret_refs(spec):
        secret = by_name.get(("Secret", ref["name"]))
        if secret is None:
            check(ref["name"] in external,
                  f"{label}: Job {container} {env}: Secret {ref['name']} is rendered or an existingSecret")
        else:
            check({"pre-install", "pre-upgrade"} <= hooks(secret) and hook_weight(secret) < weight,
                  f"{label}: Job {container} {env}: Secret {ref['name']} is a hook with a lower weight than the Job")
    sa = spec.get("serviceAccountName")
    rendered_sa = by_name.get(("ServiceAccount", sa))
    if rendered_sa is not None:
        check(bool(hooks(rendered_sa)) and hook_weight(rendered_sa) < weight,
              f"{label}: Job's ServiceAccount {sa} exists before it (hook, lower weight)")
    check(not any("configMap" in v for v in spec.get("volumes", [])),
          f"{label}: Job mounts no ConfigMap (not there yet at pre-install)")
    # Deployments are not hooks: Helm creates them after every pre-install hook.
    for d in (o for o in objs if o["kind"] == "Deployment"):
        check(not hooks(d), f"{label}: Deployment {d['metadata']['name']} is not a hook (runs after the Job)")


def check_network_policies(objs, label):
    deployments = {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objs if o["kind"] == "Deployment"}
    policies = {}
    for o in objs:
        if o["kind"] == "NetworkPolicy":
            policies[o["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component")] = o
    check(bool(policies), f"{label}: NetworkPolicy present")
    for comp in deployments:
        check(comp in policies, f"{label}: NetworkPolicy for {comp}")
        if comp in policies and comp != "gateway":
            rules = policies[comp]["spec"]["ingress"]
            grpc = [r for r in rules if any(p["port"] == "grpc" for p in r["ports"])]
            check(grpc and all(r.get("from") for r in grpc), f"{label}: {comp} takes gRPC only from listed peers")


def check_custom_resources(objs, label):
    for o in objs:
        kind = o["kind"]
        if kind == "ServiceMonitor":
            check(o["spec"]["endpoints"] and o["spec"]["selector"]["matchLabels"], f"{label}: ServiceMonitor selects and scrapes")
        elif kind in ("GRPCRoute", "HTTPRoute"):
            check(o["spec"]["parentRefs"] and o["spec"]["rules"][0]["backendRefs"], f"{label}: {kind} has parents and a backend")


class Binary:
    def __init__(self, steward, tmp):
        self.steward = steward
        self.tmp = Path(tmp)
        self.key = self.tmp / "signing-key"
        self.key.write_text(TEST_SEED + "\n")

    def run(self, toml_text, env_extra, tag):
        path = self.tmp / f"steward-{tag}.toml"
        path.write_text(toml_text)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.tmp), "STEWARD_CONFIG": str(path),
               "STEWARD_DATA_DIR": str(self.tmp / "data")}
        env.update(env_extra)
        env["STEWARD_CONFIG"] = str(path)
        return subprocess.run([self.steward, "token", "issue", "--subject", "chart-check", "--role", "USER"],
                              env=env, capture_output=True, text=True, timeout=30)

    def with_local_key(self, toml_text):
        return toml_text.replace('"/etc/steward/keys/signing-key"', f'"{self.key}"')


def config_of(objs):
    cms = [o for o in objs if o["kind"] == "ConfigMap"]
    return cms[0]["data"]["steward.toml"]


def resolve_env(container, objs):
    secrets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
            continue
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if not ref:
            continue
        secret = secrets.get(ref["name"])
        if secret is not None and ref["key"] in secret.get("data", {}):
            env[e["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        elif e["name"] == "STEWARD_DATABASE_URL":
            env[e["name"]] = "postgres://steward:x@db.invalid:5432/steward"  # an existingSecret's value
        elif not ref.get("optional"):
            env[e["name"]] = "from-an-existing-secret"
    return env


def check_binary_accepts(objs, binary, label):
    toml_text = binary.with_local_key(config_of(objs))
    tomllib.loads(toml_text)  # valid TOML at all
    r = binary.run(toml_text, {}, f"{label}-plain")
    check(r.returncode == 0, f"{label}: the binary accepts steward.toml: {r.stderr.strip()}")
    for d in (o for o in objs if o["kind"] == "Deployment"):
        c = d["spec"]["template"]["spec"]["containers"][0]
        env = resolve_env(c, objs)
        r = binary.run(toml_text, env, f"{label}-{c['name']}")
        check(r.returncode == 0, f"{label}: the binary accepts {c['name']}'s config and environment "
                                 f"({sorted(env)}): {r.stderr.strip()}")


def leaf_keys(toml_text):
    """(line index, dotted key) of every `key = value` line."""
    section, out = "", []
    for i, line in enumerate(toml_text.splitlines()):
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1] + "."
        elif "=" in s and not s.startswith("#"):
            out.append((i, section + s.split("=", 1)[0].strip()))
    return out


def check_every_key_is_read(objs, binary, label):
    toml_text = binary.with_local_key(config_of(objs))
    lines = toml_text.splitlines()

    def mutate(item):
        i, key = item
        if key == "auth.signing_key_file":
            return key, None
        changed = list(lines)
        changed[i] = changed[i].split("=", 1)[0] + "= { chart_check_wrong_type = 1 }"
        r = binary.run("\n".join(changed) + "\n", {}, f"{label}-{i}")
        return key, r

    ignored = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for key, r in pool.map(mutate, leaf_keys(toml_text)):
            if r is None:
                continue
            if r.returncode == 0:
                ignored.append(key)
            else:
                check(f"`{key}`" in r.stderr or f"`{key}." in r.stderr, f"{label}: a wrong type under {key} is refused naming it: {r.stderr.strip()}")
    unexpected = [k for k in ignored if not WAITING_FOR_BINARY.match(k)]
    check(not unexpected, f"{label}: keys the binary does not read: {unexpected}")
    waiting = sorted(k for k in ignored if WAITING_FOR_BINARY.match(k))
    if waiting:
        print(f"{label}: keys written for a later binary (ignored by this one): {', '.join(waiting)}")


def check_bad_values(helm, chart, base_values):
    cases = {
        "unknown-key.yaml": "additional properties 'replica' not allowed",
        "wrong-type.yaml": "at '/gateway/port': got string, want integer",
    }
    for name, message in cases.items():
        r = subprocess.run([helm, "lint", "--strict", chart, "-f", base_values, "-f", f"{chart}/ci/invalid/{name}"],
                           capture_output=True, text=True)
        out = r.stdout + r.stderr
        check(r.returncode != 0, f"helm lint fails on ci/invalid/{name}")
        check(message in out, f"helm lint on ci/invalid/{name} says {message!r}; it said: {out.strip()}")


def check_readme_lists_every_value(chart):
    """Every key of values.yaml (component blocks as <component>.) is named in the chart README."""
    values = yaml.safe_load(Path(chart, "values.yaml").read_text())
    readme = Path(chart, "README.md").read_text()

    def flat(d, prefix=""):
        for k, x in d.items():
            if isinstance(x, dict) and x and k != "resources":
                yield from flat(x, prefix + k + ".")
            else:
                yield prefix + k

    for key in flat(values):
        parts = key.split(".")
        if parts[0] in COMPONENTS:
            parts[0] = "<component>"
        leaf = parts[-1]
        parent = ".".join(parts[:-1])
        named = f"`{'.'.join(parts)}`" in readme or (
            parent and re.search(rf"`{re.escape(parent)}\.[^`]*`[^|]*`\.{re.escape(leaf)}`", readme))
        check(bool(named), f"chart README lists the value {'.'.join(parts)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--helm", required=True)
    ap.add_argument("--steward", required=True)
    ap.add_argument("--chart", required=True)
    ap.add_argument("rendered", nargs="+", help="RENDERED=VALUES[,VALUES...]")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        binary = Binary(args.steward, tmp)
        for pair in args.rendered:
            rendered, values_file = pair.split("=", 1)
            label = "+".join(Path(v).name for v in values_file.split(","))
            objs = [o for o in yaml.safe_load_all(Path(rendered).read_text()) if o]
            values = {}
            for v in values_file.split(","):  # later files win, key by key at the top
                for k, x in (yaml.safe_load(Path(v).read_text()) or {}).items():
                    values[k] = {**values[k], **x} if isinstance(x, dict) and isinstance(values.get(k), dict) else x
            deployments = [o for o in objs if o["kind"] == "Deployment"]
            enabled = [c for c in COMPONENTS if values.get(c, {}).get("enabled", c not in ("quotas", "notifications"))]
            check(sorted(d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments) == sorted(enabled),
                  f"{label}: one Deployment per enabled component ({enabled})")
            services = {o["metadata"]["name"] for o in objs if o["kind"] == "Service"}
            check(services == {d["metadata"]["name"] for d in deployments}, f"{label}: a Service per Deployment")
            for d in deployments:
                check_deployment(d, label)
            check_job(objs, values, label)
            check_network_policies(objs, label)
            check_custom_resources(objs, label)
            check_binary_accepts(objs, binary, label)
            check_every_key_is_read(objs, binary, label)
        check_bad_values(args.helm, args.chart, f"{args.chart}/ci/default-values.yaml")
        check_readme_lists_every_value(args.chart)
    print(f"chart: {passed} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
