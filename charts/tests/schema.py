#!/usr/bin/env python3
"""Writes charts/steward/values.schema.json (run after changing values.yaml).

Every object the chart owns is closed (additionalProperties: false), so a
misspelt key fails `helm lint/template/install`; every leaf has a type. The
`config` blocks mirror the binary's serde structs (services/*/src/lib.rs,
gateway/src/lib.rs, services/kit): the binary itself ignores unknown keys, so
this schema is where a misspelt config key is caught. Kubernetes objects
passed through (affinity, env, tolerations, ...) are closed at their top
level; their insides are checked by kubernetes-validate on the rendered
manifests. `.ci/chart-check` fails when the file is not this script's output.
"""
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "steward" / "values.schema.json"


def obj(props, required=(), desc=None):
    o = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        o["required"] = list(required)
    if desc:
        o["description"] = desc
    return o


def map_of(value):
    return {"type": "object", "additionalProperties": value}


STR = {"type": "string"}
NESTR = {"type": "string", "minLength": 1}
BOOL = {"type": "boolean"}
INT = {"type": "integer"}
NAT = {"type": "integer", "minimum": 0}
POS = {"type": "integer", "minimum": 1}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
STRMAP = map_of(STR)
# humantime durations as the binary parses them: "30s", "15m", "1h 30m", "200ms".
DURATION = {"type": "string", "pattern": r"^\s*([0-9]+\s*[a-zA-Zµ]+\s*)+$"}
DECIMAL = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
URL = {"type": "string", "pattern": r"^https?://[^\s]+$"}
QUANTITY = {"type": ["string", "integer", "number"]}
INT_OR_STR = {"type": ["integer", "string"]}
ANY_OBJ = {"type": "object"}
K8S_LIST = {"type": "array", "items": ANY_OBJ}

RESOURCES = obj({"requests": map_of(QUANTITY), "limits": map_of(QUANTITY), "claims": K8S_LIST})
AFFINITY = obj({"nodeAffinity": ANY_OBJ, "podAffinity": ANY_OBJ, "podAntiAffinity": ANY_OBJ})
TOLERATION = obj({"key": STR, "operator": {"enum": ["Exists", "Equal"]}, "value": STR,
                  "effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute", ""]},
                  "tolerationSeconds": INT})
SPREAD = obj({"maxSkew": POS, "topologyKey": NESTR,
              "whenUnsatisfiable": {"enum": ["DoNotSchedule", "ScheduleAnyway"]},
              "labelSelector": ANY_OBJ, "minDomains": POS, "matchLabelKeys": {"type": "array", "items": STR},
              "nodeAffinityPolicy": {"enum": ["Honor", "Ignore"]},
              "nodeTaintsPolicy": {"enum": ["Honor", "Ignore"]}}, required=["maxSkew", "topologyKey", "whenUnsatisfiable"])
