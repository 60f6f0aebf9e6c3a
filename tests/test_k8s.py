"""Kubernetes: the container images, the Helm chart, its rendering without Helm, and the
manifests it gives (docs/kubernetes.md).

Everything here is offline: no cluster, no Docker. Manifests are checked against
Kubernetes' own schemas (kubernetes-validate, strict) for several minor versions, and by
guards for what a schema cannot say (no secret outside a Secret, nothing runs as root,
probes and drain timing); each guard is shown to fail on a variant made bad on purpose.
Where Helm is installed (``helm`` on PATH or ``EDGEBOOK_HELM``; CI builds it), ``helm lint``
passes and ``helm template`` gives the same objects as edgebook's own renderer.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from edgebook.cli.main import build_parser, main
from edgebook.k8s import render as k8s
from edgebook.k8s.gotemplate import FUNCTIONS, Template, TemplateError, go_string, to_yaml

from servers import missing

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "deploy" / "chart" / "edgebook"
MANIFESTS = REPO / "deploy" / "manifests"
DOCKER = REPO / "docker"
KUBE_VERSIONS = ["1.29", "1.31", "1.34"]

SECRET_ENV = {"EDGEBOOK_REGISTRY_URL": "registry-url", "EDGEBOOK_ADMIN_TOKEN": "admin-token",
              "AWS_ACCESS_KEY_ID": "aws-access-key-id",
              "AWS_SECRET_ACCESS_KEY": "aws-secret-access-key"}
SECRETS = {"registry.url": "postgresql://edge:pw-Registry-8c1f@db.internal/edgebook",
           "adminToken": "tok-Admin-5e2b77d0",
           "artifacts.accessKeyId": "AKIA-Key-3f9a",
           "artifacts.secretAccessKey": "sk-Secret-91c2d0"}
WITH_SECRETS = [f"{key}={value}" for key, value in SECRETS.items()]


def documents(manifests) -> list[dict]:
    return [m.document for m in manifests]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def deployment(docs: list[dict], component: str) -> dict:
    found = [d for d in by_kind(docs, "Deployment")
             if d["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    assert len(found) == 1, component
    return found[0]


# -- the template subset ------------------------------------------------------------------------

def test_every_template_stays_in_the_supported_subset():
    templates = sorted((CHART / "templates").glob("*.yaml"))
    assert len(templates) >= 9
    for path in templates:
        Template(path.read_text(), name=path.name)  # raises outside the subset
        used = set(re.findall(r"\{\{-?\s*(?:if\s+)?([A-Za-z]\w*)", path.read_text()))
        assert used <= set(FUNCTIONS) | {"if", "else", "end"}, (path.name, used)
    assert not list((CHART / "templates").glob("_*")), "no helpers: define/include unsupported"


@pytest.mark.parametrize("source", [
    '{{ include "edgebook.labels" . }}',
    "{{ range .Values.list }}x{{ end }}",
    "{{ .Values.name | upper }}",
    "{{ $name := .Values.name }}",
    "{{ with .Values.x }}y{{ end }}",
    "{{ if .Values.a }}x{{ else if .Values.b }}y{{ end }}",
    "{{ .Files.Get \"x\" }}",
    "{{ if .Values.a }}unclosed",
    "{{ end }}",
    "{{-.Values.a }}",
    "{{ (default 1 .Values.a) }}",
])
def test_constructs_outside_the_subset_are_refused(source):
    with pytest.raises(TemplateError):
        Template(source).render({"Values": {"a": 1, "name": "n", "list": [1]}})


def test_the_subset_means_what_it_means_in_helm():
    context = {"Values": {"s": "x", "n": 2, "f": 0.5, "big": 1000000, "t": True, "e": "",
                          "m": {"b": "true", "a": ["1", ""]}, "z": 0},
               "Release": {"Name": "r", "Namespace": "ns"}, "Chart": {"Name": "c"}}

    def run(source: str) -> str:
        return Template(source).render(context)

    assert run("a\n  {{- .Values.s }} \n {{ .Values.n -}}\n b") == "ax \n 2b"
    assert run("{{ .Release.Name }}/{{ .Release.Namespace }}/{{ .Chart.Name }}") == "r/ns/c"
    assert run("{{ .Values.f }} {{ .Values.big }} {{ .Values.t }} [{{ .Values.missing }}]") \
        == "0.5 1e+06 true []"
    assert run('{{ quote .Values.n }} {{ .Values.s | quote }} {{ quote .Values.missing }}') \
        == '"2" "x" '
    assert run("{{ default 5 .Values.z }} {{ default 5 .Values.n }} {{ default .Release.Name "
               ".Values.e }}") == "5 2 r"
    assert run("{{ .Values.s | b64enc }}{{ b64enc .Values.e }}") == "eA=="
    assert run("{{ if .Values.e }}yes{{ else }}no{{ end }}{{ if not .Values.z }}!{{ end }}") \
        == "no!"
    assert run("k:{{ toYaml .Values.m | nindent 2 }}") == 'k:\n  a:\n  - "1"\n  - ""\n  b: "true"'
    assert run("{{ .Values.s | indent 3 }}") == "   x"
    assert run("{{/* a comment */}}x") == "x"
    with pytest.raises(TemplateError, match="nil pointer"):
        run("{{ .Values.missing.deeper }}")
    assert to_yaml({}) == "{}" and to_yaml(None) == "null" and to_yaml("a: b") == "'a: b'"
    assert go_string(30.0) == "30" and go_string(0.0001) == "0.0001" and go_string(1e-5) == "1e-05"


# -- values ---------------------------------------------------------------------------------------

def test_values_files_and_set_merge_as_in_helm(tmp_path):
    extra = tmp_path / "v.yaml"
    extra.write_text("gateway:\n  replicas: 7\n  podAnnotations: {a: b}\ningress: null\n")
    values = k8s.load_values(CHART, [extra], ["gateway.replicas=3,builder.enabled=false",
                                             "image.tag=1.2\\,3", "adminToken=null"])
    assert values["gateway"]["replicas"] == 3 and values["gateway"]["podAnnotations"] == {"a": "b"}
    assert values["gateway"]["drainTimeoutSeconds"] == 30  # untouched keys stay
    assert values["builder"]["enabled"] is False and values["image"]["tag"] == "1.2,3"
    assert "ingress" not in values and "adminToken" not in values
    for bad in ("x", "a[0]=1", "=1"):
        with pytest.raises(k8s.RenderError):
            k8s.parse_set(bad)


# -- the committed manifests --------------------------------------------------------------------

def test_committed_manifests_are_the_default_rendering(tmp_path):
    k8s.write(k8s.render(chart=CHART), tmp_path)
    fresh = {p.name: p.read_bytes() for p in tmp_path.glob("*.yaml")}
    committed = {p.name: p.read_bytes() for p in MANIFESTS.glob("*.yaml")}
    assert fresh == committed, ("deploy/manifests is stale: run `make deploy-manifests` "
                                "(python -m edgebook.k8s --write)")
    assert set(committed) >= {"gateway-deployment.yaml", "builder-deployment.yaml",
                              "service.yaml", "admin-service.yaml", "hpa.yaml", "pdb.yaml",
                              "networkpolicy.yaml", "secret.yaml"}
    assert "ingress.yaml" not in committed  # disabled by default


def test_the_cli_renders_to_stdout_and_to_a_directory(tmp_path, capsys):
    assert main(["k8s", "render", "--set", "ingress.enabled=true", "--release", "shop"]) == 0
    stream = capsys.readouterr().out
    docs = [d for d in yaml.safe_load_all(stream) if d]
    assert stream.startswith("---\n# Source: edgebook/templates/")
    kinds = [d["kind"] for d in docs]
    assert kinds.index("Secret") < kinds.index("Service") < kinds.index("Deployment") \
        < kinds.index("Ingress")  # Helm's install order
    assert {d["metadata"]["name"] for d in docs} >= {"shop-gateway", "shop-admin", "shop"}

    values = tmp_path / "values.yaml"
    values.write_text("builder:\n  enabled: false\n")
    out = tmp_path / "out"
    (out).mkdir()
    (out / "builder-deployment.yaml").write_text("---\n# Source: edgebook/templates/b.yaml\n")
    (out / "mine.yaml").write_text("kind: Keep\n")
    assert main(["k8s", "render", "-f", str(values), "--output", str(out)]) == 0
    names = {p.name for p in out.glob("*.yaml")}
    assert "builder-deployment.yaml" not in names and "mine.yaml" in names  # stale one gone
    assert (out / "gateway-deployment.yaml").read_text() \
        == (MANIFESTS / "gateway-deployment.yaml").read_text()
    assert main(["k8s", "render", "--set", "nonsense"]) == 2
    assert "--set wants key=value" in capsys.readouterr().err


def test_the_wheel_carries_the_chart():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    included = config["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert included["deploy/chart/edgebook"] == "edgebook/k8s/chart"
    assert k8s.PACKAGED_CHART == REPO / "edgebook" / "k8s" / "chart"
    assert k8s.chart_dir() == CHART  # in a checkout; an installed wheel has PACKAGED_CHART


# -- schemas ---------------------------------------------------------------------------------------

VARIANTS = {
    "defaults": [],
    "everything": [*WITH_SECRETS, "ingress.enabled=true", "ingress.className=nginx",
                   "ingress.annotations.nginx\\.ingress\\.kubernetes\\.io/proxy-body-size=8m",
                   "artifacts.url=s3://bucket/edgebook", "artifacts.endpoint=http://minio:9000",
                   "artifacts.region=eu-west-1", "autoscaling.enabled=false",
                   "gateway.podAnnotations.team=web"],
    "existing secret, no extras": ["existingSecret=edgebook-prod", "builder.enabled=false",
                                   "podDisruptionBudget.enabled=false",
                                   "networkPolicy.enabled=false", "service.type=LoadBalancer"],
}


EVERYTHING_FILE = """
ingress:
  tls:
    - hosts: [edgebook.example.com]
      secretName: edgebook-tls
