#!/usr/bin/env python3
"""An independent client: Python grpcio against a real `steward up`.

Starts `steward up` on free ports with a throwaway data dir, mints an admin
token with `steward token issue`, discovers the service through server
reflection, then creates, lists and suspends users through stubs generated
from proto/ with grpcio-tools. Then, through the gateway: reads its
reflection (and UNIMPLEMENTED for an unknown method), signs in as a
USER_ADMIN with email and password, lists users, is refused without the
role, and makes a gRPC-Web call (the browser wire format, spoken by hand
over HTTP/1.1 with a CORS preflight), reads a user's quotas and changes
their group with notify on, finding the mail in a real SMTP server
(aiosmtpd, python/smtp_sink.py) that `steward up` delivers to. Exits
non-zero on any mismatch.

usage: client_check.py --steward target/debug/steward
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import struct
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate_stubs(out: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    protos = [str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto")]
    code = protoc.main(
        ["protoc", f"-I{ROOT / 'proto'}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}", *protos]
    )
    if code != 0:
        sys.exit(f"grpcio-tools failed to compile proto/ ({code})")
    sys.path.insert(0, str(out))


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"steward up exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"steward up did not listen on {port} within {timeout}s")


def check(condition: bool, message: str) -> None:
    if not condition:
        sys.exit(f"FAILED: {message}")
    print(f"ok: {message}")


UI_ORIGIN = "http://ui.example"


def grpc_web_call(port: int, method: str, message: bytes, token: str, origin: str) -> tuple[list[bytes], dict]:
    """One unary gRPC-Web call: a length-prefixed frame in, data frames and a
    trailer frame (flag 0x80) out."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/{method}",
        data=b"\x00" + struct.pack(">I", len(message)) + message,
        method="POST",
        headers={
            "content-type": "application/grpc-web+proto",
            "x-grpc-web": "1",
            "authorization": f"Bearer {token}",
            "origin": origin,
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
        headers = response.headers
    # A trailers-only answer (an error) carries its status in the headers.
    messages, trailers = [], {k: headers[k] for k in ("grpc-status", "grpc-message") if headers.get(k) is not None}
    while body:
        flag, length = body[0], struct.unpack(">I", body[1:5])[0]
        payload, body = body[5 : 5 + length], body[5 + length :]
        if flag & 0x80:
            for line in payload.decode().split("\r\n"):
                if ":" in line:
                    key, value = line.split(":", 1)
                    trailers[key.strip().lower()] = value.strip()
        else:
            messages.append(payload)
    trailers["access-control-allow-origin"] = headers.get("access-control-allow-origin")
    return messages, trailers


def gateway_checks(steward: str, data_dir: str, env: dict, port: int, email: str, password: str, admin_id: str) -> None:
    from steward.accounts.v1 import accounts_service_pb2 as pb
    from steward.accounts.v1 import accounts_service_pb2_grpc as pb_grpc
    from steward.accounts.v1 import auth_service_pb2 as auth_pb
    from steward.accounts.v1 import auth_service_pb2_grpc as auth_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    # Reflection at the gateway, without a token: what grpcurl needs for the
    # README's `grpcurl ... 127.0.0.1:50050 steward.accounts.v1.AuthService/SignIn`.
    from google.protobuf import descriptor_pb2

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflection.ServerReflectionInfo(iter([
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="steward.accounts.v1.AuthService"),
    ]))
    listed, described = list(responses)
    services = [s.name for s in listed.list_services_response.service]
    check(
        {"steward.accounts.v1.AuthService", "steward.accounts.v1.AccountsService", "steward.billing.v1.BillingService"} <= set(services),
        f"the gateway's reflection lists the routed services ({services})",
    )
    files = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in described.file_descriptor_response.file_descriptor_proto]
    methods = {m.name for f in files for svc in f.service if svc.name == "AuthService" for m in svc.method}
    check("SignIn" in methods, "the gateway's reflection describes AuthService.SignIn")
    try:
        channel.unary_unary("/steward.accounts.v1.AccountsService/NoSuchMethod")(b"")
        check(False, "a method that does not exist is refused")
    except grpc.RpcError as err:
        check(err.code() == grpc.StatusCode.UNIMPLEMENTED, f"a method that does not exist is UNIMPLEMENTED at the gateway ({err.code()})")

    signed_in = auth_grpc.AuthServiceStub(channel).SignIn(
        auth_pb.SignInRequest(email=email, password=password, device="python check")
    )
    check(signed_in.user_id == admin_id and signed_in.tokens.refresh_token, "signed in through the gateway with email and password")
    token = signed_in.tokens.access_token
    accounts = pb_grpc.AccountsServiceStub(channel)
    listed, call = accounts.ListUsers.with_call(pb.ListUsersRequest(query=email), metadata=[("authorization", f"Bearer {token}")])
    check([u.id for u in listed.users] == [admin_id], "the signed-in admin lists users through the gateway")
    check(any(k == "x-request-id" for k, _ in call.initial_metadata()), "the gateway returns a request id")

    user_token = subprocess.run(
        [steward, "--data-dir", data_dir, "token", "issue", "--subject", str(uuid.uuid4()), "--role", "USER"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1]
    try:
        accounts.ListUsers(pb.ListUsersRequest(), metadata=[("authorization", f"Bearer {user_token}")])
        check(False, "a plain user is refused ListUsers at the gateway")
    except grpc.RpcError as err:
        check(err.code() == grpc.StatusCode.PERMISSION_DENIED, "a plain user is PERMISSION_DENIED at the gateway")

    # CORS preflight, as a browser sends it before a gRPC-Web call.
    preflight = urllib.request.Request(
        f"http://127.0.0.1:{port}/steward.accounts.v1.AccountsService/GetUser",
        method="OPTIONS",
        headers={
            "origin": UI_ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-grpc-web,authorization",
        },
    )
    with urllib.request.urlopen(preflight, timeout=10) as response:
        check(response.headers.get("access-control-allow-origin") == UI_ORIGIN, "CORS preflight allows the configured origin")

    messages, trailers = grpc_web_call(
        port, "steward.accounts.v1.AccountsService/GetUser", pb.GetUserRequest(user_id=admin_id).SerializeToString(), token, UI_ORIGIN
    )
    check(trailers.get("grpc-status") == "0", f"gRPC-Web call succeeded ({trailers})")
    user = pb.GetUserResponse.FromString(messages[0]).user
    check(user.email == email, "gRPC-Web GetUser returned the admin")
    check(trailers.get("access-control-allow-origin") == UI_ORIGIN, "the gRPC-Web response carries the CORS origin")
    _, refused = grpc_web_call(
        port, "steward.accounts.v1.AccountsService/ListUsers", pb.ListUsersRequest().SerializeToString(), user_token, UI_ORIGIN
    )
    check(refused.get("grpc-status") == str(grpc.StatusCode.PERMISSION_DENIED.value[0]), f"gRPC-Web refusal carries PERMISSION_DENIED ({refused})")
    return token


def start_smtp_sink(directory: Path):
    """aiosmtpd (python/smtp_sink.py): the SMTP server `steward up` delivers to."""
    sink_port = free_port()
    sink = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("smtp_sink.py")), "--port", str(sink_port), "--dir", str(directory)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    ready = sink.stdout.readline().strip()
    check(ready == f"ready {sink_port}", f"the SMTP sink (aiosmtpd) listens ({ready!r})")
    return sink, sink_port


