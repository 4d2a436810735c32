"""Operations: probes (/health, /livez, /readyz), metrics, request ids, draining on SIGTERM.

Nothing here is a domain rule: these modules let a load balancer, an orchestrator and a
Prometheus server see and steer each process. Domains may import ``ops.metrics`` (to count
their events) and nothing else from here.
"""
