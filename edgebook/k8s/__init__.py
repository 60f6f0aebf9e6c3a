"""Kubernetes deployment: the Helm chart in ``deploy/chart/edgebook`` rendered without Helm.

``render.py`` interprets exactly the Go-template subset the chart's templates use, so the
chart stays the one source of the manifests (``deploy/manifests`` is its output with the
default values; ``python -m edgebook.k8s --write`` regenerates it).
"""
