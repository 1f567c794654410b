"""Fuzz the API's contract with schemathesis, as anon and as each demo role (issue 9).

Starts a fresh `melhor-saude serve` (embedded PostgreSQL in a temporary data
directory, demo data), signs in as the demo admin, HR, employee and specialist, and
runs schemathesis against /openapi.json once per caller with bounded examples and a
fixed seed. Fails on any 5xx, any status an operation does not document, any
response that does not match its schema, or a wrong content type. Afterwards the
demo admin must still sign in and still be an admin: a fuzzer can neither lock a
demo account nor demote the last admin.

    python3 -m uv run python .ci/fuzz.py [--max-examples 30] [--seed 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

DEMO_PASSWORD = "MelhorSaude2026!"  # noqa: S105 - the published demo password
DOMAIN = "demo.melhorsaude.example"
ST = str(Path(sys.executable).with_name("st"))  # the CLI beside this interpreter
ROLES = {"admin": "admin", "hr": "rh", "employee": "ana", "specialist": "dra.marta"}
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "response_schema_conformance",
        "content_type_conformance",
    ]
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _login(base: str, local: str) -> str:
    r = httpx.post(
        f"{base}/v1/auth/login",
        json={"email": f"{local}@{DOMAIN}", "password": DEMO_PASSWORD},
        timeout=30,
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-examples", type=int, default=30)
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="ms-fuzz-")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("MS_")}
    # Limits high enough that the fuzzer reaches the code behind them (429 is documented).
    env.update(
        MS_DATA_DIR=data_dir,
        MS_LOG_LEVEL="WARNING",
        MS_RATE_LIMIT_WRITES_PER_MINUTE="1000000",
        MS_RATE_LIMIT_AUTH_PER_MINUTE_PER_ADDRESS="1000000",
        MS_RATE_LIMIT_AUTH_PER_MINUTE_PER_ACCOUNT="1000000",
        MS_RATE_LIMIT_EMAILS_PER_HOUR_PER_ACCOUNT="1000000",
        MS_LOGIN_ADDRESS_FREE_FAILURES="1000000",
    )
    # Video bodies for the recordings upload (see fuzz_hooks.py).
    st_env = {**os.environ, "SCHEMATHESIS_HOOKS": "fuzz_hooks"}
    st_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")])
    )
    server = subprocess.Popen(  # noqa: S603 - our own console script
        [sys.executable, "-m", "melhor_saude.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    failed: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                print("the service did not start", file=sys.stderr)
                return 1
            time.sleep(0.5)
        callers: dict[str, str | None] = {"anon": None}
        callers.update({role: _login(base, local) for role, local in ROLES.items()})
        for role, token in callers.items():
            command = [
                ST, "run", f"{base}/openapi.json", "--checks", CHECKS,
                "--max-examples", str(args.max_examples), "--seed", str(args.seed),
                "--phases", "examples,coverage,fuzzing",
                "--generation-with-security-parameters", "false",
                "--request-timeout", "20", "--no-color",
            ]  # fmt: skip
            if token:
                command += ["--header", f"Authorization: Bearer {token}"]
            started = time.monotonic()
            done = subprocess.run(command, capture_output=True, text=True, check=False, env=st_env)  # noqa: S603
            summary = [line for line in done.stdout.splitlines() if "generated" in line]
            print(f"{role}: exit {done.returncode} in {time.monotonic() - started:.0f} s;"
                  f" {summary[-1].strip() if summary else 'no summary'}")  # fmt: skip
            if done.returncode != 0:
                print(done.stdout[:12000])
                failed.append(role)
        token = _login(base, ROLES["admin"])  # not locked out
        me = httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
        if {"role": "admin", "company_id": None} not in me["roles"]:
            failed.append("the demo admin lost the admin role")
    finally:
        server.terminate()
        try:
            server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
    if failed:
        print(f"fuzzing failed for: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
