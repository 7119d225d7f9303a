"""Training: fits the models of :mod:`visual_anomaly` (autoencoder, outlier exposure), renders synthetic
corridor worlds and runs the MNIST sanity suite. It imports the runtime package, never the reverse."""
