"""API: the HTTP interface for operators, cadres and the grid platform (FastAPI).

``main.create_app`` builds the app; ``deps`` hands routes the store and the
running service; ``routes/*`` hold one resource each; ``problems`` renders
every error as RFC 9457 problem+json.
"""
