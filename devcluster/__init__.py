"""devcluster: a real local Kubernetes control plane (etcd, kube-apiserver, kube-scheduler) and
OCI tooling built from pinned Go modules, for the tests, the demo and the benchmarks.

Dev-only: never part of the shipped wheel or image. Modules: ``build`` (Go binaries),
``pki`` (test certificates), ``controlplane`` (processes and cluster helpers),
``pytest_plugin`` (fixtures).
"""
