"""Who may do what: API keys and roles, the key store, and the forwardAuth
service (keys, OIDC tokens, probe tokens) Traefik asks for every closed
model.
"""
