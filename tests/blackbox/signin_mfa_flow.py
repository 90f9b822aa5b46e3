#!/usr/bin/python3
"""Sign-in and MFA end to end, from outside, against a real carewire binary.

Usage: /usr/bin/python3 signin_mfa_flow.py PATH/TO/carewire

Uses only Python's standard library and pyotp (Debian's python3-pyotp), so
the TOTP codes come from an implementation that shares nothing with the
server's. Run it with /usr/bin/python3: that is the interpreter Debian's
pyotp is installed for.

In a new temporary data directory: `carewire init`, `carewire serve` on
127.0.0.1:0, then the first sign-in with the one-time password, the forced
password change, TOTP enrolment and confirmation, sign-ins with a TOTP code
and with a recovery code (each used once), re-authentication, logout, and
after SIGTERM `carewire audit verify`. Exits 0 when every step answers as
/work/shared/API.md says, else 1 with a message naming the first step that
did not. The server is always stopped.
"""

import hashlib
import http.client
import json
import os
import queue
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import pyotp

ORG = "blackbox-clinic"
OWNER = "olivia"
PASSWORD = "violet-lantern-orbit-97"
STEP = 30  # seconds per TOTP step (RFC 6238 default, as API.md states)


class StepFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise StepFailed(message)


class Server:
    """`carewire serve` on a free port; its stdout is read on a thread."""

    def __init__(self, binary, data_dir):
        self.proc = subprocess.Popen(
            [binary, "serve", "--data-dir", data_dir, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put),
                         daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr.append),
                         daemon=True).start()
        self.host, self.port, self.fingerprint = None, None, None
        try:
            self._wait_for_listening()
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    def _wait_for_listening(self):
        deadline = time.monotonic() + 60
        while self.port is None:
            left = deadline - time.monotonic()
            expect(left > 0 and self.proc.poll() is None,
                   "serve: no 'listening on https://HOST:PORT' line (exit %s)\n%s"
                   % (self.proc.poll(), self.log_tail()))
            try:
                line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            found = re.search(r"sha256 fingerprint ([0-9A-Fa-f:]+)", line)
            if found:
                self.fingerprint = found.group(1).replace(":", "").lower()
            found = re.match(r"listening on https://(\[[^\]]+\]|[^:]+):(\d+)\s*$", line)
            if found:
                self.host, self.port = found.group(1).strip("[]"), int(found.group(2))

    @staticmethod
    def _read(stream, sink):
        for line in stream:
            sink(line)

    def log_tail(self, n=20):
        return "".join(self.stderr[-n:])

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends `sig` and returns the exit status (negative: killed by a signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Client:
    """One HTTPS request per call. The certificate is self-signed: it is
    checked against the fingerprint the server printed, not against a CA."""

    def __init__(self, server):
        self.server = server
        self.context = ssl.create_default_context()
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE

    def call(self, method, path, body=None, token=None):
        conn = http.client.HTTPSConnection(self.server.host, self.server.port,
                                           context=self.context, timeout=30)
        try:
            headers = {}
            data = None
            if body is not None:
                data = json.dumps(body).encode("utf-8")
                headers["Content-Type"] = "application/json"
            if token:
                headers["Authorization"] = "Bearer " + token
            conn.request(method, path, body=data, headers=headers)
            if self.server.fingerprint:
                der = conn.sock.getpeercert(binary_form=True)
                expect(hashlib.sha256(der).hexdigest() == self.server.fingerprint,
                       "the server's certificate is not the one whose fingerprint it printed")
            response = conn.getresponse()
            raw = response.read().decode("utf-8", "replace")
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return response.status, parsed, raw
        finally:
            conn.close()


def expect_status(what, answer, status, error_code=None):
    got, parsed, raw = answer
    expect(got == status, "%s: status %d, expected %d: %s" % (what, got, status, raw[:400]))
    if error_code is not None:
        code = (parsed or {}).get("error", {}).get("code") if isinstance(parsed, dict) else None
        expect(code == error_code, "%s: error code %r, expected %r: %s"
               % (what, code, error_code, raw[:400]))
    return parsed


def run_tool(binary, args, what):
    done = subprocess.run([binary] + args, capture_output=True, text=True, timeout=120)
    expect(done.returncode == 0, "%s: exit %d\nstdout: %s\nstderr: %s"
           % (what, done.returncode, done.stdout, done.stderr[-2000:]))
    return done.stdout


def flow(binary, work):
    data_dir = os.path.join(work, "data")
    say("carewire init")
    out = run_tool(binary, ["init", "--data-dir", data_dir, "--org", ORG, "--org-name",
                            "Black Box Clinic", "--owner", OWNER], "init")
    found = re.search(r"^owner %s one-time password: (\S+)$" % re.escape(OWNER), out, re.M)
    expect(found, "init: no 'owner %s one-time password: ...' line in:\n%s" % (OWNER, out))
    one_time_password = found.group(1)

    say("carewire serve")
    server = Server(binary, data_dir)
    try:
        say("listening on %s:%d" % (server.host, server.port))
        api = Client(server)
        steps(api, one_time_password)
        say("SIGTERM")
        status = server.stop(signal.SIGTERM)
        expect(status == 0, "serve: exit status %s after SIGTERM\n%s" % (status, server.log_tail()))
    except StepFailed as failure:
        raise StepFailed("%s\n-- last server log lines --\n%s" % (failure, server.log_tail()))
    finally:
        server.stop(signal.SIGKILL)

    say("carewire audit verify")
    out = run_tool(binary, ["audit", "verify", "--data-dir", data_dir], "audit verify")
    expect(out.startswith("audit ok:"), "audit verify: %r" % out)
    say(out.strip())


def login(api, password):
    return api.call("POST", "/api/v1/auth/login",
                    {"org": ORG, "username": OWNER, "password": password})


def steps(api, one_time_password):
    say("first sign-in with the one-time password")
    first = expect_status("sign-in with the one-time password", login(api, one_time_password), 200)
    expect(first.get("password_change_required") is True,
           "first sign-in: no password_change_required: %r" % first)
    once = first.get("token")
    expect(once, "first sign-in: no token")
    expect_status("GET /api/v1/me with the password-change token",
                  api.call("GET", "/api/v1/me", token=once), 403, "forbidden")

    say("password change")
    expect_status("POST /api/v1/me/password",
                  api.call("POST", "/api/v1/me/password",
                           {"current_password": one_time_password, "new_password": PASSWORD},
                           token=once), 204)

    say("sign-in: MFA enrolment required")
    second = expect_status("sign-in with the new password", login(api, PASSWORD), 200)
    expect(second.get("mfa_enrollment_required") is True,
           "sign-in after the password change: no mfa_enrollment_required: %r" % second)
    token = second.get("token")
    expect(token, "sign-in after the password change: no token")
    expect_status("GET /api/v1/me with the enrolment token",
                  api.call("GET", "/api/v1/me", token=token), 403, "forbidden")

    say("TOTP enrolment")
    enrol = expect_status("POST /api/v1/me/mfa/totp",
                          api.call("POST", "/api/v1/me/mfa/totp", {"password": PASSWORD},
                                   token=token), 200)
    secret, uri = enrol.get("secret"), enrol.get("otpauth_uri")
    expect(isinstance(secret, str) and re.fullmatch(r"[A-Z2-7]+=*", secret or ""),
           "enrolment: secret is not base32: %r" % secret)
    expect(isinstance(uri, str) and uri.startswith("otpauth://totp/"),
           "enrolment: otpauth_uri: %r" % uri)
    totp = pyotp.parse_uri(uri)
    expect(isinstance(totp, pyotp.TOTP), "otpauth_uri is not a TOTP URI: %r" % uri)
    expect(totp.secret == secret, "otpauth_uri's secret %r is not the secret %r"
           % (totp.secret, secret))
    expect(totp.digits == 6 and totp.interval == STEP and totp.digest().name == "sha1",
           "otpauth_uri: digits %s, period %s, algorithm %s; expected 6, 30, sha1"
           % (totp.digits, totp.interval, totp.digest().name))
    expect(OWNER in uri, "otpauth_uri does not name the account: %r" % uri)

    say("confirmation")
    # Not in the last seconds of a step, so the code is still current when it arrives.
    if time.time() % STEP > STEP - 3:
        time.sleep(STEP - time.time() % STEP + 0.2)
    confirmed_at = time.time()
    confirm_code = totp.at(confirmed_at)
    confirmed = expect_status("POST /api/v1/me/mfa/totp/confirm",
                              api.call("POST", "/api/v1/me/mfa/totp/confirm",
                                       {"code": confirm_code}, token=token), 200)
    recovery = confirmed.get("recovery_codes")
    expect(isinstance(recovery, list) and len(recovery) == 10
           and all(isinstance(c, str) and c for c in recovery) and len(set(recovery)) == 10,
           "confirmation: expected 10 distinct recovery codes: %r" % confirmed)
    me = expect_status("GET /api/v1/me after confirmation",
                       api.call("GET", "/api/v1/me", token=token), 200)
    expect(me.get("mfa_enabled") is True, "GET /api/v1/me: mfa_enabled is not true: %r" % me)
    expect(me.get("username") == OWNER and me.get("org") == ORG, "GET /api/v1/me: %r" % me)

    say("sign-in with a TOTP code")
    challenge = expect_status("sign-in with MFA", login(api, PASSWORD), 200)
    expect(challenge.get("mfa_required") is True and challenge.get("mfa_token")
           and "token" not in challenge,
           "sign-in with MFA: expected only mfa_required and mfa_token: %r" % challenge)
    mfa_token = challenge["mfa_token"]
    same_step = int(time.time()) // STEP == int(confirmed_at) // STEP
    # A code is good once: replaying the confirmation's code is refused,
    # whether or not its step is still the current one.
    expect_status("POST /api/v1/auth/mfa replaying the confirmation code (%s step)"
                  % ("same" if same_step else "next"),
                  api.call("POST", "/api/v1/auth/mfa",
                           {"mfa_token": mfa_token, "code": confirm_code}), 401)
    next_code = totp.at(confirmed_at + STEP)
    signed_in = expect_status("POST /api/v1/auth/mfa with the next step's code",
                              api.call("POST", "/api/v1/auth/mfa",
                                       {"mfa_token": mfa_token, "code": next_code}), 200)
    expect(signed_in.get("token"), "MFA step: no token: %r" % signed_in)
    expect_status("GET /api/v1/me with the MFA session",
                  api.call("GET", "/api/v1/me", token=signed_in["token"]), 200)
    last_step = int(confirmed_at) // STEP + 1

    say("sign-in with a recovery code")
    challenge = expect_status("sign-in with MFA", login(api, PASSWORD), 200)
    signed_in = expect_status("POST /api/v1/auth/mfa with a recovery code",
                              api.call("POST", "/api/v1/auth/mfa",
                                       {"mfa_token": challenge.get("mfa_token"),
                                        "code": recovery[0]}), 200)
    token = signed_in.get("token")
    expect(token, "recovery-code sign-in: no token: %r" % signed_in)
    challenge = expect_status("sign-in with MFA", login(api, PASSWORD), 200)
    expect_status("POST /api/v1/auth/mfa with the same recovery code again",
                  api.call("POST", "/api/v1/auth/mfa",
                           {"mfa_token": challenge.get("mfa_token"), "code": recovery[0]}), 401)

    say("re-authentication")
    # The server accepts a step either side of now, each once: the next
    # unused step may need the clock to move on.
    while last_step + 1 > int(time.time()) // STEP + 1:
        wait = STEP - time.time() % STEP + 0.2
        say("waiting %.0f s for the next TOTP step" % wait)
        time.sleep(wait)
    expect_status("POST /api/v1/auth/reauth",
                  api.call("POST", "/api/v1/auth/reauth",
                           {"password": PASSWORD, "code": totp.at((last_step + 1) * STEP)},
                           token=token), 204)

    say("logout")
    expect_status("POST /api/v1/auth/logout",
                  api.call("POST", "/api/v1/auth/logout", token=token), 204)
    expect_status("GET /api/v1/me after logout",
                  api.call("GET", "/api/v1/me", token=token), 401, "unauthenticated")


def say(text):
    print("signin_mfa_flow: " + text, flush=True)


def main(argv):
    if len(argv) != 2:
        print("usage: %s PATH/TO/carewire" % argv[0], file=sys.stderr)
        return 2
    binary = os.path.abspath(argv[1])
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="carewire-blackbox-")
    try:
        flow(binary, work)
    except StepFailed as failure:
        print("signin_mfa_flow: FAILED: %s" % failure, file=sys.stderr, flush=True)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say("ok in %.1f s" % (time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
