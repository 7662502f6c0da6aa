#!/usr/bin/env python3
"""An independent client: Python grpcio against a real `steward up`.

Starts `steward up` on free ports with a throwaway data dir, mints an admin
token with `steward token issue`, discovers the service through server
reflection, then creates, lists and suspends users through stubs generated
from proto/ with grpcio-tools. Exits non-zero on any mismatch.

usage: client_check.py --steward target/debug/steward
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
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

        port, billing_port, audit_port = free_port(), free_port(), free_port()
        env = dict(
            os.environ,
            STEWARD_ACCOUNTS__LISTEN=f"127.0.0.1:{port}",
            STEWARD_BILLING__LISTEN=f"127.0.0.1:{billing_port}",
            STEWARD_AUDIT__LISTEN=f"127.0.0.1:{audit_port}",
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
            if code != 0:
                print((tmp / "steward.log").read_text(), file=sys.stderr)
        check(code == 0, "steward up shut down cleanly on SIGTERM")


if __name__ == "__main__":
    main()
