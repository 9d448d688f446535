"""Hazardous-chemical transport supervision: scenario, rules and evaluation (issue 7)."""
