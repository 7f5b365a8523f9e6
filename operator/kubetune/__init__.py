"""kubetune: a Kubernetes-native operator for the whole life of a domain LLM."""

__version__ = "0.1.0"
