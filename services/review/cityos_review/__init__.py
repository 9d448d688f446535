"""CityOS efficiency review (行政问效): how each unit and department performed."""
