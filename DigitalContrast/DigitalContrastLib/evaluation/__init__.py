"""Image and vessel metrics, registration of a real contrast scan onto the non-contrast grid, statistics, reference observers."""
