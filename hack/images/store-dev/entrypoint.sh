#!/bin/sh
# Ignores MinIO's arguments; serves S3 on :9000.
exec /opt/s3/bin/moto_server -H 0.0.0.0 -p 9000
