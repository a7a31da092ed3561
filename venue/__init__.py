"""spark.venue — see docs/ARCHITECTURE.md."""

if __name__ != "spark.venue":  # pragma: no cover - bare import
    raise ImportError("this folder is installed as 'spark.venue'; import it under that name")

from spark.venue.core import VenueCore
from spark.venue.errors import VenueError
from spark.venue.server import DEFAULT_API_SECRET, Venue, run_venue_cli, serve

__all__ = ["DEFAULT_API_SECRET", "Venue", "VenueCore", "VenueError", "run_venue_cli", "serve"]
