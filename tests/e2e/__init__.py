"""End-to-end tests: ray start --head and ray job submit, several nodes, the infra scripts for real."""
