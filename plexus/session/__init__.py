"""``plexus up`` as a library: ``up`` runs the pipeline for one profile (``pipeline``); ``initiate`` and
``accept`` are the two roles, ``connect`` the path and payload of one session, shared by both."""

from plexus.session.pipeline import up

__all__ = ["up"]
