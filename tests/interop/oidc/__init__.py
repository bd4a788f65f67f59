"""bearer_m2m against node oidc-provider (npm ``oidc-provider``), on loopback."""
