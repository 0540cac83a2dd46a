"""Router policies (pure, seedable objects) and the router node that applies them."""

from routing.router import Router
from routing.weighted import WeightedRandom

__all__ = ["Router", "WeightedRandom"]
