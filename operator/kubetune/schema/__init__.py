"""The CRDs as data: generation from the API models (``crd``), the API server's own checks
(``crd_validation``: OpenAPI schema and CEL rules), manifest validation for ``kubetune
validate`` and the local runtime (``validation``), and the API reference (``apidocs``).

A layer beside :mod:`kubetune.plan`: it reads :mod:`kubetune.api` only, and the CLI and the
local runtime read it."""
