"""CityOS dispatch: who must act on a case, by when, and what happens when they do not."""
