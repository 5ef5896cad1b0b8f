"""The cluster/ files, checked without a cluster or a network: the `ray up` definition against Ray's own
schema and config preparation, the KubeRay and Kubernetes manifests' required fields and how they fit
together, the Dockerfile's pinned install, and every `sweeper` and `ray` command line in these files and in
cluster/README.md against the real command-line parsers (an unknown option fails; a spec is validated)."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest
import typer
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from sweeper.cli import app

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
LAUNCHER = CLUSTER / "ray-cluster.yaml"
RAYJOB = CLUSTER / "kuberay-rayjob.yaml"
MLFLOW = CLUSTER / "mlflow-server.yaml"
TOOLBOX = CLUSTER / "toolbox.yaml"
DOCKERFILE = CLUSTER / "Dockerfile"
README = CLUSTER / "README.md"
GPU_SPEC = CLUSTER / "specs" / "listmle-gpu.yaml"
MANIFESTS = (RAYJOB, MLFLOW, TOOLBOX)
NAMESPACE = "sweeper"
# Where the checkout sits on the cluster: ~/sweeper on `ray up` nodes, /app in the image.
CHECKOUT_PREFIXES = ("~/sweeper/", "/app/")


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if version:
            pins[name.strip().lower()] = version.strip()
    return pins


PINS = _pins()


def _docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _one(path: Path, kind: str) -> dict:
    found = [doc for doc in _docs(path) if doc.get("kind") == kind]
    assert len(found) == 1, f"{path.name}: expected one {kind}, found {len(found)}"
    return found[0]


def _strings(node) -> list[str]:
    """Every string value in a YAML document (commands hide in many fields)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


# --- command lines -------------------------------------------------------------------------------------

SUBCOMMANDS = ("validate", "list", "run", "resume", "sync", "report", "compare", "ui", "server")
_SWEEPER = re.compile(r"(?<![\w.\-/])(?:[\w.~\-]*/)*sweeper[ \t]+(?=(?:{})\b)".format("|".join(SUBCOMMANDS)))
_SHELL_END = re.compile(r"['\"`\n&|;<>)]|\s#")


def sweeper_commands(text: str) -> list[list[str]]:
    """The argument lists of every `sweeper SUBCOMMAND ...` in a piece of shell (possibly nested in quotes,
    a sed expression, a YAML string): from the subcommand up to the end of that shell command."""
    text = text.replace("\\\n", " ")
    commands = []
    for match in _SWEEPER.finditer(text):
        rest = text[match.end() :]
        end = _SHELL_END.search(rest)
        commands.append(shlex.split(rest[: end.start()] if end else rest))
    return commands


