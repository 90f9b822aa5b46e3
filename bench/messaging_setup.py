#!/usr/bin/python3
"""Prepares a fresh Carewire organization for carewire-messaging-load.

Used by bench/run_messaging_bench.sh; needs Debian's python3-pyotp.

As the owner (one-time password from `carewire init`): sets a password,
enrols TOTP (MFA is required by default), re-authenticates with a code, and
turns MFA off and the session timeouts up for the organization, so the bench
users sign in with a password alone and stay signed in for the whole run.
Then creates --users staff users (role nurse: messages.send and
messages.read), activates each (one-time password, new password, sign-in),
and has the first member of each of --conversations group conversations of
--members members create it. Members are dealt round-robin, so with more
conversations than users / members a user belongs to several.

Writes the set-up file carewire-messaging-load reads:
  user <user_id> <token>
  conversation <conversation_id> <member index> ...

Loopback only; the server's certificate is not verified (it is self-signed).
"""

import argparse
import concurrent.futures
import http.client
import json
import secrets
import ssl
import sys
import threading
import time

import pyotp

_local = threading.local()


class ApiError(Exception):
    pass


def call(port, method, path, body=None, token=None, expect=(200,)):
    """One request on this thread's keep-alive connection; returns the JSON."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60)
        _local.conn = conn
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    data = json.dumps(body) if body is not None else None
    for attempt in range(20):
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode()
        except (http.client.HTTPException, OSError):
            conn.close()
            _local.conn = None
            return call(port, method, path, body, token, expect)
        if resp.status == 503 and attempt < 19:
            # The sign-in workers' queue is full: back off and retry.
            time.sleep(0.2 * (attempt + 1))
            continue
        break
    if resp.status not in expect:
        raise ApiError(f"{method} {path}: {resp.status} {text[:300]}")
    return json.loads(text) if text else None


def new_password():
    return "Bench-" + secrets.token_urlsafe(24)


def totp_after(totp, used_steps):
    """A code for a step the server has not seen yet (each step works once)."""
    while True:
        step = int(time.time()) // 30
        for candidate in (step, step + 1):
            if candidate not in used_steps:
                used_steps.add(candidate)
                return totp.at(candidate * 30)
        time.sleep(1)


def first_sign_in(port, org, username, one_time):
    """Signs in with the one-time password, sets a new one and signs in with
    it; returns the new password and the sign-in's answer."""
    first = call(port, "POST", "/api/v1/auth/login",
                 {"org": org, "username": username, "password": one_time})
    password = new_password()
    call(port, "POST", "/api/v1/me/password",
         {"current_password": one_time, "new_password": password}, first["token"], expect=(204,))
    signed_in = call(port, "POST", "/api/v1/auth/login",
                     {"org": org, "username": username, "password": password})
    return password, signed_in


def prepare_owner(port, org, owner, one_time):
    password, signed_in = first_sign_in(port, org, owner, one_time)
    token = signed_in["token"]
    used = set()
    if signed_in.get("mfa_enrollment_required"):
        started = call(port, "POST", "/api/v1/me/mfa/totp", {"password": password}, token)
        totp = pyotp.TOTP(started["secret"])
        call(port, "POST", "/api/v1/me/mfa/totp/confirm", {"code": totp_after(totp, used)}, token)
        call(port, "POST", "/api/v1/auth/reauth",
             {"password": password, "code": totp_after(totp, used)}, token, expect=(204,))
    else:
        call(port, "POST", "/api/v1/auth/reauth", {"password": password}, token, expect=(204,))
    call(port, "PATCH", "/api/v1/org",
         {"settings": {"mfa_required": False, "idle_timeout_minutes": 240,
                       "absolute_timeout_hours": 72}}, token)
    return token


def activate(port, org, username, one_time):
    _, signed_in = first_sign_in(port, org, username, one_time)
    if "token" not in signed_in or signed_in.get("mfa_enrollment_required") or \
            signed_in.get("password_change_required"):
        raise ApiError(f"sign-in of {username} did not open a full session: {signed_in}")
    return signed_in["user"]["id"], signed_in["token"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--org", required=True)
    p.add_argument("--owner", required=True)
    p.add_argument("--owner-password", required=True, help="the owner's one-time password")
    p.add_argument("--users", type=int, default=40)
    p.add_argument("--conversations", type=int, default=10)
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--parallel", type=int, default=2,
                   help="activations at once (Argon2id runs on one worker per core)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    if a.members < 2 or a.members > a.users:
        sys.exit("messaging_setup: --members must be 2 .. --users")

    started = time.monotonic()
    owner_token = prepare_owner(a.port, a.org, a.owner, a.owner_password)
    names = [f"bench{i:03d}" for i in range(a.users)]
    one_time = {}
    for name in names:
        created = call(a.port, "POST", "/api/v1/users",
                       {"username": name, "roles": ["nurse"]}, owner_token, expect=(201,))
        one_time[name] = created["one_time_password"]

    with concurrent.futures.ThreadPoolExecutor(a.parallel) as pool:
        users = list(pool.map(lambda n: activate(a.port, a.org, n, one_time[n]), names))

    conversations = []
    for c in range(a.conversations):
        members = [(c * a.members + m) % a.users for m in range(a.members)]
        if len(set(members)) != len(members):
            sys.exit("messaging_setup: --members too large for --users")
        creator = members[0]
        made = call(a.port, "POST", "/api/v1/conversations",
                    {"kind": "group", "title": f"Bench ward {c}",
                     "members": [users[m][0] for m in members[1:]]},
                    users[creator][1], expect=(201,))
        conversations.append((made["id"], members))

    with open(a.out, "w") as f:
        for user_id, token in users:
            f.write(f"user {user_id} {token}\n")
        for conv_id, members in conversations:
            f.write(f"conversation {conv_id} {' '.join(map(str, members))}\n")
    print(f"set-up: {a.users} users, {a.conversations} group conversations of {a.members} "
          f"members, in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
