"""Container health check: exits 0 when the local server says it is ready."""

import sys
import urllib.request

try:
    with urllib.request.urlopen("http://127.0.0.1:8080/v2/health/ready", timeout=5) as r:
        sys.exit(0 if b'"ready":true' in r.read() else 1)
except Exception:
    sys.exit(1)
