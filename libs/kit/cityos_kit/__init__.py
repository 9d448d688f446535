"""The CityOS service kit: one way to configure, log, trace, talk to NATS and Postgres, and serve HTTP."""
