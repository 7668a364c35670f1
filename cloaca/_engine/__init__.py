"""The async core: executing runs, sharing work, what the engine tells the outside world."""