def _shell_segments(line: str) -> list[list[str]]:
    """A shell line as simple commands: split at ; && || | ( ), redirections dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    segments, current, skip_next = [], [], False
    for token in lexer:
        if skip_next:
            skip_next = False
        elif token and set(token) <= set("<>&") and ("<" in token or ">" in token):
            skip_next = True  # a redirection and its target
        elif token and set(token) <= set(";&|()"):
            if current:
                segments.append(current)
            current = []
        else:
            current.append(token)
    if current:
        segments.append(current)
    return segments


def _program(segment: list[str]) -> tuple[dict[str, str], list[str]]:
    """Leading VAR=value assignments and the command that follows them."""
    env = {}
    while segment and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", segment[0]):
        name, _, value = segment[0].partition("=")
        env[name] = value
        segment = segment[1:]
    return env, segment


def ray_commands(line: str) -> list[tuple[dict[str, str], list[str]]]:
    """(environment, arguments after `ray`) of every `ray ...` simple command in a shell line."""
    found = []
    for segment in _shell_segments(line):
        env, command = _program(segment)
        if command and command[0].split("/")[-1] == "ray":
            found.append((env, command[1:]))
    return found


def _readme_code() -> tuple[list[str], list[str]]:
    """cluster/README.md: the lines of its fenced code blocks, and its inline code spans."""
    text = README.read_text()
    blocks = re.findall(r"^[ \t]*```[a-z]*\n(.*?)^[ \t]*```", text, flags=re.S | re.M)
    lines = [line.strip() for block in blocks for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    prose = re.sub(r"^[ \t]*```[a-z]*\n.*?^[ \t]*```", "", text, flags=re.S | re.M)
    spans = [span.replace("\n", " ").strip() for span in re.findall(r"`([^`]+)`", prose)]
    return lines, spans


def parse_sweeper(args: list[str]) -> None:
    """Parse `sweeper ARGS` with the real typer app's click command: unknown options, missing arguments and
    bad values raise. Nothing runs."""
    group = get_command(app)
    assert args and args[0] in group.commands, f"sweeper {shlex.join(args)}: unknown subcommand"
    with group.make_context("sweeper", list(args)) as parent:
        command = group.get_command(parent, args[0])
        command.make_context(args[0], list(args[1:]), parent=parent)


def parse_ray(args: list[str]) -> None:
    """Parse `ray ARGS` with Ray's own click CLI (ray 2.60): unknown subcommands and options raise."""
    from ray.scripts.scripts import cli

    with cli.make_context("ray", list(args)) as parent:
        command = cli.get_command(parent, args[0])
        assert command is not None, f"ray {shlex.join(args)}: unknown subcommand"
        command.make_context(args[0], list(args[1:]), parent=parent)


def _spec_path(argument: str) -> Path:
    for prefix in CHECKOUT_PREFIXES:
        if argument.startswith(prefix):
            return ROOT / argument[len(prefix) :]
    assert not os.path.isabs(argument) and not argument.startswith("~"), (
        f"{argument}: a spec outside the project checkout cannot be checked (or shipped)"
    )
    return ROOT / argument


def _all_sweeper_commands() -> list[tuple[str, list[str]]]:
    found = []
    lines, spans = _readme_code()
    for line in lines:
        found += [("cluster/README.md", args) for args in sweeper_commands(line)]
    for span in spans:
        # `sweeper run` alone in a sentence names the command; with arguments it is a command line
        found += [("cluster/README.md", args) for args in sweeper_commands(span) if len(args) > 1]
    for path in (LAUNCHER, *MANIFESTS):
        for doc in _docs(path):
            for string in _strings(doc):
                found += [(path.name, args) for args in sweeper_commands(string)]
            for container in _all_containers(doc):
                command = [*container.get("command", []), *container.get("args", [])]
                if command and command[0].split("/")[-1] == "sweeper":
                    found.append((path.name, [str(part) for part in command[1:]]))
    found += [(DOCKERFILE.name, args) for args in sweeper_commands(DOCKERFILE.read_text())]
    return found


def _all_containers(node) -> list[dict]:
    if isinstance(node, dict):
        here = node.get("containers", []) if isinstance(node.get("containers"), list) else []
        return here + [c for key, value in node.items() if key != "containers" for c in _all_containers(value)]
    if isinstance(node, list):
        return [c for value in node for c in _all_containers(value)]
    return []


SWEEPER_COMMANDS = _all_sweeper_commands()


def test_the_cluster_files_name_the_commands_a_platform_engineer_needs():
    where = {}
    for source, args in SWEEPER_COMMANDS:
        where.setdefault(args[0], set()).add(source)
    for subcommand in ("run", "resume", "sync", "server", "validate"):
        assert subcommand in where, f"no `sweeper {subcommand} ...` command line in cluster/"
    for subcommand in ("run", "resume", "sync", "server"):
        assert "cluster/README.md" in where[subcommand], f"cluster/README.md shows no `sweeper {subcommand}`"
    assert "kuberay-rayjob.yaml" in where["run"] and "mlflow-server.yaml" in where["server"]


@pytest.mark.parametrize(
    "source,args", SWEEPER_COMMANDS, ids=[f"{s}: sweeper {' '.join(a)}"[:90] for s, a in SWEEPER_COMMANDS]
)
def test_every_sweeper_command_line_parses_with_the_real_cli(source, args):
    parse_sweeper(args)


