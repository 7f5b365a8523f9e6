"""Stand-ins for third-party images the chart runs (there is no container runtime here)."""
