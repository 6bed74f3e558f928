"""A real SMTP relay for pkg/mail tests (python3-aiosmtpd).

usage: smtpd.py PORT DIR [--tls CERT KEY] [--auth USER PASSWORD]
Each message is written to DIR/NNNN.eml with X-Test-* lines (envelope, TLS, auth) before it.
Prints READY once it accepts connections; runs until stdin closes.
"""
import os
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, outdir = int(sys.argv[1]), sys.argv[2]
args = sys.argv[3:]
tls_context, auth = None, None
while args:
    if args[0] == "--tls":
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args[1], args[2])
        args = args[3:]
    elif args[0] == "--auth":
        auth = (args[1].encode(), args[2].encode())
        args = args[3:]
    else:
        sys.exit("unknown argument " + args[0])

lock = threading.Lock()
count = [0]


class Handler:
    async def handle_DATA(self, server, session, envelope):
        with lock:
            count[0] += 1
            n = count[0]
        head = "X-Test-From: %s\nX-Test-To: %s\nX-Test-TLS: %s\nX-Test-Auth: %s\n" % (
            envelope.mail_from, ",".join(envelope.rcpt_tos),
            "yes" if session.ssl is not None else "no",
            "yes" if session.authenticated else "no")
        path = os.path.join(outdir, "%04d.eml" % n)
        with open(path + ".tmp", "wb") as f:
            f.write(head.encode() + envelope.original_content)
        os.rename(path + ".tmp", path)
        return "250 OK"


def authenticator(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and auth is not None and (data.login, data.password) == auth
    return AuthResult(success=ok)


kw = {}
if tls_context is not None:
    kw["tls_context"] = tls_context
if auth is not None:
    kw["authenticator"] = authenticator
    kw["auth_required"] = True
ctl = Controller(Handler(), hostname="127.0.0.1", port=port, **kw)
ctl.start()
print("READY", flush=True)
sys.stdin.read()
ctl.stop()