def test_the_parser_check_has_teeth():
    # typer's public base of click's usage errors (unknown option, missing argument, bad value)
    with pytest.raises(typer.TyperException, match="adress"):
        parse_sweeper(["run", "configs/smoke.yaml", "--adress", "auto"])
    with pytest.raises(typer.TyperException):
        parse_sweeper(["resume"])
    with pytest.raises(typer.TyperException):
        parse_sweeper(["server", "--port", "not-a-port"])
    with pytest.raises(AssertionError):
        parse_sweeper(["launch", "configs/smoke.yaml"])
    assert sweeper_commands("ray exec c.yaml 'cd ~/sweeper && sweeper run a.yaml --out ~/s' # note") == [
        ["run", "a.yaml", "--out", "~/s"]
    ]


SPECS = sorted({args[1] for _, args in SWEEPER_COMMANDS if args[0] in ("run", "validate")})


@pytest.mark.parametrize("spec", SPECS)
def test_every_spec_the_cluster_files_run_is_valid(spec):
    result = CliRunner().invoke(app, ["validate", str(_spec_path(spec))])
    assert result.exit_code == 0, f"sweeper validate {spec}: {result.output}"


def test_the_gpu_spec_is_the_full_listmle_grid_with_gpu_shares():
    (gpu,) = _docs(GPU_SPEC)
    cpu = _docs(ROOT / "configs" / "listmle.yaml")[0]  # the full remedy grid
    assert {k: v for k, v in gpu.items() if k != "resources"} == {k: v for k, v in cpu.items() if k != "resources"}
    assert 0 < gpu["resources"]["gpu"] < 1, "a fractional GPU share per trial"
    # four trials per GPU node, limited by neither CPUs nor GPU: 8 CPUs / 2 == 1 GPU / 0.25
    worker = _launcher()["available_node_types"]["gpu"]["resources"]
    assert worker["CPU"] / gpu["resources"]["cpu"] == worker["GPU"] / gpu["resources"]["gpu"] == 4


# --- ray up ----------------------------------------------------------------------------------------------


def _launcher() -> dict:
    return yaml.safe_load(LAUNCHER.read_text())


def test_the_launcher_file_validates_against_rays_schema():
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(_launcher(), schema)


