"""Training package: datasets, autoencoder training, calibration, evaluation and the demo."""
