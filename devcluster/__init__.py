"""devcluster: a real local Kubernetes control plane (etcd, kube-apiserver, kube-scheduler) and
OCI tooling built from pinned Go modules, for the tests, the demo and the benchmarks.

Dev-only: never part of the shipped wheel or image. Modules:

- ``build``: builds the pinned Go binaries into the cache and finds them again;
- ``pki``: test certificate authorities, certificates, keys and kubeconfigs;
- ``processes``: the one lifecycle of every long-running child (start, ready, stop, log tail);
- ``controlplane``: etcd, kube-apiserver and kube-schedulers, plus cluster helpers (nodes, CRDs);
- ``registries``: real OCI registries on loopback (go-containerregistry, Debian's distribution);
- ``oci``: test images and compatibility artifacts pushed with our code and the real ``oras``;
- ``faultproxy``: a switchable fault proxy in front of a registry, in-process or as a child;
- ``nfd``: NFD's CRDs and a one-shot ``nfd-worker`` publishing real NodeFeatures;
- ``stack``: the extender as a child, its scheduler profile, and the pod vocabulary of tests;
- ``demo``: ``make demo``, the whole story end to end with a placement table;
- ``pytest_plugin`` and ``pytest_registries``: the pytest fixtures for the above;
- ``__main__``: ``python -m devcluster build|up|down|env|status``.
"""