def test_the_launcher_file_passes_rays_own_config_preparation():
    """What `ray up` does before it talks to AWS (`commands._bootstrap_config`): fill in the provider's
    defaults, merge the setup commands, then validate (schema, node types, worker bounds)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(_launcher()))
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"


def _effective_setup(config: dict, node_type: str) -> list[str]:
    """The setup commands the autoscaler runs on a worker of this type: a node type's own
    worker_setup_commands REPLACE the merged global ones (autoscaler `_get_node_type_specific_fields`)."""
    from ray.autoscaler._private.util import prepare_config

    prepared = prepare_config(copy.deepcopy(config))
    return prepared["available_node_types"][node_type].get("worker_setup_commands", prepared["worker_setup_commands"])


def test_the_launcher_has_a_cpu_head_without_trials_and_gpu_workers():
    config = _launcher()
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU", 1) == 0 and head["resources"].get("GPU", 0) == 0
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    assert workers and all(t["resources"].get("GPU", 0) >= 1 for t in workers.values())
    assert all(t["resources"] == {"CPU": 8, "GPU": 1} for t in workers.values())
    assert sum(t.get("min_workers", 0) for t in workers.values()) >= 1, "a sweep needs a GPU worker at its start"
    assert all(t.get("max_workers", 0) >= t.get("min_workers", 0) for t in workers.values())


def test_the_launcher_installs_the_project_pinned_on_every_node():
    from ray.autoscaler._private.util import prepare_config

    config = _launcher()
    prepared = prepare_config(copy.deepcopy(config))
    tf = f"tensorflow[and-cuda]=={PINS['tensorflow']}"
    head_setup = " \n".join(prepared["head_setup_commands"])
    assert "pip install -c constraints.txt -e ." in head_setup
    assert "tensorflow[and-cuda]" not in head_setup, "the head runs no trials"
    for name in config["available_node_types"]:
        if name == config["head_node_type"]:
            continue
        setup = " \n".join(_effective_setup(config, name))
        assert "python3.11 -m venv" in setup, f"{name}: Python 3.11 (TensorFlow 2.15 stops at 3.11)"
        assert "pip install -c constraints.txt -e ." in setup, name
        assert tf in setup, f"{name}: GPU nodes need {tf}"
        assert f'"ray[default]=={PINS["ray"]}"' in setup
    # the project reaches every node from the checkout `ray up` runs in
    mounts = config["file_mounts"]
    assert mounts["~/sweeper"] == "."
    assert (ROOT / mounts["~/sweeper"] / "constraints.txt").is_file()
    assert ".venv" in config["rsync_exclude"]


def test_the_launcher_starts_ray_with_token_auth_and_commands_ray_knows():
    config = _launcher()
    starts = {"head": config["head_start_ray_commands"], "worker": config["worker_start_ray_commands"]}
    for role, lines in starts.items():
        found = [command for line in lines for command in ray_commands(line)]
        assert any(args[0] == "stop" for _, args in found), role
        ray_start = [(env, args) for env, args in found if args[0] == "start"]
        assert len(ray_start) == 1, role
        env, args = ray_start[0]
        assert env.get("RAY_AUTH_MODE") == "token", f"{role}: `ray start` without RAY_AUTH_MODE=token"
        assert ("--head" in args) == (role == "head")
        for _, args in found:
            parse_ray(args)
    head_start = next(
        args for env, args in (c for line in starts["head"] for c in ray_commands(line)) if args[0] == "start"
    )
    assert "--num-cpus=0" in head_start and "--num-gpus=0" in head_start
    assert any(a.startswith("--autoscaling-config=") for a in head_start)
    # the shared token reaches every node, every shell (drivers included) uses token auth
    assert "~/.ray/auth_token" in config["file_mounts"]
    assert any("export RAY_AUTH_MODE=token" in command for command in config["setup_commands"])


def test_every_launcher_command_is_valid_shell():
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    config = _launcher()
    keys = (
        "initialization_commands",
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    )
    for key in keys:
        for command in config.get(key, []):
            checked = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
            assert checked.returncode == 0, f"{key}: {command}: {checked.stderr}"


def test_the_launcher_starts_one_tracking_server_on_the_head():
    head = " \n".join(_launcher()["head_start_ray_commands"])
    servers = [args for args in sweeper_commands(head) if args[0] == "server"]
    assert len(servers) == 1
    assert servers[0][servers[0].index("--host") + 1] == "0.0.0.0"
    assert servers[0][servers[0].index("--port") + 1] == "5000"
    assert "/health" in head, "started only when none answers yet"


# --- KubeRay and Kubernetes --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_document_has_the_required_fields(path):
    docs = _docs(path)
    assert docs
    for doc in docs:
        assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"], path.name
        assert isinstance(doc.get("kind"), str) and doc["kind"], path.name
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), doc["metadata"]
        assert doc["metadata"].get("namespace") == NAMESPACE, f"{path.name}: {doc['kind']} outside {NAMESPACE}"
        assert "spec" in doc


def _entrypoint(rayjob: dict) -> list[str]:
    (args,) = [args for args in sweeper_commands(rayjob["spec"]["entrypoint"]) if args[0] == "run"]
    return args


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_the_rayjob_runs_a_sweep_on_a_gpu_cluster_with_token_auth():
    job = _one(RAYJOB, "RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    args = _entrypoint(job)
    assert _option(args, "--address") == "auto"
    assert urlparse(_option(args, "--tracking-uri")).scheme == "http"
    assert spec.get("backoffLimit", 0) == 0, "a retry would start a second sweep; resume instead"
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == PINS["ray"], "the Ray in the image is constraints.txt's"
    assert cluster["authOptions"]["mode"] == "token"
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0", "trials run on the GPU workers, not the head"
    assert _containers(head["template"])
    groups = cluster["workerGroupSpecs"]
    gpu_groups = [
        g
        for g in groups
        if any(
            int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)) >= 1
            for c in _containers(g["template"])
        )
    ]
    assert gpu_groups, "a worker group with nvidia.com/gpu limits"
    for group in gpu_groups:
        assert group["groupName"] and group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        for container in _containers(group["template"]):
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env.get("TF_FORCE_GPU_ALLOW_GROWTH") == "true"
            assert container["resources"]["limits"]["cpu"] == "8"


def test_the_sweep_folders_land_on_a_volume_that_outlives_the_head_pod():
    docs = _docs(RAYJOB)
    claims = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "PersistentVolumeClaim"}
    job = _one(RAYJOB, "RayJob")
    out = _option(_entrypoint(job), "--out")
    cluster = job["spec"]["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    for template in templates:  # the driver writes there; Tune's trial folders there too on every worker
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        mounted = False
        for container in _containers(template):
            for mount in container.get("volumeMounts", []):
                claim = volumes[mount["name"]].get("persistentVolumeClaim", {}).get("claimName")
                if claim and out.startswith(mount["mountPath"].rstrip("/") + "/"):
                    assert claim in claims, f"{claim}: no such PersistentVolumeClaim in {RAYJOB.name}"
                    mounted = True
        assert mounted, f"--out {out} is not on a PersistentVolumeClaim in every Ray pod"
    toolbox = _one(TOOLBOX, "Pod")
    assert {v["persistentVolumeClaim"]["claimName"] for v in toolbox["spec"]["volumes"]} <= claims


def test_the_mlflow_service_is_the_tracking_server_the_rayjob_names():
    from mlflow.server.security_utils import is_allowed_host_header

    uri = urlparse(_option(_entrypoint(_one(RAYJOB, "RayJob")), "--tracking-uri"))
    service, deployment = _one(MLFLOW, "Service"), _one(MLFLOW, "Deployment")
    name, namespace = uri.hostname.split(".")[:2]
    assert uri.hostname in (f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local")
    assert (service["metadata"]["name"], service["metadata"]["namespace"]) == (name, namespace)
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == uri.port]
    # the Service selects the Deployment's pods, whose server listens on the port the Service targets
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    (container,) = _containers(pod)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    target = ports.get(port["targetPort"], port["targetPort"])
    args = container["command"][1:]
    parse_sweeper(args)
    assert args[0] == "server" and int(_option(args, "--port")) == target
    assert _option(args, "--host") == "0.0.0.0"
    store = _option(args, "--store")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if store.startswith(m["mountPath"])]
    claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim in {d["metadata"]["name"] for d in _docs(MLFLOW) if d["kind"] == "PersistentVolumeClaim"}
    # MLflow 3 answers 403 to Host headers that are neither localhost nor private IPs: the Service's name
    # must be allowed, as must a port-forward to localhost
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    allowed = [host.strip() for host in env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")]
    assert is_allowed_host_header(allowed, uri.netloc)
    assert is_allowed_host_header(allowed, "localhost:5000")
    assert not is_allowed_host_header(allowed, "attacker.example:5000")
    toolbox_env = {e["name"]: e.get("value") for c in _containers(_one(TOOLBOX, "Pod")) for e in c.get("env", [])}
    assert toolbox_env["MLFLOW_TRACKING_URI"] == uri.geturl()


def test_every_pod_runs_the_one_sweeper_image():
    images = {c["image"] for path in MANIFESTS for doc in _docs(path) for c in _all_containers(doc)}
    assert len(images) == 1, images


def test_the_readme_resume_recipe_makes_a_resume_rayjob():
    """The README's sed recipe, run for real on kuberay-rayjob.yaml (without the kubectl at its end)."""
    if shutil.which("sed") is None or shutil.which("bash") is None:
        pytest.skip("needs sed and bash")
    lines, _ = _readme_code()
    (recipe,) = [line for line in lines if line.startswith("sed ") and "cluster/kuberay-rayjob.yaml | kubectl" in line]
    command = recipe.split("| kubectl")[0]
    output = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    docs = [doc for doc in yaml.safe_load_all(output) if doc is not None]
    (job,) = [doc for doc in docs if doc["kind"] == "RayJob"]
    original = _one(RAYJOB, "RayJob")
    assert job["metadata"]["name"] != original["metadata"]["name"]
    (args,) = sweeper_commands(job["spec"]["entrypoint"])
    assert args[0] == "resume" and args[1].startswith(_option(_entrypoint(original), "--out") + "/")
    parse_sweeper(args)
    assert job["spec"]["rayClusterSpec"] == original["spec"]["rayClusterSpec"]


