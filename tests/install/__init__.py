"""The install tier: the chart, the operator and the workloads as a platform team installs them."""
