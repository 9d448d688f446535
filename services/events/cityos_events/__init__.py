"""CityOS event hub."""