# --- the image -----------------------------------------------------------------------------------------------


def test_the_dockerfile_installs_the_project_pinned_on_python_311():
    text = DOCKERFILE.read_text()
    logical = text.replace("\\\n", " ")
    (base,) = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert base.startswith("python:3.11"), "TensorFlow 2.15 needs Python 3.11"
    installs = [line for line in logical.splitlines() if re.search(r"\bpip install\b", line)]
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    assert any(re.search(r"-c constraints.txt \.(\s|$)", line) for line in installs), "the project itself"
    assert any(f'"tensorflow[and-cuda]=={PINS["tensorflow"]}"' in line for line in installs)
    assert any(f'"ray[default]=={PINS["ray"]}"' in line for line in installs)
    for sources in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+\s*$", text, flags=re.M):
        for source in sources.split():
            assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
    assert "TF_FORCE_GPU_ALLOW_GROWTH=true" in text
    assert re.search(r"^USER\s+1000", text, flags=re.M), "fsGroup: 100 on the pods assumes uid 1000, group 100"
    ignored = (CLUSTER / "Dockerfile.dockerignore").read_text().split()
    assert ".venv" in ignored and "sweeps" in ignored


# --- cluster/README.md ----------------------------------------------------------------------------------------


def _readme_ray_commands() -> list[list[str]]:
    lines, spans = _readme_code()
    found = []
    for line in [*lines, *(span for span in spans if span.startswith("ray "))]:
        for _, args in ray_commands(line):
            if line in spans and len(args) < 2:
                continue  # `ray up` in a sentence names the command; with arguments it is a command line
            found.append(args)
            if args[0] == "exec":  # the command it runs on the head may be a ray command too
                inner = [a for a in args[1:] if not a.startswith("-") and not a.endswith(".yaml")]
                found += [a for part in inner for _, a in ray_commands(part)]
    return found


