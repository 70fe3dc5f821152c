"""Importing this sets Dramatiq's global broker from the settings (``worker.broker.setup_broker``).

Dramatiq binds an actor to the global broker when the actor's module is imported, so each module
that declares actors (``worker.actors``, ``worker.bookings``) imports this first; neither needs
the other for it.
"""

from __future__ import annotations

from worker.broker import setup_broker

broker = setup_broker()

__all__ = ["broker"]
