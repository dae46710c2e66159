"""image-compat-extender: a kube-scheduler extender that places pods by their images'
NFD image-compatibility artifacts."""

__version__ = "0.1.0"