def quota_and_mail_checks(port: int, token: str, user_id: str, user_email: str, sink_dir: Path) -> None:
    """Through the gateway: a user's quotas (the Quotas tab), then a group
    change with notify on, whose mail `steward up` delivers over SMTP to the
    sink."""
    from steward.accounts.v1 import accounts_service_pb2 as pb
    from steward.accounts.v1 import accounts_service_pb2_grpc as pb_grpc
    from steward.quotas.v1 import quotas_service_pb2 as quotas_pb
    from steward.quotas.v1 import quotas_service_pb2_grpc as quotas_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    auth = [("authorization", f"Bearer {token}")]
    quotas = quotas_grpc.QuotasServiceStub(channel).GetUserQuotas(
        quotas_pb.GetUserQuotasRequest(user_id=user_id, key_contains="environment."), metadata=auth
    )
    keys = [q.key for q in quotas.quotas]
    check("environment.maxcount" in keys and all(k.startswith("environment.") for k in keys),
          f"the user's quotas are read through the gateway, searchable by key ({len(keys)} keys)")
    check(all(q.source != quotas_pb.QUOTA_SOURCE_UNSPECIFIED for q in quotas.quotas), "each quota says where its value comes from")

    results = pb_grpc.AccountsServiceStub(channel).BatchChangeGroup(
        pb.BatchChangeGroupRequest(
            request_id=str(uuid.uuid4()), user_ids=[user_id], group="billing",
            notify=True, mail_template_id="group.billing.welcome",
        ),
        metadata=auth,
    ).results
    check(results[0].user.group == "billing", "the group changed through the gateway, with notify on")
    found = []
    for _ in range(150):
        found = [m for m in sink_dir.iterdir()
                 if (m / "done").exists() and user_email in (m / "to").read_text().splitlines()]
        if found:
            break
        time.sleep(0.1)
    check(len(found) == 1, f"the group change's mail to {user_email} reached the SMTP sink once ({len(found)})")
    if found:
        subject = (found[0] / "subject").read_text()
        check("billing" in subject.lower(), f"the mail is rendered from the chosen template ({subject!r})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steward", required=True)
    args = parser.parse_args()
    steward = str(Path(args.steward).resolve())

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.chmod(tmp, 0o755)  # the private cluster runs as postgres when we are root
        generate_stubs(tmp / "stubs")
        from steward.accounts.v1 import accounts_service_pb2 as pb
        from steward.accounts.v1 import accounts_service_pb2_grpc as pb_grpc
        from steward.audit.v1 import audit_service_pb2 as audit_pb
        from steward.audit.v1 import audit_service_pb2_grpc as audit_grpc
        from steward.billing.v1 import billing_service_pb2 as billing_pb
        from steward.billing.v1 import billing_service_pb2_grpc as billing_grpc
        from steward.common.v1 import common_pb2

        port, billing_port, audit_port, gateway_port = free_port(), free_port(), free_port(), free_port()
        quotas_port, notifications_port = free_port(), free_port()
        env = dict(
            os.environ,
            STEWARD_GATEWAY__LISTEN=f"127.0.0.1:{gateway_port}",
            STEWARD_GATEWAY__CORS_ORIGINS=f'["{UI_ORIGIN}"]',
            STEWARD_ACCOUNTS__LISTEN=f"127.0.0.1:{port}",
            STEWARD_BILLING__LISTEN=f"127.0.0.1:{billing_port}",
            STEWARD_AUDIT__LISTEN=f"127.0.0.1:{audit_port}",
            STEWARD_QUOTAS__LISTEN=f"127.0.0.1:{quotas_port}",
            STEWARD_NOTIFICATIONS__LISTEN=f"127.0.0.1:{notifications_port}",
        )
        sink_dir = tmp / "smtp-sink"
        sink, sink_port = start_smtp_sink(sink_dir)
        env.update(
            STEWARD_NOTIFICATIONS__SMTP__HOST="127.0.0.1",
            STEWARD_NOTIFICATIONS__SMTP__PORT=str(sink_port),
            STEWARD_NOTIFICATIONS__SMTP__TLS="none",
        )
        data_dir = str(tmp / "data")
        log = open(tmp / "steward.log", "w")
        proc = subprocess.Popen([steward, "--data-dir", data_dir, "up"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, proc)
            token = subprocess.run(
                [steward, "--data-dir", data_dir, "token", "issue", "--subject", "py-admin", "--role", "USER_ADMIN"],
                env=env, check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")

            # Reflection (v1alpha, what grpcio-reflection's client speaks).
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            services = [s.name for r in responses for s in r.list_services_response.service]
            check("steward.accounts.v1.AccountsService" in services, f"reflection lists AccountsService ({services})")

            stub = pb_grpc.AccountsServiceStub(channel)
            auth = [("authorization", f"Bearer {token}")]

            try:
                stub.ListUsers(pb.ListUsersRequest())
                check(False, "a call without a token is refused")
            except grpc.RpcError as err:
                check(err.code() == grpc.StatusCode.UNAUTHENTICATED, "a call without a token is UNAUTHENTICATED")

            run = uuid.uuid4().hex[:8]
            ids = []
            for name in ("ada", "grace", "linus"):
                user = stub.CreateUser(pb.CreateUserRequest(email=f"{name}-{run}@py.example", group="beta"), metadata=auth).user
                check(user.status == pb.USER_STATUS_ACTIVE, f"created {user.email} ACTIVE")
                ids.append(user.id)

            listed = stub.ListUsers(pb.ListUsersRequest(query=run, group="beta", order_by=pb.USER_ORDER_BY_EMAIL_ASC), metadata=auth)
            check([u.email for u in listed.users] == [f"{n}-{run}@py.example" for n in ("ada", "grace", "linus")],
                  "ListUsers filters by query and group, ordered by email")

            results = stub.BatchChangeStatus(
                pb.BatchChangeStatusRequest(request_id=f"py-{run}", user_ids=ids[:2], action=pb.STATUS_ACTION_SUSPEND, reason="python check"),
                metadata=auth,
            ).results
            check(all(r.user.status == pb.USER_STATUS_SUSPENDED for r in results), "BatchChangeStatus suspended two users")
            again = stub.BatchChangeStatus(
                pb.BatchChangeStatusRequest(request_id=f"py-{run}", user_ids=ids[:2], action=pb.STATUS_ACTION_SUSPEND, reason="python check"),
                metadata=auth,
            ).results
            check(list(again) == list(results), "a retried batch replays the first result")

            suspended = stub.ListUsers(pb.ListUsersRequest(query=run, status=pb.USER_STATUS_SUSPENDED), metadata=auth).users
            check(sorted(u.id for u in suspended) == sorted(ids[:2]), "ListUsers filters by status")

            admin_email = f"admin-{run}@py.example"
            created = subprocess.run(
                [steward, "--data-dir", data_dir, "user", "create-admin", "--email", admin_email],
                env=env, check=True, capture_output=True, text=True,
            ).stdout
            check("password: " in created, "create-admin generated and printed a password")
            admins = stub.ListUsers(pb.ListUsersRequest(query=admin_email), metadata=auth).users
            check(len(admins) == 1 and pb.ROLE_USER_ADMIN in admins[0].roles, "create-admin made a USER_ADMIN")
            password = created.split("password: ", 1)[1].split()[0]
            admin_token = gateway_checks(steward, data_dir, env, gateway_port, admin_email, password, admins[0].id)
            quota_and_mail_checks(gateway_port, admin_token, ids[2], f"linus-{run}@py.example", sink_dir)

            try:
                stub.CreateUser(pb.CreateUserRequest(email="not an email"), metadata=auth)
                check(False, "a bad email is refused")
            except grpc.RpcError as err:
                check(err.code() == grpc.StatusCode.INVALID_ARGUMENT, "a bad email is INVALID_ARGUMENT")

            # Billing: exact money, idempotent refill.
            billing = billing_grpc.BillingServiceStub(grpc.insecure_channel(f"127.0.0.1:{billing_port}"))
            refill = billing_pb.RefillRequest(
                request_id=f"py-refill-{run}", user_id=ids[0], amount=common_pb2.Decimal(value="0.10"),
                balance_type=billing_pb.BALANCE_TYPE_MAIN, notes="python check",
            )
            billing.Refill(refill, metadata=auth)
            billing.Refill(refill, metadata=auth)
            billing.Refill(billing_pb.RefillRequest(
                request_id=f"py-refill2-{run}", user_id=ids[0], amount=common_pb2.Decimal(value="0.20"),
                balance_type=billing_pb.BALANCE_TYPE_MAIN,
            ), metadata=auth)
            balance = billing.GetBalance(billing_pb.GetBalanceRequest(user_id=ids[0]), metadata=auth).balance
            check(balance.main.value == "0.3", f"0.10 (retried) + 0.20 is exactly 0.3 ({balance.main.value})")

            # Audit: accounts' events reach the audit service through the outbox relay.
            audit = audit_grpc.AuditServiceStub(grpc.insecure_channel(f"127.0.0.1:{audit_port}"))
            actions = []
            for _ in range(100):
                events = audit.ListEvents(
                    audit_pb.ListEventsRequest(filter=audit_pb.EventFilter(subject_user_id=ids[0])), metadata=auth
                ).events
                actions = sorted(e.event.action for e in events)
                if "user.status.suspended" in actions and "billing.balance.refilled" in actions:
                    break
                time.sleep(0.1)
            check("user.created" in actions and "user.status.suspended" in actions and "billing.balance.refilled" in actions,
                  f"the audit log of the user holds accounts' and billing's events ({actions})")
            verify = audit.VerifyChain(audit_pb.VerifyChainRequest(), metadata=auth)
            check(verify.ok, f"the audit chain verifies ({verify.events_checked} events)")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = None
            log.close()
            sink.stdin.close()  # the sink stops when its stdin closes
            sink.wait(timeout=30)
            if code != 0:
                print((tmp / "steward.log").read_text(), file=sys.stderr)
        check(code == 0, "steward up shut down cleanly on SIGTERM")


if __name__ == "__main__":
    main()