gateway:
  resources:
    requests: {cpu: 500m, memory: 512Mi, ephemeral-storage: 1Gi}
    limits: {cpu: 2, memory: 2Gi}
  extraEnv:
    - {name: EDGEBOOK_REQUIRE_ISOLATION, value: "1"}
"""


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_manifests_pass_the_strict_schemas(variant, version, tmp_path):
    assert version in {v.rsplit(".", 1)[0] for v in kubernetes_validate.utils.all_versions()}
    values = tmp_path / "values.yaml"  # what --set cannot say: lists
    values.write_text(EVERYTHING_FILE if variant == "everything" else "")
    manifests = k8s.render([values], VARIANTS[variant])
    assert manifests
    if variant == "everything":
        env = deployment(documents(manifests), "gateway")["spec"]["template"]["spec"][
            "containers"][0]["env"]
        assert {"name": "EDGEBOOK_REQUIRE_ISOLATION", "value": "1"} in env
    for manifest in manifests:
        try:
            kubernetes_validate.validate(manifest.document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{variant}: {manifest.template} on {version}: {exc.message}")


def helm() -> str:
    """Helm's binary (``EDGEBOOK_HELM``, the one `make helm` builds, or ``helm`` on PATH), or
    the test is skipped (a failure in CI, which builds it)."""
    built = REPO / ".tools" / "bin" / "helm"
    found = os.environ.get("EDGEBOOK_HELM") or (str(built) if built.exists() else None) \
        or shutil.which("helm")
    if not found or not os.access(found, os.X_OK):
        missing("no helm: the chart is not compared with `helm template` (run `make helm`, "
                "which needs Go, or put Helm on PATH)")
    return found


def run_helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120)


def set_args(sets: list[str]) -> list[str]:
    return [arg for value in sets for arg in ("--set", value)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_renders_the_same_objects_as_the_renderer(variant, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(EVERYTHING_FILE if variant == "everything" else "")
    ours = documents(k8s.render([values], VARIANTS[variant]))
    done = run_helm("template", k8s.DEFAULT_RELEASE, str(CHART), "--namespace",
                    k8s.DEFAULT_NAMESPACE, "-f", str(values), *set_args(VARIANTS[variant]))
    assert done.returncode == 0, done.stderr
    theirs = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    key = lambda doc: (doc["kind"], doc["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, theirs)) == sorted(map(key, ours))
    for mine, helms in zip(sorted(ours, key=key), sorted(theirs, key=key)):
        assert mine == helms, f"{key(mine)} differs from helm template's"


def test_helm_lints_the_chart_and_the_comparison_can_fail(tmp_path):
    done = run_helm("lint", "--strict", str(CHART), *set_args(WITH_SECRETS))
    assert done.returncode == 0, done.stdout + done.stderr
    # the comparison sees a difference: a value only Helm is given
    done = run_helm("template", k8s.DEFAULT_RELEASE, str(CHART), "--namespace",
                    k8s.DEFAULT_NAMESPACE, "--set", "gateway.podAnnotations.team=web")
    theirs = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    ours = documents(k8s.render())
    assert deployment(theirs, "gateway") != deployment(ours, "gateway")


def test_the_strict_schema_check_can_fail():
    doc = deployment(documents(k8s.render()), "gateway")
    bad = copy.deepcopy(doc)
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProb"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[0], strict=True)


def test_the_existing_secret_replaces_the_charts_own():
    docs = documents(k8s.render(sets=["existingSecret=edgebook-prod"]))
    assert not by_kind(docs, "Secret")
    refs = {ref["secretKeyRef"]["name"] for d in by_kind(docs, "Deployment")
            for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
            if (ref := e.get("valueFrom"))}
    assert refs == {"edgebook-prod"}


# -- guards ------------------------------------------------------------------------------------

def secret_problems(docs: list[dict], secrets: list[str]) -> list[str]:
    """A secret value (plain or base64) anywhere but in a Secret; a secret env var that is
    not a secretKeyRef; a ConfigMap at all holding one."""
    problems = []
    needles = [s for s in secrets if s]
    needles += [base64.b64encode(s.encode()).decode() for s in needles]
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        text = json.dumps(doc)
        for needle in needles:
            if needle in text:
                problems.append(f"{doc['kind']} {doc['metadata']['name']} holds a secret value")
        for container in pod_containers(doc):
            for env in container.get("env") or []:
                if env["name"] in SECRET_ENV:
                    ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                    if "value" in env or not ref or ref.get("key") != SECRET_ENV[env["name"]]:
                        problems.append(f"{env['name']} is not a secretKeyRef")
            for source in container.get("envFrom") or []:
                if "configMapRef" in source:
                    problems.append("environment from a ConfigMap")
    return problems


def pod_containers(doc: dict) -> list[dict]:
    spec = pod_spec(doc)
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])] if spec else []


def pod_spec(doc: dict) -> dict | None:
    if doc["kind"] == "Pod":
        return doc["spec"]
    template = (doc.get("spec") or {}).get("template")
    return template["spec"] if template else None


def root_problems(docs: list[dict]) -> list[str]:
    """Any container that could run as root or gain privileges."""
    problems = []
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        pod = spec.get("securityContext") or {}
        if (pod.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{doc['metadata']['name']}: pod seccompProfile")
        for container in pod_containers(doc):
            own = container.get("securityContext") or {}
            where = f"{doc['metadata']['name']}/{container['name']}"
            non_root = own.get("runAsNonRoot", pod.get("runAsNonRoot"))
            user = own.get("runAsUser", pod.get("runAsUser"))
            if non_root is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if not isinstance(user, int) or user == 0:
                problems.append(f"{where}: runAsUser {user!r} is not a non-root uid")
            if own.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if own.get("privileged"):
                problems.append(f"{where}: privileged")
            if "ALL" not in ((own.get("capabilities") or {}).get("drop") or []) \
                    or (own.get("capabilities") or {}).get("add"):
                problems.append(f"{where}: capabilities are not all dropped")
    return problems


def gateway_problems(docs: list[dict]) -> list[str]:
    """The gateway's probes, drain timing, read-only root, the admin API's reach."""
    problems = []
    gateway = deployment(docs, "gateway")
    spec = gateway["spec"]["template"]["spec"]
    container = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container.get("ports") or []}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = (container.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or get.get("port") not in ("admin", ports.get("admin")):
            problems.append(f"{probe} is not GET {path} on the admin port")
    args = container.get("args") or []
    drain = float(args[args.index("--drain-timeout") + 1]) if "--drain-timeout" in args else 30.0
    command = ((container.get("lifecycle") or {}).get("preStop") or {}).get("exec", {})
    sleep = command.get("command") or []
    if sleep[:1] != ["sleep"] or len(sleep) != 2 or float(sleep[1]) <= 0:
        problems.append("no preStop sleep")
    elif spec.get("terminationGracePeriodSeconds", 30) <= float(sleep[1]) + drain:
        problems.append("terminationGracePeriodSeconds does not cover preStop + drain")
    if (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
        problems.append("the gateway's root file system is writable")
    mounts = {m["mountPath"] for m in container.get("volumeMounts") or []}
    if not {"/var/lib/edgebook", "/tmp"} <= mounts:
        problems.append("no writable data dir and /tmp")
    resources = container.get("resources") or {}
    if not resources.get("requests") or not resources.get("limits"):
        problems.append("no resource requests and limits")
    for service in by_kind(docs, "Service"):
        if any(p.get("targetPort") in ("admin", 8081) for p in service["spec"]["ports"]) \
                and service["spec"].get("type", "ClusterIP") != "ClusterIP":
            problems.append(f"the admin API is exposed by a {service['spec']['type']} Service")
    for ingress in by_kind(docs, "Ingress"):
        if "admin" in json.dumps(ingress["spec"]):
            problems.append("the admin API is behind an Ingress")
    for policy in by_kind(docs, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress") or []:
            if any(p.get("port") in (8081, "admin") for p in rule.get("ports") or []) \
                    and rule.get("from") != [{"podSelector": {}}]:
                problems.append("the admin port admits more than this namespace's pods")
    return problems


def test_default_and_full_renderings_pass_the_guards():
    for sets in (WITH_SECRETS, VARIANTS["everything"], []):
        docs = documents(k8s.render(sets=sets))
        assert secret_problems(docs, list(SECRETS.values())) == []
        assert root_problems(docs) == []
        assert gateway_problems(docs) == []
    docs = documents(k8s.render(sets=WITH_SECRETS))
    secret = by_kind(docs, "Secret")[0]
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "registry-url": SECRETS["registry.url"], "admin-token": SECRETS["adminToken"],
        "aws-access-key-id": SECRETS["artifacts.accessKeyId"],
        "aws-secret-access-key": SECRETS["artifacts.secretAccessKey"]}
    assert not by_kind(docs, "ConfigMap")
    assert k8s.load_values(CHART)["registry"]["url"] == ""  # nothing secret by default


def test_the_secret_guard_catches_a_leak():
    leaked = documents(k8s.render(sets=[*WITH_SECRETS,
                                        f"gateway.podAnnotations.dsn={SECRETS['adminToken']}"]))
    assert secret_problems(leaked, list(SECRETS.values())) \
        == ["Deployment edgebook-gateway holds a secret value"]
    plain = copy.deepcopy(documents(k8s.render()))
    env = deployment(plain, "builder")["spec"]["template"]["spec"]["containers"][0]["env"]
    env[0] = {"name": "EDGEBOOK_REGISTRY_URL", "value": "postgresql://x"}
    plain.append({"kind": "ConfigMap", "metadata": {"name": "c"},
                  "data": {"t": base64.b64encode(b"hunter22").decode()}})
    problems = secret_problems(plain, ["hunter22"])
    assert "EDGEBOOK_REGISTRY_URL is not a secretKeyRef" in problems
    assert "ConfigMap c holds a secret value" in problems


@pytest.mark.parametrize("sets", [
    ["securityContext.runAsUser=0"],
    ["podSecurityContext.runAsUser=0", "securityContext.runAsUser=null"],
    ["securityContext.runAsNonRoot=false"],
    ["podSecurityContext.runAsNonRoot=null", "securityContext.runAsNonRoot=null"],
    ["builder.securityContext.allowPrivilegeEscalation=true"],
    ["builder.securityContext.privileged=true"],
    ["securityContext.capabilities.drop=null"],
    ["podSecurityContext.seccompProfile=null"],
])
def test_the_root_guard_catches_a_container_that_can_be_root(sets):
    assert root_problems(documents(k8s.render(sets=sets)))


@pytest.mark.parametrize("sets, message", [
    (["gateway.terminationGracePeriodSeconds=30"], "does not cover"),
    (["gateway.drainTimeoutSeconds=60"], "does not cover"),
    (["securityContext.readOnlyRootFilesystem=false"], "root file system is writable"),
    (["gateway.resources=null"], "no resource requests"),
])
def test_the_gateway_guard_catches_bad_values(sets, message):
    problems = gateway_problems(documents(k8s.render(sets=sets)))
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize("change, message", [
    (lambda c, d: c.pop("readinessProbe"), "readinessProbe"),
    (lambda c, d: c.pop("livenessProbe"), "livenessProbe"),
    (lambda c, d: c["readinessProbe"]["httpGet"].update(port="http"), "readinessProbe"),
    (lambda c, d: c.pop("lifecycle"), "no preStop sleep"),
    (lambda c, d: [s["spec"].update(type="LoadBalancer") for s in by_kind(d, "Service")],
     "admin API is exposed"),
    (lambda c, d: by_kind(d, "NetworkPolicy")[0]["spec"]["ingress"][1].pop("from"),
     "admits more than"),
])
def test_the_gateway_guard_catches_a_broken_deployment(change, message):
    docs = copy.deepcopy(documents(k8s.render()))
    change(deployment(docs, "gateway")["spec"]["template"]["spec"]["containers"][0], docs)
    assert any(message in p for p in gateway_problems(docs)), gateway_problems(docs)


def test_the_chart_has_what_a_gateway_fleet_needs():
    docs = documents(k8s.render())
    gateway = deployment(docs, "gateway")
    assert "replicas" not in gateway["spec"]  # the HPA owns it
    assert gateway["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    hpa = by_kind(docs, "HorizontalPodAutoscaler")[0]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == gateway["metadata"]["name"]
    assert by_kind(docs, "PodDisruptionBudget")[0]["apiVersion"] == "policy/v1"
    services = {s["metadata"]["name"]: s["spec"] for s in by_kind(docs, "Service")}
    assert services["edgebook"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http",
                                              "protocol": "TCP"}]
    assert services["edgebook-admin"]["type"] == "ClusterIP"
    fixed = deployment(documents(k8s.render(sets=["autoscaling.enabled=false",
                                                  "gateway.replicas=4"])), "gateway")
    assert fixed["spec"]["replicas"] == 4
    assert not by_kind(documents(k8s.render(sets=["autoscaling.enabled=false"])),
                       "HorizontalPodAutoscaler")


# -- command lines: the chart's and the images' --------------------------------------------------

def check_command(argv: list[str], where: str) -> None:
    """``argv`` (after ``edgebook``) names a real subcommand and real options, and the
    parser accepts the whole line."""
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert argv and argv[0] in commands, f"{where}: no command edgebook {argv[:1]}"
    known = {flag for action in commands[argv[0]]._actions for flag in action.option_strings}
    flags = {a.split("=", 1)[0] for a in argv[1:] if a.startswith("--")}
    assert flags <= known, f"{where}: unknown options {flags - known}"
    try:
        parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"edgebook does not accept {where}: {shlex.join(argv)}")


def test_the_chart_runs_real_commands():
    for component in ("gateway", "builder"):
        container = deployment(documents(k8s.render()), component)["spec"]["template"]["spec"][
            "containers"][0]
        assert "command" not in container  # the image's ENTRYPOINT: edgebook serve
        args = container["args"]
        assert args[args.index("--role") + 1] == component
        assert args[args.index("--data-dir") + 1] == "/var/lib/edgebook"
        check_command(["serve", *args], f"the {component} Deployment")


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    lines, joined = [], ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        joined += raw.rstrip()[:-1] + " " if raw.rstrip().endswith("\\") else raw
        if not raw.rstrip().endswith("\\"):
            instruction, _, rest = joined.strip().partition(" ")
            lines.append((instruction.upper(), rest.strip()))
            joined = ""
    return lines


DOCKERFILES = {"gateway": DOCKER / "gateway.Dockerfile", "builder": DOCKER / "builder.Dockerfile"}


@pytest.mark.parametrize("role", DOCKERFILES)
def test_dockerfiles_copy_what_exists_and_run_what_exists(role):
    steps = dockerfile(DOCKERFILES[role])
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    ignored = [line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text()
               .splitlines() if line.strip() and not line.startswith("#")]
    copies = 0
    for instruction, rest in steps:
        if instruction not in ("COPY", "ADD"):
            continue
        words = shlex.split(rest)
        if any(w.startswith("--from=") for w in words):
            continue
        sources = [w for w in words if not w.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists(), f"{role}: COPY {source}: no such path"
            assert source not in ignored, f"{role}: COPY {source} is in .dockerignore"
            copies += 1
    assert copies >= 4
    entry = json.loads(dict(steps)["ENTRYPOINT"])
    cmd = json.loads(dict(steps)["CMD"])
    assert entry == ["edgebook", "serve"] and entry[0] in scripts
    check_command([*entry[1:], *cmd], f"{role} ENTRYPOINT + CMD")
    assert cmd[cmd.index("--role") + 1] == role
    for instruction, rest in steps:  # edgebook commands run while building the image
        if instruction == "RUN" and rest.startswith("edgebook "):
            check_command(shlex.split(rest)[1:], f"{role}: RUN {rest}")
    froms = [rest.split()[0] for instruction, rest in steps if instruction == "FROM"]
    users = [rest for instruction, rest in steps if instruction == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), users
    assert users[-1].split(":")[0] == "10001"
    last_user = max(i for i, (instruction, _) in enumerate(steps) if instruction == "USER")
    last_from = max(i for i, (instruction, _) in enumerate(steps) if instruction == "FROM")
    assert last_user > last_from, "the final stage sets its USER"
    if role == "gateway":
        assert froms[-1] == "python:3.12-slim" and len(froms) >= 2
        final = [rest for instruction, rest in steps[last_from:] if instruction == "RUN"]
        assert not any(word in " ".join(final) for word in ("cargo", "rustup", "rustc"))
        assert any("[services,serve]" in run for run in final)
    else:
        assert froms[-1] == "rust:1-slim-bookworm"
        assert ("RUN", "edgebook prebuild") in steps[last_user:], \
            "the SDK is prebuilt as the runtime user, into the image's target dir"


def test_docker_context_leaves_out_local_state():
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".edgebook", "sdk/target", "**/node_modules"):
        assert entry in ignored
