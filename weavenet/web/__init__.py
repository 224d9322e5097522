"""The router's read-only HTTP server: Prometheus metrics, the status and report as JSON, and a
live topology page. It runs in the supervisor process and reads what the CLI reads."""
