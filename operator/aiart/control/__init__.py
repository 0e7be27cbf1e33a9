"""The control loop: the operator's daemon, its work queue and reconcile
passes, the ports it drives (engine, builder, gateway, store), the gateway
prober, artifact fetching, its metrics and the alert watch.
"""