ENV = obj({"name": {"type": "string", "pattern": r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"}, "value": STR, "valueFrom": ANY_OBJ},
          required=["name"])
DATABASE = obj({
    "url": {"type": "string", "pattern": r"^(|postgres(ql)?://.+)$",
            "description": "postgres:// URL, stored in a Secret by the chart"},
    "existingSecret": STR,
    "existingSecretKey": NESTR,
})

# --- the binary's configuration (snake_case TOML keys) -----------------------
RELAY = obj({"batch_size": POS, "poll_interval": DURATION, "min_backoff": DURATION,
             "max_backoff": DURATION})
CIDR = {"type": "string", "pattern": r"^[0-9a-fA-F.:]+/[0-9]{1,3}$"}
CIDRS = {"type": "array", "items": CIDR}
# base64 of 32 bytes (Ed25519 seeds, the TOTP key-encryption key); "" = not given here.
KEY32 = {"type": "string", "pattern": r"^(|[A-Za-z0-9+/]{43}=)$", "description": "base64 of 32 bytes"}
SIZE = {"type": "string", "pattern": r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$"}


def key_secret():
    """A key given inline (kept in the chart's Secret) or in a Secret you manage."""
    return obj({"value": KEY32, "existingSecret": STR, "existingSecretKey": NESTR})
SHARED_CONFIG = obj({
    "log_format": {"enum": ["json", "pretty"]},
    "otlp_endpoint": {"type": "string", "pattern": r"^(|https?://[^\s]+)$"},
    "server": obj({
        "request_timeout": DURATION,
        "concurrency_limit": POS,
    }),
    "pool": obj({"max_connections": POS, "connect_timeout": DURATION}),
    "auth": obj({"accounts_endpoint": URL}),
    "outbox": obj({"audit_endpoint": URL, "notifications_endpoint": URL, "quotas_endpoint": URL,
                   "erasure_endpoints": {"type": "array", "items": URL}, "relay": RELAY}),
}, desc="Top-level sections of steward.toml shared by every component")

IDENTITY = obj({k: DURATION for k in [
    "access_token_ttl", "refresh_token_ttl", "lockout_window", "lockout_duration",
    "impersonation_default_ttl", "impersonation_max_ttl", "api_token_default_ttl", "api_token_max_ttl"]}
    | {"lockout_threshold": POS, "totp_issuer": NESTR})
DELIVERY = obj({"max_in_flight": POS, "message_timeout": DURATION, "max_attempts": POS,
                "min_backoff": DURATION, "max_backoff": DURATION, "poll_interval": DURATION,
                "sending_lease": DURATION})
PRICES = obj({k: DECIMAL for k in ["reserved_cloudlet_hour", "dynamic_cloudlet_hour", "storage_gb_hour", "traffic_gb"]})
COMPONENT_CONFIG = {
    "gateway": obj({
        "backends": map_of(URL),
        "audit_endpoint": URL,
        "cors_origins": {"type": "array", "items": {"type": "string", "pattern": r"^https?://[^\s/]+$"}},
        "rate_limits": obj({k: POS for k in [
            "per_ip_per_second", "per_ip_burst", "per_principal_per_second",
            "per_principal_burst", "sign_in_per_minute", "sign_in_burst"]}),
        "jwks_refresh_interval": DURATION, "session_check_ttl": DURATION, "api_token_cache_ttl": DURATION,
        "token_cache_size": POS, "audit_buffer": POS, "connections_per_backend": POS,
        "refusal_spool_max_bytes": POS, "refusal_flood_window": DURATION,
        "refusal_flood_sample": POS, "refusal_retry_max_backoff": DURATION,
    }),
    "accounts": obj({"erasure_interval": DURATION, "idempotency_retention": DURATION, "identity": IDENTITY}),
    "billing": obj({
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "tariffs": obj({"default": PRICES, "groups": map_of(PRICES)}),
        "extra_bonus": {"type": "array", "items": obj({"min_amount": DECIMAL, "percent": DECIMAL},
                                                      required=["min_amount", "percent"])},
        "renewal_interval": DURATION,
    }),
    "quotas": obj({
        "accounts_endpoint": URL,
        "idempotency_retention": DURATION,
        "cache": obj({"enabled": BOOL, "capacity": POS, "warm": BOOL, "heartbeat": DURATION, "fence": DURATION,
                      "lease": DURATION, "settle_timeout": DURATION}),
    }),
    "audit": obj({"max_group_events": POS, "retention_interval": DURATION, "checkpoint_interval": DURATION,
                  "chain_public_keys": {"type": "array", "items": {"type": "string", "pattern": r"^[A-Za-z0-9+/]{43}=$"}}}),
    "notifications": obj({
        "dashboard_url": URL, "product_name": NESTR, "delivery": DELIVERY,
        # host/port/tls/from come from the notifications.smtp block.
        "smtp": obj({"pool": BOOL, "pool_size": POS, "hello_name": NESTR}),
    }, desc="[notifications] keys; smtp host/port/tls/from and credentials are the smtp block"),
}


def component(name):
    props = {
        "enabled": BOOL,
        "port": PORT,
        "replicas": NAT,
        "resources": RESOURCES,
        "nodeSelector": STRMAP,
        "affinity": AFFINITY,
        "tolerations": {"type": "array", "items": TOLERATION},
        "topologySpreadConstraints": {"type": "array", "items": SPREAD},
        "priorityClassName": STR,
        "podAnnotations": STRMAP,
        "podLabels": STRMAP,
        "extraEnv": {"type": "array", "items": ENV},
        "service": obj({"type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]}, "annotations": STRMAP}),
        "autoscaling": obj({"enabled": BOOL, "minReplicas": POS, "maxReplicas": POS,
                            "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 0, "maximum": 100},
                            "targetMemoryUtilizationPercentage": {"type": "integer", "minimum": 0, "maximum": 100}}),
        "podDisruptionBudget": obj({"enabled": BOOL, "minAvailable": INT_OR_STR,
                                    "maxUnavailable": {"type": ["integer", "string", "null"]}}),
        "config": COMPONENT_CONFIG[name],
    }
    if name != "gateway":
        props["database"] = DATABASE
    if name == "gateway":
        props["refusalSpool"] = obj({
            "sizeLimit": SIZE,
            "persistence": obj({"enabled": BOOL, "size": SIZE, "storageClassName": STR,
                                "accessModes": {"type": "array", "items": {"enum": ["ReadWriteOnce", "ReadWriteOncePod"]}}}),
        })
    if name == "accounts":
        props["totpKey"] = key_secret()
    if name == "audit":
        props["chainKey"] = key_secret()
        props["checkpoints"] = obj({"sizeLimit": SIZE, "existingClaim": STR})
    if name == "notifications":
        props["smtp"] = obj({
            "host": STR, "port": PORT, "tls": {"enum": ["starttls", "tls", "none"]}, "from": STR,
            "username": STR, "password": STR, "existingSecret": STR,
            "existingSecretUsernameKey": NESTR, "existingSecretPasswordKey": NESTR,
            "caConfigMap": STR, "caConfigMapKey": NESTR})
    return obj(props, required=["enabled", "port"])


SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "steward chart values",
    **obj({
        "global": ANY_OBJ,
        "image": obj({"repository": NESTR, "tag": STR,
                      "digest": {"type": "string", "pattern": r"^(|sha256:[0-9a-f]{64})$"},
                      "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}),
        "imagePullSecrets": {"type": "array", "items": obj({"name": NESTR}, required=["name"])},
        "nameOverride": STR,
        "fullnameOverride": STR,
        "commonLabels": STRMAP,
        "serviceAccount": obj({"create": BOOL, "name": STR, "annotations": STRMAP}),
        "database": DATABASE,
        "auth": obj({
            "signingKey": {"type": "string", "pattern": r"^(|[A-Za-z0-9+/]{43}=)$",
                           "description": "base64 of a 32-byte Ed25519 seed"},
            "existingSecret": STR,
            "existingSecretSigningKeyKey": NESTR,
            "existingSecretPublicKeysKey": NESTR,
            "publicKeys": {"type": "array", "items": {"type": "string", "pattern": r"^[A-Za-z0-9+/]{43}=$"}},
        }),
        "config": SHARED_CONFIG,
        "logLevel": NESTR,
        "podSecurityContext": obj({
            "runAsNonRoot": BOOL, "runAsUser": NAT, "runAsGroup": NAT, "fsGroup": NAT,
            "fsGroupChangePolicy": {"enum": ["Always", "OnRootMismatch"]},
            "supplementalGroups": {"type": "array", "items": NAT},
            "seccompProfile": obj({"type": {"enum": ["RuntimeDefault", "Localhost", "Unconfined"]},
                                   "localhostProfile": STR}, required=["type"]),
            "seLinuxOptions": ANY_OBJ, "appArmorProfile": ANY_OBJ, "sysctls": K8S_LIST}),
        "containerSecurityContext": obj({
            "allowPrivilegeEscalation": BOOL, "readOnlyRootFilesystem": BOOL, "runAsNonRoot": BOOL,
            "runAsUser": NAT, "runAsGroup": NAT, "privileged": BOOL,
            "capabilities": obj({"drop": {"type": "array", "items": STR}, "add": {"type": "array", "items": STR}}),
            "seccompProfile": obj({"type": {"enum": ["RuntimeDefault", "Localhost", "Unconfined"]},
                                   "localhostProfile": STR}, required=["type"]),
            "seLinuxOptions": ANY_OBJ, "appArmorProfile": ANY_OBJ}),
        "tmpVolume": obj({"sizeLimit": SIZE}),
        "probes": obj({p: obj({"periodSeconds": POS, "failureThreshold": POS, "timeoutSeconds": POS})
                       for p in ["startup", "readiness", "liveness"]}),
        "shutdown": obj({"preStopSleepSeconds": NAT, "terminationGracePeriodSeconds": POS}),
        "migrations": obj({"enabled": BOOL, "backoffLimit": NAT, "activeDeadlineSeconds": POS,
                           "ttlSecondsAfterFinished": NAT, "resources": RESOURCES, "nodeSelector": STRMAP,
                           "tolerations": {"type": "array", "items": TOLERATION}, "affinity": AFFINITY}),
        "networkPolicy": obj({"enabled": BOOL,
                              "allowedNamespaces": {"type": "array", "items": NESTR},
                              "gatewayFrom": K8S_LIST,
                              "metricsNamespace": STR}),
        "metrics": obj({"adminPort": {"type": "integer", "minimum": 0, "maximum": 65535}}),
        "trustedProxies": obj({"services": CIDRS, "gateway": CIDRS}),
        "serviceMonitor": obj({"enabled": BOOL, "interval": DURATION, "scrapeTimeout": DURATION, "labels": STRMAP}),
        "ingress": obj({
            "enabled": BOOL, "className": STR, "annotations": STRMAP,
            "hosts": {"type": "array", "items": obj({
                "host": NESTR,
                "paths": {"type": "array", "items": obj({
                    "path": NESTR, "pathType": {"enum": ["Prefix", "Exact", "ImplementationSpecific"]}},
                    required=["path", "pathType"])}}, required=["host", "paths"])},
            "tls": {"type": "array", "items": obj({"secretName": STR, "hosts": {"type": "array", "items": NESTR}})},
        }),
        "gatewayApi": obj({"enabled": BOOL,
                           "parentRefs": {"type": "array", "items": obj({
                               "name": NESTR, "namespace": STR, "sectionName": STR, "port": PORT,
                               "group": STR, "kind": STR}, required=["name"])},
                           "hostnames": {"type": "array", "items": NESTR},
                           "grpcWeb": BOOL}),
        **{name: component(name) for name in COMPONENT_CONFIG},
    }),
}

text = json.dumps(SCHEMA, indent=2, ensure_ascii=False) + "\n"
if sys.argv[1:] == ["--check"]:
    if OUT.read_text() != text:
        sys.exit(f"{OUT} is not the output of {__file__}: run it and commit the result")
else:
    OUT.write_text(text)
