"""The FastAPI service: routes, auth and roles, and (later) alerts and delivery."""
