"""``aiart deploy|ls|status|logs|rm|rollout|batch|predict``: the REST API from a terminal.

URL and key come from ``--url``/``--key``, else ``AIART_URL``/``AIART_API_KEY``
(or ``AIART_TOKEN`` for an OIDC token), else the file
``${XDG_CONFIG_HOME:-~/.config}/aiart/cli.env`` (KEY=VALUE lines). HTTPS is
checked against the system's CAs and ``AIART_CA_FILE`` (else the local CA
``hack/stack.sh`` made, ``~/.config/aiart/tls/ca.crt``). Exit codes:
0 done, 1 refused or failed request, 3 the deployed version (or the batch
job) ended Failed or Invalid, 4 gave up waiting.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from aiart.cli.table import table
from aiart.core.settings import CLISettings, environment_with

EXIT_FAILED, EXIT_TIMEOUT = 3, 4
DEFAULT_URL = CLISettings.model_fields["url"].default
ARTIFACT_NAMES = ("model.pkl", "model.joblib", "model.onnx", "model.zip", "model.py")


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def add_commands(commands: Any) -> None:
    def client_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", help=f"aiart's address (AIART_URL; default {DEFAULT_URL})")
        p.add_argument("--key", help="API key or token (AIART_API_KEY, AIART_TOKEN)")
        p.add_argument("--json", action="store_true", help="print JSON for scripts")

    deploy = commands.add_parser("deploy", help="deploy a manifest (and its model file)")
    deploy.add_argument("path", type=Path, help="a directory with manifest.yaml, or a manifest")
    deploy.add_argument("--artifact", type=Path, help="the model file to upload with it")
    deploy.add_argument("--no-wait", action="store_true", help="return once it is declared")
    deploy.add_argument("--timeout", type=float, default=900, help="seconds to wait for Ready")
    client_options(deploy)
    client_options(commands.add_parser("ls", help="models, their status and endpoints"))
    status = commands.add_parser("status", help="one model's versions and status")
    status.add_argument("name")
    client_options(status)
    logs = commands.add_parser("logs", help="the last lines of a model's log")
    logs.add_argument("name")
    logs.add_argument("--tail", type=int, default=100)
    logs.add_argument("--version", dest="model_version")
    client_options(logs)
    rm = commands.add_parser("rm", help="remove a model, or one version (NAME:VERSION)")
    rm.add_argument("target")
    client_options(rm)
    moves = commands.add_parser("rollout", help="a model's rollout: status, promote, abort")
    moves.add_argument("action", choices=("status", "promote", "abort"))
    moves.add_argument("name")
    client_options(moves)
    batch = commands.add_parser("batch", help="batch scoring jobs: run, ls, status, rm")
    jobs = batch.add_subparsers(dest="batch_command", required=True)
    run = jobs.add_parser("run", help="score the files under an s3:// prefix of the "
                                      "model's bucket with the model's own image")
    run.add_argument("target", metavar="MODEL[:VERSION]")
    run.add_argument("input", metavar="s3://aiart-MODEL/PREFIX")
    run.add_argument("--chunk-rows", type=int, help="rows scored and written at a time "
                                                     "(default 10000)")
    run.add_argument("--no-wait", action="store_true", help="return once it is declared")
    run.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the end")
    client_options(run)
    client_options(jobs.add_parser("ls", help="batch jobs, their status and progress"))
    for verb, text in (("status", "one job's status"), ("rm", "remove a job (stops it if it "
                                                               "runs; its results stay)")):
        one = jobs.add_parser(verb, help=text)
        one.add_argument("id")
        client_options(one)
    predict = commands.add_parser("predict", help="call a model through the gateway")
    predict.add_argument("name")
    predict.add_argument("--data", required=True,
                         help="request body: JSON text, or @file (OIP inputs, or instances)")
    client_options(predict)


def _settings(args: argparse.Namespace) -> tuple[str, str | None, ssl.SSLContext]:
    settings = cli_settings()
    url = args.url or settings.url
    key: str | None = args.key or settings.api_key or settings.token or None
    return str(url).rstrip("/"), key, gateway_trust(settings)


def gateway_trust(settings: CLISettings | None = None) -> ssl.SSLContext:
    """What a client of the gateway trusts: AIART_CA_FILE, else the local CA
    hack/stack.sh makes when no site certificate is given (benchmarks use
    it too)."""
    settings = settings or cli_settings()
    return trust(settings.ca_file or None, settings.config_dir / "tls" / "ca.crt")


def cli_settings() -> CLISettings:
    """The CLI's settings: the environment, then ``~/.config/aiart/cli.env``
    for what the environment does not set."""
    return CLISettings.from_env(environment_with(CLISettings.from_env().config_dir / "cli.env"))


def trust(ca_file: str | None, local_ca: Path) -> ssl.SSLContext:
    """The system's CAs, and the CA that signed aiart's gateway certificate:
    AIART_CA_FILE, else the local CA hack/stack.sh made, where there is one."""
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise CliError(f"AIART_CA_FILE {ca_file}: {exc}") from None
    elif local_ca.is_file():
        context.load_verify_locations(str(local_ca))
    return context


def _check(response: httpx.Response) -> Any:
    if response.is_redirect:
        # Plain HTTP on a gateway with TLS on: say where aiart answers rather
        # than send the request (and its key) again by ourselves.
        where = response.headers.get("location", "")
        raise CliError(f"{response.request.url.scheme}://{response.request.url.netloc.decode()} "
                       f"redirects to {where}: set AIART_URL (or --url) to aiart's HTTPS "
                       "address, e.g. " + DEFAULT_URL)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        message = str(body.get("error") if isinstance(body, dict) else response.text[:300])
        problems = body.get("problems") if isinstance(body, dict) else None
        if problems:
            message = f"{message}:\n  " + "\n  ".join(problems)
        raise CliError(f"{response.request.method} {response.request.url.path}: "
                       f"{response.status_code} {message}")
    return body


def _manifest_and_artifact(path: Path, artifact: Path | None) -> tuple[Path, Path | None]:
    if path.is_dir():
        manifest = next((path / n for n in ("manifest.yaml", "manifest.yml")
                         if (path / n).is_file()), None)
        if manifest is None:
            raise CliError(f"{path} has no manifest.yaml")
        if artifact is None:
            artifact = next((path / n for n in ARTIFACT_NAMES if (path / n).is_file()), None)
        return manifest, artifact
    if not path.is_file():
        raise CliError(f"{path}: no such file or directory")
    return path, artifact


def run_command(args: argparse.Namespace) -> int:
    url, key, verify = _settings(args)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=60, verify=verify) as client:
            return _run(client, args)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach aiart at {url}: {exc}") from None


def _run(client: httpx.Client, args: argparse.Namespace) -> int:
    api = "/api/v1"
    if args.command == "deploy":
        return _deploy(client, args)
    if args.command == "ls":
        models = _check(client.get(f"{api}/models"))["models"]
        if args.json:
            print(json.dumps(models, indent=2))
        else:
            rows = [["NAME", "STATUS", "VERSIONS", "ENDPOINT"]] + [
                [m["name"], m["status"], ",".join(v["version"] for v in m["versions"]),
                 m["endpoint"] or "-"] for m in models]
            print(table(rows))
        return 0
    if args.command == "status":
        model = _check(client.get(f"{api}/models/{args.name}"))
        if args.json:
            print(json.dumps(model, indent=2))
            return 0
        print(f"{model['name']}: {model['status']}  {model['endpoint'] or ''}".rstrip())
        print(table([["VERSION", "STATUS", "CURRENT", "REPLICAS", "ALERTS", "MESSAGE"]] + [
            [v["version"], v["status"], "yes" if v["current"] else "", v["replicas"] or "-",
             ",".join(v.get("alerts", [])) or "-", v["message"][:80]]
            for v in model["versions"]]))
        for v in model["versions"]:
            if v.get("scale"):  # a scalable version: why it has the replicas it has
                print(f"version {v['version']} scaling: {v['scale']['status']}")
        return 0
    if args.command == "logs":
        params: dict[str, str | int] = {"tail": args.tail}
        if args.model_version:
            params["version"] = args.model_version
        lines = _check(client.get(f"{api}/models/{args.name}/logs", params=params))["lines"]
        print(json.dumps(lines) if args.json else "\n".join(lines))
        return 0
    if args.command == "rm":
        name, _, version = args.target.partition(":")
        path = f"{api}/models/{name}" + (f"/versions/{version}" if version else "")
        removed = _check(client.delete(path))["removed"]
        print(json.dumps(removed) if args.json else "\n".join(f"removed {r}" for r in removed))
        return 0
    if args.command == "rollout":
        return _rollout(client, args, api)
    if args.command == "batch":
        return _batch(client, args, api)
    # predict
    text = Path(args.data[1:]).read_text() if args.data.startswith("@") else args.data
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--data is not JSON: {exc}") from None
    path = (f"/models/{args.name}/predict" if isinstance(body, dict) and "instances" in body
            else f"/v2/models/{args.name}/infer")
    print(json.dumps(_check(client.post(path, json=body)), indent=None if args.json else 2))
    return 0


def _rollout(client: httpx.Client, args: argparse.Namespace, api: str) -> int:
    if args.action != "status":
        moved = _check(client.post(f"{api}/models/{args.name}/rollout/{args.action}"))
        print(json.dumps(moved) if args.json else
              f"{args.action} of {moved['name']} version {moved['version']} asked; the "
              f"operator acts within seconds (aiart rollout status {moved['name']})")
        return 0
    model = _check(client.get(f"{api}/models/{args.name}"))
    rows = [v for v in model["versions"] if v.get("rollout")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"{model['name']}: no version has a rollout")
        return 0
    print(table([["VERSION", "PHASE", "FROM", "STATUS", "ROLLOUT"]] + [
        [v["version"], v["rollout"]["phase"], v["rollout"]["stable"] or "-", v["status"],
         (v["rollout"]["status"] or "-")[:100]] for v in rows]))
    return 0


def _deploy(client: httpx.Client, args: argparse.Namespace) -> int:
    manifest, artifact = _manifest_and_artifact(args.path, args.artifact)
    files: dict[str, tuple[str, bytes]] = {"manifest": (manifest.name, manifest.read_bytes())}
    if artifact is not None:
        files["artifact"] = (artifact.name, artifact.read_bytes())
    what = f" with {artifact.name} ({artifact.stat().st_size} bytes)" if artifact else ""
    print(f"[aiart] deploying {manifest}{what}", file=sys.stderr)
    answer = _check(client.post("/api/v1/models", files=files, timeout=600))
    name, version = answer["name"], answer["version"]
    print(f"[aiart] declared {name} version {version} (config {answer['config']})",
          file=sys.stderr)
    if args.no_wait:
        print(json.dumps(answer) if args.json else f"{name}:{version}")
        return 0
    deadline, seen = time.monotonic() + args.timeout, ("", "")
    while time.monotonic() < deadline:
        model = _check(client.get(f"/api/v1/models/{name}"))
        mine = next((v for v in model["versions"] if v["version"] == version), None)
        if mine is not None:
            state = (mine["status"], mine["message"])
            if state != seen:
                print(f"[aiart] {name}:{version} {state[0]}: {state[1]}", file=sys.stderr)
                seen = state
            if mine["status"] == "Ready":
                print(json.dumps(mine) if args.json else mine["endpoint"])
                return 0
            if mine["status"] in ("Failed", "Invalid"):
                raise CliError(f"{name}:{version} is {mine['status']}: {mine['message']}",
                               EXIT_FAILED)
        time.sleep(1)
    raise CliError(f"{name}:{version} is not Ready after {args.timeout:.0f} s "
                   f"(last: {seen[0] or 'unseen'})", EXIT_TIMEOUT)


def progress_bar(done: int | None, known: int | None, width: int = 30) -> str:
    """``[#########.....]  45000/100000 rows  45%``; rows only while the total is unknown."""
    if done is None:
        return ""
    if not known:
        return f"{done} rows"
    share = min(1.0, done / known)
    filled = round(share * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{known} rows {share:4.0%}"


def _batch(client: httpx.Client, args: argparse.Namespace, api: str) -> int:
    if args.batch_command == "ls":
        found = _check(client.get(f"{api}/jobs"))["jobs"]
        if args.json:
            print(json.dumps(found, indent=2))
            return 0
        print(table([["ID", "MODEL", "VERSION", "STATUS", "ROWS", "INPUT"]] + [
            [j["id"], j["model"], j["version"] or "-", j["status"],
             f"{j['rowsDone'] or 0}/{j['rowsKnown'] or '?'}", j["input"] or "-"]
            for j in found]))
        return 0
    if args.batch_command == "status":
        job = _check(client.get(f"{api}/jobs/{args.id}"))
        print(json.dumps(job, indent=2) if args.json else
              f"{job['id']}: {job['status']} {progress_bar(job['rowsDone'], job['rowsKnown'])}"
              f"\n  {job['message']}\n  results: {job['results']}")
        return 0
    if args.batch_command == "rm":
        removed = _check(client.delete(f"{api}/jobs/{args.id}"))["removed"]
        print(json.dumps(removed) if args.json else "\n".join(f"removed {r}" for r in removed))
        return 0
    model, _, version = args.target.partition(":")
    body: dict[str, Any] = {"model": model, "input": args.input}
    if version:
        body["version"] = version
    if args.chunk_rows is not None:
        body["chunkRows"] = args.chunk_rows
    job = _check(client.post(f"{api}/jobs", json=body))
    print(f"[aiart] batch job {job['id']} declared: {model} over {args.input}", file=sys.stderr)
    if args.no_wait:
        print(json.dumps(job) if args.json else job["id"])
        return 0
    return _follow_job(client, api, job["id"], args)


def _follow_job(client: httpx.Client, api: str, job_id: str, args: argparse.Namespace) -> int:
    """Show the job's progress until it ends: a bar redrawn in place on a
    terminal, a line per change otherwise (logs, CI)."""
    live = sys.stderr.isatty()
    deadline, seen = time.monotonic() + args.timeout, ("", "", "")
    while time.monotonic() < deadline:
        job = _check(client.get(f"{api}/jobs/{job_id}"))
        bar = progress_bar(job["rowsDone"], job["rowsKnown"])
        state = (job["status"], job["message"], bar)
        if state != seen:
            if live:
                print(f"\r\033[K[aiart] {job_id} {job['status']} {bar or job['message']}",
                      end="", file=sys.stderr, flush=True)
            else:
                print(f"[aiart] {job_id} {job['status']}: {bar or job['message']}",
                      file=sys.stderr)
            seen = state
        if job["status"] in ("Succeeded", "Failed", "Invalid"):
            if live:
                print(file=sys.stderr)
            if job["status"] != "Succeeded":
                raise CliError(f"batch job {job_id} is {job['status']}: {job['message']}",
                               EXIT_FAILED)
            print(f"[aiart] {job['message']}", file=sys.stderr)
            print(json.dumps(job) if args.json else f"{job['results']}manifest.json")
            return 0
        time.sleep(1)
    raise CliError(f"batch job {job_id} has not ended after {args.timeout:.0f} s "
                   f"(last: {seen[0] or 'unseen'}); aiart batch status {job_id}", EXIT_TIMEOUT)
