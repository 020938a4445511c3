"""The development OpenID Connect provider (panva's oidc-provider) for tests and the demo."""
