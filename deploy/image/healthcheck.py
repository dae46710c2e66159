"""The container image's HEALTHCHECK: GET /healthz on the address ``serve`` listens on.

Kubernetes ignores HEALTHCHECK (the Deployment's probes do this job); this serves
``docker run`` and other engines. It follows IMAGE_COMPAT_LISTEN and, when
IMAGE_COMPAT_TLS_CERT is set, speaks HTTPS without verifying the certificate (it only asks
whether this very process answers). Standard library only; exits 0 when healthy.
"""

import os
import ssl
import sys
import urllib.request

# A wildcard listen address is reached on loopback.
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


def main() -> int:
    host, _, port = os.environ.get("IMAGE_COMPAT_LISTEN", "127.0.0.1:8888").rpartition(":")
    host = host.strip("[]")
    host = WILDCARDS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    context = None
    scheme = "http"
    if os.environ.get("IMAGE_COMPAT_TLS_CERT"):
        scheme = "https"
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    url = f"{scheme}://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=3, context=context) as answer:  # noqa: S310
            return 0 if answer.status == 200 else 1
    except OSError as err:
        print(f"healthcheck: {url}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
