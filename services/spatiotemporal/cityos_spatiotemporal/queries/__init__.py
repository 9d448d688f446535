"""The spatio-temporal query engine: range, nearest, trajectory, stay points and their
matching, route deviation, reachable area and box select over the store's tables.

Each query module validates its input (bad input is a `BadQuery`, 422 with the reason), bounds
its work (limits, paging, a statement timeout per query) and returns contract Structs
(`cityos_contracts.stquery`). `engine.QueryEngine` gathers them for the HTTP routes
(`http.py`) and the NATS responders (`responders.py`).
"""
