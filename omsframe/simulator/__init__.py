"""The built-in OMS simulator: a deterministic synthetic shop served over HTTP on loopback."""
