"""One small module per HTTP client: put the token on the request, hand each answer
to the :class:`~bearer_m2m._exchange.Exchange`, send what it says.

Nothing here is imported by ``import bearer_m2m``: the facade imports a module the
first time a request of its client reaches it, and each module imports only its
own client (which the application has imported already by then).
"""
