"""``python -m aiart_runtime serve|check [MODEL_DIR]``."""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import logs
from .model import ModelLoadError, ServedModel
from .settings import BATCH_REFUSED_EXIT, BatchJob, ModelSettings, ServerSettings

if TYPE_CHECKING:
    from .dataplane import DataPlane

# Each runtime kind's model class, as MLServer's ``implementation`` setting
# names one: imported on demand, since each runtime image holds only its own
# libraries. The operator's side of a kind is aiart/build/kinds.py.
IMPLEMENTATIONS = {
    "sklearn": "aiart_runtime.sklearn_model:SklearnModel",
    "onnx": "aiart_runtime.onnx_model:OnnxModel",
    "h2o": "aiart_runtime.h2o_model:H2OModel",
    "python": "aiart_runtime.python_model:PythonModel",
}


# After the server stops, at most this long writing the payload log's last
# records: within the swarm's stop grace period (core/render.py).
PAYLOAD_FLUSH_SECONDS = 5.0


def load(model_dir: Path) -> ServedModel:
    settings = ModelSettings.load(model_dir)
    implementation = IMPLEMENTATIONS.get(settings.runtime)
    if implementation is None:
        raise ModelLoadError(f"unknown runtime {settings.runtime!r}")
    module, _, name = implementation.partition(":")
    model: ServedModel = getattr(importlib.import_module(module), name)(settings)
    model.load()
    return model


def batch(model_dir: Path) -> int:
    """Run the batch job in AIART_BATCH_JOB over the model's bucket (batch.py)."""
    from .batch import BatchError, MinioBucket, run

    log = logging.getLogger("aiart_runtime")
    settings = ServerSettings.from_env()
    try:
        if not settings.batch_job:
            raise ValueError("AIART_BATCH_JOB names no job")
        job = BatchJob.from_json(settings.batch_job)
        model = load(model_dir)
        bucket = MinioBucket(
            endpoint=settings.store_endpoint, secure=settings.store_secure.lower() == "true",
            bucket=settings.store_bucket,
            access_key=Path(settings.store_access_key_file).read_text().strip(),
            secret_key=Path(settings.store_secret_key_file).read_text().strip())
        manifest = run(model, bucket, job, on_chunk=lambda p: log.info(
            "rows %d of %d scored", p.rows_done, p.rows_known))
    except (BatchError, ModelLoadError, KeyError, ValueError) as exc:
        # Its input or its model is wrong: starting it again cannot help.
        log.error("the batch job failed: %s", exc)
        return BATCH_REFUSED_EXIT
    except OSError as exc:  # the store away, say: worth another start
        log.error("the batch job stopped: %s", exc)
        return 1
    log.info("batch job %s done: %d rows (%d chunks were done before)", job.id,
             manifest["rows"], manifest["resumedChunks"])
    return 0


def draining_server(config: Any, plane: DataPlane, quiet: float, limit: float) -> Any:
    """uvicorn's server, which on SIGTERM goes on answering (new connections
    too) until no request has come for ``quiet`` seconds, at most ``limit``
    seconds, and only then stops as uvicorn does: finishing what is in
    flight. The swarm takes a task it stops out of the gateway's routes at
    once, but the gateway learns of it at its next read of the swarm, later
    on a busy host: until then the task is where requests go, the only one
    when a model goes to sleep, and it must not be gone yet. Meanwhile it
    says it is not ready, so that nothing new picks it."""
    import threading

    import uvicorn

    log = logging.getLogger("aiart_runtime")

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if quiet <= 0 or plane.draining:
                super().handle_exit(sig, frame)
                return
            plane.draining = True
            told = time.monotonic()
            log.info("told to stop: answering until no request comes for %.1f s "
                     "(at most %.0f s)", quiet, limit)

            def drain() -> None:
                while True:
                    now = time.monotonic()
                    if now - max(plane.last_called, told) >= quiet:
                        log.info("no request for %.1f s: stopping", quiet)
                        break
                    if now - told >= limit:
                        log.warning("still called %.0f s after told to stop: stopping", limit)
                        break
                    time.sleep(0.1)
                super(DrainingServer, self).handle_exit(sig, frame)

            threading.Thread(target=drain, name="drain", daemon=True).start()

    return DrainingServer(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aiart_runtime")
    parser.add_argument("command", choices=("serve", "check", "batch"))
    parser.add_argument("model_dir", nargs="?", default="/model", type=Path)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--grpc-port", type=int, default=8081)
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args(argv)
    if args.command == "check":
        # Run at image build time: a model that cannot load never ships.
        try:
            model = load(args.model_dir)
        except (ModelLoadError, OSError, KeyError, ValueError) as exc:
            print(f"aiart: the model does not load: {exc}", file=sys.stderr)
            return 1
        print(f"aiart: model loads; outputs {model.output_names()}")
        return 0

    logs.configure()
    log = logging.getLogger("aiart_runtime")
    if args.command == "batch":
        return batch(args.model_dir)
    started = time.perf_counter()
    settings = ModelSettings.load(args.model_dir)
    logs.model_context.set({"model": settings.name, "version": settings.version})
    try:
        model = load(args.model_dir)
    except ModelLoadError as exc:
        log.error("the model does not load: %s", exc)
        return 1
    import uvicorn
    import uvloop

    from . import tracing
    from .gateway_only import GatewayOnly
    from .grpc_server import create_server
    from .payloads import from_settings as payload_log
    from .server import MAX_BODY_BYTES, create_app

    server_settings = ServerSettings.from_env()
    gate = GatewayOnly.from_env(server_settings.gateway_token)
    limit = settings.max_request_bytes or MAX_BODY_BYTES
    payloads = payload_log(server_settings, model=settings.name, version=settings.version)
    server_app = create_app(model, gate=gate, max_body_bytes=limit, payloads=payloads)
    app: Any = server_app
    traced = tracing.configure(f"aiart-model-{settings.name}", {
        "aiart.model": settings.name, "aiart.version": settings.version})
    if traced:
        log.info("tracing to %s", tracing.otlp_endpoint())
        app = tracing.TracingMiddleware(app, "aiart_runtime")
    # The model and the libraries are loaded for good: moving them out of the
    # collector's reach keeps full collections (a latency spike) short.
    gc.collect()
    gc.freeze()
    server_app.state.metrics.load_seconds.set(time.perf_counter() - started)
    log.info("model loaded in %.3f s", time.perf_counter() - started)
    http = draining_server(uvicorn.Config(app, host=args.host, port=args.port, log_config=None,
                                          access_log=False), server_app.plane,
                           float(server_settings.drain_seconds),
                           float(server_settings.drain_limit_seconds))

    async def serve() -> None:
        # HTTP and gRPC in one event loop, on one data plane: uvicorn's
        # handling of SIGTERM ends both.
        rpc, port = create_server(server_app.plane, address=f"{args.host}:{args.grpc_port}",
                                  max_message_bytes=limit, gate=gate, traced=traced)
        await rpc.start()
        log.info("serving gRPC on port %d", port)
        try:
            await http.serve()
        finally:
            await rpc.stop(grace=5)

    uvloop.run(serve())
    if payloads is not None:
        # What the stopped server answered last is in the log too.
        payloads.close(timeout=PAYLOAD_FLUSH_SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