README_RAY = _readme_ray_commands()


def test_the_readme_uses_the_ray_cluster_launcher():
    verbs = {args[0] for args in README_RAY}
    assert {"up", "exec", "attach", "rsync-down", "down", "get-auth-token", "status"} <= verbs


@pytest.mark.parametrize("args", README_RAY, ids=[" ".join(a)[:80] for a in README_RAY])
def test_every_ray_command_line_in_the_readme_parses_with_rays_cli(args):
    parse_ray(args)
    for argument in args:
        if argument.endswith(".yaml"):
            assert (ROOT / argument).is_file(), argument


def test_the_readme_covers_what_a_platform_engineer_needs():
    text = README.read_text()
    for needle in (
        "docker build -f cluster/Dockerfile",
        "kubectl -n sweeper apply -f cluster/mlflow-server.yaml",
        "kubectl -n sweeper apply -f cluster/kuberay-rayjob.yaml",
        "ray up -y cluster/ray-cluster.yaml",
        "port-forward service/mlflow 5000:5000",
        "sweeper resume",
        "sweeper sync",
        "resources: {cpu: 2, gpu: 0.25}",
        "TF_FORCE_GPU_ALLOW_GROWTH",
        "SQLite",
        "RAY_AUTH_MODE=token",
    ):
        assert needle in text, needle
