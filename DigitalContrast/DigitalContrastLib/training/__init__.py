"""Training on paired cases and validating a model against its card's targets."""
