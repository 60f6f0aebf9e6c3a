"""Render the chart (``deploy/chart/edgebook``) as ``helm template`` would, without Helm.

Values: the chart's ``values.yaml``, then each ``--values`` file merged over it (a ``null``
removes a key, as in Helm), then each ``--set key=value`` (dotted keys; ``a=1,b=2`` sets
two; numbers, ``true``/``false`` and ``null`` are typed, as Helm's ``--set`` does).

Output: Helm's order (by kind, then template file name), each manifest as
``---\\n# Source: edgebook/templates/FILE\\n`` and its trimmed text; templates whose names
start with ``_`` and those that render to nothing are left out.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .gotemplate import Template, TemplateError

PACKAGED_CHART = Path(__file__).with_name("chart")  # where the wheel puts it
REPO_CHART = Path(__file__).resolve().parents[2] / "deploy" / "chart" / "edgebook"
REPO_MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "manifests"
DEFAULT_RELEASE = "edgebook"
DEFAULT_NAMESPACE = "default"
SOURCE_HEADER = re.compile(r"\A---\n# Source: [^\n]+/templates/")

# Helm's install order (pkg/releaseutil/kind_sorter.go); other kinds go last
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService",
]


class RenderError(Exception):
    """Bad values, a bad ``--set``, or a template outside the supported subset."""


@dataclass
class Manifest:
    template: str  # file name under templates/
    source: str  # "edgebook/templates/FILE"
    text: str  # the rendered document, trimmed

    @property
    def document(self) -> dict:
        return yaml.safe_load(self.text)

    @property
    def kind(self) -> str:
        return str((self.document or {}).get("kind", ""))

    def file_text(self) -> str:
        return f"---\n# Source: {self.source}\n{self.text}\n"


def chart_dir() -> Path:
    for candidate in (PACKAGED_CHART, REPO_CHART):
        if (candidate / "Chart.yaml").is_file():
            return candidate
    raise RenderError("the edgebook chart is missing from this installation")


def load_values(chart: Path, files: Iterable[str | Path] = (),
                sets: Iterable[str] = ()) -> dict[str, Any]:
    values = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    for path in files:
        try:
            extra = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise RenderError(f"cannot read values file {path}: {exc}") from None
        if extra is None:
            continue
        if not isinstance(extra, dict):
            raise RenderError(f"values file {path} is not a mapping")
        values = merge(values, extra)
    for assignment in sets:
        for key, value in parse_set(assignment):
            values = merge(values, _nested(key, value))
    return values


def merge(base: dict, override: dict) -> dict:
    """``override`` over ``base`` (maps merge key by key; a None removes the key)."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def parse_set(text: str) -> list[tuple[list[str], Any]]:
    """``a.b=1,c=x`` -> ``[(["a", "b"], 1), (["c"], "x")]``; ``\\,`` is a literal comma and
    ``\\.`` a dot inside a key (``ingress.annotations.example\\.com/x=1``)."""
    pairs = []
    for item in re.split(r"(?<!\\),", text):
        key, equals, raw = item.partition("=")
        path = [part.replace("\\.", ".") for part in re.split(r"(?<!\\)\.", key.strip())]
        if not equals or not all(re.fullmatch(r"[A-Za-z0-9_./-]+", part) for part in path):
            raise RenderError(f"--set wants key=value (dotted keys, no list indexes), "
                              f"not {item!r}")
        pairs.append((path, _typed(raw.replace("\\,", ","))))
    return pairs


def _typed(raw: str) -> Any:
    if raw in ("true", "false"):
        return raw == "true"
    if raw == "null":
        return None
    if re.fullmatch(r"-?(0|[1-9]\d*)", raw):
        return int(raw)
    return raw


def _nested(path: list[str], value: Any) -> dict:
    result: Any = value
    for part in reversed(path):
        result = {part: result}
    return result


def render(values_files: Iterable[str | Path] = (), sets: Iterable[str] = (), *,
           release: str = DEFAULT_RELEASE, namespace: str = DEFAULT_NAMESPACE,
           chart: Path | None = None) -> list[Manifest]:
    """The chart's manifests for these values, in Helm's output order."""
    chart = chart or chart_dir()
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    values = load_values(chart, values_files, sets)
    context = {
        "Values": values,
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm",
                    "IsInstall": True, "IsUpgrade": False},
        "Chart": {"Name": meta["name"], "Version": meta["version"],
                  "AppVersion": meta.get("appVersion")},
    }
    manifests = []
    for path in sorted((chart / "templates").iterdir()):
        if path.name.startswith("_") or path.suffix not in (".yaml", ".yml"):
            continue
        try:
            text = Template(path.read_text(), name=path.name).render(context)
        except TemplateError as exc:
            raise RenderError(str(exc)) from None
        for document in _split(text):
            manifests.append(Manifest(path.name, f"{meta['name']}/templates/{path.name}",
                                      document))
    for manifest in manifests:
        try:
            if not isinstance(manifest.document, dict):
                raise RenderError(f"{manifest.template}: not a Kubernetes object")
        except yaml.YAMLError as exc:
            raise RenderError(f"{manifest.template} renders invalid YAML: {exc}") from None
    order = {kind: number for number, kind in enumerate(INSTALL_ORDER)}
    return sorted(manifests, key=lambda m: order.get(m.kind, len(order)))  # stable


def _split(text: str) -> list[str]:
    """Helm's SplitManifests: documents separated by ``---`` lines, trimmed, empty ones dropped."""
    documents = re.split(r"(?:^|\n)---\s*(?:\n|$)", text.strip())
    return [document.strip() for document in documents if document.strip()]


def to_stream(manifests: list[Manifest]) -> str:
    return "".join(manifest.file_text() for manifest in manifests)


def write(manifests: list[Manifest], directory: str | Path) -> list[Path]:
    """One file per template (as ``helm template --output-dir`` writes, without its
    ``CHART/templates`` subdirectories); earlier rendered files no longer produced go."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    texts: dict[str, str] = {}
    for manifest in manifests:
        texts[manifest.template] = texts.get(manifest.template, "") + manifest.file_text()
    for old in directory.glob("*.yaml"):
        if old.name not in texts and SOURCE_HEADER.match(old.read_text()):
            old.unlink()
    written = []
    for name, text in sorted(texts.items()):
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
