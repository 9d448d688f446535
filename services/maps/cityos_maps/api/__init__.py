"""The HTTP routes of the themed-maps service (pages, sign-in, board, console, field)."""
